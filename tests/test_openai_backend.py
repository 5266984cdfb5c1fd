"""OpenAIEngine against a real HTTP server on loopback: round trip, retries, timeouts, concurrency, auth, malformed
replies, redacted errors, engine options, finish reasons, several images, and streaming."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import socket
import threading
import time

import openai
import pytest
from PIL import Image

from rapid_agent.backends import ChatRequest, Completion, EngineError, GenerationConfig, load_engine
from rapid_agent.backends.base import MAX_ERROR_CHARS
from rapid_agent.backends.images import data_url_to_bytes
from rapid_agent.backends.openai import OpenAIEngine
from rapid_agent.backends.openai_options import OpenAIOptions
from tests.http_server import (
    FakeChatServer,
    Reply,
    SeenRequest,
    chat_reply,
    echo_reply,
    error_reply,
    stream_events,
    wants_usage,
)

GEN = GenerationConfig(temperature=0.3, top_p=0.9, max_new_tokens=77, seed=5)


@pytest.fixture(params=["auto", "httpx"])
def server(request):
    """The fake server; every engine `make_engine` builds for it uses the parameter's HTTP transport ('auto': the
    SDK's aiohttp transport in a blocking `generate` call, httpx on a loop of the test's own)."""
    with FakeChatServer() as s:
        s.transport = request.param
        yield s


def make_engine(server: FakeChatServer, **kwargs) -> OpenAIEngine:
    kwargs = {"role": "reasoner", "backoff_s": 0.01, "timeout_s": 5.0, "max_retries": 4, **kwargs}
    kwargs.setdefault("http_transport", getattr(server, "transport", "auto"))
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
    engine = make_engine(server, max_retry_after_s=0.2)
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


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_connection_refused_becomes_engine_error(transport):
    with socket.socket() as sock:  # a port nothing listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engine = OpenAIEngine("m", base_url=url, role="reasoner", max_retries=1, backoff_s=0.01, http_transport=transport)
    [out] = engine.generate([ChatRequest("anyone?")], GEN)
    # the aiohttp transport reports a refused connection as httpx's ConnectTimeout: it is not called a timeout here
    assert isinstance(out, EngineError) and "connection error" in str(out) and "2 attempt" in str(out), str(out)
    assert "timed out" not in str(out) and "ConnectTimeout" not in str(out)


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
        ({"max_concurrency": 2.5}, "max_concurrency must be an integer, got float 2.5"),
        ({"timeout_s": 0}, "timeout_s must be > 0, got 0"),
        ({"timeout_s": "600"}, "timeout_s must be a finite number, got str '600'"),
        ({"connect_timeout_s": -1}, "connect_timeout_s must be > 0, got -1"),
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
        ({"max_retries": True}, "max_retries must be an integer, got bool True"),
        ({"backoff_s": -0.5}, "backoff_s must be >= 0, got -0.5"),
        ({"max_backoff_s": float("inf")}, "max_backoff_s must be a finite number"),
        ({"max_retry_after_s": -1}, "max_retry_after_s must be >= 0, got -1"),
        ({"extra_body": '{"top_k": 20}'}, "extra_body must be a mapping"),
        ({"extra_body": {"stream": True}}, "extra_body may not set ['stream']"),
        ({"extra_body": {"x": object()}}, "extra_body must be JSON-serialisable"),
        ({"default_headers": {"X-Team": 7}}, "default_headers must map header names to string values"),
        ({"api_key": 123}, "api_key must be a string, got int"),
        ({"api_key_env": ""}, "api_key_env must be the name of an environment variable"),
        ({"image_format": "GIF"}, "image_format must be one of ('PNG', 'JPEG'), got 'GIF'"),
        ({"stream_usage": "yes"}, "stream_usage must be true or false, got 'yes'"),
    ],
)
def test_bad_settings_are_rejected_with_the_value(kwargs, needle):
    kwargs = {"base_url": "http://127.0.0.1:1/v1", "role": "reasoner", **kwargs}
    with pytest.raises(ValueError) as info:
        OpenAIEngine("m", **kwargs)
    assert needle in str(info.value)


def test_unknown_option_is_named_with_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['timeout_seconds'\].*'timeout_s'"):
        OpenAIEngine("m", base_url="http://127.0.0.1:1/v1", role="reasoner", timeout_seconds=3)


def test_every_option_has_help():
    assert all(f.metadata.get("help") for f in dataclasses.fields(OpenAIOptions))


# -- defaults and options --------------------------------------------------------------------------------------


def test_defaults_suit_long_reasoning_at_scale():
    engine = OpenAIEngine("m", base_url="http://127.0.0.1:1/v1", role="reasoner")
    options = engine.options
    assert options.timeout_s >= 600  # thousands of tokens per answer
    assert 64 <= options.max_concurrency <= 256  # hundreds of samples in flight
    assert options.max_retries >= 1 and options.max_backoff_s >= options.backoff_s
    assert engine.streams is True and engine.stream_usage is True


def test_options_pass_through_load_engine_and_reach_the_server(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    extra = {"chat_template_kwargs": {"enable_thinking": False}, "top_k": 20}
    engine = load_engine(
        f"openai:qwen3@{server.base_url}",
        "reasoner",
        timeout_s=7.5,
        max_concurrency=3,
        max_retries=1,
        backoff_s=0.01,
        max_backoff_s=0.02,
        extra_body=extra,
        default_headers={"X-Team": "rapid"},
        image_format="jpeg",
    )
    options = engine.options
    assert (options.timeout_s, options.max_concurrency, options.max_retries, options.max_backoff_s) == (
        7.5,
        3,
        1,
        0.02,
    )
    image = Image.new("RGB", (4, 4), (200, 10, 10))
    [out] = engine.generate([ChatRequest("hi", image=image)], GEN)
    assert out.text == "echo: hi"
    seen = server.seen[-1]
    assert seen.body["chat_template_kwargs"] == {"enable_thinking": False} and seen.body["top_k"] == 20
    assert seen.headers["x-team"] == "rapid" and "authorization" not in seen.headers
    assert data_url_to_bytes(seen.image_urls[0])[0] == "image/jpeg"


def test_extra_body_overrides_the_sampling_settings(server):
    make_engine(server, extra_body={"temperature": 0.0, "max_tokens": 5}).generate([ChatRequest("x")], GEN)
    assert (server.seen[-1].body["temperature"], server.seen[-1].body["max_tokens"]) == (0.0, 5)


def test_every_sampling_field_is_sent_so_the_servers_checkpoint_defaults_never_apply(server):
    """vLLM fills a field a request leaves out from the checkpoint's generation_config.json (Qwen2.5-VL-Instruct:
    repetition_penalty 1.05), so the engine sends them all; 'openai' sends only OpenAI's own fields."""
    gen = GenerationConfig(temperature=0.5, top_p=0.9, max_new_tokens=9, top_k=4, min_p=0.05, repetition_penalty=1.1)
    make_engine(server).generate([ChatRequest("x")], gen)
    body = server.seen[-1].body
    sent = {k: body[k] for k in ("temperature", "top_p", "max_tokens", "top_k", "min_p", "repetition_penalty")}
    assert sent == {
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 9,
        "top_k": 4,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }
    make_engine(server, sampling_fields="openai").generate([ChatRequest("y")], gen)
    assert not {"top_k", "min_p", "repetition_penalty"} & server.seen[-1].body.keys()


