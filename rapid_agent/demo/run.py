"""`python -m rapid_agent demo`: world -> captioner (SFT, cached) -> table -> VPO (with and without the caption
penalty) -> table again -> stronger reasoners on the same captions -> report.

    run_demo(out_dir="reports/demo", quick=False, seeds=2)

Every table row is a run of `rapid_agent.eval`'s runner over the world adapter's held-out split (`rows`), recorded
in the report folder (`results.jsonl`, `perceptions.jsonl`, started afresh by each demo run) and counted by its
summary. Every step has a progress bar; the table is printed at the end with the report's location. The demo reports
what it measures: nothing in it checks that the numbers agree with the paper.
"""

from __future__ import annotations

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

from rapid_agent.backends import Engine, load_engine
from rapid_agent.demo import measure, report, rows
from rapid_agent.demo.captioner import ensure_captioner
from rapid_agent.demo.config import SCRATCH, DemoConfig
from rapid_agent.eval.adapters.world import World
from rapid_agent.eval.store import PERCEPTIONS, RESULTS, kind_files

logger = logging.getLogger(__name__)

DEFAULT_OUT = "reports/demo"
#: the bundled reasoner, named by its spec (the report never shows an install path)
DEFAULT_REASONER = "hf:smollm2-135m-instruct"
#: the stages of the table: the SFT captioner, VPO with the caption penalty, VPO without it
SFT, VPO, NO_PENALTY = "sft", "vpo", "vpo-no-penalty"


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
    if seeds is not None:
        overrides["seeds"] = seeds
    config = dataclasses.replace(config, **overrides) if config else DemoConfig.preset(quick, **overrides)
    with quiet_libraries():
        return _run(Path(out_dir).expanduser(), config, quick=quick, cache_dir=cache_dir, progress=progress)


class _Stages:
    """The outer progress bar, and the wall and CPU seconds of each stage."""

    def __init__(self, total: int, progress: bool) -> None:
        self.bar = tqdm(total=total, desc="demo", unit="stage", disable=not progress)
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.start_wall = self.last_wall = time.perf_counter()
        self.start_cpu = self.last_cpu = time.process_time()

    def begin(self, name: str) -> None:
        self.bar.set_postfix_str(name)

    def end(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[name] = self.wall.get(name, 0.0) + wall - self.last_wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - self.last_cpu
        self.last_wall, self.last_cpu = wall, cpu
        self.bar.update(1)

    def close(self) -> dict[str, dict[str, float]]:
        self.wall["total"] = time.perf_counter() - self.start_wall
        self.cpu["total"] = time.process_time() - self.start_cpu
        self.bar.close()
        return {"wall_s": self.wall, "cpu_s": self.cpu}


def _measure(captioner: Engine, test_items: list[dict], config: DemoConfig, *, descriptions: bool) -> dict[str, Any]:
    """A captioner's styles in the VPO mode and its verdicts as the judge (and, when `descriptions`, its greedy
    descriptions), measured in this run on the table's test split (for the cached SFT captioner too, so that every
    stage is measured with this run's settings and items)."""
    styles = measure.styles(
        captioner, test_items, config, samples=config.style_samples, temperature=config.vpo_temperature
    )
    found = {"styles": styles, "judge": measure.judge(captioner, test_items, config)}
    if descriptions:
        found["descriptions"] = measure.descriptions(captioner, test_items, config)
    return found


def _run(out: Path, config: DemoConfig, *, quick: bool, cache_dir: str | Path | None, progress: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for path in kind_files(out, RESULTS) + kind_files(out, PERCEPTIONS):  # a run's records are its own
        path.unlink()
    runs = [(VPO, config.vpo_caption_penalty)] + ([(NO_PENALTY, 0.0)] if config.vpo_compare_penalty else [])
    runs = runs if config.vpo_steps > 0 else []
    stages = _Stages(4 + 3 * len(runs) + 1, progress)

    stages.begin("world")
    world = config.build_world()
    # the world seed's own test split (every tuning run measured it) serves the cache's checks and the VPO curves;
    # the table and the report's measurements are on the held-out split of `test_seed`
    train_items, development = list(world["train"]), list(world["test"])
    test_items = config.test_items()
    adapter = World.from_items(test_items, label=rows.BENCHMARK)
    stages.end("world")

    stages.begin("captioner")
    captioner_dir, manifest, built = ensure_captioner(
        config, train_items, development, cache_root=cache_dir, progress=progress
    )
    stages.end("captioner")

    stages.begin("loading the reasoner")
    spec = config.reasoner or DEFAULT_REASONER
    reasoner = load_engine(spec, "reasoner")
    reasoner.max_batch_size = config.reasoner_batch_size
    captioner = load_engine(f"hf:{captioner_dir}", "captioner", max_batch_size=64)
    stages.end("load reasoner")

    stages.begin("evaluating the SFT captioner")
    rows.evaluate_stage(out, config, adapter, SFT, captioner, reasoner, alone=True, progress=progress)
    measured = _measure(captioner, test_items, config, descriptions=True)
    checks: dict[str, dict[str, Any]] = {SFT: {**manifest.get("info", {}), **measured}}
    stages.end("evaluate SFT")

    vpo_info: dict[str, dict[str, Any]] = {}
    probe_items = development[: config.curve_items]
    for stage, penalty in runs:
        from rapid_agent.demo.vpo import run_vpo

        stages.begin(stage)
        vpo_info[stage] = run_vpo(
            config,
            captioner=captioner_dir,
            reasoner=reasoner,
            reasoner_spec=spec,
            train_items=world["train"].select(range(min(len(train_items), config.vpo_train_items))),
            probe_items=probe_items,
            output_dir=out / stage,
            penalty=penalty,
            progress=progress,
        )
        stages.end(stage)
        stages.begin(f"evaluating {stage}")
        trained = load_engine(f"hf:{vpo_info[stage]['captioner']}", "captioner", max_batch_size=64)
        rows.evaluate_stage(out, config, adapter, stage, trained, reasoner, alone=False, progress=progress)
        stages.end(f"evaluate {stage}")
        stages.begin(f"measuring {stage}")
        checks[stage] = _measure(trained, test_items, config, descriptions=False)
        stages.end(f"measure {stage}")

    stages.begin("stronger reasoners")
    if runs:  # the stronger reasoner of the trained captioner's captions (the world's solver ran beside each stage)
        rows.majority_row(out, config, adapter, VPO, reasoner, progress=progress)
    stages.end("stronger reasoners")

    from rapid_agent.demo.trace import trace_one_run

    item = test_items[0]
    sample = {k: item[k] for k in ("id", "question", "image", "answer", "choices")}
    trace_one_run(
        sample, rows.context(config, captioner, reasoner).replace(mode=config.vpo_mode), out / report.TRACE_JSONL
    )

    timings = stages.close()
    summary = {
        "config": config.as_dict(),
        "quick": quick,
        "reasoner": spec,
        "captioner": f"demo captioner {manifest.get('key', '?')} (tiny Qwen2.5-VL: "
        + ("random weights" if config.captioner_base == SCRATCH else f"pretrained base {config.captioner_base!r}")
        + " + SFT here)",
        "captioner_built": built,
        "checks": checks,
        "vpo": {
            stage: {k: str(v) if isinstance(v, Path) else v for k, v in info.items()}
            for stage, info in vpo_info.items()
        },
        "timings": timings,
    }
    summary |= report.write_report(out, config, summary, test_items)
    print((out / report.TABLE_MD).read_text())
    print(f"report: {out.resolve()} (README.md, {report.EXAMPLES_HTML}, ...) in {timings['wall_s']['total']:.0f} s")
    return summary
