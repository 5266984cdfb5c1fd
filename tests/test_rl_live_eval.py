"""The live policy on benchmarks while it trains (`rapid_agent.rl.live_eval`): evaluated at step 0 and every N steps
through the graph with the trained model itself as the captioner (in eval mode, under inference mode, its weights
changing between evaluations), logged to metrics.csv, curves.png and live_eval.jsonl, not run again on resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.config import SolutionConfig, VPOConfig
from rapid_agent.rl.data import prepare_dataset
from rapid_agent.rl.live_eval import EVAL_DIR, EVAL_JSONL, Evaluation, LiveEval, read_evaluations, seeded_subset
from rapid_agent.rl.metrics import CURVES_PNG, METRICS_CSV, eval_columns, plot_curves, read_rows
from rapid_agent.rl.models import ensure_tiny_captioner
from rapid_agent.rl.train import build_trainer
from rapid_agent.world import build_world
from tests.eval_fixtures import mathvista
from tests.tiny_rl import tiny_settings

GOLD = "7"
ACCURACY = "eval/mathvista/accuracy"


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory) -> Path:
    return ensure_tiny_captioner(tmp_path_factory.mktemp("rl") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="module")
def data():
    raw = build_world(16, 4, seed=0)["train"].map(lambda row: {"answer": GOLD})
    return prepare_dataset(raw, mode="cap")[0]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> Path:
    return mathvista(tmp_path_factory.mktemp("mathvista"))


def digit_reasoner() -> FunctionEngine:
    """Right on the training data exactly when the caption holds a digit, so the reward varies and weights move."""

    def answer(request) -> str:
        caption = re.search(r"Description:\n(.*?)\n\nQuestion:", request.prompt, re.DOTALL)
        return f"\\boxed{{{GOLD}}}" if caption and re.search(r"\d", caption.group(1)) else "\\boxed{3}"

    return FunctionEngine(answer, spec="digits")


def config(out: Path, captioner_dir: Path, fixture: Path, **overrides) -> VPOConfig:
    settings = tiny_settings(
        out,
        captioner_dir,
        mode="cap",
        max_completion_length=12,
        eval_benchmarks=[f"mathvista={fixture}"],
        eval_every_steps=1,
        eval_limit=3,
    )
    return VPOConfig(**{**settings, **overrides})


class Spy:
    """Wraps each live captioner the callback builds: records, per evaluation, the weights its model holds and how
    every forward pass of the evaluation ran (train/eval mode, inference mode)."""

    def __init__(self, monkeypatch) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.models: dict[int, object] = {}
        self.forwards: list[tuple[bool, bool]] = []
        self.runs: list[int] = []
        original = LiveEval._captioner
        spy = self

        def captioner(callback, step: int):
            engine = original(callback, step)
            spy.runs.append(step)
            spy.models[step] = engine.model
            spy.weights[step] = {n: p.detach().clone() for n, p in engine.model.named_parameters()}
            hook = engine.model.register_forward_pre_hook(
                lambda module, args: spy.forwards.append((module.training, torch.is_inference_mode_enabled()))
            )
            generate = engine.generate

            def recording(requests, gen):
                try:
                    return generate(requests, gen)
                finally:
                    hook.remove()

            engine.generate = recording
            return engine

        monkeypatch.setattr(LiveEval, "_captioner", captioner)


def test_the_live_policy_is_evaluated_at_step_0_and_every_step_and_logged(
    tmp_path, captioner_dir, data, fixture, monkeypatch
) -> None:
    spy = Spy(monkeypatch)
    trainer = build_trainer(config(tmp_path, captioner_dir, fixture), reasoner=digit_reasoner(), train_dataset=data)
    trainer.train()

    rows = {int(r["step"]): r for r in read_rows(tmp_path / METRICS_CSV)}
    assert sorted(rows) == [0, 1, 2]
    for step in (0, 1, 2):
        row = rows[step]
        assert 0 <= float(row[ACCURACY]) <= 1 and float(row[f"{ACCURACY}_low"]) <= float(row[f"{ACCURACY}_high"])
        assert float(row["eval/mathvista/n"]) >= 1 and float(row["eval/seconds"]) > 0
        assert float(row["eval/captioner_tokens"]) > 0
    assert all(rows[s]["reward"] not in ("", None) for s in (1, 2))  # the steps' own log lines are still there
    assert float(rows[2]["grad_norm"]) > 0

    # the captioner was the trained model itself, generating in eval mode under inference mode, handed back in
    # train mode, and it saw different weights at step 0 and at step 2
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    assert spy.runs == [0, 1, 2] and all(model is unwrapped for model in spy.models.values())
    assert spy.forwards and all(not training and inference for training, inference in spy.forwards)
    assert unwrapped.training
    moved = [n for n, w in spy.weights[0].items() if not torch.equal(w, spy.weights[2][n])]
    assert moved, "the live captioner saw the same weights before and after training"

    records = read_evaluations(tmp_path / EVAL_JSONL)
    assert sorted(records) == [(0, "mathvista"), (1, "mathvista"), (2, "mathvista")]
    assert records[(0, "mathvista")].captioner == "policy@step-0" and records[(0, "mathvista")].reasoner == "digits"
    assert records[(0, "mathvista")].weights_norm != records[(2, "mathvista")].weights_norm
    assert float(rows[2][ACCURACY]) == pytest.approx(records[(2, "mathvista")].accuracy)
    assert list((tmp_path / EVAL_DIR / "step-000002").glob("results*.jsonl"))  # per-sample records kept

    assert eval_columns(read_rows(tmp_path / METRICS_CSV)) == [ACCURACY]
    png = plot_curves(tmp_path / METRICS_CSV, tmp_path / CURVES_PNG)
    assert png is not None and png.stat().st_size > 10_000


def test_a_resumed_run_keeps_its_evaluations_and_redoes_those_after_the_checkpoint(
    tmp_path, captioner_dir, data, fixture, monkeypatch
) -> None:
    cfg = config(tmp_path, captioner_dir, fixture, save_strategy="steps", save_steps=1)
    build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data).train()
    first = read_evaluations(tmp_path / EVAL_JSONL)
    assert sorted(first) == [(0, "mathvista"), (1, "mathvista"), (2, "mathvista")]

    spy = Spy(monkeypatch)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert spy.runs == [2]  # step 1 was recorded: logged again, not run; step 2 is after the checkpoint: run again
    after = read_evaluations(tmp_path / EVAL_JSONL)
    assert sorted(after) == sorted(first)
    assert after[(1, "mathvista")] == first[(1, "mathvista")]
    lines = (tmp_path / EVAL_JSONL).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1, 2]
    rows = {int(r["step"]): r for r in read_rows(tmp_path / METRICS_CSV)}
    assert sorted(rows) == [0, 1, 2] and all(rows[s][ACCURACY] not in ("", None) for s in rows)


def test_a_fresh_run_does_not_reuse_an_earlier_runs_evaluations(
    tmp_path, captioner_dir, data, fixture, monkeypatch
) -> None:
    cfg = config(tmp_path, captioner_dir, fixture, max_steps=1)
    earlier = Evaluation(0, "mathvista", 0.99, 0.9, 1.0, 3, 3, 3, 0, 0, 1.0, 1, 1, "other", "other", "cap", 1.0)
    (tmp_path / EVAL_JSONL).write_text(json.dumps(earlier.__dict__) + "\n")
    assert read_evaluations(tmp_path / EVAL_JSONL) == {(0, "mathvista"): earlier}
    spy = Spy(monkeypatch)
    build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data).train()
    assert spy.runs == [0, 1]
    records = read_evaluations(tmp_path / EVAL_JSONL)
    assert sorted(records) == [(0, "mathvista"), (1, "mathvista")] and records[(0, "mathvista")] != earlier


def test_the_subset_is_seeded_fixed_and_skips_unusable_rows(fixture) -> None:
    from rapid_agent.eval.adapters import build_adapter

    samples = build_adapter(f"mathvista={fixture}").load()
    usable = [s.id for s in samples if not s.skip]
    assert len(usable) < len(samples)  # the fixture holds bad rows
    first = [s.id for s in seeded_subset(samples, 3, 0, "mathvista")]
    assert len(first) == 3 and set(first) <= set(usable)
    assert first == [s.id for s in seeded_subset(samples, 3, 0, "mathvista")]  # the same at every evaluation
    assert first == sorted(first, key=usable.index)  # in dataset order
    draws = {tuple(s.id for s in seeded_subset(samples, 2, seed, "mathvista")) for seed in range(20)}
    assert len(draws) > 1  # the seed chooses
    assert [s.id for s in seeded_subset(samples, None, 0, "mathvista")] == usable
    assert [s.id for s in seeded_subset(samples, 99, 0, "mathvista")] == usable


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"eval_benchmarks": ["mathvistaa=/x"]}, "eval_benchmarks"),
        ({"eval_benchmarks": ["world", "world"]}, "eval_benchmarks"),
        ({"eval_benchmarks": ["world"], "eval_options": ["mathvista.split=test"]}, "eval_options"),
        ({"eval_benchmarks": ["world"], "eval_options": ["world.seed"]}, "eval_options"),
        ({"eval_every_steps": 0}, "eval_every_steps"),
        ({"eval_limit": 0}, "eval_limit"),
        ({"eval_mode": "qcap+answer"}, "eval_mode"),
        ({"eval_reasoner": "gpt4"}, "eval_reasoner"),
        ({"eval_max_new_tokens": 0}, "eval_max_new_tokens"),
    ],
)
def test_eval_settings_are_checked_naming_the_field(tmp_path, overrides, named) -> None:
    with pytest.raises(ValueError, match=named):
        VPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **overrides)


def test_the_grpo_stage_needs_an_eval_reasoner_unless_the_captioner_answers_alone(tmp_path) -> None:
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, mode="qcap+sol", eval_benchmarks=["world"])
    with pytest.raises(ValueError, match="eval_reasoner must be set"):
        SolutionConfig(**common)
    assert SolutionConfig(**common, eval_mode="direct").eval_reasoner is None
    assert SolutionConfig(**common, eval_reasoner="hf:smollm2-135m-instruct").eval_benchmarks == ["world"]