def test_max_retries_zero_tries_once(server):
    server.handler = lambda seen: error_reply(503, "warming up")
    [out] = make_engine(server, max_retries=0).generate([ChatRequest("once")], GEN)
    assert isinstance(out, EngineError) and "1 attempt" in str(out) and server.attempts("once") == 1


def test_trickling_reply_is_cut_by_the_wall_clock_bound(server):
    # Every few bytes arrive well within a read timeout, but the whole reply would take seconds: only the bound on
    # the attempt (not the client's per-read timeout) ends it.
    server.handler = lambda seen: Reply(200, echo_reply(seen).body, trickle_s=0.05)
    engine = make_engine(server, timeout_s=0.5, max_retries=1)
    t0 = time.perf_counter()
    [out] = engine.generate([ChatRequest("trickle")], GEN)
    assert isinstance(out, EngineError) and "timed out after 0.5s" in str(out) and "2 attempt" in str(out)
    assert time.perf_counter() - t0 < 2.5 and server.attempts("trickle") == 2


def test_trickling_stream_is_cut_by_the_wall_clock_bound(server):
    # Each event arrives well within a read timeout, but the whole reply would take longer than timeout_s.
    server.handler = lambda seen: Reply(events=stream_events(["a"] * 40), pause=threading.Event(), pause_after=3)
    engine = make_engine(server, timeout_s=0.5, max_retries=0)
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="timed out after 0.5s"):
        asyncio.run(collect(engine, ChatRequest("trickle")))
    assert time.perf_counter() - t0 < 3


