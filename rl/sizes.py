"""The sizes the planner needs of a model: parameters, and the shapes its activations and KV cache grow with.

A model whose `config.json` can be read here (a local directory, the built-in tiny one, a hub id in the local
cache) is measured: built on the meta device and its parameters counted. Otherwise its name is matched against the
models the paper recipes use, whose figures were measured the same way from their published configurations
(Qwen2.5-VL-{3,7,32,72}B-Instruct, DeepSeek-R1-Distill-Qwen-7B), so a plan needs no download; a stage's output
folder that does not exist yet (`runs/qwen2_5_vl_7b_grpo`) is known by the size in its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    """What memory scales with: parameters, and the language model's (and vision tower's) shapes."""

    name: str
    params: int
    layers: int
    hidden: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision_hidden: int = 0
    vision_depth: int = 0

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache of one token in bfloat16, over all layers (keys and values)."""
        return self.layers * 2 * self.kv_heads * self.head_dim * 2


def _vl(name: str, params: int, layers: int, hidden: int, kv_heads: int) -> ModelSize:
    return ModelSize(name, params, layers, hidden, kv_heads, 128, 151936, vision_hidden=1280, vision_depth=32)


#: measured on the meta device from each model's published configuration (transformers 5.25)
KNOWN: dict[str, ModelSize] = {
    "3b": _vl("Qwen2.5-VL-3B-Instruct", 3_754_622_976, 36, 2048, 2),
    "7b": _vl("Qwen2.5-VL-7B-Instruct", 8_291_249_152, 28, 3584, 4),
    "32b": _vl("Qwen2.5-VL-32B-Instruct", 33_446_981_632, 64, 5120, 8),
    "72b": _vl("Qwen2.5-VL-72B-Instruct", 73_404_254_208, 80, 8192, 8),
    "r1-7b": ModelSize("DeepSeek-R1-Distill-Qwen-7B", 7_615_616_512, 28, 3584, 4, 128, 152064),
}
_VL_NAME = re.compile(r"qwen2[._]?5[-_]?vl[-_](\d+)b", re.IGNORECASE)
_R1_NAME = re.compile(r"r1[-_]distill[-_]qwen[-_]7b", re.IGNORECASE)


def model_size(name: str) -> ModelSize:
    """The sizes of `name` (a spec's model part, a path or a hub id); raises ValueError when it is unknown."""
    measured = _measure(name)
    if measured is not None:
        return measured
    if _R1_NAME.search(name):
        return KNOWN["r1-7b"]
    match = _VL_NAME.search(name)
    if match and f"{match.group(1)}b" in KNOWN:
        return KNOWN[f"{match.group(1)}b"]
    raise ValueError(
        f"cannot size the model {name!r}: give a local directory (its config.json is read) or one of the paper's "
        f"models ({', '.join(s.name for s in KNOWN.values())})"
    )


def _measure(name: str) -> ModelSize | None:
    """Count the parameters of a model whose config can be read offline, on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from rapid_agent.rl.models import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError):
        return None
    vision = getattr(config, "vision_config", None)
    text = getattr(config, "text_config", config)
    auto = AutoModelForImageTextToText if vision is not None else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    heads = text.num_attention_heads
    return ModelSize(
        name,
        sum(p.numel() for p in model.parameters()),
        text.num_hidden_layers,
        text.hidden_size,
        getattr(text, "num_key_value_heads", heads),
        getattr(text, "head_dim", None) or text.hidden_size // heads,
        text.vocab_size,
        vision_hidden=getattr(vision, "hidden_size", 0) if vision is not None else 0,
        vision_depth=getattr(vision, "depth", 0) if vision is not None else 0,
    )
