"""Engine resolution: spec strings, engine options (checked, part of the cache key), chat models, built-in names;
and `redact`, what an engine's error text may keep."""

import asyncio
import base64
import io
import os
import time

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from PIL import Image

from rapid_agent.backends import builtin_model_path, load_engine, register_builtin_model
from rapid_agent.backends.base import ChatRequest, EngineError, GenerationConfig, redact
from rapid_agent.backends.batching import get_batcher


def test_options_are_part_of_the_cache_key_and_unknown_ones_are_named(tiny_reasoner_dir):
    spec = f"hf:{tiny_reasoner_dir}"
    default = load_engine(spec, "reasoner")
    small = load_engine(spec, "reasoner", max_batch_size=2)
    assert small is not default and small.max_batch_size == 2 and default.max_batch_size == 16
    assert load_engine(spec, "reasoner", max_batch_size=2) is small
    with pytest.raises(ValueError, match=r"unknown 'hf' engine option\(s\) \['max_batchsize'\]; known options: "):
        load_engine(spec, "reasoner", max_batchsize=2)


def test_a_chat_model_gets_one_engine_so_its_runs_share_a_batcher():
    model = FakeListChatModel(responses=["\\boxed{1}"])
    engine = load_engine(model, "reasoner")
    assert load_engine(model, "reasoner") is engine and get_batcher(load_engine(model, "reasoner")) is get_batcher(
        engine
    )
    assert load_engine(FakeListChatModel(responses=["x"]), "reasoner") is not engine
    with pytest.raises(ValueError, match="only serve as the reasoner"):
        load_engine(model, "captioner")


def test_built_in_names_resolve_through_the_registry(tmp_path):
    target = tmp_path / "model.gguf"
    register_builtin_model("My-Model", lambda: target)
    assert builtin_model_path("my-model") == target and builtin_model_path("nothing-like-it") is None


def test_the_bundled_reasoner_is_registered_by_importing_the_package(smollm2_gguf):
    assert builtin_model_path("smollm2-135m-instruct") == smollm2_gguf


# -- redact: what an error text may keep -----------------------------------------------------------------------


def _png_base64(size: int = 48) -> str:
    """A noisy PNG as base64, what a captioner request carries in its data URL."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_redact_replaces_an_echoed_data_url_by_its_size_before_cutting():
    payload = _png_base64()
    text = f'HTTP 400: you sent: {{"url": "data:image/png;base64,{payload}"}} (max_tokens too large)'
    out = redact(text)
    assert payload[:24] not in out and out.startswith('HTTP 400: you sent: {"url": "data:image/png;base64,[REDACTED ')
    assert f"[REDACTED {len(payload.rstrip('=')) * 3 // 4} bytes]" in out
    assert out.endswith("(max_tokens too large)")  # masked first, so what follows the image survives the cut


@pytest.mark.parametrize(
    "echo",
    [
        "data:image/jpeg;base64,{p}",
        "DATA:image/webp;name=dots.webp;base64,{p}",  # parameters, any case
        "data:image\\/png;base64,{escaped}",  # echoed inside JSON by a server that escapes slashes
        "data:image/png;base64,{lines}",  # MIME-style lines of 76 characters, JSON-escaped newlines between
        "a bare run: {p}",  # no data URL, only a long base64 run
    ],
)
def test_redact_masks_every_shape_of_echoed_image(echo):
    payload = _png_base64()
    escaped = payload.replace("/", "\\/")
    lines = "\\n".join(payload[i : i + 76] for i in range(0, len(payload), 76))
    out = redact("you sent: " + echo.format(p=payload, escaped=escaped, lines=lines))
    assert "[REDACTED " in out
    pieces = [payload[i : i + 16] for i in range(0, len(payload) - 16, 16)]
    assert not any(piece in out for piece in pieces), out


def test_redact_keeps_what_an_error_needs():
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    text = f"model Qwen/Qwen2.5-VL-7B-Instruct not found at /models/qwen-vl (sha256 {sha}); token=abcd1234efgh"
    out = redact(text)
    assert sha in out and "/models/qwen-vl" in out and "Qwen/Qwen2.5-VL-7B-Instruct" in out
    assert "abcd1234efgh" not in out and "token=[REDACTED]" in out
    assert redact("a word " * 2_000, limit=None) == "a word " * 2_000  # no cut without a limit


def test_redact_is_linear_on_multi_megabyte_texts():
    """10 MB of the inputs that make a backtracking pattern slow: each takes about a second at worst here."""
    run = _png_base64(32)[:255]
    texts = [
        "you sent: data:image/png;base64," + "A" * 10_000_000,  # one huge echoed image
        (run + " ") * 40_000,  # runs one short of the threshold, each of which must be given up
        "data:image/png;" * 700_000,  # data URL openings that never reach their payload
        ("token" + " " * 1000) * 10_000,  # a credential keyword followed by blanks and no value
    ]
    for text in texts:
        started = time.perf_counter()
        redact(text)
        assert time.perf_counter() - started < 10, text[:40]


def test_a_langchain_model_error_echoing_an_image_keeps_no_bytes():
    payload = _png_base64()

    class Echoing(BaseChatModel):
        """A provider's client whose error quotes the request it sent, image included."""

        @property
        def _llm_type(self) -> str:
            return "echoing"

        def _generate(self, *args, **kwargs):
            raise ValueError(f"Error code: 400 - you sent: {{'url': 'data:image/png;base64,{payload}'}}")

    engine = load_engine(Echoing(), "reasoner")
    [error] = engine.generate([ChatRequest("q")], GenerationConfig())

    async def stream() -> None:
        async for _ in engine.astream(ChatRequest("q"), GenerationConfig()):
            pass

    with pytest.raises(EngineError) as streamed:
        asyncio.run(stream())
    for text in (str(error), str(streamed.value)):
        assert "you sent" in text and "base64,[REDACTED " in text and payload[:16] not in text, text


def test_a_langchain_reply_that_is_not_a_message_is_quoted_without_image_bytes():
    from rapid_agent.backends.langchain import MalformedMessage, _read

    payload = _png_base64()
    with pytest.raises(MalformedMessage) as info:
        _read(payload)
    assert "got str: '[REDACTED " in str(info.value) and payload[:16] not in str(info.value)
