"""The answer-checking worker pool: a check that holds the GIL is ended at its timeout, from any thread or event
loop, its worker is gone and replaced; batches, forked children, broken and stopped pools never hang a caller."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rapid_agent import _verify_pool
from rapid_agent.answers import acheck_answer, check_answer, check_answers

#: sympy computes 10^(10^8) in one C call that holds the GIL for minutes
HOLDS_THE_GIL = r"\boxed{10^{10^{8}}}"
HALF = r"\boxed{\frac{1}{2}}"  # needs math-verify: goes to the pool
TIMEOUT_S = 1.0
#: process kill, result delivery and a loaded 2-core machine; a check that hung would take minutes
SLACK_S = 3.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def one_worker():
    _verify_pool.configure(workers=1)
    assert check_answer(HALF, "0.5").correct  # starts the pool, outside the timings below
    yield
    _verify_pool.configure(None)


def test_a_timed_out_check_kills_its_worker_and_the_pool_answers_the_next_check(one_worker):
    (pid,) = _verify_pool.worker_pids()
    started = time.monotonic()
    verdict = check_answer(HOLDS_THE_GIL, "3", timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert verdict.timed_out and not verdict.correct and "timed out" in verdict.reason
    assert verdict.prediction == "10^{10^{8}}" and verdict.extracted_from == "boxed"
    assert elapsed < TIMEOUT_S + SLACK_S
    assert not alive(pid)
    assert check_answer(HALF, "0.5").correct
    assert check_answer(HALF, "0.4").correct is False
    assert pid not in _verify_pool.worker_pids()


def test_a_check_from_another_thread_ends_at_its_timeout_while_other_threads_run(one_worker):
    ticks, stop, results = [0], threading.Event(), []

    def tick() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.01)

    def check() -> None:
        started = time.monotonic()
        results.append((check_answer(HOLDS_THE_GIL, "3", timeout_s=TIMEOUT_S), time.monotonic() - started))

    ticker, checker = threading.Thread(target=tick), threading.Thread(target=check)
    ticker.start()
    checker.start()
    time.sleep(TIMEOUT_S / 2)
    ticks_before = ticks[0]
    checker.join(TIMEOUT_S + SLACK_S)
    stop.set()
    ticker.join()
    assert results, "the check did not return"
    verdict, elapsed = results[0]
    assert verdict.timed_out and elapsed < TIMEOUT_S + SLACK_S
    assert ticks[0] > ticks_before + 10  # the GIL stayed free while the worker was busy


def test_a_batch_goes_to_the_pool_at_once_and_one_slow_check_costs_only_itself():
    outputs = [HALF, r"\boxed{\sqrt{4}}", HOLDS_THE_GIL, r"\boxed{0.25}", r"\boxed{5}", "B"]
    golds = ["0.5", "2", "3", r"\frac{1}{4}", "6", "B"]
    verdicts = check_answers(outputs, golds, timeout_s=TIMEOUT_S)
    assert [v.correct for v in verdicts] == [True, True, False, True, False, True]
    assert [v.timed_out for v in verdicts] == [False, False, True, False, False, False]


def test_acheck_answer_keeps_the_event_loop_running():
    async def main() -> tuple[list, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        verdicts = await asyncio.gather(
            acheck_answer(HOLDS_THE_GIL, "3", timeout_s=TIMEOUT_S),
            acheck_answer(HALF, "0.5"),
            acheck_answer(r"\boxed{5}", "5"),  # decided in-process
        )
        ticker.cancel()
        return verdicts, ticks

    verdicts, ticks = asyncio.run(main())
    assert verdicts[0].timed_out and verdicts[1].correct and verdicts[2].correct
    assert ticks > 10


def test_checks_decided_in_process_start_no_pool():
    _verify_pool.shutdown()
    assert check_answer(r"\boxed{12}", "12").correct
    assert check_answer(r"\boxed{b}", "B", choices=["x", "y"]).correct
    assert check_answer("Yes.", "yes").correct
    assert not _verify_pool.is_running()
    assert check_answer(HALF, "0.5").correct
    assert _verify_pool.is_running()


def test_stopping_the_pool_fails_its_outstanding_checks_instead_of_hanging_them():
    check_answer(HALF, "0.5")
    results = []
    checker = threading.Thread(target=lambda: results.append(check_answer(HOLDS_THE_GIL, "3", timeout_s=120)))
    checker.start()
    time.sleep(1.0)
    _verify_pool.shutdown()
    checker.join(10)
    assert results and not results[0].correct and not results[0].timed_out
    assert "stopped" in results[0].reason
    assert check_answer(HALF, "0.5").correct  # a new pool


@pytest.mark.slow  # the child's workers start by spawn, importing the library afresh
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_checks_with_its_own_pool_and_exits():
    check_answer(HALF, "0.5")  # the parent's pool exists when the child is forked
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_check_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) == (True, True)
    child.join(30)
    assert child.exitcode == 0  # it did not wait for ever on its idle workers
    assert check_answer(HALF, "0.5").correct  # the parent's pool is untouched


def _check_in_child(queue) -> None:
    queue.put((check_answer(HALF, "0.5").correct, check_answer(r"\boxed{\frac{1}{3}}", "0.3").correct is False))


@pytest.mark.slow  # a fresh interpreter whose workers re-run the script
def test_a_script_without_a_main_guard_ends_with_a_verdict_and_a_failure_names_the_guard(tmp_path):
    # spawned workers re-import the main script; whether the parent's pool breaks first or a worker comes up
    # after re-running the script's top level is a race: either way the script must end, never hang or crash
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            r"""
            from rapid_agent.answers import check_answer
            print("REASON", check_answer(r"\boxed{\frac{1}{2}}", "0.5").reason)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    reasons = [line for line in done.stdout.splitlines() if line.startswith("REASON")]
    assert done.returncode == 0 and reasons, done.stdout + done.stderr
    assert all(r == "REASON match" or "if __name__ == '__main__'" in r for r in reasons), reasons


def test_workers_start_although_something_removed_multiprocessings_temp_folder(tmp_path):
    # the forkserver's socket lives there; a /tmp cleaner that removed it once made every check a failure
    script = tmp_path / "cleaned.py"
    script.write_text(
        textwrap.dedent(
            r"""
            import multiprocessing.util, shutil
            from rapid_agent.answers import check_answer
            if __name__ == "__main__":
                shutil.rmtree(multiprocessing.util.get_temp_dir())
                print(check_answer(r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", timeout_s=20).reason)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "match"


def test_pool_size(monkeypatch):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.delenv("RAPID_ANSWER_WORKERS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert _verify_pool.default_workers() == max(1, min(4, cpus))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # many ranks on one machine: one worker each
    assert _verify_pool.default_workers() == 1
    monkeypatch.setenv("RAPID_ANSWER_WORKERS", "3")
    assert _verify_pool.default_workers() == 3
    monkeypatch.setenv("RAPID_ANSWER_WORKERS", "many")
    with pytest.raises(ValueError, match="RAPID_ANSWER_WORKERS"):
        _verify_pool.default_workers()
    with pytest.raises(ValueError, match="workers"):
        _verify_pool.configure(workers=0)
