"""OpenAIEngine against a real HTTP server on loopback: round trip, retries, timeouts, concurrency, auth."""

from __future__ import annotations

import asyncio
import io
import socket
import time

import pytest
from PIL import Image

from rapid_agent.backends import ChatRequest, EngineError, GenerationConfig, load_engine
from rapid_agent.backends.images import data_url_to_bytes
from rapid_agent.backends.openai import OpenAIEngine
from tests.http_server import FakeChatServer, Reply, SeenRequest, chat_reply, echo_reply, error_reply

GEN = GenerationConfig(temperature=0.3, top_p=0.9, max_new_tokens=77, seed=5)


@pytest.fixture
def server():
    with FakeChatServer() as s:
        yield s


def make_engine(server: FakeChatServer, **kwargs) -> OpenAIEngine:
    kwargs = {"role": "reasoner", "backoff_s": 0.01, "timeout_s": 5.0, "max_retries": 4, **kwargs}
    return OpenAIEngine("test-model", base_url=server.base_url, **kwargs)


def test_round_trip_sends_messages_image_and_sampling_settings(server):
    image = Image.new("RGB", (5, 3), (10, 200, 30))
    image.putpixel((4, 2), (255, 0, 255))

    def describe(seen: SeenRequest) -> Reply:
        urls = seen.image_urls
        if urls:
            mime, data = data_url_to_bytes(urls[0])
            img = Image.open(io.BytesIO(data))
            text = f"{mime} {img.format} {img.size} {img.getpixel((4, 2))} | {seen.prompt}"
        else:
            text = f"no image | {seen.prompt}"
        return chat_reply(text, prompt_tokens=11, completion_tokens=4, reasoning_content="thinking...")

    server.handler = describe
    engine = make_engine(server, role="captioner")
    out = engine.generate(
        [ChatRequest("what is this?", image=image, system="be brief"), ChatRequest("plain question")], GEN
    )

    assert not any(isinstance(o, Exception) for o in out), out
    assert out[0].text == "image/png PNG (5, 3) (255, 0, 255) | what is this?"
    assert out[1].text == "no image | plain question"
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (11, 4)
    assert out[0].meta["reasoning_content"] == "thinking..."
    assert out[0].meta["attempts"] == 1 and out[0].latency_s > 0

    first = next(s for s in server.seen if s.prompt == "what is this?")
    assert first.path == "/v1/chat/completions"
    assert first.body["model"] == "test-model"
    assert (first.body["temperature"], first.body["top_p"], first.body["max_tokens"], first.body["seed"]) == (
        0.3,
        0.9,
        77,
        5,
    )
    assert first.messages[0] == {"role": "system", "content": "be brief"}
    # The full image round trip: every pixel the server decoded is the pixel we sent.
    _, data = data_url_to_bytes(first.image_urls[0])
    assert Image.open(io.BytesIO(data)).convert("RGB").tobytes() == image.tobytes()
    plain = next(s for s in server.seen if s.prompt == "plain question")
    assert plain.messages == [{"role": "user", "content": "plain question"}]


def test_extra_body_is_merged_and_seed_omitted_when_unset(server):
    engine = make_engine(server, extra_body={"top_k": 20})
    [out] = engine.generate([ChatRequest("hi")], GenerationConfig(temperature=0.0))
    assert out.text == "echo: hi"
    assert server.seen[0].body["top_k"] == 20 and "seed" not in server.seen[0].body


def test_500_twice_then_success_is_retried(server):
    server.handler = lambda seen: error_reply(500, "boom") if seen.attempt <= 2 else echo_reply(seen)
    [out] = make_engine(server).generate([ChatRequest("flaky")], GEN)
    assert out.text == "echo: flaky"
    assert server.attempts("flaky") == 3
    assert out.meta["attempts"] == 3


def test_always_500_fails_only_that_request(server):
    server.handler = lambda seen: error_reply(500, "model crashed") if seen.prompt == "bad" else echo_reply(seen)
    out = make_engine(server, max_retries=2).generate(
        [ChatRequest("good 1"), ChatRequest("bad"), ChatRequest("good 2")], GEN
    )
    assert [o.text for o in (out[0], out[2])] == ["echo: good 1", "echo: good 2"]
    assert isinstance(out[1], EngineError)
    assert "500" in str(out[1]) and "model crashed" in str(out[1]) and "3 attempt" in str(out[1])
    assert server.attempts("bad") == 3 and server.attempts("good 1") == 1


def test_429_honours_retry_after(server):
    server.handler = lambda seen: (
        error_reply(429, "slow down", **{"Retry-After": "1"}) if seen.attempt == 1 else echo_reply(seen)
    )
    t0 = time.perf_counter()
    [out] = make_engine(server).generate([ChatRequest("busy")], GEN)
    elapsed = time.perf_counter() - t0
    assert out.text == "echo: busy" and server.attempts("busy") == 2
    # backoff_s is 0.01, so only the server's hint explains a wait of a second.
    assert 0.9 <= elapsed < 4


def test_retry_after_is_capped(server):
    server.handler = lambda seen: (
        error_reply(429, "wait an hour", **{"Retry-After": "3600"}) if seen.attempt == 1 else echo_reply(seen)
    )
    engine = make_engine(server)
    engine.max_retry_after_s = 0.2
    t0 = time.perf_counter()
    [out] = engine.generate([ChatRequest("busy")], GEN)
    assert out.text == "echo: busy" and time.perf_counter() - t0 < 2


