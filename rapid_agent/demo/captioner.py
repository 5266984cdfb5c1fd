"""The demo's captioner: built, trained (SFT) and measured once per configuration, then loaded from the cache.

`ensure_captioner` returns the folder of a trained tiny Qwen2.5-VL that `load_engine("hf:<folder>", "captioner")`
loads. The first call trains it (a few minutes on 2 CPU cores for the full preset) into
`<cache root>/<config hash>/`; later calls check the cached files against their manifest and reuse them, or
rebuild when anything is missing, truncated or altered.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from rapid_agent.demo import base, measure, sft
from rapid_agent.demo.cache import MANIFEST, default_cache_root, ensure_entry
from rapid_agent.demo.config import SCRATCH, DemoConfig
from rapid_agent.hashing import config_hash

logger = logging.getLogger(__name__)

#: sub-folder of a cache entry that holds the model and processor
MODEL_DIR = "captioner"


def train_captioner(
    folder: Path, train_items: Sequence[dict], held_out: Sequence[dict], config: DemoConfig, *, progress: bool = True
) -> dict[str, Any]:
    """The captioner's starting point (the bundled perception base, or a random model), SFT on the mixture and
    its held-out descriptions checked; saves the captioner under `folder/MODEL_DIR`. (Its styles and its verdicts as
    the judge are measured by each run that uses it, `demo.run`, with that run's measurement settings.)"""
    import transformers
    from transformers import AutoModelForImageTextToText

    from rapid_agent.backends.hf import load_processor

    transformers.logging.set_verbosity_error()  # weight-loading reports of a model we just built say nothing new
    started = time.perf_counter()
    if config.captioner_base == SCRATCH:
        path, base_info = sft.new_captioner(folder / MODEL_DIR, train_items, config), {"base": SCRATCH}
    else:
        base_dir, base_info = base.resolve(config)
        path = folder / MODEL_DIR
        shutil.copytree(base_dir, path, ignore=shutil.ignore_patterns(MANIFEST))
    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    taught = sft.mixture_plan(train_items, config)
    result = sft.fit(
        model,
        processor,
        train_items,
        taught,
        config,
        steps=config.sft_steps,
        lr=config.sft_lr,
        seed=config.sft_seed,
        auxiliary=config.captioner_base == SCRATCH,  # a base already perceives (see `sft.fit`)
        progress=progress,
    )
    sft.save(model, processor, path)
    checks = measure_captioner(model, processor, held_out, config)
    tail = result.losses[-20:]
    return {
        "config": config.captioner_key_fields(),
        **base_info,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(processor.tokenizer),
        "examples": len(taught),
        "examples_per_task": dict(Counter(e.task for e in taught)),
        "sft_steps": result.steps,
        "sft_seconds": result.seconds,
        "sft_final_loss": sum(tail) / max(len(tail), 1),
        "build_seconds": time.perf_counter() - started,
        **checks,
    }


def measure_captioner(model: Any, processor: Any, held_out: Sequence[dict], config: DemoConfig) -> dict[str, Any]:
    """The trained captioner's held-out descriptions against the world's truth."""
    from rapid_agent.backends.hf import HFEngine

    engine = HFEngine.from_model(model, processor, role="captioner", spec="sft-captioner", max_batch_size=64)
    return {"descriptions": measure.descriptions(engine, held_out, config)}


def ensure_captioner(
    config: DemoConfig,
    train_items: Sequence[dict],
    held_out: Sequence[dict],
    *,
    cache_root: str | Path | None = None,
    progress: bool = True,
    on_rebuild: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """(model folder, manifest, trained now) for `config`'s captioner, from the cache when it can be trusted."""
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    key = config_hash({**config.captioner_key_fields(), "base_weights": base.fingerprint(config)})

    def rebuild(reason: str) -> None:
        logger.warning("cached captioner %s is not trusted (%s); rebuilding it", root / key, reason)
        if on_rebuild is not None:
            on_rebuild(reason)

    folder, manifest, built = ensure_entry(
        root,
        key,
        lambda staging: train_captioner(staging, train_items, held_out, config, progress=progress),
        on_rebuild=rebuild,
    )
    return folder / MODEL_DIR, manifest, built
