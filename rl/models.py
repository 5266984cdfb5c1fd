"""The captioner to train and what of it trains (LoRA, vision tower), in float32 master weights.

`model_name_or_path` is a hub id, a local directory, a LoRA adapter folder (a PEFT run's output: merged into its base
model once, into a checkpoint of its own, so stage 2 and its KL reference start from stage 1), or the built-in `tiny-qwen2.5-vl`: a tiny random
Qwen2.5-VL built offline into the cache (`$RAPID_AGENT_CACHE`, default `~/.cache/rapid_agent`) the first time it is
asked for, and rebuilt when the cached copy does not load. Building happens under a file lock so that several
processes agree on one copy. `demo-base` is the demo's tiny Qwen2.5-VL that already perceives the synthetic world
(shipped in the package, `rapid_agent/demo/pretrained`): the tiny recipes start from it, so their reward can move.

Precision: the parameters the optimizer updates are float32 (`bf16: true` then computes in bfloat16 under autocast).
With bfloat16 parameters an AdamW step at lr 1e-6 changes only the few weights whose magnitude is below ~1e-4 (its
8-bit mantissa cannot hold a relative change of 1e-6 elsewhere), so training would silently stand still. Half-precision
parameters are allowed only under DeepSpeed, whose optimizer keeps float32 master copies itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from rapid_agent.backends.pixels import DEFAULT_MAX_PIXELS, cap_pixel_budget
from rapid_agent.hashing import config_hash
from rapid_agent.rl.config import TINY_CAPTIONER, RapidRLConfig

logger = logging.getLogger(__name__)

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")
#: the demo's perceiving base, a folder of data shipped in the package (found by path: nothing of the demo is imported)
DEMO_BASE = "demo-base"


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


def demo_base_path() -> Path:
    """The folder of the demo's shipped perceiving base (`python -m rapid_agent.demo.base` writes it)."""
    import rapid_agent

    path = Path(rapid_agent.__file__).parent / "demo" / "pretrained"
    if not (path / "model.safetensors").is_file():
        raise ValueError(
            f"model_name_or_path {DEMO_BASE!r}: the demo's base is missing from {path} (an install without package "
            "data?); rebuild it with python -m rapid_agent.demo.base, or name a model folder"
        )
    return path


def resolve_model_path(name: str) -> str:
    """A built-in name's folder (`tiny-qwen2.5-vl`, built on first use; `demo-base`, shipped), or `name` as is."""
    if name == TINY_CAPTIONER:
        return str(ensure_tiny_captioner())
    return str(demo_base_path()) if name == DEMO_BASE else name


def uses_deepspeed(config: RapidRLConfig) -> bool:
    """Whether this run trains under DeepSpeed (a `deepspeed` config, or `accelerate launch` with a DeepSpeed plugin)."""
    if getattr(config, "deepspeed", None):
        return True
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def master_dtype(config: RapidRLConfig) -> torch.dtype:
    """The dtype the trained parameters are loaded in: float32 (the master weights) unless DeepSpeed keeps them."""
    if config.model_dtype in ("auto", "float32"):
        return torch.float32
    if not uses_deepspeed(config):
        raise ValueError(
            f"model_dtype {config.model_dtype!r} trains without float32 master weights: an AdamW step at lr "
            f"{config.learning_rate:g} cannot move most half-precision weights. Use model_dtype 'auto' (float32 "
            "parameters; `bf16: true` computes in bfloat16 under autocast), or train under DeepSpeed (e.g. "
            "rl/recipes/accelerate/zero2.yaml), whose optimizer keeps float32 masters."
        )
    return getattr(torch, config.model_dtype)


def pixel_budget(config: RapidRLConfig) -> int:
    """The pixel budget of a run: `max_pixels`, or the library's (what inference decodes images to)."""
    return config.max_pixels or DEFAULT_MAX_PIXELS


def adapter_base(path: str | Path) -> str | None:
    """The base model a LoRA adapter folder was trained on, or None when `path` is not an adapter folder."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        return None
    import json

    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_file} names no base_model_name_or_path; cannot load the adapter's base model")
    return str(base)


def merged_checkpoint(adapter: str | Path, *, trust_remote_code: bool = False) -> Path:
    """A LoRA adapter folder merged into its base model, saved once as a plain checkpoint in the cache
    (`$RAPID_AGENT_CACHE/merged/`, rebuilt when the adapter's files change) and returned.

    Why a checkpoint of its own: the next stage then loads it like any model, so under ZeRO-3 transformers partitions
    it as it loads, after the merge (merging onto a model built under zero.Init would add the LoRA update to empty
    shards), and TRL builds the KL reference from the policy's `config._name_or_path` (trl/trainer/grpo_trainer.py
    ~1003, `get_config_model_id`): that is this folder, the stage-1 weights, where a merge in memory left the base's
    name there and anchored VPO's beta to the base. The merge runs in float32, outside ZeRO-3's init, in one
    process per machine (the others wait on the lock); the checkpoint is the size of float32 weights."""
    from transformers import AutoModelForImageTextToText

    from rapid_agent.backends.hf import load_processor
    from rapid_agent.models import ensure_built
    from rapid_agent.rl.zero3 import outside_zero3_init

    adapter = Path(adapter).resolve()
    base = resolve_model_path(str(adapter_base(adapter)))
    stamp = [str(adapter), base] + [
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(adapter.glob("adapter_*"))
    ]
    digest = config_hash(stamp)
    path = cache_root() / "merged" / f"{adapter.name}-{digest}"

    def build(staging: Path) -> None:
        from peft import PeftModel

        with outside_zero3_init():
            model = AutoModelForImageTextToText.from_pretrained(
                base, dtype=torch.float32, trust_remote_code=trust_remote_code
            )
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        model.save_pretrained(staging)
        processor_files = ("preprocessor_config.json", "processor_config.json")
        has_processor = any((adapter / f).is_file() for f in processor_files)
        load_processor(adapter if has_processor else base, trust_remote_code=trust_remote_code).save_pretrained(
            staging
        )

    if ensure_built(path, build, _loads):
        logger.info("merged the LoRA adapter %s into its base model %s: %s", adapter, base, path)
    return path


def load_captioner(config: RapidRLConfig) -> tuple[Any, Any]:
    """The policy model and its processor (left padding, as TRL requires), with the vision tower frozen if asked.
    A LoRA adapter folder (the output of a `use_peft` stage) comes back merged into its base model, loaded from the
    merged checkpoint (`merged_checkpoint`), so the KL reference is the stage-1 weights too."""
    from transformers import AutoModelForImageTextToText

    from rapid_agent.backends.hf import load_processor

    path = resolve_model_path(config.model_name_or_path)
    if adapter_base(path) is not None:
        path = str(merged_checkpoint(path, trust_remote_code=config.trust_remote_code))
    processor = load_processor(path, trust_remote_code=config.trust_remote_code)
    processor.tokenizer.padding_side = "left"
    # the one pixel budget (see rapid_agent.backends.pixels): the engines cap their processors at the same one, so
    # a checkpoint saved with it is evaluated as it was trained
    cap_pixel_budget(processor, pixel_budget(config))
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=master_dtype(config), trust_remote_code=config.trust_remote_code
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
