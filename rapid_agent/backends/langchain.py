"""Any LangChain chat model as the reasoner (text only).

The chat model keeps its own sampling settings (temperature, max tokens, ...): LangChain has no provider-neutral
way to override them per call, so `GenerationConfig` is not applied here. Configure the model when building it.
What providers report differently is read here in one way: answer text and thinking from string or block content,
token counts from `usage_metadata`, and why generation stopped from `response_metadata` ("length" when the output
was cut at the token budget, whatever the provider calls it). A reply that cannot be read fails its own request.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig, redact


def is_chat_model(obj: Any) -> bool:
    """Whether `obj` is a LangChain chat model this library can use as a reasoner."""
    return isinstance(obj, BaseChatModel)


# Providers' words for why generation stopped, in OpenAI's: Anthropic says max_tokens/end_turn/stop_sequence,
# Gemini MAX_TOKENS/STOP, Ollama's done_reason length/stop.
_FINISH_REASONS = {
    "length": "length",
    "max_tokens": "length",
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
}


class MalformedMessage(ValueError):
    """A chat model returned something that is not a message with text content; the message says what."""


class LangChainEngine(Engine):
    """Wraps a `BaseChatModel`; batches go through its `batch`/`abatch` with at most `max_concurrency` in flight,
    and `astream` through its `astream` (models that cannot stream send their whole reply as one piece)."""

    max_batch_size = 64
    streams = True

    def __init__(self, chat_model: BaseChatModel, *, max_concurrency: int = 8) -> None:
        if not is_chat_model(chat_model):
            raise TypeError(f"expected a LangChain BaseChatModel, got {type(chat_model).__name__}")
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        self.chat_model = chat_model
        self.max_concurrency = max_concurrency
        self.spec = "langchain:" + type(chat_model).__name__
        # Remote chat models are usually I/O bound; let a few engine calls overlap.
        self.max_concurrent_calls = max_concurrency

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        inputs, slots = self._inputs(requests)
        t0 = time.perf_counter()
        outputs = self.chat_model.batch(inputs, config=self._config(), return_exceptions=True) if inputs else []
        return self._results(slots, outputs, time.perf_counter() - t0)

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        inputs, slots = self._inputs(requests)
        t0 = time.perf_counter()
        outputs = await self.chat_model.abatch(inputs, config=self._config(), return_exceptions=True) if inputs else []
        return self._results(slots, outputs, time.perf_counter() - t0)

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        """Answer text pieces as the chat model streams them, then the `Completion` (thinking in
        `meta["reasoning_content"]`, never among the pieces). Any failure raises `EngineError`."""
        messages = self._messages(request)
        t0 = time.perf_counter()
        text, reasoning, finish, tokens = [], [], None, [0, 0]
        try:
            async for chunk in self.chat_model.astream(messages, config=self._config()):
                part = _read(chunk)
                reasoning.append(part.reasoning)
                finish = part.finish_reason or finish
                tokens = [tokens[0] + part.prompt_tokens, tokens[1] + part.completion_tokens]  # usage comes as deltas
                if part.text:
                    text.append(part.text)
                    yield part.text
        except Exception as exc:
            raise EngineError(f"{self.spec} failed: {type(exc).__name__}: {exc}") from exc
        meta: dict[str, Any] = {"streamed": True}
        if "".join(reasoning):
            meta["reasoning_content"] = "".join(reasoning)
        yield Completion(
            text="".join(text),
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            latency_s=time.perf_counter() - t0,
            meta=meta,
            finish_reason=finish,
        )

    def _config(self) -> dict:
        return {"max_concurrency": self.max_concurrency}

    def _messages(self, request: ChatRequest) -> list[BaseMessage]:
        if request.image is not None:
            raise EngineError(f"{self.spec} is a text-only reasoner and cannot take an image")
        messages: list[BaseMessage] = [SystemMessage(request.system)] if request.system else []
        messages.append(HumanMessage(request.prompt))
        return messages

    def _inputs(self, requests: Sequence[ChatRequest]) -> tuple[list[list[BaseMessage]], list[Exception | None]]:
        """The message lists to send, and per request either None (sent) or the error it already has."""
        inputs: list[list[BaseMessage]] = []
        slots: list[Exception | None] = []
        for request in requests:
            try:
                inputs.append(self._messages(request))
                slots.append(None)
            except EngineError as exc:
                slots.append(exc)
        return inputs, slots

    def _results(
        self, slots: list[Exception | None], outputs: list[Any], elapsed: float
    ) -> list[Completion | Exception]:
        it = iter(outputs)
        return [slot if slot is not None else self._completion(next(it), elapsed) for slot in slots]

    def _completion(self, output: Any, elapsed: float) -> Completion | Exception:
        if isinstance(output, BaseException):  # abatch(return_exceptions=True) hands back each request's failure
            return EngineError.caused_by(f"{self.spec} failed: {type(output).__name__}: {output}", output)
        try:
            part = _read(output)
        except MalformedMessage as exc:
            return EngineError(f"{self.spec} returned a malformed reply: {exc}")
        meta: dict[str, Any] = {}
        if part.reasoning:
            meta["reasoning_content"] = part.reasoning
        return Completion(
            text=part.text,
            prompt_tokens=part.prompt_tokens,
            completion_tokens=part.completion_tokens,
            # abatch reports no per-item timing; each request waited for its batch.
            latency_s=elapsed,
            meta=meta,
            finish_reason=part.finish_reason,
        )


@dataclass(frozen=True)
class _Part:
    """What one message (or message chunk) says, read and checked."""

    text: str
    reasoning: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def _read(message: object) -> _Part:
    if not isinstance(message, BaseMessage):
        raise MalformedMessage(f"expected a message, got {type(message).__name__}: {redact(repr(message), 80)}")
    text, reasoning = _split_content(message.content)
    usage = getattr(message, "usage_metadata", None)
    usage = usage if isinstance(usage, dict) else {}
    finish = _finish_reason(getattr(message, "response_metadata", None))
    return _Part(text, reasoning, finish, _count(usage.get("input_tokens")), _count(usage.get("output_tokens")))


def _finish_reason(metadata: object) -> str | None:
    """Why generation stopped, from a message's `response_metadata`, in OpenAI's words where there is one."""
    if not isinstance(metadata, dict):
        return None
    for key in ("finish_reason", "stop_reason", "done_reason"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return _FINISH_REASONS.get(value.lower(), value)
    return None


def _split_content(content: object) -> tuple[str, str]:
    """Answer text and reasoning text from a message's content (a string, or content blocks for newer models)."""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise MalformedMessage(f"content is {type(content).__name__}, not text or a list of content blocks")
    text, reasoning = [], []
    for i, block in enumerate(content):
        if isinstance(block, str):
            text.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            text.append(_text(block.get("text"), f"content[{i}].text"))
        elif isinstance(block, dict) and block.get("type") in ("reasoning", "thinking"):
            kind = block["type"]
            reasoning.append(_text(block.get(kind) or block.get("reasoning"), f"content[{i}].{kind}"))
        elif not isinstance(block, dict):
            raise MalformedMessage(f"content[{i}] is {type(block).__name__}, not a content block")
        # other blocks (images, tool calls) carry no answer text
    return "".join(text), "".join(reasoning)


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"{where} is {type(value).__name__}, not a string")
    return value


def _count(value: object) -> int:
    """A token count; anything that is not a non-negative finite number counts 0 rather than failing the reply."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0
