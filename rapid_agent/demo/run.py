"""`python -m rapid_agent demo`: world -> captioner (SFT, cached) -> table -> VPO -> table again -> report.

    run_demo(out_dir="reports/demo", quick=False, seeds=2)

Every step has a progress bar; the table is printed at the end with the report's location. The demo reports what
it measures: nothing in it checks that the numbers agree with the paper.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.config import RapidContext
from rapid_agent.demo import report
from rapid_agent.demo.captioner import ensure_captioner
from rapid_agent.demo.config import DemoConfig
from rapid_agent.eval.evaluate import EvalResult, evaluate

logger = logging.getLogger(__name__)

DEFAULT_OUT = "reports/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (the CLI's `demo` sub-command)."""
    parser.add_argument("--quick", action="store_true", help="tiny everything: a minute or two (used in CI)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="report folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=None, help="reasoner seeds per row (default: 2, quick: 1)")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where trained captioners are cached (default: $RAPID_AGENT_DEMO_CACHE or ~/.cache/rapid_agent/demo)",
    )
    parser.add_argument("--reasoner", default=None, help="reasoner spec (default: the bundled SmolLM2-135M GGUF)")
    parser.add_argument("--vpo-steps", type=int, default=None, help="VPO steps (0 skips VPO)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.reasoner:
        overrides["reasoner"] = args.reasoner
    if args.vpo_steps is not None:
        overrides["vpo_steps"] = args.vpo_steps
    run_demo(
        out_dir=args.out,
        quick=args.quick,
        seeds=args.seeds,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        **overrides,
    )
    return 0


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """The demo draws its own progress bars; the libraries' bars and info logs would bury them. Restored after."""
    import datasets
    import transformers
    from transformers.utils import logging as hf_logging

    datasets_bars, hf_bars, verbosity = (
        datasets.is_progress_bar_enabled(),
        hf_logging.is_progress_bar_enabled(),
        hf_logging.get_verbosity(),
    )
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    # transformers' GGUF loader draws its de-quantizing bar with tqdm directly, past its own progress switch
    gguf = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    gguf_tqdm = gguf.tqdm
    gguf.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            # TRL asks the model a deprecated question every step; the answer is right, the warning is noise
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        gguf.tqdm = gguf_tqdm
        if datasets_bars:
            datasets.enable_progress_bars()
        if hf_bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


def _reasoner_spec(config: DemoConfig) -> str:
    if config.reasoner:
        return config.reasoner
    from rapid_agent.models import smollm2_gguf_path

    return f"hf:{smollm2_gguf_path()}"


def _context(config: DemoConfig, captioner: Any, reasoner: Any) -> RapidContext:
    temperature = config.reasoner_temperature
    return RapidContext(
        captioner=captioner,
        reasoner=reasoner,
        prompts=config.prompts,
        captioner_gen=GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=config.captioner_max_new_tokens),
        reasoner_gen=GenerationConfig(
            temperature=temperature,
            top_p=0.95 if temperature > 0 else 1.0,
            max_new_tokens=config.reasoner_max_new_tokens,
        ),
    )


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    quick: bool = False,
    seeds: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    config: DemoConfig | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the demo and write its report to `out_dir`; returns the summary (also saved as summary.json).

    `config` replaces the preset; `overrides` are `DemoConfig` fields applied on top of either."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with quiet_libraries():
        return _run(
            out_dir, quick=quick, seeds=seeds, cache_dir=cache_dir, progress=progress, config=config, **overrides
        )


