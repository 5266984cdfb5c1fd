"""The demo's VPO step: a short GRPO run of the captioner against the frozen reasoner, through `rapid_agent.rl`.

The reward is `rapid_agent.rl`'s VPO reward: the reasoner's correctness from each sampled output, minus lambda for a
correct output whose caption the judge finds is no description. The judge is the policy itself (`judge: policy`,
as in the paper): the captioner was taught to answer `rapid_agent.rl.caption_judge`'s few-shot yes/no prompt as part of its
supervision. The reasoner sees the demo's prompts (`DemoConfig.prompts`), the same as in the evaluation.

`run_vpo` trains once with a given penalty; the demo runs it with the penalty and (full preset) without it, from
the same SFT captioner, to show what the penalty prevents. A callback samples the policy on held-out items every
few steps and records which styles it writes (`measure.styles`): the curves of the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapid_agent.backends import Engine
from rapid_agent.demo import measure
from rapid_agent.demo.config import DemoConfig

logger = logging.getLogger(__name__)

#: file (in a VPO run's folder) of the held-out style shares per step
STYLE_CURVE_CSV = "styles.csv"


def _vpo_config(
    config: DemoConfig, captioner: Path, output_dir: Path, reasoner_spec: str, penalty: float, **rl_options: Any
) -> Any:
    from rapid_agent.rl.config import VPOConfig

    settings = dict(
        model_name_or_path=str(captioner),
        output_dir=str(output_dir),
        mode=config.vpo_mode,
        reasoner=reasoner_spec,
        reasoner_temperature=config.reasoner_gen.temperature,
        reasoner_top_p=config.reasoner_gen.top_p,
        reasoner_max_new_tokens=config.reasoner_gen.max_new_tokens,
        reasoner_max_batch_size=config.reasoner_batch_size,
        strict_answers=config.strict_answers,  # scored as the demo's table scores (see the field's help)
        caption_penalty=penalty,
        judge="policy" if penalty > 0 else "off",
        num_generations=config.vpo_generations,
        per_device_train_batch_size=config.vpo_prompts_per_step * config.vpo_generations,
        gradient_accumulation_steps=1,
        max_completion_length=config.captioner_max_new_tokens,
        temperature=config.vpo_temperature,
        beta=config.vpo_beta,
        learning_rate=config.vpo_lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=config.vpo_steps,
        seed=config.sft_seed,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        plot_curves=False,
    )
    return VPOConfig(**{**settings, **rl_options})


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    from rapid_agent.rl.metrics import write_rows

    write_rows(path, rows)


def run_vpo(
    config: DemoConfig,
    *,
    captioner: Path,
    reasoner: Engine,
    reasoner_spec: str,
    train_items: Any,
    probe_items: Sequence[dict],
    output_dir: Path,
    penalty: float,
    progress: bool = True,
    rl_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with caption penalty `penalty` (0: no judge), save the captioner to `output_dir/captioner`, and return
    where things are, how long it took, and the held-out style shares before and after each measured step.
    `rl_options` are `VPOConfig` fields over the demo's (e.g. `dynamic_sampling`, or `seed` for another VPO seed)."""
    from tqdm.auto import tqdm
    from transformers import PrinterCallback, TrainerCallback

    from rapid_agent.backends.hf import HFEngine
    from rapid_agent.rl.data import prepare_dataset
    from rapid_agent.rl.metrics import METRICS_CSV
    from rapid_agent.rl.train import build_trainer

    output_dir.mkdir(parents=True, exist_ok=True)
    vpo_config = _vpo_config(config, captioner, output_dir, reasoner_spec, penalty, **(rl_options or {}))
    dataset, _ = prepare_dataset(train_items, mode=config.vpo_mode, templates=config.prompts)
    trainer = build_trainer(vpo_config, reasoner=reasoner, train_dataset=dataset, templates=config.prompts)
    curve: list[dict[str, Any]] = []
    label = f"VPO (penalty {penalty:g})"

    def record(step: int) -> None:
        engine = HFEngine.from_model(trainer.model, trainer.processing_class, role="captioner", spec="policy")
        found = measure.styles(
            engine,
            probe_items,
            config,
            samples=config.curve_samples,
            temperature=config.vpo_temperature,
            seed=step,
        )
        curve.append({"step": step, **found["shares"], "descriptive": found["valid"]})
        _write_curve(output_dir / STYLE_CURVE_CSV, curve)

    bar = tqdm(total=config.vpo_steps, desc=label, unit="step", disable=not progress, leave=False)

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            bar.update(1)
            if config.curve_every and (
                state.global_step % config.curve_every == 0 or state.global_step == config.vpo_steps
            ):
                record(state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                bar.set_postfix(reward=f"{logs['reward']:.2f}")

    trainer.remove_callback(PrinterCallback)  # it prints every step's metrics dict; the bar and metrics.csv suffice
    trainer.add_callback(Progress())
    start = time.perf_counter()
    if config.curve_every:
        record(0)
    try:
        trainer.train()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    out = output_dir / "captioner"
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    return {
        "captioner": out,
        "penalty": penalty,
        "metrics_csv": output_dir / METRICS_CSV,
        "styles_csv": output_dir / STYLE_CURVE_CSV if curve else None,
        "style_curve": curve,
        "seconds": seconds,
        "steps": config.vpo_steps,
    }
