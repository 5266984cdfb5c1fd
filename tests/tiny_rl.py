"""The settings every tiny training test starts from: a few steps of GRPO/VPO on CPU with a built tiny captioner,
a stand-in reasoner passed to `build_trainer`, no judge, nothing saved or reported. Import as
`from tests.tiny_rl import tiny_settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_TRAINING: dict[str, Any] = dict(
    reasoner="hf:unused-stand-in",  # the tests pass their own engine to build_trainer
    judge="off",
    per_device_train_batch_size=8,  # 2 groups of 4
    num_generations=4,
    learning_rate=1e-2,
    lr_scheduler_type="constant",
    beta=0.0,
    max_steps=2,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    activation_checkpointing=False,
    disable_tqdm=True,
    seed=0,
)


def tiny_settings(output_dir: str | Path, captioner_dir: str | Path, **settings: Any) -> dict[str, Any]:
    """`TINY_TRAINING` for a run of the captioner in `captioner_dir` into `output_dir`, `settings` over it."""
    return {"output_dir": str(output_dir), "model_name_or_path": str(captioner_dir), **TINY_TRAINING, **settings}
