"""LangChainEngine over langchain_core's fake chat models: messages, usage, finish reasons, per-request failures,
concurrency, and streaming."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from PIL import Image

from rapid_agent.backends import ChatRequest, Completion, EngineError, GenerationConfig, load_engine
from rapid_agent.backends.langchain import LangChainEngine, is_chat_model

GEN = GenerationConfig()


class EchoChatModel(GenericFakeChatModel):
    """Echoes the conversation, raises on 'boom', and records how many calls overlap."""

    in_flight: int = 0
    max_in_flight: int = 0
    seen: list = []

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.seen.append(messages)
        text = " / ".join(f"{m.type}:{m.content}" for m in messages)
        if "boom" in text:
            raise RuntimeError("provider exploded")
        message = AIMessage(text, usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12})
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return self._generate(messages)
        finally:
            self.in_flight -= 1


def echo_model() -> EchoChatModel:
    return EchoChatModel(messages=iter(()), seen=[])


def test_is_chat_model():
    assert is_chat_model(FakeListChatModel(responses=["x"]))
    assert not is_chat_model("openai:m@http://x") and not is_chat_model(object())


def test_load_engine_wraps_a_chat_model_as_reasoner_only():
    model = echo_model()
    engine = load_engine(model, "reasoner")
    assert isinstance(engine, LangChainEngine) and engine.spec == "langchain:EchoChatModel"
    with pytest.raises(ValueError, match="only serve as the reasoner"):
        load_engine(model, "captioner")


def test_agenerate_converts_messages_and_counts_tokens():
    engine = LangChainEngine(echo_model())
    out = asyncio.run(engine.agenerate([ChatRequest("2+2?", system="answer in a box"), ChatRequest("hi")], GEN))
    assert out[0].text == "system:answer in a box / human:2+2?"
    assert out[1].text == "human:hi"
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (10, 2)


def test_failures_and_images_are_per_request_errors():
    engine = LangChainEngine(echo_model())
    requests = [
        ChatRequest("fine"),
        ChatRequest("boom"),
        ChatRequest("look", image=Image.new("RGB", (2, 2))),
        ChatRequest("also fine"),
    ]
    out = asyncio.run(engine.agenerate(requests, GEN))
    assert out[0].text == "human:fine" and out[3].text == "human:also fine"
    assert isinstance(out[1], EngineError) and "provider exploded" in str(out[1])
    assert isinstance(out[2], EngineError) and "cannot take an image" in str(out[2])
    # the image request never reached the model
    assert sorted(m[-1].content for m in engine.chat_model.seen) == ["also fine", "boom", "fine"]


def test_sync_generate_uses_batch():
    engine = LangChainEngine(echo_model())
    out = engine.generate([ChatRequest("a"), ChatRequest("boom")], GEN)
    assert out[0].text == "human:a" and isinstance(out[1], EngineError)


def test_max_concurrency_bounds_abatch():
    model = echo_model()
    engine = LangChainEngine(model, max_concurrency=2)
    out = asyncio.run(engine.agenerate([ChatRequest(f"q{i}") for i in range(8)], GEN))
    assert [o.text for o in out] == [f"human:q{i}" for i in range(8)]
    assert model.max_in_flight == 2


def test_generic_fake_model_usage_and_reasoning_blocks():
    reply = AIMessage(
        [{"type": "reasoning", "reasoning": "3+4 is 7"}, {"type": "text", "text": "\\boxed{7}"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 9, "total_tokens": 14},
    )
    engine = LangChainEngine(GenericFakeChatModel(messages=iter([reply])))
    [out] = engine.generate([ChatRequest("3+4?")], GEN)
    assert out.text == "\\boxed{7}" and out.meta["reasoning_content"] == "3+4 is 7"
    assert (out.prompt_tokens, out.completion_tokens) == (5, 9)


def test_fake_list_model_without_usage_reports_zero_tokens():
    engine = LangChainEngine(FakeListChatModel(responses=["\\boxed{1}"]))
    [out] = engine.generate([ChatRequest("q")], GEN)
    assert out.text == "\\boxed{1}" and (out.prompt_tokens, out.completion_tokens) == (0, 0)


def test_rejects_non_chat_models_and_bad_concurrency():
    with pytest.raises(TypeError, match="BaseChatModel"):
        LangChainEngine(threading.Lock())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrency must be an integer >= 1, got '4'"):
        LangChainEngine(echo_model(), max_concurrency="4")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metadata", "finish"),
    [
        ({"finish_reason": "length"}, "length"),  # OpenAI
        ({"stop_reason": "max_tokens"}, "length"),  # Anthropic
        ({"finish_reason": "MAX_TOKENS"}, "length"),  # Gemini
        ({"done_reason": "length"}, "length"),  # Ollama
        ({"stop_reason": "end_turn"}, "stop"),
        ({"finish_reason": "stop"}, "stop"),
        ({"finish_reason": "content_filter"}, "content_filter"),
        ({}, None),
    ],
)
def test_finish_reason_comes_from_response_metadata(metadata, finish):
    reply = AIMessage("\\boxed{1}", response_metadata=metadata)
    [out] = LangChainEngine(GenericFakeChatModel(messages=iter([reply]))).generate([ChatRequest("q")], GEN)
    assert out.text == "\\boxed{1}" and out.finish_reason == finish


def test_malformed_content_fails_only_its_own_request():
    replies = iter([AIMessage("fine"), AIMessage([{"type": "text", "text": 5}]), AIMessage(["also", " fine"])])
    engine = LangChainEngine(GenericFakeChatModel(messages=replies), max_concurrency=1)
    out = asyncio.run(engine.agenerate([ChatRequest("a"), ChatRequest("b"), ChatRequest("c")], GEN))
    assert out[0].text == "fine" and out[2].text == "also fine"
    assert isinstance(out[1], EngineError) and "malformed reply: content[0].text is int" in str(out[1])


def test_a_returned_exception_fails_only_its_request_and_is_redacted():
    class LeakyModel(EchoChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
            if messages[-1].content == "leak":
                raise PermissionError("401 for Authorization: Bearer sk-proj-abcdefghijklmnop1234 " + "x" * 5000)
            return super()._generate(messages)

    out = LangChainEngine(LeakyModel(messages=iter(()), seen=[])).generate(
        [ChatRequest("ok"), ChatRequest("leak")], GEN
    )
    assert out[0].text == "human:ok"
    assert isinstance(out[1], EngineError) and "PermissionError" in str(out[1])
    assert "sk-proj-abcdefghijklmnop1234" not in str(out[1]) and len(str(out[1])) <= 500


# -- streaming -------------------------------------------------------------------------------------------------


class ScriptedStreamModel(BaseChatModel):
    """Streams scripted chunks; after `pause_after` chunks it waits until the consumer sets `resume` (at most
    2 s, recording whether it was released), and it raises `fail` after the last chunk if given."""

    chunks: list = []
    pause_after: int | None = None
    resume: Any = None
    released: list = []
    fail: Exception | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted-stream"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("this model only streams")

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs: Any):
        for i, chunk in enumerate(self.chunks):
            if i == self.pause_after:
                try:
                    await asyncio.wait_for(self.resume.wait(), 2)
                    self.released.append(True)
                except asyncio.TimeoutError:
                    self.released.append(False)
            yield ChatGenerationChunk(message=chunk)
        if self.fail is not None:
            raise self.fail


async def collect(engine, request: ChatRequest, on_piece=None):
    pieces, final = [], None
    async for item in engine.astream(request, GEN):
        if isinstance(item, Completion):
            final = item
        else:
            pieces.append(item)
            if on_piece is not None:
                on_piece(item)
    return pieces, final


def test_astream_yields_pieces_as_they_come_then_the_completion():
    async def main():
        resume = asyncio.Event()
        chunks = [
            AIMessageChunk([{"type": "reasoning", "reasoning": "1+1"}]),
            AIMessageChunk([{"type": "reasoning", "reasoning": " is 2"}]),
            AIMessageChunk("The answer "),
            AIMessageChunk(
                "is \\boxed{2}", usage_metadata={"input_tokens": 6, "output_tokens": 9, "total_tokens": 15}
            ),
            AIMessageChunk("", response_metadata={"finish_reason": "length"}),
        ]
        model = ScriptedStreamModel(chunks=chunks, pause_after=3, resume=resume, released=[])
        engine = LangChainEngine(model)
        assert engine.streams
        # the model waits after the first answer piece until the test has seen it: buffering would stall it
        return model, await collect(engine, ChatRequest("1+1?"), on_piece=lambda piece: resume.set())

    model, (pieces, final) = asyncio.run(main())
    assert model.released == [True]
    assert pieces == ["The answer ", "is \\boxed{2}"] and final.text == "".join(pieces)
    assert final.meta["reasoning_content"] == "1+1 is 2" and final.finish_reason == "length"
    assert (final.prompt_tokens, final.completion_tokens) == (6, 9)


class OneShotModel(BaseChatModel):
    """Implements only `_generate`: LangChain streams it as one chunk."""

    @property
    def _llm_type(self) -> str:
        return "one-shot"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        usage = {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}
        message = AIMessage(
            f"got {messages[-1].content}", usage_metadata=usage, response_metadata={"stop_reason": "end_turn"}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_astream_of_a_model_that_cannot_stream_yields_the_whole_text():
    pieces, final = asyncio.run(collect(LangChainEngine(OneShotModel()), ChatRequest("hi")))
    assert pieces == ["got hi"] and final.text == "got hi" and final.finish_reason == "stop"
    assert (final.prompt_tokens, final.completion_tokens) == (4, 2)


def test_astream_of_a_word_streaming_fake_model_joins_to_the_text():
    pieces, final = asyncio.run(collect(LangChainEngine(echo_model()), ChatRequest("hi", system="sys")))
    assert len(pieces) > 1 and "".join(pieces) == final.text == "system:sys / human:hi"


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (ScriptedStreamModel(chunks=[AIMessageChunk("half")], fail=ConnectionError("reset by peer")), "reset by peer"),
        (
            ScriptedStreamModel(chunks=[AIMessageChunk("half"), AIMessageChunk([{"type": "text", "text": 3}])]),
            "is int",
        ),
    ],
)
def test_astream_failure_raises_engine_error_after_the_pieces(model, needle):
    pieces: list[str] = []
    with pytest.raises(EngineError, match=needle):
        asyncio.run(collect(LangChainEngine(model), ChatRequest("q"), on_piece=pieces.append))
    assert pieces == ["half"]


def test_astream_refuses_an_image():
    with pytest.raises(EngineError, match="cannot take an image"):
        asyncio.run(collect(LangChainEngine(echo_model()), ChatRequest("look", image=Image.new("RGB", (2, 2)))))