def _run(
    out_dir: str | Path,
    *,
    quick: bool,
    seeds: int | None,
    cache_dir: str | Path | None,
    progress: bool,
    config: DemoConfig | None,
    **overrides: Any,
) -> dict[str, Any]:
    if seeds is not None:
        overrides["seeds"] = seeds
    config = dataclasses.replace(config, **overrides) if config else DemoConfig.preset(quick, **overrides)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    stages = tqdm(total=6, desc="demo", unit="stage", disable=not progress)

    def stage(name: str) -> None:
        timings[name] = time.perf_counter() - stage.last
        stage.last = time.perf_counter()
        stages.update(1)

    stage.last = started

    from rapid_agent.world import build_world

    stages.set_postfix_str("world")
    world = build_world(
        config.n_train,
        config.n_test,
        seed=config.world_seed,
        levels=config.levels,
        image_size=config.image_size,
        grid=config.grid,
        max_objects=config.max_objects,
    )
    train_items, test_items = list(world["train"]), list(world["test"])
    stage("world")

    stages.set_postfix_str("captioner")
    captioner_dir, manifest, built = ensure_captioner(
        config, train_items, test_items, cache_root=cache_dir, progress=progress
    )
    stage("captioner")

    stages.set_postfix_str("loading the reasoner")
    spec = _reasoner_spec(config)
    reasoner = load_engine(spec, "reasoner")
    reasoner.max_batch_size = config.reasoner_batch_size
    captioner = load_engine(f"hf:{captioner_dir}", "captioner", max_batch_size=64)
    stage("load reasoner")

    stages.set_postfix_str("evaluating the SFT captioner")
    context = _context(config, captioner, reasoner)
    seed_list = list(range(config.seeds))
    kw = {"end_to_end": True, "seeds": seed_list, "batch_size": config.reasoner_batch_size, "progress": progress}
    sft_eval = evaluate(test_items, context=context, modes=config.modes, description="table (SFT)", **kw)
    stage("evaluate SFT")

    vpo_eval: EvalResult | None = None
    vpo_info: dict[str, Any] = {}
    if config.vpo_steps > 0:
        from rapid_agent.demo.vpo import run_vpo

        stages.set_postfix_str("VPO")
        vpo_info = run_vpo(
            config,
            captioner=captioner_dir,
            reasoner=reasoner,
            reasoner_spec=spec,
            train_items=world["train"].select(range(min(len(train_items), 256))),
            output_dir=out / "vpo",
            progress=progress,
        )
        stage("VPO")
        stages.set_postfix_str("evaluating the VPO captioner")
        vpo_captioner = load_engine(f"hf:{vpo_info['captioner']}", "captioner", max_batch_size=64)
        context = context.replace(captioner=vpo_captioner)
        vpo_eval = evaluate(test_items, context=context, modes=config.vpo_eval_modes, description="table (VPO)", **kw)
        stage("evaluate VPO")
    else:
        stages.update(2)

    from rapid_agent.demo.trace import trace_one_run

    item = test_items[0]
    sample = {k: item[k] for k in ("id", "question", "image", "answer", "choices")}
    trace_one_run(sample, context.replace(mode=config.vpo_mode), out / report.TRACE_JSONL)

    results = {"sft": sft_eval, **({"vpo": vpo_eval} if vpo_eval is not None else {})}
    table = report.combined_table(sft_eval, vpo_eval)
    report.write_tables(out, sft_eval, vpo_eval)
    report.write_curves(out, vpo_info.get("metrics_csv"))
    report.write_examples(out, test_items, results, config.vpo_mode, config.n_examples)
    report.write_records(out, results)
    found = report.effects(sft_eval, vpo_eval, config.vpo_mode)
    timings["report"] = time.perf_counter() - stage.last
    timings["total"] = time.perf_counter() - started
    summary = {
        "config": config.as_dict(),
        "quick": quick,
        "reasoner": spec,
        "captioner_dir": str(captioner_dir),
        "captioner_built": built,
        "captioner": manifest.get("info", {}),
        "vpo": {k: str(v) if isinstance(v, Path) else v for k, v in vpo_info.items()},
        "timings": timings,
        "table": {stage: [dataclasses.asdict(s) for s in res.summary] for stage, res in results.items()},
        "effects": {
            k: [dataclasses.asdict(e) | {"beyond_noise": e.beyond_noise} for e in v] for k, v in found.items()
        },
    }
    report.write_readme(out, summary, table, found, report.level_table(results))
    report.write_summary(out, summary)
    stages.close()
    print(table)
    print(f"report: {out.resolve()} (README.md, {report.EXAMPLES_HTML}, ...) in {timings['total']:.0f} s")
    return summary