def test_slow_response_past_timeout_is_retried_then_fails(server):
    server.handler = lambda seen: Reply(delay_s=5.0, body=echo_reply(seen).body)
    engine = make_engine(server, timeout_s=0.3, max_retries=1)
    t0 = time.perf_counter()
    [out] = engine.generate([ChatRequest("slow")], GEN)
    elapsed = time.perf_counter() - t0
    assert isinstance(out, EngineError) and "timed out" in str(out) and "2 attempt" in str(out)
    assert server.attempts("slow") == 2
    assert 0.6 <= elapsed < 2.5


def test_slow_response_within_timeout_succeeds(server):
    server.handler = lambda seen: Reply(delay_s=0.3, body=echo_reply(seen).body)
    [out] = make_engine(server, timeout_s=3.0).generate([ChatRequest("patient")], GEN)
    assert out.text == "echo: patient" and server.attempts("patient") == 1 and out.latency_s >= 0.3


def test_400_is_not_retried_and_carries_the_server_message(server):
    server.handler = lambda seen: error_reply(400, "prompt is too long: 9000 > 8192")
    [out] = make_engine(server).generate([ChatRequest("long")], GEN)
    assert isinstance(out, EngineError)
    assert "400" in str(out) and "prompt is too long: 9000 > 8192" in str(out)
    assert server.attempts("long") == 1


def test_connection_refused_becomes_engine_error():
    with socket.socket() as sock:  # a port nothing listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAIEngine("m", base_url=f"http://127.0.0.1:{port}/v1", role="reasoner", max_retries=1, backoff_s=0.01)
    [out] = engine.generate([ChatRequest("anyone?")], GEN)
    assert isinstance(out, EngineError) and "connection error" in str(out) and "2 attempt" in str(out)


def test_malformed_success_body_is_an_engine_error(server):
    server.handler = lambda seen: Reply(200, {"unexpected": True})
    [out] = make_engine(server).generate([ChatRequest("x")], GEN)
    assert isinstance(out, EngineError) and "malformed" in str(out) and server.attempts("x") == 1


def test_in_flight_requests_never_exceed_max_concurrency(server):
    server.handler = lambda seen: Reply(delay_s=0.1, body=echo_reply(seen).body)
    engine = make_engine(server, max_concurrency=3)
    t0 = time.perf_counter()
    out = engine.generate([ChatRequest(f"q{i}") for i in range(12)], GEN)
    elapsed = time.perf_counter() - t0
    assert [o.text for o in out] == [f"echo: q{i}" for i in range(12)]  # input order kept
    assert server.max_in_flight == 3
    assert elapsed >= 0.35  # 12 requests through 3 slots of 0.1 s each take at least 4 rounds


def test_concurrent_calls_on_one_loop_share_the_bound(server):
    server.handler = lambda seen: Reply(delay_s=0.1, body=echo_reply(seen).body)
    engine = make_engine(server, max_concurrency=2)

    async def both():
        return await asyncio.gather(
            engine.agenerate([ChatRequest(f"a{i}") for i in range(4)], GEN),
            engine.agenerate([ChatRequest(f"b{i}") for i in range(4)], GEN),
        )

    a, b = asyncio.run(both())
    assert [o.text for o in a + b] == [f"echo: a{i}" for i in range(4)] + [f"echo: b{i}" for i in range(4)]
    assert server.max_in_flight == 2


def test_sync_generate_works_inside_a_running_loop(server):
    engine = make_engine(server)

    async def caller():
        return engine.generate([ChatRequest("nested")], GEN)

    [out] = asyncio.run(caller())
    assert out.text == "echo: nested"


def test_api_key_from_env_var(server, monkeypatch):
    monkeypatch.setenv("MY_KEY_VAR", "sk-secret-123")
    make_engine(server, api_key_env="MY_KEY_VAR").generate([ChatRequest("auth")], GEN)
    assert server.seen[-1].headers["authorization"] == "Bearer sk-secret-123"
    make_engine(server, api_key="sk-explicit").generate([ChatRequest("auth")], GEN)
    assert server.seen[-1].headers["authorization"] == "Bearer sk-explicit"


def test_no_key_sends_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_engine(server).generate([ChatRequest("anon")], GEN)
    assert "authorization" not in server.seen[-1].headers


def test_load_engine_resolves_openai_spec(server):
    spec = f"openai:mymodel@{server.base_url}"
    engine = load_engine(spec, "reasoner")
    assert isinstance(engine, OpenAIEngine) and engine.spec == spec and engine.model == "mymodel"
    [out] = engine.generate([ChatRequest("via spec")], GEN)
    assert out.text == "echo: via spec" and server.seen[-1].body["model"] == "mymodel"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_url": "127.0.0.1:8000/v1"}, "'127.0.0.1:8000/v1'"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1, got 0"),
        ({"timeout_s": 0}, "timeout_s must be > 0, got 0"),
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
    ],
)
def test_bad_settings_are_rejected_with_the_value(kwargs, needle):
    kwargs = {"base_url": "http://127.0.0.1:1/v1", "role": "reasoner", **kwargs}
    with pytest.raises(ValueError) as info:
        OpenAIEngine("m", **kwargs)
    assert needle in str(info.value)
