"""The one small interface every generation engine implements, and the request/result types it speaks.

Captioners (vision-language models) and reasoners (text-only LLMs) are both *engines*: they take a batch of chat
requests and return one completion per request. A captioner request carries an image; a reasoner request does not.
Engines format requests with their own chat template, so the rest of the library never sees a template.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

Role = Literal["captioner", "reasoner"]


#: longest error text kept from an engine or a server: the rest is cut, so a huge error page cannot flood a record
MAX_ERROR_CHARS = 500
#: what looks like a credential in an error text, each with the part that is kept to say what was masked
_CREDENTIALS = (
    re.compile(r"(?i)(\bbearer\s+)\S{8,}"),  # an Authorization header echoed back
    re.compile(r"\b((?:sk|pk|rk|hf|ghp|gho|glpat|xox[abp])[-_])[A-Za-z0-9_-]{8,}"),  # provider key prefixes
    re.compile(
        r"(?i)(\b(?:api[_-]?key|access[_-]?token|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]{4,}"
    ),
)
#: base64's characters, standard and URL-safe (padding apart)
_B64 = r"A-Za-z0-9+/_\-"
#: an inline image (or any file) as a data URL: `data:<mime>[;<param>=<value>]*;base64,<payload>`, the payload
#: also as a server echoes it inside JSON (`\/` for `/`, `\n` line breaks) or percent-encoded. Every part before
#: the payload is bounded and the payload cannot end early, so a match never backtracks past a few hundred
#: characters: linear in the text's length.
_DATA_URL = re.compile(
    r"([dD][aA][tT][aA]:[\w.+\\/-]{0,100}(?:;[\w.+-]{1,100}=[^;,\s\"'\\]{0,100}){0,10};[bB][aA][sS][eE]64,)"
    rf"([{_B64}=%]+(?:\\[{_B64}=%]+)*)"
)
#: a bare run of base64 this long is an encoded file, never words; tried only where a run starts (the
#: look-behind), so each run is scanned once
_BASE64_RUN = re.compile(rf"(?<![{_B64}])[{_B64}]{{256,}}=*")


def _size(payload: str) -> str:
    """`[REDACTED <n> bytes]`, n the size the base64 `payload` decodes to (escapes and padding left out)."""
    digits = len(payload.replace("\\", "").rstrip("="))
    return f"[REDACTED {digits * 3 // 4} bytes]"


def redact(text: object, limit: int | None = MAX_ERROR_CHARS) -> str:
    """`text` as a string fit for a record or a log: anything that looks like a credential masked, inline images
    (data URLs) and other long base64 runs replaced by their size, at most `limit` characters (None: no cut).
    Servers echo requests and headers in their error pages; none of that may reach a result file. Linear in the
    text's length (a 10 MB echo takes well under a second), and the masking comes before the cut, so a cut never
    leaves a piece of a payload too short to be recognised."""
    text = str(text)
    text = _DATA_URL.sub(lambda m: m.group(1) + _size(m.group(2)), text)
    text = _BASE64_RUN.sub(lambda m: _size(m.group(0)), text)
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return text if limit is None or len(text) <= limit else text[: limit - 16] + " ... [truncated]"


class EngineError(RuntimeError):
    """A request failed inside an engine (after its retries). Recorded per sample, never fatal to a batch.
    Its message is redacted and bounded (see `redact`), so it is safe to store with the sample."""

    def __init__(self, message: object = "") -> None:
        super().__init__(redact(message))

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
    """Sampling settings for one role. Frozen so that requests with equal settings can share an engine call.

    Every engine applies exactly these, each field explicitly: a checkpoint's `generation_config.json` (Qwen2.5-VL-
    Instruct's sets repetition_penalty 1.05) must not change sampling on one engine and not on another. The
    defaults of top_k, min_p and repetition_penalty are the neutral ones vLLM and TRL's rollouts use."""

    temperature: float = field(default=0.6, metadata={"help": "sampling temperature; 0 is greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: keep the top tokens of this mass"})
    max_new_tokens: int = field(default=4096, metadata={"help": "most tokens one output may hold"})
    seed: int | None = field(default=None, metadata={"help": "sampling seed (None: unseeded)"})
    top_k: int = field(default=0, metadata={"help": "keep only the k most likely tokens; 0 keeps all"})
    min_p: float = field(default=0.0, metadata={"help": "drop tokens below this share of the top one's probability"})
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "divide the logits of tokens already seen by this; 1 is none"}
    )

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 keeps all tokens), got {self.top_k!r}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 is none), got {self.repetition_penalty!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# The paper's settings: the reasoner samples at temperature 0.6, top_p 0.95; the captioner describes greedily at
# evaluation time (training samples it at temperature 1.0 through TRL, not through these defaults).
REASONER_DEFAULTS = GenerationConfig(temperature=0.6, top_p=0.95, max_new_tokens=4096)
CAPTIONER_DEFAULTS = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=1024)


