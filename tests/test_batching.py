"""The micro-batcher: concurrent requests coalesce into few engine calls, failures stay per request."""

import asyncio
import threading

import pytest

from rapid_agent.backends import ChatRequest, EngineError, GenerationConfig
from rapid_agent.backends.batching import MicroBatcher
from rapid_agent.backends.stand_in import FunctionEngine

GEN = GenerationConfig(temperature=0.0, max_new_tokens=8)


def echo(request: ChatRequest) -> str:
    if "fail" in request.prompt:
        raise RuntimeError("scripted failure")
    return request.prompt.upper()


def test_concurrent_async_requests_share_one_engine_call():
    engine = FunctionEngine(echo)
    batcher = MicroBatcher(engine)

    async def main():
        return await asyncio.gather(*(batcher.asubmit(ChatRequest(f"q{i}"), GEN) for i in range(32)))

    out = asyncio.run(main())
    assert [c.text for c in out] == [f"Q{i}" for i in range(32)]
    assert engine.num_calls == 1 and batcher.batch_sizes == [32]


def test_threads_share_batches_and_busy_engine_accumulates():
    engine = FunctionEngine(echo, delay_s=0.2)
    batcher = MicroBatcher(engine)
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = batcher.submit(ChatRequest(f"t{i}"), GEN).text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"T{i}" for i in range(24)}
    assert engine.num_calls <= 3 and engine.num_requests == 24


def test_batches_split_at_max_batch_size():
    engine = FunctionEngine(echo, max_batch_size=5)
    batcher = MicroBatcher(engine)
    out = batcher.submit_many([ChatRequest(f"m{i}") for i in range(12)], GEN)
    assert [c.text for c in out] == [f"M{i}" for i in range(12)]
    # how the 12 spread over calls depends on when the first call returns; none may exceed the engine's bound
    assert max(batcher.batch_sizes) == 5 and sum(batcher.batch_sizes) == 12 and len(batcher.batch_sizes) <= 4


def test_different_generation_settings_never_share_a_call():
    engine = FunctionEngine(echo)
    batcher = MicroBatcher(engine)
    other = GenerationConfig(temperature=1.0, max_new_tokens=8)

    async def main():
        reqs = [batcher.asubmit(ChatRequest(f"a{i}"), GEN) for i in range(4)]
        reqs += [batcher.asubmit(ChatRequest(f"b{i}"), other) for i in range(4)]
        return await asyncio.gather(*reqs)

    asyncio.run(main())
    assert engine.num_calls == 2 and sorted(batcher.batch_sizes) == [4, 4]


def test_a_failing_request_fails_alone():
    engine = FunctionEngine(echo)
    batcher = MicroBatcher(engine)
    out = batcher.submit_many([ChatRequest("ok"), ChatRequest("please fail"), ChatRequest("fine")], GEN)
    assert out[0].text == "OK" and out[2].text == "FINE"
    assert isinstance(out[1], EngineError) and "scripted failure" in str(out[1])
    with pytest.raises(EngineError, match="scripted failure"):
        batcher.submit(ChatRequest("fail again"), GEN)


def test_an_engine_that_raises_fails_its_batch_with_engine_errors():
    class Broken(FunctionEngine):
        def generate(self, requests, gen):
            raise ConnectionError("engine down")

    batcher = MicroBatcher(Broken(echo))
    out = batcher.submit_many([ChatRequest("a"), ChatRequest("b")], GEN)
    assert all(isinstance(o, EngineError) and "engine down" in str(o) for o in out)


