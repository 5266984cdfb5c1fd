"""The settings of the OpenAI-compatible engine, checked in one place.

They arrive as keyword arguments (`load_engine("openai:m@url", role, timeout_s=900, extra_body={...})`, which is
what `RapidContext(reasoner_options=...)` and `--reasoner-option key=value` pass on). The defaults suit long
reasoning served to many samples at once: thousands of tokens per answer, a hundred or more requests in flight.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rapid_agent.backends.base import redact

IMAGE_FORMATS = ("PNG", "JPEG")
HTTP_TRANSPORTS = ("auto", "aiohttp", "httpx")
SAMPLING_FIELDS = ("extended", "openai")
# Body keys the engine sets itself: an `extra_body` holding one would break the request or its reading.
_RESERVED_BODY_KEYS = frozenset({"model", "messages", "stream", "stream_options"})


@dataclass(frozen=True)
class OpenAIOptions:
    timeout_s: float = field(
        default=1200.0,
        metadata={"help": "Wall-clock bound on one attempt, reading the whole reply (or stream) included."},
    )
    connect_timeout_s: float = field(
        default=30.0, metadata={"help": "How long to wait for a TCP connection (at most timeout_s)."}
    )
    max_concurrency: int = field(default=128, metadata={"help": "Requests in flight at once on one event loop."})
    max_retries: int = field(
        default=4,
        metadata={"help": "Retries after the first attempt, for connection errors, timeouts, 408, 429 and 5xx."},
    )
    backoff_s: float = field(
        default=1.0,
        metadata={"help": "The first retry's wait; it doubles per retry (with jitter) up to max_backoff_s."},
    )
    max_backoff_s: float = field(default=60.0, metadata={"help": "The longest wait between retries of our choosing."})
    server_cooldown_s: float = field(
        default=30.0,
        metadata={
            "help": "With several servers (openai:<model>@<url>,<url>,...): how long one that could not be reached "
            "is left out before it gets requests again."
        },
    )
    max_retry_after_s: float = field(
        default=120.0,
        metadata={"help": "The longest wait a server's Retry-After may impose; longer hints are cut to this."},
    )
    extra_body: Mapping[str, Any] | None = field(
        default=None,
        metadata={
            "help": "Keys merged into every request body, e.g. {'top_k': 20, 'chat_template_kwargs': "
            "{'enable_thinking': False}} for vLLM; they override the sampling settings of the same name."
        },
    )
    sampling_fields: str = field(
        default="extended",
        metadata={
            "help": "Which sampling fields a request carries: 'extended' sends top_k, min_p and repetition_penalty "
            "too, so a vLLM or SGLang server applies the GenerationConfig given rather than the defaults of the "
            "checkpoint's generation_config.json for fields left out; 'openai' only OpenAI's own (for servers, "
            "such as api.openai.com, that reject the others)."
        },
    )
    api_key: str | None = field(
        default=None, metadata={"help": "The bearer token; when unset, read from the api_key_env variable."}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "The environment variable holding the key; with no key, no Authorization is sent."},
    )
    default_headers: Mapping[str, str] | None = field(
        default=None, metadata={"help": "Extra HTTP headers sent with every request."}
    )
    image_format: str = field(
        default="PNG", metadata={"help": "How images travel as data URLs: PNG (lossless) or JPEG (smaller)."}
    )
    http_transport: str = field(
        default="auto",
        metadata={
            "help": "The HTTP client under the openai SDK. 'aiohttp': the SDK's own aiohttp transport "
            "(openai[aiohttp], DefaultAioHttpClient), a half to a third of httpx's CPU a request "
            "(benchmarks/overhead.py); close each event loop's pool yourself (await engine.aclose() on it) before "
            "the loop ends. 'httpx': the SDK's default. 'auto': aiohttp on the loops whose end the engine sees, "
            "where it closes the pool itself (the micro-batcher's, which every graph run goes through, and a "
            "blocking generate call's), httpx on any other loop, and everywhere when aiohttp is not installed."
        },
    )
    stream_usage: bool = field(
        default=True,
        metadata={
            "help": "Ask streamed replies for token counts (stream_options.include_usage); turned off by itself "
            "when a server rejects the option."
        },
    )

    def __post_init__(self) -> None:
        _number("timeout_s", self.timeout_s, minimum=0, strict=True)
        _number("connect_timeout_s", self.connect_timeout_s, minimum=0, strict=True)
        _integer("max_concurrency", self.max_concurrency, minimum=1)
        _integer("max_retries", self.max_retries, minimum=0)
        _number("backoff_s", self.backoff_s, minimum=0)
        _number("max_backoff_s", self.max_backoff_s, minimum=0)
        _number("server_cooldown_s", self.server_cooldown_s, minimum=0)
        _number("max_retry_after_s", self.max_retry_after_s, minimum=0)
        object.__setattr__(self, "extra_body", _extra_body(self.extra_body))
        object.__setattr__(self, "default_headers", _headers(self.default_headers))
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ValueError(f"api_key must be a string, got {type(self.api_key).__name__}")
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise ValueError(f"api_key_env must be the name of an environment variable, got {self.api_key_env!r}")
        if not isinstance(self.image_format, str) or self.image_format.upper() not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        object.__setattr__(self, "image_format", self.image_format.upper())
        if self.sampling_fields not in SAMPLING_FIELDS:
            raise ValueError(f"sampling_fields must be one of {SAMPLING_FIELDS}, got {self.sampling_fields!r}")
        if self.http_transport not in HTTP_TRANSPORTS:
            raise ValueError(f"http_transport must be one of {HTTP_TRANSPORTS}, got {self.http_transport!r}")
        if self.http_transport == "aiohttp" and not aiohttp_available():
            raise ValueError(
                "http_transport 'aiohttp' needs the openai SDK's aiohttp transport: pip install 'openai[aiohttp]'"
            )
        if not isinstance(self.stream_usage, bool):
            raise ValueError(f"stream_usage must be true or false, got {self.stream_usage!r}")

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> OpenAIOptions:
        """Options from keyword arguments; an unknown name is refused with the list of known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for the openai engine; known options: {known}")
        return cls(**options)


def aiohttp_available() -> bool:
    """Whether the openai SDK here has its aiohttp transport (`DefaultAioHttpClient`) and aiohttp is installed."""
    import openai

    return hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") is not None


def _number(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    if value <= minimum if strict else value < minimum:
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _integer(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _extra_body(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"extra_body must be a mapping (a JSON object), got {type(value).__name__}: {value!r}")
    reserved = sorted(_RESERVED_BODY_KEYS & set(value))
    if reserved:
        raise ValueError(f"extra_body may not set {reserved}: the engine sets them itself")
    try:
        json.dumps(dict(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra_body must be JSON-serialisable: {exc}") from exc
    return dict(value)


def _headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"default_headers must map header names to string values, got {redact(value, 200)}")
    return dict(value)