# -- malformed replies fail their own sample only ----------------------------------------------------------------


def _with_message(message, **extra) -> dict:
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], **extra}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_with_message("just a string"), "choices[0].message is str 'just a string', not a JSON object"),
        ({"choices": []}, "choices is empty"),
        ({"choices": None}, "choices is null, not a list"),
        (["not", "an", "object"], "response is list"),
        ("plain text, not JSON", "not JSON"),
        (_with_message({"role": "assistant", "content": {"text": "x"}}), "content is dict"),
        (_with_message({"role": "assistant", "content": [{"type": "text", "text": 5}]}), "content[0].text is int"),
        (_with_message({"role": "assistant", "content": None, "refusal": "I can't help with that."}), "refused"),
    ],
)
def test_a_malformed_reply_fails_only_its_own_sample(server, body, needle):
    server.handler = lambda seen: Reply(200, body) if seen.prompt == "bad" else echo_reply(seen)
    out = make_engine(server).generate([ChatRequest("good 1"), ChatRequest("bad"), ChatRequest("good 2")], GEN)
    assert [o.text for o in (out[0], out[2])] == ["echo: good 1", "echo: good 2"]
    assert isinstance(out[1], EngineError) and needle in str(out[1]), str(out[1])
    assert server.attempts("bad") == 1  # a malformed reply is not retried


def test_refusal_error_names_the_refusal(server):
    refusal = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    server.handler = lambda seen: Reply(200, _with_message(refusal))
    [out] = make_engine(server).generate([ChatRequest("q")], GEN)
    assert isinstance(out, EngineError) and "refused: I can't help with that." in str(out)


def test_content_as_a_list_of_parts_is_read_as_text(server):
    content = [
        {"type": "reasoning", "reasoning": "2+2 is 4. "},
        {"type": "text", "text": "The answer is "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "\\boxed{4}"},
    ]
    server.handler = lambda seen: Reply(200, _with_message({"role": "assistant", "content": content}))
    [out] = make_engine(server).generate([ChatRequest("2+2?")], GEN)
    assert out.text == "The answer is \\boxed{4}" and out.meta["reasoning_content"] == "2+2 is 4. "


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": "lots", "completion_tokens": None}, (0, 0)),
        ({"prompt_tokens": "12", "completion_tokens": 3.0}, (12, 3)),
        ({"prompt_tokens": -4, "completion_tokens": [1]}, (0, 0)),
        ("not an object", (0, 0)),
    ],
)
def test_odd_usage_counts_never_crash(server, usage, tokens):
    body = _with_message({"role": "assistant", "content": "fine"}, usage=usage)
    server.handler = lambda seen: Reply(200, body)
    [out] = make_engine(server).generate([ChatRequest("q")], GEN)
    assert out.text == "fine" and (out.prompt_tokens, out.completion_tokens) == tokens


