"""What the library itself costs per sample, where it shows: against a fast loopback OpenAI-compatible server.

A loopback server (`latency_server.py`, in its own process, so its CPU is not ours) answers every chat completion
after a fixed delay (0.2 s). At each concurrency (64, 256) the same N samples (mode `none`, an `openai:` reasoner,
a gold answer, so every path reads and checks an answer) go through, in one process and one command:

  raw         bare `AsyncOpenAI.chat.completions.create` calls, `concurrency` in flight, each sending the body the
              graph's reasoner sends (system prompt, reasoning template, sampling fields): the ceiling
  solve_batch `asolve_batch` on the whole list, the reasoner's `max_concurrency` = concurrency
  eval        `run_eval` (records on disk, scoring), 4 batches of N/4 in flight, the same reasoner options
  serve       `python -m rapid_agent serve` in a subprocess (its own CPU, like a deployment), `concurrency`
              `AsyncOpenAI` clients in this process asking it

Raw runs bracket every library run and each ratio is to the mean of its two neighbours, so drift in the load of a
shared machine hits both sides alike. Then (unless `--no-profile`) solve_batch runs again (N samples, concurrency
256) in a child process under py-spy (`--gil`: only the thread holding the GIL is sampled, so samples are CPU spent
in Python, in every thread, the engine's batcher thread included), with tracing off and on, and prints the CPU per
sample by phase: validation (inputs, prompts), graph (LangGraph/LangChain and the nodes' own code), batching
(micro-batcher), engine (the OpenAI client, httpx, the engine's retries and parsing), answer check, asyncio (the
event loops), other.

    python benchmarks/overhead.py                       # N=1024 at 64 and 256, then the profile
    python benchmarks/overhead.py --samples 256 --concurrency 64 --no-profile

Measured 2026-12-04 on 2 idle cores (load under 1.1), N=1024, 0.2 s server, three runs of three rounds at f1eb5bd+
(the last two at 169c6c1 recorded in benchmarks/results/overhead/), the medians of each run's rounds:
  ratio to raw                concurrency 64       concurrency 256
  solve_batch                 0.97, 0.99, 0.99     1.60, 1.64, 1.45   (rounds 1.24-1.72)
  eval runner                 0.92, 0.94, 0.93     1.47, 1.49, 1.46   (rounds 1.42-1.62)
  serve (subprocess)          0.97, 0.93, 0.98     0.88, 0.94, 0.98   (rounds 0.84-1.07); its process 1.0-1.1 ms/request
  ratio to raw over aiohttp   0.98-1.00 / 0.91-0.94 / 0.94-0.98     1.01, 1.03, 0.98 / 0.95, 0.94, 0.96 / 0.60, 0.61, 0.61
  At 64 every path is near the bound the latency sets (64 / 0.2 s). At 256 raw is bound by its own CPU: 2.1-2.5 ms
  a call through `chat.completions.create` over httpx, 1.0-1.3 ms over the SDK's aiohttp transport; the `openai:`
  engine posts over aiohttp without the SDK's per-request typing pass (0.55-0.6 ms a call alone), so solve_batch
  and the eval runner outrun the first baseline and match the second. serve's process does what solve_batch does
  plus the incoming HTTP request, on the cores its client shares, hence its 0.6 of raw over aiohttp.
  CPU/sample at 256 (py-spy): solve_batch 0.95-1.01 ms: engine 0.42-0.66, native 0.16-0.36, asyncio 0.07-0.17,
  validation 0.02-0.04, graph 0.01-0.03, answer check and batching under 0.01; tracing on 4.4-4.9 ms, graph 1.5-1.75
  of it, while a traced run went through the compiled graph for its spans; solve_batch now drives tracing's handler
  itself: 1.30-1.36 ms a sample against 4.4-4.9 through the graph, alternated in one process (0.05 s server).
  Before this (same machine, the same day): solve_batch 0.87-0.91, eval 0.76-0.89, serve 0.51-0.56 at 256, serve's
  process 3.2-3.5 ms a request: httpx and the SDK's typing pass (~2.1 ms), a 50-500 ms batching window on requests
  from outside a cohort (serve's), and full garbage-collector passes over ~240k start-up objects (~0.5 ms a
  request; the serve command now freezes them). The graph's own cost with an instant FunctionEngine (1,024
  samples, mode none, solve_batch): 0.04-0.05 ms CPU/sample, against 2-3 ms when every sample was a LangGraph run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import openai

HERE = Path(__file__).resolve().parent
QUESTION = "What is 1 + 2? (sample {i})"
#: where a py-spy frame's file puts its CPU, first match wins (innermost frame first)
PHASES = (
    ("answer check", ("rapid_agent/answers.py", "rapid_agent/_verify_pool", "rapid_agent/_math_check")),
    ("validation", ("rapid_agent/inputs.py", "rapid_agent/perception.py", "rapid_agent/prompts.py", "pydantic")),
    ("batching", ("backends/batching.py",)),
    ("engine", ("backends/openai", "openai/", "httpx/", "httpcore/", "tenacity/", "anyio/", "h11/")),
    ("graph", ("langgraph/", "langchain_core/", "langsmith/", "graphs/", "rapid_agent/api.py")),
    ("tracing", ("opentelemetry/", "rapid_agent/telemetry/")),
    ("asyncio", ("asyncio/", "selectors.py")),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    """Start a server process and wait until it accepts connections on `port`."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{' '.join(cmd[:5])} did not start")


