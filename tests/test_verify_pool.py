"""The answer-checking worker pool: a check that holds the GIL is ended at its timeout, from any thread or event
loop, its worker is gone and replaced; batches, dead workers, workers that cannot start and stopped pools never
hang a caller, and a check that could not run is undecided, never wrong. How the program was started is
tests/test_answer_entry_points.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rapid_agent import _verify_pool
from rapid_agent.answers import AnswerCheckError, acheck_answer, check_answer, check_answers, extract_answer

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


def test_stopping_the_pool_leaves_its_outstanding_checks_undecided_instead_of_hanging_them():
    check_answer(HALF, "0.5")
    results = []
    checker = threading.Thread(target=lambda: results.append(check_answer(HOLDS_THE_GIL, "3", timeout_s=120)))
    checker.start()
    time.sleep(1.0)
    _verify_pool.shutdown()
    checker.join(10)
    assert results and results[0].correct is None and results[0].undecided and not results[0].timed_out
    assert "stopped" in results[0].reason
    assert check_answer(HALF, "0.5").correct  # a new pool


def test_a_check_waiting_for_a_busy_worker_is_not_charged_for_the_wait(one_worker):
    # one worker, busy with a check that runs to its bound: the checks queued behind it wait longer than their own
    # bound, and must still be decided on their own work
    verdicts = check_answers([HOLDS_THE_GIL, HALF, r"\boxed{\frac{1}{3}}"], ["3", "0.5", "0.5"], timeout_s=1.5)
    assert verdicts[0].timed_out
    assert [v.correct for v in verdicts[1:]] == [True, False] and not any(v.timed_out for v in verdicts[1:])


#: equal after about a second of sympy's work (7^4000000 evaluated on both sides)
COSTLY = (r"7^{4*10^{6}}", r"\boxed{7^{4000000}}")


def test_a_check_gets_its_whole_budget_of_work_on_an_oversubscribed_machine(one_worker):
    gold, output = COSTLY
    started = time.monotonic()
    assert check_answer(output, gold, timeout_s=60).correct
    idle_s = time.monotonic() - started  # what the check costs here, idle
    _verify_pool.configure(workers=1)  # a fresh worker: sympy's cache would answer the second run at once
    assert check_answer(HALF, "0.5").correct
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        verdict = check_answer(output, gold, timeout_s=1.5 * idle_s + 0.2)
        loaded_s = time.monotonic() - started
    finally:
        for process in busy:
            process.kill()
            process.wait()
    # a bound on wall time would have ended it: it took over twice as long with the cores shared three ways
    assert verdict.correct and not verdict.timed_out, (verdict, idle_s, loaded_s)
    assert loaded_s > 1.5 * idle_s + 0.2, (idle_s, loaded_s)


def test_a_worker_killed_from_outside_is_replaced_and_its_check_runs_again(one_worker):
    (pid,) = _verify_pool.worker_pids()
    threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
    verdict = check_answer(HOLDS_THE_GIL, "3", timeout_s=2.0)
    assert verdict.timed_out and verdict.correct is False  # the second run reached its own bound: a verdict
    assert pid not in _verify_pool.worker_pids()


def test_a_check_whose_worker_keeps_dying_is_undecided_not_wrong(one_worker):
    stop = threading.Event()

    def kill_every_worker() -> None:
        while not stop.is_set():
            for pid in _verify_pool.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_every_worker)
    killer.start()
    try:
        verdict = check_answer(HOLDS_THE_GIL, "3", timeout_s=60)
    finally:
        stop.set()
        killer.join()
    assert verdict.correct is None and not verdict.timed_out
    assert "could not run" in verdict.reason
    assert check_answer(HALF, "0.5").correct  # the pool recovers


def test_workers_that_cannot_start_make_checks_undecided_with_the_reason(monkeypatch):
    _verify_pool.shutdown()
    monkeypatch.setattr(_verify_pool, "WORKER_MODULE", "rapid_agent._no_such_worker")
    try:
        verdicts = check_answers([HALF, HALF, r"\boxed{7}"], ["0.5", "0.4", "7"])
        extracted = pytest.raises(AnswerCheckError, extract_answer, r"so $x = \frac{1}{2}$")
    finally:
        _verify_pool.shutdown()
    assert [v.correct for v in verdicts] == [None, None, True]  # the last is decided in-process
    assert all("did not start" in v.reason and "_no_such_worker" in v.reason for v in verdicts[:2]), verdicts
    assert "could not run" in str(extracted.value)
    monkeypatch.undo()
    assert check_answer(HALF, "0.5").correct


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


def test_the_pool_works_in_a_process_holding_more_than_1024_files():
    """select() refuses descriptors from 1024 up; a server or a test run holding many files reaches them."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if soft != resource.RLIM_INFINITY else soft, hard))
    _verify_pool.shutdown()
    held = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        assert check_answer(HALF, "0.5").correct is True
        assert check_answer(HALF, "0.4").correct is False
    finally:
        _verify_pool.shutdown()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