# -- errors are redacted and bounded ---------------------------------------------------------------------------

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"


def _echoing_error_page(seen: SeenRequest) -> str:
    """A 100 kB error page that echoes the request's headers back, key included."""
    return f"Unauthorized. You sent Authorization: {seen.headers.get('authorization')}\n" + "x" * 100_000


@pytest.mark.parametrize("status", [401, 503])
def test_server_error_text_is_masked_and_bounded(server, status):
    server.handler = lambda seen: Reply(status, _echoing_error_page(seen))
    [out] = make_engine(server, api_key=SECRET, max_retries=1).generate([ChatRequest("q")], GEN)
    assert isinstance(out, EngineError) and str(status) in str(out)
    assert SECRET not in str(out) and "Bearer [REDACTED]" in str(out)
    assert len(str(out)) <= MAX_ERROR_CHARS


def test_json_error_echoing_the_key_is_masked(server):
    server.handler = lambda seen: error_reply(400, f"bad request from key {SECRET}; api_key={SECRET}")
    [out] = make_engine(server, api_key=SECRET).generate([ChatRequest("q")], GEN)
    assert isinstance(out, EngineError) and "400" in str(out) and SECRET not in str(out)


def test_streamed_error_echoing_the_key_is_masked(server):
    server.handler = lambda seen: Reply(401, _echoing_error_page(seen))
    with pytest.raises(EngineError) as info:
        asyncio.run(collect(make_engine(server, api_key=SECRET), ChatRequest("q")))
    assert SECRET not in str(info.value) and "401" in str(info.value) and len(str(info.value)) <= MAX_ERROR_CHARS


def _echo(seen: SeenRequest) -> str:
    """What a server that echoes the request in its error says: the whole body, the image's data URL included."""
    return "you sent: " + json.dumps(seen.body)


def _noise(size: int = 48) -> Image.Image:
    """An image whose base64 is long and unlike any other text (a plain one compresses to a few bytes)."""
    return Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))


def _image_leaks(server: FakeChatServer, text: str) -> list[str]:
    """The 16-character pieces of the image the server received that `text` contains."""
    payload = next(s for s in server.seen if s.image_urls).image_urls[0].partition(",")[2]
    return [payload[i : i + 16] for i in range(0, len(payload) - 16, 8) if payload[i : i + 16] in text]


ECHOES = {
    "openai error": lambda seen: error_reply(400, _echo(seen)),
    "fastapi detail": lambda seen: Reply(422, {"detail": _echo(seen)}),
    "plain text": lambda seen: Reply(400, _echo(seen)),
    "retried 5xx": lambda seen: Reply(503, _echo(seen)),
    "error event in the stream": lambda seen: Reply(
        events=[stream_events(["Two"])[1], {"error": {"message": _echo(seen)}}]
    ),
}


@pytest.mark.parametrize(
    ("stream", "shape"),
    [(False, shape) for shape in ECHOES if "stream" not in shape] + [(True, shape) for shape in ECHOES],
)
def test_an_error_echoing_the_image_keeps_its_words_but_not_the_bytes(server, shape, stream):
    server.handler = ECHOES[shape]
    engine = make_engine(server, role="captioner", max_retries=1)
    request = ChatRequest("what is in the picture?", image=_noise())
    if stream:
        with pytest.raises(EngineError) as info:
            asyncio.run(collect(engine, request))
        error = info.value
    else:
        [error] = engine.generate([request], GEN)
    assert isinstance(error, EngineError), error
    text = str(error)
    assert "you sent: " in text and "data:image/png;base64,[REDACTED " in text and "bytes]" in text, text
    assert not _image_leaks(server, text), text


