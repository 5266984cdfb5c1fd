"""Built-in model names usable in place of a path (`hf:smollm2-135m-instruct`), each with a function giving its
local path. `rapid_agent.models` registers the built-in ones; the registry lives in the backends so that engines
never import the models package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

#: name (lower case) -> function that gives the model's local path
BUILTIN_MODELS: dict[str, Callable[[], Path]] = {}


def register_builtin_model(name: str, locate: Callable[[], Path]) -> None:
    BUILTIN_MODELS[name.lower()] = locate


def builtin_model_path(name: str) -> Path | None:
    """The local path of a built-in model name, or None when `name` is not one."""
    locate = BUILTIN_MODELS.get(name.lower())
    return locate() if locate is not None else None
