"""Engines behind one interface, chosen by a `"provider:model"` spec string.

    hf:<hub id | local dir | file.gguf>     transformers, in process
    vllm:<hub id | local dir>               vLLM's offline engine, in process (optional extra `rapid-agent[vllm]`)
    openai:<model>@<base url>               any OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI)

A reasoner may also be any LangChain `BaseChatModel` instance, and either role may be an `Engine` instance (the
stand-ins in `rapid_agent.backends.stand_in` are for tests). Providers are imported only when used.
"""

from __future__ import annotations

import threading
from typing import Any

from rapid_agent.backends.base import (
    CAPTIONER_DEFAULTS,
    REASONER_DEFAULTS,
    BackendUnavailableError,
    ChatRequest,
    Completion,
    Engine,
    EngineError,
    GenerationConfig,
    Role,
)

PROVIDERS = ("hf", "vllm", "openai")

__all__ = [
    "CAPTIONER_DEFAULTS",
    "PROVIDERS",
    "REASONER_DEFAULTS",
    "BackendUnavailableError",
    "ChatRequest",
    "Completion",
    "Engine",
    "EngineError",
    "GenerationConfig",
    "Role",
    "load_engine",
    "parse_spec",
]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split `"provider:model"`, rejecting unknown providers with a message that lists the known ones."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"engine spec must look like 'provider:model' with provider in {PROVIDERS}, got {spec!r}")
    provider, model = spec.split(":", 1)
    if provider not in PROVIDERS:
        raise ValueError(f"unknown engine provider {provider!r} in spec {spec!r}; known providers: {PROVIDERS}")
    if not model:
        raise ValueError(f"engine spec {spec!r} names no model after {provider + ':'!r}")
    return provider, model


_cache: dict[tuple[str, str], Engine] = {}
_cache_lock = threading.Lock()


def load_engine(spec: str | Engine | Any, role: Role, *, cache: bool = True, **kwargs: Any) -> Engine:
    """Resolve a spec (or pass an instance through) to an `Engine` for `role`.

    Engines built from strings are cached per (spec, role), so swapping a reasoner per call costs one load the
    first time and nothing after. `kwargs` go to the provider's constructor (device, dtype, timeouts, ...).
    """
    if isinstance(spec, Engine):
        return spec
    if not isinstance(spec, str):
        from rapid_agent.backends.langchain import LangChainEngine, is_chat_model

        if is_chat_model(spec):
            if role != "reasoner":
                raise ValueError("a LangChain chat model can only serve as the reasoner, not the captioner")
            return LangChainEngine(spec)
        raise TypeError(
            f"engine must be a spec string, an Engine or a LangChain BaseChatModel, got {type(spec).__name__}"
        )
    if role not in ("captioner", "reasoner"):
        raise ValueError(f"role must be 'captioner' or 'reasoner', got {role!r}")
    provider, model = parse_spec(spec)
    key = (spec, role)
    with _cache_lock:
        if cache and key in _cache and not kwargs:
            return _cache[key]
        engine = _build(provider, model, role, **kwargs)
        engine.spec = spec
        if cache and not kwargs:
            _cache[key] = engine
    return engine


def _build(provider: str, model: str, role: Role, **kwargs: Any) -> Engine:
    if provider == "hf":
        from rapid_agent.backends.hf import HFEngine

        return HFEngine(model, role=role, **kwargs)
    if provider == "vllm":
        from rapid_agent.backends.vllm import VLLMEngine

        return VLLMEngine(model, role=role, **kwargs)
    from rapid_agent.backends.openai import OpenAIEngine

    name, sep, base_url = model.partition("@")
    if not sep or not name or not base_url:
        raise ValueError(f"openai spec must look like 'openai:<model>@<base url>', got 'openai:{model}'")
    return OpenAIEngine(name, base_url=base_url, role=role, **kwargs)


def clear_engine_cache() -> None:
    """Close and forget every cached engine (frees the models)."""
    with _cache_lock:
        for engine in _cache.values():
            engine.close()
        _cache.clear()
