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
