"""The cost of answer checking, in one process: the in-process fast path, the worker pool (one by one and as a
batch), and the implementation before the pool (math-verify in the caller, a thread for the timeout).

Two workloads: "plain" outputs that are decidable without sympy (a boxed integer, a letter, a word) and "sympy"
outputs that need math-verify (a boxed fraction, LaTeX in prose, roots, intervals; all distinct, so no cache
helps). The old implementation is read from git
(`--baseline-rev`, default: the commit before the pool came in) and skipped when git cannot show it. Prints
checks/s per path and the ratio to the old implementation on the same inputs, and checks that the paths agree.

    python benchmarks/answer_check.py --checks 400
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from rapid_agent import _verify_pool
from rapid_agent.answers import check_answer, check_answers

PLAIN = [(r"so the answer is \boxed{42}", "42"), (r"\boxed{(b)}", "B"), (r"\boxed{Yes}", "Yes"), ("12", "12")]


def sympy_case(i: int) -> tuple[str, str]:
    """Distinct inputs, so that no cache inside math-verify answers a repeat."""
    k = i + 2
    return [
        (rf"so the answer is \boxed{{\frac{{{k}}}{{{2 * k}}}}}", "0.5"),
        (rf"The probability is $\dfrac{{1}}{{{k}}}$.", f"1/{k}"),
        (rf"\boxed{{{k}\sqrt{{3}}}}", rf"\sqrt{{{3 * k * k}}}"),
        (rf"\boxed{{(1, {k}]}}", f"(1,{k}]"),
    ][i % 4]


def old_implementation(rev: str) -> types.ModuleType | None:
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:rapid_agent/answers.py"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_answers")
    sys.modules[module.__name__] = module  # its dataclasses look their module up
    exec(compile(source, f"{rev}:rapid_agent/answers.py", "exec"), module.__dict__)
    return module


def rate(run: Callable[[], object], checks: int, repeats: int) -> float:
    """Median checks/s over `repeats` runs of `checks` checks."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return checks / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=400, help="checks per run and workload")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-rev", default="ace3c04", help="git revision of the old answers.py")
    args = parser.parse_args()

    old = old_implementation(args.baseline_rev)
    check_answer(*sympy_case(10_000))  # start the pool outside the timings
    print(f"pool workers: {len(_verify_pool.worker_pids())}")
    workloads = {
        "plain": [PLAIN[i % len(PLAIN)] for i in range(args.checks)],
        "sympy": [sympy_case(i) for i in range(args.checks)],
    }
    for name, work in workloads.items():
        cases = work[:4]
        outputs, golds = [o for o, _ in work], [g for _, g in work]
        new_verdicts = [check_answer(o, g).correct for o, g in cases]
        batch = check_answers(outputs, golds)
        assert all(new_verdicts) and all(v.correct for v in batch), f"{name}: a check failed"
        one_by_one = rate(lambda w=work: [check_answer(o, g) for o, g in w], args.checks, args.repeats)
        batched = rate(lambda o=outputs, g=golds: check_answers(o, g), args.checks, args.repeats)
        line = f"{name:6s} check_answer {one_by_one:9.0f}/s   check_answers {batched:9.0f}/s"
        if old is not None:
            old_verdicts = [old.check_answer(o, g).correct for o, g in cases]
            baseline = rate(lambda w=work: [old.check_answer(o, g) for o, g in w], args.checks, args.repeats)
            line += (
                f"   old {baseline:9.0f}/s   ratio vs old: {one_by_one / baseline:6.2f}x one by one,"
                f" {batched / baseline:6.2f}x batched   (old right on {sum(old_verdicts)}/{len(cases)})"
            )
        print(line)


if __name__ == "__main__":
    main()
