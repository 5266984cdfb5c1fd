"""Any LangChain chat model as the reasoner (text only).

The chat model keeps its own sampling settings (temperature, max tokens, ...): LangChain has no provider-neutral
way to override them per call, so `GenerationConfig` is not applied here. Configure the model when building it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig


def is_chat_model(obj: Any) -> bool:
    """Whether `obj` is a LangChain chat model this library can use as a reasoner."""
    return isinstance(obj, BaseChatModel)


class LangChainEngine(Engine):
    """Wraps a `BaseChatModel`; batches go through its `batch`/`abatch` with at most `max_concurrency` in flight."""

    max_batch_size = 64

    def __init__(self, chat_model: BaseChatModel, *, max_concurrency: int = 8) -> None:
        if not is_chat_model(chat_model):
            raise TypeError(f"expected a LangChain BaseChatModel, got {type(chat_model).__name__}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
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

    def _config(self) -> dict:
        return {"max_concurrency": self.max_concurrency}

    def _inputs(self, requests: Sequence[ChatRequest]) -> tuple[list[list[BaseMessage]], list[Exception | None]]:
        """The message lists to send, and per request either None (sent) or the error it already has."""
        inputs: list[list[BaseMessage]] = []
        slots: list[Exception | None] = []
        for request in requests:
            if request.image is not None:
                slots.append(EngineError(f"{self.spec} is a text-only reasoner and cannot take an image"))
                continue
            messages: list[BaseMessage] = [SystemMessage(request.system)] if request.system else []
            messages.append(HumanMessage(request.prompt))
            inputs.append(messages)
            slots.append(None)
        return inputs, slots

    def _results(
        self, slots: list[Exception | None], outputs: list[Any], elapsed: float
    ) -> list[Completion | Exception]:
        it = iter(outputs)
        return [slot if slot is not None else self._completion(next(it), elapsed) for slot in slots]

    def _completion(self, output: Any, elapsed: float) -> Completion | Exception:
        if isinstance(output, Exception):
            err = EngineError(f"{self.spec} failed: {type(output).__name__}: {output}")
            err.__cause__ = output
            return err
        text, reasoning = _split_content(output.content)
        usage = getattr(output, "usage_metadata", None) or {}
        meta: dict[str, Any] = {}
        if reasoning:
            meta["reasoning_content"] = reasoning
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
            # abatch reports no per-item timing; each request waited for its batch.
            latency_s=elapsed,
            meta=meta,
        )


def _split_content(content: str | list) -> tuple[str, str]:
    """Answer text and reasoning text from a message's content (a string, or content blocks for newer models)."""
    if isinstance(content, str):
        return content, ""
    text, reasoning = [], []
    for block in content:
        if isinstance(block, str):
            text.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            text.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") in ("reasoning", "thinking"):
            reasoning.append(str(block.get("reasoning") or block.get("thinking") or ""))
    return "".join(text), "".join(reasoning)
