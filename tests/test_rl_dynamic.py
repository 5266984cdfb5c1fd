"""Dynamic sampling in the trainer, on the tiny Qwen2.5-VL with a stand-in reasoner that makes some questions teach
nothing: zero-variance groups are dropped and refilled, rounds run out gracefully, the metrics are logged with the
option on and off, the config refuses what it cannot do; and (slow) the tiny recipe with the real SmolLM2, and two
processes under `accelerate launch` that agree on every batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.metrics import METRICS_CSV, read_rows
from rapid_agent.rl.models import ensure_tiny_captioner
from rapid_agent.rl.train import build_trainer
from tests.dynamic_ddp_probe import SplitReasoner, tagged_world
from tests.tiny_rl import tiny_settings

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("vpo/zero_variance_groups", "vpo/generation_rounds", "vpo/reasoner_calls")
TAG = re.compile(r"\[(easy|q)\d+\]")


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory) -> Path:
    return ensure_tiny_captioner(tmp_path_factory.mktemp("rl") / "tiny-qwen2.5-vl")


def config(tmp_path: Path, captioner_dir: Path, **overrides) -> VPOConfig:
    settings = tiny_settings(
        tmp_path,
        captioner_dir,
        mode="qcap",
        max_completion_length=8,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=3,
    )
    return VPOConfig(**{**settings, **overrides})


def group_advantages(batch: dict) -> torch.Tensor:
    return batch["advantages"].view(-1, 4)


def prompt_texts(trainer, batch: dict) -> list[str]:
    return trainer.processing_class.batch_decode(batch["prompt_ids"], skip_special_tokens=True)


def one_step(trainer, rows: list[dict]) -> dict:
    """What the trainer makes of one generation batch of `rows`, and the metrics that step logged."""
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return {"batch": batch, "metrics": metrics}


def test_zero_variance_groups_are_dropped_and_refilled_from_new_prompts(tmp_path, captioner_dir) -> None:
    easy, hard = tagged_world(2, easy=1, start=100)
    reasoner = SplitReasoner()
    trainer = build_trainer(config(tmp_path, captioner_dir), reasoner=reasoner, train_dataset=tagged_world(16))
    step = one_step(trainer, [easy] * 4 + [hard] * 4)  # half the groups teach nothing
    batch, metrics = step["batch"], step["metrics"]

    assert batch["advantages"].shape == (8,) and batch["completion_ids"].shape[0] == 8
    assert (group_advantages(batch).abs() > 0.5).all(), "a group with zero advantage was trained on"
    texts = prompt_texts(trainer, batch)
    assert not any("[easy100]" in t for t in texts)  # dropped
    assert sum("[q101]" in t for t in texts) == 4  # the informative group of the first round is kept
    assert len({TAG.search(t).group(0) for t in texts}) == 2  # and one new prompt's group filled the batch
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()  # counted again over the kept rows
    # round 1: 1 of 2 groups had zero variance, round 2: 0 of 2 (its prompts are all informative)
    assert metrics["vpo/zero_variance_groups"] == pytest.approx(0.25)
    assert metrics["vpo/generation_rounds"] == 2.0
    assert metrics["vpo/zero_variance_trained"] == 0.0
    assert metrics["vpo/reasoner_calls"] == 16.0 == reasoner.num_requests


def test_without_the_option_the_same_batch_trains_half_on_groups_that_teach_nothing(tmp_path, captioner_dir) -> None:
    easy, hard = tagged_world(2, easy=1, start=100)
    cfg = config(tmp_path, captioner_dir, dynamic_sampling=False)
    trainer = build_trainer(cfg, reasoner=SplitReasoner(), train_dataset=tagged_world(16))
    step = one_step(trainer, [easy] * 4 + [hard] * 4)
    advantages = group_advantages(step["batch"])
    assert advantages[0].abs().max() == 0 and advantages[1].abs().min() > 0.5  # TRL's batch as it is
    assert step["metrics"]["vpo/zero_variance_groups"] == 0.5  # what it wastes, logged with the option off
    assert step["metrics"]["vpo/generation_rounds"] == 1.0
    assert step["metrics"]["vpo/zero_variance_trained"] == 0.5
    assert step["metrics"]["vpo/reasoner_calls"] == 8.0


def test_when_the_rounds_run_out_the_step_trains_on_what_there_is(tmp_path, captioner_dir) -> None:
    data = tagged_world(8, easy=8)  # every prompt teaches nothing
    reasoner = SplitReasoner()
    trainer = build_trainer(
        config(tmp_path, captioner_dir, dynamic_sampling_max_rounds=2), reasoner=reasoner, train_dataset=data
    )
    easy_and_hard = tagged_world(2, easy=1, start=100)
    step = one_step(trainer, [easy_and_hard[0]] * 4 + [easy_and_hard[1]] * 4)
    batch, metrics = step["batch"], step["metrics"]
    assert batch["advantages"].shape == (8,)  # the batch keeps its shape
    assert sorted(group_advantages(batch).abs().amax(dim=1).gt(0).tolist()) == [False, True]
    assert metrics["vpo/generation_rounds"] == 2.0 and metrics["vpo/zero_variance_trained"] == 0.5
    assert metrics["vpo/zero_variance_groups"] == pytest.approx(3 / 4)
    assert reasoner.num_requests == 16


def test_training_with_dynamic_sampling_logs_the_metrics_every_step(tmp_path, captioner_dir) -> None:
    trainer = build_trainer(
        config(tmp_path, captioner_dir), reasoner=SplitReasoner(), train_dataset=tagged_world(16, easy=8)
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    rows = read_rows(tmp_path / METRICS_CSV)
    assert [int(r["step"]) for r in rows] == [1, 2]
    for row in rows:
        assert set(METRICS) <= row.keys()
        rounds = float(row["vpo/generation_rounds"])
        assert 1 <= rounds <= 3 and float(row["vpo/reasoner_calls"]) == 8 * rounds
        if rounds < 3:  # the batch filled up: nothing uninformative was trained on
            assert float(row["vpo/zero_variance_trained"]) == 0.0


def test_config_defaults_off_and_the_paper_recipes_leave_it_off(tmp_path, captioner_dir) -> None:
    assert VPOConfig(output_dir=str(tmp_path), use_cpu=True).dynamic_sampling is False
    for recipe in sorted((ROOT / "rl" / "recipes").glob("qwen*.yaml")):
        assert not yaml.safe_load(recipe.read_text()).get("dynamic_sampling"), recipe.name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dynamic_sampling_max_rounds": 0}, r"dynamic_sampling_max_rounds must be >= 1, got 0"),
        ({"scale_rewards": "batch"}, r"scale_rewards must be 'group' or 'none' .*, got 'batch'"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, r"got 'normalize_then_sum'"),
    ],
)
def test_config_refuses_what_dynamic_sampling_cannot_do(tmp_path, captioner_dir, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        config(tmp_path, captioner_dir, **overrides)


def test_config_refuses_groups_split_across_processes(tmp_path, captioner_dir, monkeypatch) -> None:
    monkeypatch.setattr(VPOConfig, "world_size", property(lambda self: 2))
    # 2 processes x 2 rows make TRL's 4-row generation batch one group, split between the processes
    with pytest.raises(ValueError, match=r"steps_per_generation must be a multiple of num_generations \(4\).*got 2"):
        config(tmp_path, captioner_dir, per_device_train_batch_size=2)
    assert not config(tmp_path, captioner_dir, per_device_train_batch_size=2, dynamic_sampling=False).dynamic_sampling


@pytest.mark.slow
def test_tiny_recipe_runs_with_dynamic_sampling_and_logs_the_metrics(tmp_path, smollm2_gguf) -> None:
    cache = tmp_path / "cache"
    ensure_tiny_captioner(cache / "models" / "tiny-qwen2.5-vl")
    env = {**os.environ, "RAPID_AGENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = tmp_path / "run"
    recipe = ROOT / "rl" / "recipes" / "tiny_cpu_vpo.yaml"
    settings = yaml.safe_load(recipe.read_text())
    per_round = settings["per_device_train_batch_size"] * settings.get("gradient_accumulation_steps", 1)
    cmd = [sys.executable, "-m", "rapid_agent.rl", "vpo", "--config", str(recipe)]
    cmd += ["--output_dir", str(out), "--max_steps", "2", "--dynamic_sampling", "true", "--report_to", "none"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [r for r in read_rows(out / METRICS_CSV) if r.get("vpo/generation_rounds")]  # training steps' rows
    assert [int(r["step"]) for r in rows] == [1, 2]
    for row in rows:
        rounds = float(row["vpo/generation_rounds"])
        assert 1 <= rounds <= 3 and 0 <= float(row["vpo/zero_variance_groups"]) <= 1
        assert float(row["vpo/reasoner_calls"]) == per_round * rounds  # one reasoner: one call a sample


@pytest.mark.slow
def test_two_processes_agree_on_rounds_and_batch_shapes(tmp_path, captioner_dir) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    config_file = ROOT / "rl" / "recipes" / "accelerate" / "cpu_ddp.yaml"
    cmd = [str(accelerate), "launch", "--config_file", str(config_file), str(ROOT / "tests" / "dynamic_ddp_probe.py")]
    cmd += [str(captioner_dir), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == 3
    for mine, theirs in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert mine["rounds"] == theirs["rounds"]  # every process ran the same rounds
        assert mine["rows"] == theirs["rows"] == 8  # and trains on a batch of the same shape
        for step in (mine, theirs):
            if step["rounds"] < 3:
                assert step["zero_advantage_groups"] == 0
    assert any(step["rounds"] > 1 for rank in ranks for step in rank["steps"])  # refills happened