def test_a_reply_that_is_not_json_is_masked_before_it_is_cut(server):
    """A proxy's page that quotes the image without its data URL prefix: cut first, the 250 characters of base64
    left would be too short to recognise as an image."""

    def page(seen: SeenRequest) -> Reply:
        payload = seen.image_urls[0].partition(",")[2]
        return Reply(200, f"<html><body>upstream unreachable; request image_b64={payload}</body></html>")

    server.handler = page
    [error] = make_engine(server, role="captioner").generate([ChatRequest("q", image=_noise())], GEN)
    assert isinstance(error, EngineError) and "not JSON" in str(error) and "image_b64=[REDACTED " in str(error)
    assert not _image_leaks(server, str(error)), str(error)


def test_a_malformed_reply_quoting_the_image_is_masked_before_it_is_cut(server):
    """A proxy that answers with the image where the choices belong: the 60 characters the error quotes of the
    value are taken after masking, so they cannot be a piece of the image."""
    server.handler = lambda seen: Reply(200, {"choices": seen.image_urls[0].partition(",")[2]})
    [error] = make_engine(server, role="captioner").generate([ChatRequest("q", image=_noise())], GEN)
    assert isinstance(error, EngineError) and "choices is str '[REDACTED " in str(error), str(error)
    assert not _image_leaks(server, str(error)), str(error)


# -- finish reasons ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("finish", ["length", "stop"])
def test_finish_reason_is_kept(server, finish):
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "cut"}, "finish_reason": finish}]}
    server.handler = lambda seen: Reply(200, body)
    [out] = make_engine(server).generate([ChatRequest("q")], GEN)
    assert out.finish_reason == finish


def test_truncated_thinking_with_null_content_is_an_empty_truncated_answer(server):
    message = {"role": "assistant", "content": None, "reasoning_content": "Let me think about this for a very"}
    server.handler = lambda seen: Reply(200, {"choices": [{"message": message, "finish_reason": "length"}]})
    [out] = make_engine(server).generate([ChatRequest("q")], GEN)
    assert (out.text, out.finish_reason) == ("", "length") and out.meta["reasoning_content"].startswith("Let me")


# -- several images --------------------------------------------------------------------------------------------


def test_two_images_reach_the_server_in_order(server):
    red, blue = Image.new("RGB", (3, 2), (255, 0, 0)), Image.new("RGB", (2, 3), (0, 0, 255))
    make_engine(server, role="captioner").generate([ChatRequest("compare", images=(red, blue))], GEN)
    seen = server.seen[-1]
    decoded = [Image.open(io.BytesIO(data_url_to_bytes(url)[1])).convert("RGB") for url in seen.image_urls]
    assert [(im.size, im.getpixel((0, 0))) for im in decoded] == [((3, 2), (255, 0, 0)), ((2, 3), (0, 0, 255))]
    parts = seen.messages[-1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]


# -- streaming -------------------------------------------------------------------------------------------------


async def collect(engine: OpenAIEngine, request: ChatRequest, gen: GenerationConfig = GEN, on_piece=None):
    """Every text piece the engine yields, and the final completion."""
    pieces: list[str] = []
    final = None
    async for item in engine.astream(request, gen):
        if isinstance(item, Completion):
            final = item
        else:
            assert final is None, "text after the completion"
            pieces.append(item)
            if on_piece is not None:
                on_piece(item)
    return pieces, final


def test_stream_yields_pieces_then_the_completion(server):
    def reply(seen: SeenRequest) -> Reply:
        usage = (7, 3) if wants_usage(seen) else None
        events = stream_events(["The answer", " is ", "\\boxed{4}"], reasoning=["2+2", " is 4"], usage=usage)
        return Reply(events=events)

    server.handler = reply
    pieces, final = asyncio.run(collect(make_engine(server), ChatRequest("2+2?", system="be brief")))
    assert pieces == ["The answer", " is ", "\\boxed{4}"]  # the thinking is not among the pieces
    assert final.text == "".join(pieces) and final.meta["reasoning_content"] == "2+2 is 4"
    assert (final.prompt_tokens, final.completion_tokens, final.finish_reason) == (7, 3, "stop")
    assert final.meta["streamed"] and final.meta["usage_reported"] and final.meta["attempts"] == 1
    body = server.seen[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.3, 77, 5)