@dataclass(frozen=True)
class ChatRequest:
    """One single-turn chat: an optional system message, a user prompt and, for captioners, images.

    `images` holds every image in order (MMMU questions have several); `image=` is the one-image shorthand and,
    after construction, always the first image (or None)."""

    prompt: str
    image: Image.Image | None = None
    system: str | None = None
    images: tuple[Image.Image, ...] = ()

    def __post_init__(self) -> None:
        images = tuple(self.images)
        if self.image is not None and images and images[0] is not self.image:
            raise ValueError("ChatRequest: give `image` (one) or `images` (several), not both")
        if not images and self.image is not None:
            images = (self.image,)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "image", images[0] if images else None)

    def messages(self, image_parts: Sequence[dict] | None = None) -> list[dict]:
        """OpenAI-style messages; the images (if any) come as `image_parts` (default one `{"type": "image"}` each,
        what chat templates expect) before the text."""
        out: list[dict] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        if not self.images:
            out.append({"role": "user", "content": self.prompt})
        else:
            parts = list(image_parts) if image_parts is not None else [{"type": "image"} for _ in self.images]
            if len(parts) != len(self.images):
                raise ValueError(f"{len(parts)} image parts for {len(self.images)} images")
            out.append({"role": "user", "content": [*parts, {"type": "text", "text": self.prompt}]})
        return out


#: why generation stopped, in OpenAI's words: "stop" (end of sequence or a stop string), "length" (the token budget
#: ran out: the text is truncated), or what a server said
FinishReason = str


@dataclass
class Completion:
    """One engine output with the counts the graph reports per node. `finish_reason` is "length" when the output
    was cut at `max_new_tokens` (a truncated answer), "stop" when the model ended it, None when unknown."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)
    finish_reason: FinishReason | None = None


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
    #: how long the micro-batcher waits for more requests before calling the engine (None: its debounce default,
    #: see `batching`); 0 for an engine that gains nothing from larger calls (a server that batches itself): the
    #: requests that arrive together still go as one call, none waits for others
    batch_window_s: float | None = None
    #: whether `astream` yields text as it is generated (False: it yields the whole text once, at the end)
    streams: bool = False

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        return asyncio.run(self.agenerate(requests, gen))

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        if type(self).generate is Engine.generate:
            raise NotImplementedError(f"{type(self).__name__} implements neither generate nor agenerate")
        return await asyncio.to_thread(self.generate, requests, gen)

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        """One request, streamed: text pieces (`str`) as they are generated, then the final `Completion` (whose
        text is the whole output). Engines that cannot stream (`streams` False) yield the whole text once, then the
        completion. Raises `EngineError` when the request fails."""
        (result,) = await self.agenerate([request], gen)
        if isinstance(result, Exception):
            raise result if isinstance(result, EngineError) else EngineError.caused_by(str(result), result)
        yield result.text
        yield result

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model or connection pool."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"
