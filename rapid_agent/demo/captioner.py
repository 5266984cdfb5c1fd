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
from tqdm.auto import tqdm

from rapid_agent.demo import base, measure, mixture, sft
from rapid_agent.demo.cache import MANIFEST, config_key, default_cache_root, ensure_entry
from rapid_agent.demo.config import SCRATCH, DemoConfig
from rapid_agent.world import COLOURS, SHAPES

logger = logging.getLogger(__name__)

#: sub-folder of a cache entry that holds the model and processor
MODEL_DIR = "captioner"


def new_captioner(folder: Path, corpus_items: Sequence[dict], config: DemoConfig) -> Path:
    """A random captioner of `config`'s sizes saved under `folder`, with a BPE tokenizer fitted to the texts of
    `corpus_items` (so the demo's prompts and targets encode compactly)."""
    from rapid_agent.models import build_tiny_qwen2_5_vl, build_tokenizer

    tokenizer = build_tokenizer(mixture.corpus(corpus_items, config.prompts), vocab_size=config.vocab_size)
    return build_tiny_qwen2_5_vl(
        folder,
        tokenizer=tokenizer,
        text_hidden=config.text_hidden,
        layers=config.layers,
        heads=config.heads,
        kv_heads=config.kv_heads,
        vision_depth=config.vision_depth,
        vision_hidden=config.vision_hidden,
        seed=config.sft_seed,
        # the world's images pass through unscaled: one visual token per 28-pixel cell
        min_pixels=config.image_size**2,
        max_pixels=config.image_size**2,
    )


def plan(items: Sequence[dict], config: DemoConfig) -> list[mixture.Example]:
    """The SFT mixture of `items` as `config` weighs it, drawn with `config.sft_seed`."""
    return mixture.plan(
        items,
        prompts=config.prompts,
        style_weights=dict(config.sft_styles),
        style_examples=config.sft_style_examples,
        judge_examples=config.sft_judge_examples,
        solution_levels=config.sft_solution_levels,
        seed=config.sft_seed,
    )


def fit(
    model: Any,
    processor: Any,
    items: Sequence[dict],
    taught: Sequence[mixture.Example],
    config: DemoConfig,
    *,
    steps: int,
    lr: float,
    seed: int,
    desc: str = "captioner SFT",
    auxiliary: bool = True,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> sft.SFTResult:
    """Train `model` on the examples `taught` (image indices into `items`), with the auxiliary cell and count
    losses of `sft.py` weighted as `config` says when `auxiliary` (their heads start random each time: on a model
    that already perceives, their first gradients only disturb it)."""
    tokenizer = processor.tokenizer
    encoder = sft.Encoder(processor)
    examples, pixels, grids = sft.build_examples(items, taught, encoder)
    cells = sft.token_cells(grids, encoder.merge, config.grid)
    targets = [torch.tensor(sft.cell_labels(item, config.grid))[c] for item, c in zip(items, cells)]
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False)

    def step_done(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if on_step is not None:
            on_step(step, loss)

    try:
        return sft.train(
            model,
            examples,
            pixels,
            grids,
            pad_id=tokenizer.pad_token_id,
            steps=steps,
            batch_size=config.sft_batch_size,
            lr=lr,
            seed=seed,
            token_targets=targets,
            aux_weight=config.sft_aux_weight if auxiliary else 0.0,
            image_counts=[sft.count_labels(item, config.grid) for item in items],
            count_weight=config.sft_count_weight if auxiliary else 0.0,
            count_layer=max(0, model.config.text_config.num_hidden_layers // 2 - 1),
            max_count=config.max_objects,
            digit_ids=[
                i for t, i in tokenizer.get_vocab().items() if tokenizer.convert_tokens_to_string([t]).isdigit()
            ],
            digit_weight=config.sft_digit_weight,
            num_cell_classes=1 + len(COLOURS) * len(SHAPES),
            on_step=step_done,
        )
    finally:
        bar.close()


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
        path, base_info = new_captioner(folder / MODEL_DIR, train_items, config), {"base": SCRATCH}
    else:
        base_dir, base_info = base.resolve(config)
        path = folder / MODEL_DIR
        shutil.copytree(base_dir, path, ignore=shutil.ignore_patterns(MANIFEST))
    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    taught = plan(train_items, config)
    result = fit(
        model,
        processor,
        train_items,
        taught,
        config,
        steps=config.sft_steps,
        lr=config.sft_lr,
        seed=config.sft_seed,
        auxiliary=config.captioner_base == SCRATCH,  # a base already perceives (see `fit`)
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
    key = config_key({**config.captioner_key_fields(), "base_weights": base.fingerprint(config)})

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