def test_stream_hands_text_on_as_it_arrives(server):
    # The server sends the role chunk and one piece, then waits until the test has seen that piece: an engine that
    # buffered the stream would leave the server waiting out its MAX_DELAY_S.
    gate = threading.Event()
    server.handler = lambda seen: Reply(events=stream_events(["first", " second"]), pause=gate, pause_after=2)
    pieces, final = asyncio.run(collect(make_engine(server), ChatRequest("q"), on_piece=lambda piece: gate.set()))
    assert server.pauses == [True] and pieces == ["first", " second"] and final.text == "first second"


def test_stream_without_usage_reports_zero_tokens(server):
    server.handler = lambda seen: Reply(events=stream_events(["ok"], finish_reason="length"))
    _, final = asyncio.run(collect(make_engine(server), ChatRequest("q")))
    assert (final.text, final.prompt_tokens, final.completion_tokens) == ("ok", 0, 0)
    assert final.finish_reason == "length" and final.meta["usage_reported"] is False


def test_server_rejecting_stream_options_gets_a_stream_without_them(server):
    def reply(seen: SeenRequest) -> Reply:
        if "stream_options" in seen.body:
            return error_reply(400, "Unrecognized request argument supplied: stream_options")
        return echo_reply(seen)

    server.handler = reply
    engine = make_engine(server)
    _, first = asyncio.run(collect(engine, ChatRequest("one two")))
    _, second = asyncio.run(collect(engine, ChatRequest("three")))
    assert (first.text, second.text) == ("echo: one two", "echo: three")
    assert engine.stream_usage is False and server.attempts("one two") == 2 and server.attempts("three") == 1


def test_stream_open_is_retried_on_5xx(server):
    server.handler = lambda seen: error_reply(502, "bad gateway") if seen.attempt == 1 else echo_reply(seen)
    pieces, final = asyncio.run(collect(make_engine(server), ChatRequest("flaky")))
    assert final.text == "echo: flaky" == "".join(pieces) and final.meta["attempts"] == 2


def test_stream_open_rejected_with_4xx_raises_without_retry(server):
    server.handler = lambda seen: error_reply(400, "context length exceeded")
    with pytest.raises(EngineError, match="HTTP 400: context length exceeded"):
        asyncio.run(collect(make_engine(server), ChatRequest("long")))
    assert server.attempts("long") == 1


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        # the server dies after two pieces: the connection closes as if the reply were complete
        (Reply(events=stream_events(["one", " two", " three"])[:3]), "stopped mid-answer"),
        # the server dies before sending what its Content-Length promised
        (
            Reply(events=stream_events(["one", " two", " three"]), cut_after=3),
            "stream broke after 7 characters: connection error",
        ),
        (Reply(events=[*stream_events(["one"], done=False)[:2], "{not json", "[DONE]"]), "stream broke"),
        (Reply(events=[stream_events(["one"])[1], {"error": {"message": "engine crashed"}}]), "engine crashed"),
        (Reply(events=[{"choices": [{"delta": "oops"}]}, "[DONE]"]), "malformed stream"),
    ],
)
def test_a_broken_stream_raises_engine_error_after_the_pieces_it_sent(server, reply, needle):
    server.handler = lambda seen: reply
    engine = make_engine(server, max_concurrency=1)
    pieces: list[str] = []
    with pytest.raises(EngineError) as info:
        asyncio.run(collect(engine, ChatRequest("q"), on_piece=pieces.append))
    assert needle in str(info.value), str(info.value)
    assert "".join(pieces) in ("one two", "one", "")
    # the failed stream gave its slot back: with max_concurrency=1 the next request still runs
    server.handler = echo_reply
    _, final = asyncio.run(asyncio.wait_for(collect(engine, ChatRequest("next")), 5))
    assert final.text == "echo: next"


