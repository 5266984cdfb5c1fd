"""Training on a tiny Qwen2.5-VL in this process: parameters move, the policy judges, VPO learns a real signal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.config import SolutionConfig, VPOConfig
from rapid_agent.rl.data import prepare_dataset
from rapid_agent.rl.judge import PolicyJudge
from rapid_agent.rl.metrics import METRICS_CSV, read_rows
from rapid_agent.rl.models import ensure_tiny_captioner
from rapid_agent.rl.train import build_trainer
from rapid_agent.world import build_world

_CAPTION = re.compile(r"Description:\n(.*?)\n\nQuestion:", re.DOTALL)
GOLD = "7"


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory) -> Path:
    return ensure_tiny_captioner(tmp_path_factory.mktemp("rl") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="module")
def data():
    """World images and questions, all with the gold answer 7, so that a stand-in reasoner can be right or wrong."""
    raw = build_world(32, 8, seed=0)["train"].map(lambda row: {"answer": GOLD})
    return prepare_dataset(raw, mode="cap")[0]


def digit_reasoner() -> FunctionEngine:
    """Right exactly when the caption holds a digit: about a third of the random captioner's outputs do, and the
    captioner can learn to write more of them."""

    def answer(request) -> str:
        caption = _CAPTION.search(request.prompt).group(1)
        return f"\\boxed{{{GOLD}}}" if re.search(r"\d", caption) else "\\boxed{0}"

    return FunctionEngine(answer)


def config(tmp_path: Path, captioner_dir: Path, cls=VPOConfig, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        model_name_or_path=str(captioner_dir),
        mode="cap",
        reasoner="hf:unused-stand-in",
        judge="off",
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
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
    if cls is SolutionConfig:
        for key in ("reasoner", "judge"):
            settings.pop(key)
    return cls(**{**settings, **overrides})


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before: dict[str, torch.Tensor], model, part: str) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters() if part in n and n in before)


def test_vpo_steps_change_the_captioner_vision_tower_included(tmp_path, captioner_dir, data) -> None:
    trainer = build_trainer(config(tmp_path, captioner_dir), reasoner=digit_reasoner(), train_dataset=data)
    before = snapshot(trainer.model)
    trainer.train()
    assert changed(before, trainer.model, ".visual.")
    assert changed(before, trainer.model, ".language_model.")
    rows = read_rows(tmp_path / METRICS_CSV)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert {"reward", "reward_std", "vpo/reasoner_accuracy", "vpo/skipped", "vpo/reasoner_latency_s"} <= rows[0].keys()


def test_lora_trains_adapters_and_the_unfrozen_vision_tower_only(tmp_path, captioner_dir, data) -> None:
    cfg = config(tmp_path, captioner_dir, use_peft=True, freeze_vision_tower=False, lora_r=4, lora_alpha=8)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    before = snapshot(trainer.model)
    trainer.train()
    assert changed(before, trainer.model, "lora_B")
    assert changed(before, trainer.model, "modules_to_save")  # the trainable copy of the vision tower
    base = {n: p for n, p in before.items() if "language_model" in n and "lora_" not in n}
    assert base and not changed(base, trainer.model, "language_model")


def test_policy_judge_asks_the_policy_being_trained(tmp_path, captioner_dir, data) -> None:
    cfg = config(tmp_path, captioner_dir, judge="policy", caption_penalty=0.1)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    judge = trainer.reward_funcs[0].judge
    assert isinstance(judge, PolicyJudge) and judge.trainer is trainer
    calls = []
    generate = trainer.model.generate
    trainer.model.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw)
    verdicts = judge(["Two red circles on the left.", "", "A blue square."])
    assert calls == [2] and verdicts[1] is False and all(v in (True, False, None) for v in verdicts)
    trainer.model.generate = generate
    trainer.train()  # judging inside training steps works too
    assert [int(r["step"]) for r in read_rows(tmp_path / METRICS_CSV)] == [1, 2]


def test_grpo_stage_logs_accuracy_and_format_rewards(tmp_path, captioner_dir) -> None:
    raw = build_world(16, 4, seed=0)["train"]
    sol_data = prepare_dataset(raw, mode="qcap+sol")[0]
    cfg = config(tmp_path, captioner_dir, cls=SolutionConfig, mode="qcap+sol", format_reward_weight=0.5)
    trainer = build_trainer(cfg, train_dataset=sol_data)
    trainer.train()
    assert cfg.reward_weights == [1.0, 0.5]
    row = read_rows(tmp_path / METRICS_CSV)[-1]
    assert {"rewards/accuracy/mean", "rewards/format/mean"} <= row.keys()


@pytest.mark.slow
def test_vpo_raises_the_reward_of_a_learnable_caption_property(tmp_path, captioner_dir, data) -> None:
    cfg = config(tmp_path, captioner_dir, per_device_train_batch_size=16, num_generations=8, max_steps=16)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    trainer.train()
    rewards = [float(r["reward"]) for r in read_rows(tmp_path / METRICS_CSV)]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    print(f"VPO learning test: mean reward over the first 4 steps {first:.3f}, last 4 steps {last:.3f}: {rewards}")
    assert 0.1 <= first <= 0.6, "the property's base rate should give GRPO signal"
    assert last >= first + 0.3