def samples(n: int) -> list[dict]:
    """The server always answers 3: every other gold is 4, so half the verdicts are wrong ones."""
    return [{"id": str(i), "question": QUESTION.format(i=i), "answer": str(3 + i % 2)} for i in range(n)]


def reasoner_context(url: str, concurrency: int):
    from rapid_agent import RapidContext

    return RapidContext(mode="none", reasoner=f"openai:m@{url}", reasoner_options={"max_concurrency": concurrency})


async def raw(client: openai.AsyncOpenAI, n: int, concurrency: int) -> int:
    """N bare chat completions, `concurrency` in flight, each with the body the graph's reasoner sends (its system
    prompt, its reasoning template around the question, its sampling fields); how many came back right."""
    from rapid_agent.config import RapidContext
    from rapid_agent.perception import Perception, reasoner_request

    context = RapidContext()
    gen, none = context.reasoner_gen, Perception(None, None)
    extended = {"top_k": gen.top_k, "min_p": gen.min_p, "repetition_penalty": gen.repetition_penalty}
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> bool:
        request = reasoner_request(QUESTION.format(i=i), none, "none", context.prompts)
        async with gate:
            reply = await client.chat.completions.create(
                model="m",
                messages=[{"role": "system", "content": request.system}, {"role": "user", "content": request.prompt}],
                temperature=gen.temperature,
                top_p=gen.top_p,
                max_tokens=gen.max_new_tokens,
                extra_body=extended,
            )
        return "\\boxed{3}" in (reply.choices[0].message.content or "")

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def via_solve_batch(url: str, n: int, concurrency: int) -> int:
    from rapid_agent.api import asolve_batch

    results = await asolve_batch(samples(n), context=reasoner_context(url, concurrency))
    return sum(r.get("correct") is not None for r in results)


def via_eval(url: str, n: int, concurrency: int, folder: Path) -> int:
    from rapid_agent.eval.adapters import build_adapter
    from rapid_agent.eval.runner import EvalConfig, run_eval

    folder.mkdir(parents=True)
    Path(folder, "x.png").write_bytes(b"")  # mode none never opens it; the generic adapter wants an image column
    rows = [{**s, "image": "x.png"} for s in samples(n)]
    Path(folder, "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    context = reasoner_context(url, concurrency)
    config = EvalConfig(
        out=folder / "out", reasoners=(context.reasoner,), modes=("none",), batch_size=max(1, n // 4), concurrency=4
    )
    run_eval([build_adapter(f"generic:b={folder / 'bench.jsonl'}")], context=context, config=config)
    records = [json.loads(line) for p in (folder / "out").rglob("results*.jsonl") for line in p.open()]
    return sum(r.get("correct") is not None for r in records)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def via_serve(serve_url: str, n: int, concurrency: int, pid: int) -> int:
    before = process_cpu_s(pid)
    ok = await ask_serve(serve_url, n, concurrency)
    print(f"  {'':12s} {'':19s} {1e3 * (process_cpu_s(pid) - before) / n:5.2f} ms CPU/sample (the serve process)")
    return ok


async def ask_serve(serve_url: str, n: int, concurrency: int) -> int:
    gate = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=serve_url, api_key="-", max_retries=0, timeout=600) as client:

        async def one(i: int) -> bool:
            async with gate:
                reply = await client.chat.completions.create(
                    model="rapid", messages=[{"role": "user", "content": QUESTION.format(i=i)}]
                )
            return "3" in (reply.choices[0].message.content or "")

        return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def timed(label: str, run, n: int) -> float:
    cpu, wall = time.process_time(), time.perf_counter()
    ok = await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:12s} {n / wall:7.1f} samples/s  {1e3 * cpu / n:5.2f} ms CPU/sample (this process)  ok {ok}/{n}")
    return n / wall


def aiohttp_client(url: str) -> openai.AsyncOpenAI | None:
    """The same client over the SDK's aiohttp transport (what the engine uses on its batcher's loop), if installed."""
    try:
        http_client = openai.DefaultAioHttpClient()
    except (AttributeError, RuntimeError):
        return None
    return openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=600, http_client=http_client)