def test_a_consumer_that_stops_early_frees_the_slot(server):
    engine = make_engine(server, max_concurrency=1)

    async def main():
        stream = engine.astream(ChatRequest("a b c d"), GEN)
        assert await stream.__anext__() == "echo: "
        await stream.aclose()
        return await asyncio.wait_for(engine.agenerate([ChatRequest("after")], GEN), 5)

    [out] = asyncio.run(main())
    assert out.text == "echo: after"


def test_concurrent_streams_share_the_bound(server):
    gate = threading.Event()
    server.handler = lambda seen: Reply(events=stream_events(["x", "y"]), pause=gate, pause_after=2)
    engine = make_engine(server, max_concurrency=2)

    async def main():
        tasks = [asyncio.create_task(collect(engine, ChatRequest(f"s{i}"))) for i in range(4)]
        while len(server.seen) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # a third request would have reached the server by now if the bound leaked
        in_flight = len(server.seen)
        gate.set()
        return in_flight, await asyncio.gather(*tasks)

    in_flight, results = asyncio.run(main())
    assert in_flight == 2 and [final.text for _, final in results] == ["xy"] * 4


def test_streams_over_aiohttp_and_the_pool_closes_on_its_loop(server):
    """The aiohttp transport on a loop of the caller's own: pieces as with httpx, a stream cut short is a connection
    error, and `aclose` on the loop closes its pool (nothing left for the garbage collector to complain about)."""
    engine = make_engine(server, http_transport="aiohttp", max_concurrency=1)

    async def main():
        server.handler = lambda seen: Reply(events=stream_events(["The answer", " is ", "\\boxed{4}"]))
        pieces, final = await collect(engine, ChatRequest("2+2?"))
        server.handler = lambda seen: Reply(events=stream_events(["one", " two", " three"]), cut_after=3)
        # aiohttp may report the cut before handing on what came ahead of it (httpx never does)
        with pytest.raises(EngineError, match="stream broke (after 7 characters|before any text): connection error"):
            await collect(engine, ChatRequest("q"))
        clients = engine._state().clients
        await engine.aclose()
        return pieces, final, clients

    pieces, final, clients = asyncio.run(main())
    assert pieces == ["The answer", " is ", "\\boxed{4}"] and final.text == "".join(pieces)
    assert all(isinstance(c._client, openai.DefaultAioHttpClient) and c.is_closed() for c in clients)


def test_the_micro_batchers_loop_uses_aiohttp_and_closes_its_pool_when_it_stops(server, caplog):
    from rapid_agent.backends.batching import MicroBatcher

    engine = make_engine(server, http_transport="auto")
    batcher = MicroBatcher(engine)

    async def ask():
        return await batcher.asubmit(ChatRequest("via the batcher"), GEN)

    assert asyncio.run(ask()).text == "echo: via the batcher"
    [(loop, state)] = list(engine._states.items())
    assert loop is batcher._loop and isinstance(state.clients[0]._client, openai.DefaultAioHttpClient)
    assert not state.clients[0].is_closed()
    thread = next(t for t in threading.enumerate() if t.name == f"batcher:{engine.spec}")
    batcher.close()
    thread.join(5)
    assert state.clients[0].is_closed() and loop.is_closed()
    assert "Unclosed client session" not in caplog.text


def test_an_unknown_http_transport_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"http_transport must be one of \('auto', 'aiohttp', 'httpx'\), got 'curl'"):
        OpenAIEngine("m", base_url="http://127.0.0.1:1/v1", role="reasoner", http_transport="curl")
