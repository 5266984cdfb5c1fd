"""Engines behind one interface, chosen by a `"provider:model"` spec string.

    hf:<hub id | local dir | file.gguf>     transformers, in process
    vllm:<hub id | local dir>               vLLM's offline engine, in process (optional extra `rapid-agent[vllm]`)
    openai:<model>@<base url>               any OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI)

A reasoner may also be any LangChain `BaseChatModel` instance, and either role may be an `Engine` instance (the
stand-ins in `rapid_agent.backends.stand_in` are for tests). Providers are imported only when used.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Mapping
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
from rapid_agent.backends.builtin import BUILTIN_MODELS, builtin_model_path, register_builtin_model

PROVIDERS = ("hf", "vllm", "openai")

__all__ = [
    "CAPTIONER_DEFAULTS",
    "PROVIDERS",
    "REASONER_DEFAULTS",
    "BUILTIN_MODELS",
    "BackendUnavailableError",
    "ChatRequest",
    "Completion",
    "Engine",
    "EngineError",
    "GenerationConfig",
    "Role",
    "aload_engine",
    "builtin_model_path",
    "load_engine",
    "register_builtin_model",
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


_cache: dict[tuple[str, str, str], Engine] = {}
_chat_engines: dict[tuple[int, str], tuple[weakref.ref, Engine]] = {}
_cache_lock = threading.Lock()


def options_key(options: Mapping[str, Any]) -> str:
    """A stable, hashable form of engine options (the cache tells engines with different options apart)."""
    return json.dumps(dict(options), sort_keys=True, default=repr)


def load_engine(spec: str | Engine | Any, role: Role, *, cache: bool = True, **options: Any) -> Engine:
    """Resolve a spec (or pass an instance through) to an `Engine` for `role`.

    Engines built from strings are cached per (spec, role, options), so swapping a reasoner per call costs one load
    the first time and nothing after. `options` go to the provider's constructor: the one mechanism for engine
    settings of every kind (hf: device, dtype, device_map, max_batch_size; vllm: anything `vllm.LLM` takes;
    openai: timeouts, concurrency, retries, extra_body). An option the provider does not know is an error naming it.
    """
    if isinstance(spec, Engine):
        return spec
    if not isinstance(spec, str):
        from rapid_agent.backends.langchain import LangChainEngine, is_chat_model

        if is_chat_model(spec):
            if role != "reasoner":
                raise ValueError("a LangChain chat model can only serve as the reasoner, not the captioner")
            # one engine per chat model (and options), so every run that uses the model shares its micro-batcher
            key = (id(spec), options_key(options))
            with _cache_lock:
                for stale in [k for k, (ref, _) in _chat_engines.items() if ref() is None]:
                    del _chat_engines[stale]
                if key not in _chat_engines or _chat_engines[key][0]() is not spec:
                    _chat_engines[key] = (weakref.ref(spec), LangChainEngine(spec, **options))
                return _chat_engines[key][1]
        raise TypeError(
            f"engine must be a spec string, an Engine or a LangChain BaseChatModel, got {type(spec).__name__}"
        )
    if role not in ("captioner", "reasoner"):
        raise ValueError(f"role must be 'captioner' or 'reasoner', got {role!r}")
    provider, model = parse_spec(spec)
    key = (spec, role, options_key(options))
    with _cache_lock:
        if cache and key in _cache:
            return _cache[key]
        engine = _build(provider, model, role, **options)
        engine.spec = spec
        if cache:
            _cache[key] = engine
    return engine


async def aload_engine(spec: str | Engine | Any, role: Role, *, cache: bool = True, **options: Any) -> Engine:
    """`load_engine` for event loops: an `Engine` passes straight through; anything else resolves in a worker
    thread, since a first load imports its provider and loads weights, and a cached one waits on the lock a load in
    another thread may hold. A server's loop (`langgraph dev` refuses blocking calls on it) keeps serving meanwhile.
    An engine found in the cache while no load holds the lock comes back at once, on the loop."""
    if isinstance(spec, Engine):
        return spec
    if cache and isinstance(spec, str) and _cache_lock.acquire(blocking=False):  # loaded already: no thread hop
        try:
            engine = _cache.get((spec, role, options_key(options)))
        finally:
            _cache_lock.release()
        if engine is not None:
            return engine
    return await asyncio.to_thread(load_engine, spec, role, cache=cache, **options)


def _build(provider: str, model: str, role: Role, **options: Any) -> Engine:
    if provider == "hf":
        try:
            from rapid_agent.backends.hf import HFEngine as cls
        except ImportError as exc:  # the light core has no torch: say which extra brings it
            from rapid_agent.extras import missing_extra

            raise missing_extra("hf", f"the engine {provider}:{model}", exc) from exc
    elif provider == "vllm":
        from rapid_agent.backends.vllm import VLLMEngine as cls
    else:
        from rapid_agent.backends.openai import OpenAIEngine as cls

        name, sep, base_url = model.partition("@")
        if not sep or not name or not base_url:
            raise ValueError(f"openai spec must look like 'openai:<model>@<base url>', got 'openai:{model}'")
        model, options = name, {"base_url": base_url, **options}
    _check_options(cls, provider, options)
    return cls(model, role=role, **options)


def _check_options(cls: type, provider: str, options: Mapping[str, Any]) -> None:
    """Reject an option the engine's constructor does not take, naming it and the ones it does (a typo in a recipe
    must not surface as a TypeError deep inside a model load)."""
    import inspect

    known = getattr(cls, "known_options", None)  # an engine that takes **options names them itself
    if known is None:
        params = inspect.signature(cls.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return  # e.g. vLLM passes everything on to vllm.LLM, which checks its own arguments
        known = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "role"]
    known = sorted(set(known) - {"base_url"})  # the spec gives it
    unknown = sorted(set(options) - set(known) - {"base_url"})
    if unknown:
        raise ValueError(f"unknown {provider!r} engine option(s) {unknown}; known options: {known}")


def clear_engine_cache() -> None:
    """Close and forget every cached engine (frees the models)."""
    with _cache_lock:
        for engine in _cache.values():
            engine.close()
        _cache.clear()