async def compare(url: str, serve: tuple[str, int] | None, n: int, levels: list[int], rounds: int, tmp: Path) -> None:
    aio = aiohttp_client(url)
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=600) as client:
        await raw(client, 64, 64)  # connections, imports
        if aio is not None:
            await raw(aio, 64, 64)
        await via_solve_batch(url, 64, 64)
        for c in levels:
            print(f"concurrency {c}, {n} samples")
            paths = {
                "solve_batch": partial(via_solve_batch, url, n, c),
                "eval": lambda c=c: asyncio.to_thread(via_eval, url, n, c, tmp / f"eval{c}-{time.time_ns()}"),
            }
            if serve is not None:
                paths["serve"] = partial(via_serve, serve[0], n, c, serve[1])
            # the issue's baseline (the SDK as it comes, over httpx) and the same SDK over aiohttp, the transport the
            # engine uses: the first says what a user gains, the second what the library itself still costs
            bases = {"raw": partial(raw, client, n, c)}
            if aio is not None:
                bases["raw aiohttp"] = partial(raw, aio, n, c)
            ratios = {base: {name: [] for name in paths} for base in bases}
            for _ in range(rounds):
                before = {base: await timed(base, run, n) for base, run in bases.items()}
                for name, run in paths.items():
                    rate = await timed(name, run, n)
                    after = {base: await timed(base, run, n) for base, run in bases.items()}
                    for base in bases:
                        ratios[base][name].append(rate / ((before[base] + after[base]) / 2))
                    before = after
            for base, by_path in ratios.items():
                print(
                    f"  ratio to {base} (median of rounds, each round's): "
                    + ", ".join(
                        f"{k} {statistics.median(v):.2f} {[round(r, 2) for r in v]}" for k, v in by_path.items()
                    )
                )
    if aio is not None:
        await aio.close()


def classify(stack: str) -> str:
    if not stack.strip():
        return "native"  # the GIL held with no Python frame on the stack (C code between frames)
    for frame in reversed(stack.split(";")):  # innermost first
        for phase, needles in PHASES:
            if any(needle in frame for needle in needles):
                return phase
    return "other"


def profile(url: str, n: int, tracing: bool, tmp: Path) -> None:
    out = tmp / f"profile_{int(tracing)}.txt"
    cmd = [sys.executable, __file__, "--child", url, "--samples", str(n)] + (["--child-trace"] if tracing else [])
    spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--gil", "--format", "raw", "-r", "200"]
    done = subprocess.run([*spy, "-o", str(out), "--", *cmd], capture_output=True, text=True)
    child = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not child:
        print(done.stdout[-2000:], done.stderr[-2000:])
        return
    measured = json.loads(child[-1])
    phases: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "_find_and_load" not in stack:  # every thread, imports aside (the warm-up's 64 samples are in)
            phases[classify(stack)] += int(count)
    total = sum(phases.values()) or 1
    cpu = measured["cpu_ms_per_sample"]
    print(f"  tracing {'on ' if tracing else 'off'}: {cpu:.2f} ms CPU/sample ({measured['rate']:.0f} samples/s)")
    print("    " + ", ".join(f"{k} {cpu * v / total:.2f}" for k, v in phases.most_common()) + "  (ms/sample)")


def child(url: str, n: int, trace: bool) -> None:
    """The profiled run: a warm-up of 64, then N samples at concurrency 256; prints its CPU as JSON."""
    if trace:
        from rapid_agent.tracing import setup_tracing

        setup_tracing(os.path.join(tempfile.mkdtemp(), "trace.jsonl"))
    asyncio.run(via_solve_batch(url, 64, 64))

    async def profiled_run() -> dict:
        cpu, wall = time.process_time(), time.perf_counter()
        ok = await via_solve_batch(url, n, 256)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"cpu_ms_per_sample": 1e3 * cpu / n, "rate": n / wall, "ok": ok}

    print(json.dumps(asyncio.run(profiled_run())), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable (default: 64 and 256)")
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=2, help="raw-bracketed runs of every path per concurrency")
    parser.add_argument("--no-serve", action="store_true", help="leave out the serve subprocess")
    parser.add_argument("--no-profile", action="store_true", help="leave out the py-spy phase profile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.samples, args.child_trace)

    port = free_port()
    server = start(
        [sys.executable, str(HERE / "latency_server.py"), "--port", str(port), "--latency-s", str(args.latency_s)],
        port,
    )
    url = f"http://127.0.0.1:{port}/v1"
    serve = None
    try:
        serve_at = None
        if not args.no_serve:
            serve_port = free_port()
            serve = start(
                [
                    *(sys.executable, "-m", "rapid_agent", "serve", "--pipeline", f"rapid=,openai:m@{url},none"),
                    *("--reasoner-option", "max_concurrency=256", "--max-active", "4096", "--max-queue", "4096"),
                    *("--port", str(serve_port), "--log-level", "warning"),
                ],
                serve_port,
            )
            serve_at = (f"http://127.0.0.1:{serve_port}/v1", serve.pid)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; server latency {args.latency_s} s")
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(compare(url, serve_at, args.samples, args.concurrency or [64, 256], args.rounds, Path(tmp)))
            if not args.no_profile:
                print(
                    f"CPU per sample by phase, solve_batch, {args.samples} samples at concurrency 256 (py-spy --gil)"
                )
                for tracing in (False, True):
                    profile(url, args.samples, tracing, Path(tmp))
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        for proc in (serve, server):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
