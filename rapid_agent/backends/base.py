"""The one small interface every generation engine implements, and the request/result types it speaks.

Captioners (vision-language models) and reasoners (text-only LLMs) are both *engines*: they take a batch of chat
requests and return one completion per request. A captioner request carries an image; a reasoner request does not.
Engines format requests with their own chat template, so the rest of the library never sees a template.
"""

from __future__ import annotations

import asyncio
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

Role = Literal["captioner", "reasoner"]


class EngineError(RuntimeError):
    """A request failed inside an engine (after its retries). Recorded per sample, never fatal to a batch."""

    @classmethod
    def caused_by(cls, message: str, cause: BaseException) -> EngineError:
        """An error to return in a result list (not raise) that still carries its cause."""
        error = cls(message)
        error.__cause__ = cause
        return error


class BackendUnavailableError(RuntimeError):
    """A backend's optional dependency is missing or its model cannot be found; the message says what to do."""


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings for one role. Frozen so that requests with equal settings can share an engine call."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 4096
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# The paper's settings: the reasoner samples at temperature 0.6, top_p 0.95; the captioner describes greedily at
# evaluation time (training samples it at temperature 1.0 through TRL, not through these defaults).
REASONER_DEFAULTS = GenerationConfig(temperature=0.6, top_p=0.95, max_new_tokens=4096)
CAPTIONER_DEFAULTS = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=1024)


@dataclass(frozen=True)
class ChatRequest:
    """One single-turn chat: an optional system message, a user prompt and, for captioners, one image."""

    prompt: str
    image: Image.Image | None = None
    system: str | None = None

    def messages(self, image_part: dict | None = None) -> list[dict]:
        """OpenAI-style messages; the image (if any) is `image_part` (default `{"type": "image"}`, what chat
        templates expect) before the text."""
        out: list[dict] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        if self.image is None:
            out.append({"role": "user", "content": self.prompt})
        else:
            part = image_part or {"type": "image"}
            out.append({"role": "user", "content": [part, {"type": "text", "text": self.prompt}]})
        return out


@dataclass
class Completion:
    """One engine output with the counts the graph reports per node."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)


class Engine(ABC):
    """A generation engine. Implement `generate` (blocking) or `agenerate` (native async), or both.

    `generate` returns one entry per request: a `Completion`, or an `Exception` for a request that failed on its
    own (the other requests of the batch still count). An exception raised by `generate` fails the whole batch.
    """

    #: the spec string this engine was built from, e.g. "hf:/models/qwen-vl"; used in traces and reports
    spec: str = "custom"
    #: how many requests one engine call may take; larger batches are split by the micro-batcher
    max_batch_size: int = 64
    #: how many engine calls may run at once (1 for a local model, more for a server)
    max_concurrent_calls: int = 1

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        return asyncio.run(self.agenerate(requests, gen))

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        if type(self).generate is Engine.generate:
            raise NotImplementedError(f"{type(self).__name__} implements neither generate nor agenerate")
        return await asyncio.to_thread(self.generate, requests, gen)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model or connection pool."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"
