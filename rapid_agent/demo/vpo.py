"""The demo's VPO step: a short GRPO run of the captioner against the frozen reasoner, through `rapid_agent.rl`.

The reward is `rapid_agent.rl`'s VPO reward (the reasoner's correctness from each sampled output, minus lambda for
a correct output that holds no genuine caption). Two choices are the demo's own:

- the judge of "genuine caption" is `WorldCaptionJudge`, a rule that accepts a caption stating at least one
  count of the world's shapes and no boxed answer. The paper (and the trainer's default) asks the policy itself, but a
  1M-parameter captioner trained only to describe and solve cannot answer a yes/no question.
- the reasoner sees the demo's prompts (`DemoConfig.prompts`), the same as in the evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapid_agent.backends import Engine
from rapid_agent.demo.config import DemoConfig
from rapid_agent.world import states_a_count

logger = logging.getLogger(__name__)


class WorldCaptionJudge:
    """A caption is genuine when it states at least one count of the world's shapes ("2 red circles", "1 square",
    or "No shapes.") and holds no boxed answer."""

    def __call__(self, captions: Sequence[str | None]) -> list[bool | None]:
        return [bool(c and "\\boxed" not in c and (states_a_count(c) or _says_empty(c))) for c in captions]


def _says_empty(caption: str) -> bool:
    return caption.strip().lower().startswith("no shapes")


def _vpo_config(config: DemoConfig, captioner: Path, output_dir: Path, reasoner_spec: str) -> Any:
    from rapid_agent.rl.config import VPOConfig

    return VPOConfig(
        model_name_or_path=str(captioner),
        output_dir=str(output_dir),
        mode=config.vpo_mode,
        reasoner=reasoner_spec,
        reasoner_temperature=config.reasoner_temperature,
        reasoner_top_p=0.95 if config.reasoner_temperature > 0 else 1.0,
        reasoner_max_new_tokens=config.reasoner_max_new_tokens,
        reasoner_max_batch_size=config.reasoner_batch_size,
        caption_penalty=config.vpo_caption_penalty,
        judge="policy",  # replaced by the WorldCaptionJudge instance passed to build_trainer
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


def run_vpo(
    config: DemoConfig,
    *,
    captioner: Path,
    reasoner: Engine,
    reasoner_spec: str,
    train_items: Any,
    output_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, save the VPO captioner to `output_dir/captioner`, and return where things are and how long it took."""
    from tqdm.auto import tqdm
    from transformers import PrinterCallback, TrainerCallback

    from rapid_agent.rl.data import prepare_dataset
    from rapid_agent.rl.metrics import METRICS_CSV
    from rapid_agent.rl.train import build_trainer

    output_dir.mkdir(parents=True, exist_ok=True)
    vpo_config = _vpo_config(config, captioner, output_dir, reasoner_spec)
    dataset, _ = prepare_dataset(train_items, mode=config.vpo_mode, templates=config.prompts)
    trainer = build_trainer(
        vpo_config, reasoner=reasoner, judge=WorldCaptionJudge(), train_dataset=dataset, templates=config.prompts
    )

    bar = tqdm(total=config.vpo_steps, desc="VPO", unit="step", disable=not progress, leave=False)

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            bar.update(1)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                bar.set_postfix(reward=f"{logs['reward']:.2f}")

    trainer.remove_callback(PrinterCallback)  # it prints every step's metrics dict; the bar and metrics.csv suffice
    trainer.add_callback(Progress())
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    out = output_dir / "captioner"
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    return {"captioner": out, "metrics_csv": output_dir / METRICS_CSV, "seconds": seconds, "steps": config.vpo_steps}
