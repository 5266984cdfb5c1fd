"""LangChainEngine over langchain_core's fake chat models: messages, usage, per-request failures, concurrency."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from rapid_agent.backends import ChatRequest, EngineError, GenerationConfig, load_engine
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


def test_rejects_non_chat_models():
    with pytest.raises(TypeError, match="BaseChatModel"):
        LangChainEngine(threading.Lock())  # type: ignore[arg-type]