def test_an_engine_used_by_graph_runs_is_freed_with_its_batcher_thread_and_descriptors(tmp_path):
    """Engines built again and again (a notebook, live eval every N steps, a test suite) must not each leave a
    batcher thread and an event loop's descriptors behind: the loop once kept the graph node's context (and
    with it the RapidContext and the engine) alive, and CI's process ran out of select()'s 1024 descriptors."""
    import gc
    import os
    import time
    import weakref

    from PIL import Image

    from rapid_agent import RapidContext
    from rapid_agent.graphs import build_graph

    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    graph = build_graph().compile()

    def run() -> weakref.ref:
        captioner = FunctionEngine(lambda r: "<caption>3 dots</caption>")
        context = RapidContext(captioner, FunctionEngine(lambda r: r"\boxed{3}"))
        assert graph.invoke({"question": "How many?", "answer": "3", "image": str(image)}, context=context)["correct"]
        return weakref.ref(captioner)

    def batcher_threads() -> int:
        return sum(t.name.startswith("batcher:") for t in threading.enumerate())

    run()
    gc.collect()
    deadline = time.monotonic() + 5
    while batcher_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    engines = [run() for _ in range(5)]
    # the last run's result can reach its caller while the batcher's thread still finishes that call: wait for it
    deadline = time.monotonic() + 5
    while gc.collect() is not None and any(ref() is not None for ref in engines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(ref() is None for ref in engines)
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_a_closed_batcher_starts_a_new_loop_on_the_next_request():
    engine = FunctionEngine(lambda r: r.prompt.upper())
    batcher = MicroBatcher(engine)
    assert batcher.submit(ChatRequest("a"), GenerationConfig()).text == "A"
    batcher.close()
    assert batcher.submit(ChatRequest("b"), GenerationConfig()).text == "B"
    batcher.close()


def test_async_callers_on_several_loops_get_their_own_results_and_a_cancelled_caller_is_left_out():
    engine = FunctionEngine(echo)
    batcher = MicroBatcher(engine, window_s=0.3, max_wait_s=0.3)
    results: dict[int, list[str]] = {}

    async def caller(k: int) -> list[str]:
        keep = [asyncio.ensure_future(batcher.asubmit(ChatRequest(f"l{k}r{i}"), GEN)) for i in range(20)]
        dropped = asyncio.ensure_future(batcher.asubmit(ChatRequest(f"l{k}dropped"), GEN))
        failing = asyncio.ensure_future(batcher.asubmit(ChatRequest(f"l{k}fail"), GEN))
        await asyncio.sleep(0.05)  # queued in the batcher, not yet sent (the window is 0.3 s)
        dropped.cancel()
        with pytest.raises(EngineError, match="scripted failure"):
            await failing
        return [c.text for c in await asyncio.gather(*keep)]

    def thread(k: int) -> None:
        results[k] = asyncio.run(caller(k))

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {k: [f"L{k}R{i}" for i in range(20)] for k in range(3)}
    assert sum(len(call) for call in engine.calls) == 66 and engine.num_calls <= 3  # a few bursts, not 66 calls


def test_a_request_does_not_wait_on_another_loops_wake_up_that_never_comes():
    """A caller's loop that stops and closes right after submitting never runs the wake-up it scheduled; a request
    from another loop must not wait for it."""
    batcher = MicroBatcher(FunctionEngine(echo))

    def submit_and_vanish() -> None:
        loop = asyncio.new_event_loop()

        async def step() -> None:
            loop.stop()  # this pass is the loop's last
            submitting = batcher.asubmit(ChatRequest("lost"), GEN)
            submitting.send(None)  # runs asubmit up to its await: the request is queued, the wake-up scheduled
            submitting.close()

        loop.create_task(step())
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=submit_and_vanish)
    thread.start()
    thread.join()

    async def other_loop() -> str:
        return (await asyncio.wait_for(batcher.asubmit(ChatRequest("kept"), GEN), 5)).text

    assert asyncio.run(other_loop()) == echo(ChatRequest("kept"))
    batcher.close()


def test_an_engine_that_gains_nothing_from_waiting_sets_no_window_yet_keeps_one_call_per_burst():
    """`batch_window_s = 0` (a server that batches itself): a request goes at the end of the batcher's pass instead
    of after a debounce window, and what arrived together still makes one call."""

    async def asks(batcher: MicroBatcher, n: int) -> list[str]:
        return [c.text for c in await asyncio.gather(*(batcher.asubmit(ChatRequest(f"w{i}"), GEN) for i in range(n)))]

    engine = FunctionEngine(echo)
    engine.batch_window_s = 0.0
    batcher = MicroBatcher(engine, max_wait_s=30.0)  # the window comes from the engine
    assert batcher.window_s == 0.0
    assert asyncio.run(asyncio.wait_for(asks(batcher, 16), 10)) == [f"W{i}" for i in range(16)]
    assert batcher.batch_sizes == [16]

    async def alone() -> str:  # one request and no other coming: no window to wait out
        return (await asyncio.wait_for(batcher.asubmit(ChatRequest("single"), GEN), 10)).text

    assert asyncio.run(alone()) == "SINGLE" and batcher.batch_sizes == [16, 1]
    waiting = MicroBatcher(FunctionEngine(echo), window_s=30.0, max_wait_s=30.0)
    with pytest.raises(asyncio.TimeoutError):  # the same request under a window waits for company
        asyncio.run(asyncio.wait_for(waiting.asubmit(ChatRequest("single"), GEN), 1.0))
    with pytest.raises(ValueError, match="window_s and max_wait_s must be >= 0"):
        MicroBatcher(engine, window_s=-1)


def test_a_request_from_outside_a_cohort_keeps_its_window_when_a_cohorts_request_joins_its_group():
    """A cohort's request waits for its cohort (up to COHORT_WAIT_S); a plain request queued in the same group must
    not wait that long with it."""
    from rapid_agent.backends.batching import Cohort, current_cohort

    batcher = MicroBatcher(FunctionEngine(echo), window_s=0.1, max_wait_s=0.2)

    async def main() -> str:
        plain = asyncio.ensure_future(batcher.asubmit(ChatRequest("plain"), GEN))
        await asyncio.sleep(0.05)  # the plain request is queued; then a cohort of two whose other run never asks
        token = current_cohort.set(Cohort(2))
        try:
            member = asyncio.ensure_future(batcher.asubmit(ChatRequest("member"), GEN))
        finally:
            current_cohort.reset(token)
        text = (await asyncio.wait_for(plain, 2.0)).text  # COHORT_WAIT_S is 5 s
        await member
        return text

    assert asyncio.run(main()) == "PLAIN"


def test_a_stop_request_arriving_during_shutdown_does_not_cut_the_clean_up_short():
    """Two stop requests close together (a close and a finaliser): the second, handled once the loop had stopped,
    used to end the clean-up's run early ("Event loop stopped before Future completed") in the batcher's thread."""
    batcher = MicroBatcher(FunctionEngine(echo, spec="fn:stopped-twice"))
    assert batcher.submit(ChatRequest("a"), GEN).text == "A"
    loop = batcher._loop
    thread = next(t for t in threading.enumerate() if t.name == "batcher:fn:stopped-twice")
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        loop.call_soon_threadsafe(lambda: (loop.stop(), loop.call_soon(loop.stop)))  # the second comes a pass later
        thread.join(10)
    finally:
        threading.excepthook = previous
    assert not thread.is_alive() and loop.is_closed() and errors == []
