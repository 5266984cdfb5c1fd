"""The captioner to train, the reasoner spec, and what of the captioner trains (LoRA, vision tower).

`model_name_or_path` is a hub id, a local directory, or the built-in `tiny-qwen2.5-vl`: a tiny random Qwen2.5-VL
built offline into the cache (`$RAPID_AGENT_CACHE`, default `~/.cache/rapid_agent`) the first time it is asked for,
and rebuilt when the cached copy does not load. Its tokenizer is trained on our prompts and the synthetic world's
texts so that prompts stay short. Building happens under a file lock so that several processes agree on one copy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from rapid_agent.rl.config import TINY_CAPTIONER, RapidRLConfig

logger = logging.getLogger(__name__)

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")


def cache_root() -> Path:
    return Path(os.environ.get("RAPID_AGENT_CACHE", "~/.cache/rapid_agent")).expanduser()


def _loads(path: Path) -> bool:
    """Whether a cached captioner directory is complete: config, processor and weights all load."""
    try:
        from safetensors import safe_open
        from transformers import AutoConfig

        from rapid_agent.backends.hf import load_processor

        AutoConfig.from_pretrained(path)
        load_processor(path)
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            return False
        for file in weights:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key)
        return True
    except Exception as exc:  # any failure means "rebuild", and the reason goes to the log
        logger.warning("cached model %s does not load (%s: %s); rebuilding it", path, type(exc).__name__, exc)
        return False


def _tokenizer_corpus() -> list[str]:
    from rapid_agent.perception import MODES, captioner_prompt
    from rapid_agent.world import generate_items

    items = generate_items(64, seed=1234)
    prompts = [captioner_prompt(m, it["question"]) or "" for it in items[:32] for m in MODES]
    return prompts + [it["description"] for it in items] + [it["solution"] for it in items]


def ensure_tiny_captioner(path: Path | None = None) -> Path:
    """The built-in tiny Qwen2.5-VL, built (or rebuilt) under a lock when missing or broken."""
    from rapid_agent.models import build_tiny_qwen2_5_vl, build_tokenizer, ensure_built

    path = path or cache_root() / "models" / TINY_CAPTIONER
    if ensure_built(
        path,
        lambda staging: build_tiny_qwen2_5_vl(staging, tokenizer=build_tokenizer(corpus=_tokenizer_corpus())),
        _loads,
    ):
        logger.info("built %s into %s", TINY_CAPTIONER, path)
    return path


def resolve_model_path(name: str) -> str:
    return str(ensure_tiny_captioner()) if name == TINY_CAPTIONER else name


def _dtype(config: RapidRLConfig) -> torch.dtype:
    if config.model_dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, config.model_dtype)


def load_captioner(config: RapidRLConfig) -> tuple[Any, Any]:
    """The policy model and its processor (left padding, as TRL requires), with the vision tower frozen if asked."""
    from transformers import AutoModelForImageTextToText

    from rapid_agent.backends.hf import load_processor

    path = resolve_model_path(config.model_name_or_path)
    processor = load_processor(path, trust_remote_code=config.trust_remote_code)
    processor.tokenizer.padding_side = "left"
    if config.max_pixels is not None:
        image_processor = processor.image_processor
        image_processor.max_pixels = config.max_pixels
        if isinstance(getattr(image_processor, "size", None), dict) and "longest_edge" in image_processor.size:
            image_processor.size = {**image_processor.size, "longest_edge": config.max_pixels}
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=_dtype(config), trust_remote_code=config.trust_remote_code
    )
    if config.freeze_vision_tower and not config.use_peft:
        for param in vision_tower(model).parameters():
            param.requires_grad_(False)
    return model, processor


def _vision_tower_entry(model: Any) -> tuple[str, torch.nn.Module]:
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return name, module
    raise ValueError(f"{type(model).__name__} has no module named any of {VISION_TOWER_NAMES}")


def vision_tower(model: Any) -> torch.nn.Module:
    """The vision encoder of a vision-language model (Qwen's `visual`, LLaVA's `vision_tower`, ...)."""
    return _vision_tower_entry(model)[1]


def peft_config(config: RapidRLConfig, model: Any) -> Any:
    """LoRA on the language model's linear layers only; the vision tower is frozen or fully trained alongside."""
    if not config.use_peft:
        return None
    from peft import LoraConfig

    towers = "|".join(VISION_TOWER_NAMES)
    targets = "|".join(config.lora_target_modules)
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=rf"^(?!.*\b(?:{towers})\b).*\.(?:{targets})$",
        modules_to_save=None if config.freeze_vision_tower else [_vision_tower_entry(model)[0].rsplit(".", 1)[-1]],
        task_type="CAUSAL_LM",
    )
