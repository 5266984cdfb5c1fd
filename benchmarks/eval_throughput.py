"""Throughput of `rapid_agent.eval` against raw batched engine calls, and the cost of adding a second reasoner.

Four timings in one process over the same N samples (world-scene PNGs written as a generic benchmark, a tiny
Qwen2.5-VL captioner, two reasoners; everything greedy so every path generates the same tokens):
  raw       `engine.generate` on whole batches: captioner, then reasoner (no graph, no records)
  graph     the eval's two graph passes by hand: `solve_batch` perception-only, then with the captioner outputs
  eval      `run_eval` into a fresh out folder: the same two passes, plus records on disk, scoring and resuming
  +reasoner `run_eval` again over that folder with a second reasoner added: only the new reasoner runs, and the
            captioner must make zero calls (it is counted)
Prints samples/s, eval / raw (what the graph and the eval cost together), eval / graph (what the eval adds on top
of the graph) and the second reasoner's cost relative to the first run. On a busy machine the ratios wander with
the load; the time the eval spends outside the graph (its own work: reading rows, records, scoring, the store) is
measured directly, by timing every `solve_batch` call it makes, and does not.

    python benchmarks/eval_throughput.py --samples 32
    python benchmarks/eval_throughput.py --reasoner hf:smollm2-135m-instruct --second-reasoner hf:/models/other
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends import ChatRequest, GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.eval import runner
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.inputs import load_image
from rapid_agent.models import build_tiny_causal_lm, build_tiny_qwen2_5_vl
from rapid_agent.perception import captioner_prompt, reasoner_prompt, split_output
from rapid_agent.world import generate_items


def write_benchmark(folder: Path, n: int) -> Path:
    """N world items as a JSONL benchmark with PNG files beside it (read by the generic adapter)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, item in enumerate(generate_items(n, seed=0)):
        item["image"].save(folder / "img" / f"{i}.png")
        lines.append(
            json.dumps(
                {"id": str(i), "question": item["question"], "image": f"img/{i}.png", "answer": str(item["answer"])}
            )
        )
    (folder / "bench.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "bench.jsonl"


def raw(samples, captioner, reasoner, context: RapidContext, batch_size: int) -> None:
    """The same work as one eval run, as bare engine calls on whole batches."""
    for lo in range(0, len(samples), batch_size):
        chunk = samples[lo : lo + batch_size]
        requests = [
            ChatRequest(
                captioner_prompt(context.mode, s.question, context.prompts),
                images=tuple(load_image(i) for i in s.images),
            )
            for s in chunk
        ]
        outputs = captioner.generate(requests, context.captioner_gen)
        prompts = [
            reasoner_prompt(s.question, split_output(context.mode, o.text), context.mode, context.prompts)
            for s, o in zip(chunk, outputs)
        ]
        reasoner.generate([ChatRequest(p, system=context.prompts.system) for p in prompts], context.reasoner_gen)


def graph_passes(samples, context: RapidContext, reasoner, batch_size: int) -> None:
    """The eval's two passes through the graph, by hand: no store, no scoring, no resume bookkeeping."""
    for lo in range(0, len(samples), batch_size):
        chunk = samples[lo : lo + batch_size]
        perceived = solve_batch(
            [{"images": list(s.images), "question": s.question} for s in chunk], context=context.replace(reasoner=None)
        )
        solve_batch(
            [
                {"captioner_output": p["captioner_output"], "question": s.question, "answer": s.answer}
                for s, p in zip(chunk, perceived)
            ],
            context=context.replace(captioner=None, reasoner=reasoner),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="eval batch size and raw batch size")
    parser.add_argument("--concurrency", type=int, default=2, help="eval batches in flight")
    parser.add_argument("--captioner-tokens", type=int, default=24)
    parser.add_argument("--reasoner-tokens", type=int, default=24)
    parser.add_argument("--mode", default="qcap+sol")
    parser.add_argument("--repeats", type=int, default=3, help="alternating raw/eval runs; medians are compared")
    parser.add_argument("--captioner", help="captioner spec (default: a tiny random Qwen2.5-VL)")
    parser.add_argument("--reasoner", help="first reasoner spec (default: a tiny random Qwen2)")
    parser.add_argument("--second-reasoner", help="second reasoner spec (default: a tiny random Qwen3)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="eval_throughput_"))
    cap_spec = args.captioner or f"hf:{build_tiny_qwen2_5_vl(tmp / 'captioner')}"
    first_spec = args.reasoner or f"hf:{build_tiny_causal_lm(tmp / 'reasoner_a')}"
    second_spec = args.second_reasoner or f"hf:{build_tiny_causal_lm(tmp / 'reasoner_b', arch='qwen3', seed=1)}"
    captioner = load_engine(cap_spec, "captioner", max_batch_size=args.batch_size)
    first = load_engine(first_spec, "reasoner", max_batch_size=args.batch_size)
    second = load_engine(second_spec, "reasoner", max_batch_size=args.batch_size)
    context = RapidContext(
        captioner=captioner,
        mode=args.mode,
        captioner_gen=GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=args.captioner_tokens),
        reasoner_gen=GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=args.reasoner_tokens),
    )
    source = write_benchmark(tmp / "bench", args.samples)
    adapter = build_adapter(f"generic:world={source}")
    samples = adapter.load()

    in_graph: list[float] = []

    def timed_solve_batch(*a, **k):
        start = time.perf_counter()
        try:
            return solve_batch(*a, **k)
        finally:
            in_graph.append(time.perf_counter() - start)

    runner.solve_batch = timed_solve_batch  # the eval's every graph call, timed

    def eval_run(out: Path, reasoners: tuple) -> float:
        config = EvalConfig(out=out, reasoners=reasoners, batch_size=args.batch_size, concurrency=args.concurrency,
                            progress=False, tables=False)  # fmt: skip
        start = time.perf_counter()
        run_eval([adapter], context=context, config=config)
        return time.perf_counter() - start

    raw(samples[:2], captioner, first, context, args.batch_size)  # warm-up: first-call allocations out of timings
    eval_run(tmp / "warmup", (first,))
    raw_times, graph_times, eval_times, second_times, second_cap_calls, outside = [], [], [], [], [], []
    for repeat in range(args.repeats):  # alternate, so that drift in machine load hits every path alike
        start = time.perf_counter()
        raw(samples, captioner, first, context, args.batch_size)
        raw_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        graph_passes(samples, context, first, args.batch_size)
        graph_times.append(time.perf_counter() - start)
        out = tmp / f"run{repeat}"
        in_graph.clear()
        eval_times.append(eval_run(out, (first,)))
        outside.append(eval_times[-1] - sum(in_graph))
        get_batcher(captioner).reset_stats()
        second_times.append(eval_run(out, (first, second)))
        second_cap_calls.append(len(get_batcher(captioner).batch_sizes))

    raw_s, graph_s, eval_s, second_s = (
        statistics.median(t) for t in (raw_times, graph_times, eval_times, second_times)
    )
    n = args.samples
    print(f"samples              {n} (mode {args.mode}, batch size {args.batch_size}, concurrency {args.concurrency})")
    print(f"raw engine calls     {n / raw_s:8.3f} samples/s  (median of {[round(t, 2) for t in raw_times]} s)")
    print(f"graph, two passes    {n / graph_s:8.3f} samples/s  (median of {[round(t, 2) for t in graph_times]} s)")
    print(f"eval run             {n / eval_s:8.3f} samples/s  (median of {[round(t, 2) for t in eval_times]} s)")
    print(f"eval / raw           {raw_s / eval_s:8.3f}")
    print(f"eval / graph         {graph_s / eval_s:8.3f}")
    print(
        f"eval outside graph   {1000 * statistics.median(outside) / n:8.3f} ms per sample (concurrency 1 makes this exact)"
    )
    print(f"+ second reasoner    {second_s:8.3f} s = {second_s / eval_s:.3f} of the first run's time")
    print(f"captioner calls while adding the second reasoner: {second_cap_calls} (must be all 0)")


if __name__ == "__main__":
    main()
