"""Training on a tiny Qwen2.5-VL in this process: parameters move (also at lr 1e-6 under bf16 autocast), the policy
judges, several reasoners reward together, a LoRA stage feeds the next, VPO learns a real signal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.caption_judge import PolicyJudge
from rapid_agent.rl.config import SolutionConfig, VPOConfig
from rapid_agent.rl.data import prepare_dataset
from rapid_agent.rl.metrics import METRICS_CSV, read_rows
from rapid_agent.rl.models import ensure_tiny_captioner
from rapid_agent.rl.train import build_trainer, check_trl, load_reasoners, resolve_resume
from rapid_agent.world import build_world
from tests.tiny_rl import tiny_settings

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


def digit_reasoner(spec: str = "function") -> FunctionEngine:
    """Right exactly when the caption holds a digit: about a third of the random captioner's outputs do, and the
    captioner can learn to write more of them."""

    def answer(request) -> str:
        caption = _CAPTION.search(request.prompt).group(1)
        return f"\\boxed{{{GOLD}}}" if re.search(r"\d", caption) else "\\boxed{0}"

    return FunctionEngine(answer, spec=spec)


def config(tmp_path: Path, captioner_dir: Path, cls=VPOConfig, **overrides):
    settings = tiny_settings(tmp_path, captioner_dir, mode="cap", max_completion_length=16)
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
    cfg = config(tmp_path, captioner_dir, judge="policy", caption_penalty=0.1, judge_scope="all")
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
    rows = read_rows(tmp_path / METRICS_CSV)
    assert [int(r["step"]) for r in rows] == [1, 2]
    # judged over every sampled caption, the ratio is there on every step, whatever the reasoner got right
    assert all(r["vpo/valid_caption_ratio_all"] != "" for r in rows)


def test_grpo_stage_logs_accuracy_and_format_rewards(tmp_path, captioner_dir) -> None:
    raw = build_world(16, 4, seed=0)["train"]
    sol_data = prepare_dataset(raw, mode="qcap+sol")[0]
    cfg = config(
        tmp_path,
        captioner_dir,
        cls=SolutionConfig,
        mode="qcap+sol",
        rewards=["accuracy", "format"],
        reward_weights=[1.0, 0.5],
    )
    trainer = build_trainer(cfg, train_dataset=sol_data)
    assert [f.__name__ for f in trainer.reward_funcs] == ["accuracy", "format"]
    trainer.train()
    row = read_rows(tmp_path / METRICS_CSV)[-1]
    assert {"rewards/accuracy/mean", "rewards/format/mean"} <= row.keys()


def test_a_tiny_learning_rate_moves_the_weights_under_bf16_autocast(tmp_path, captioner_dir, data) -> None:
    """The paper's lr 1e-6 with `bf16: true`: the trained parameters are float32 masters, so one step moves nearly
    every weight that has a gradient (pure bfloat16 parameters would keep ~98% of them; see test_rl_models)."""
    cfg = config(tmp_path, captioner_dir, learning_rate=1e-6, bf16=True, max_steps=1)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    before = snapshot(trainer.model)
    trainer.train()
    layers = [(n, p) for n, p in trainer.model.named_parameters() if ".language_model.layers." in n and p.dim() == 2]
    moved = sum((before[n] != p).sum().item() for n, p in layers) / sum(p.numel() for _, p in layers)
    print(f"lr 1e-6, bf16 autocast: {moved:.1%} of the language model's layer weights moved in one step")
    assert moved > 0.5


def test_several_reasoners_train_together_and_each_accuracy_is_logged(tmp_path, captioner_dir, data) -> None:
    """VPO against two reasoners of different skill: the digit reader and one that is always right. The reward is
    their mean verdict, and each one's accuracy is a metric of its own."""

    def always_right(request) -> str:
        return f"\\boxed{{{GOLD}}}"

    cfg = config(tmp_path, captioner_dir, extra_reasoners=["hf:other-stand-in"], reasoner_weights=[1.0, 1.0])
    reasoners = [digit_reasoner("hf:digit-reader"), FunctionEngine(always_right, spec="hf:oracle")]
    trainer = build_trainer(cfg, reasoner=reasoners, train_dataset=data)
    trainer.train()
    rows = read_rows(tmp_path / METRICS_CSV)
    assert [int(r["step"]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row["vpo/reasoner_accuracy/oracle"]) == 1.0
        assert 0.0 <= float(row["vpo/reasoner_accuracy/digit-reader"]) < 1.0
        # the reward lies between the two: half the oracle's 1 plus half the digit reader's accuracy
        assert float(row["reward"]) == pytest.approx(0.5 + 0.5 * float(row["vpo/reasoner_accuracy/digit-reader"]))
    assert all(r.num_calls >= 2 for r in reasoners)


def test_a_lora_stage_output_starts_the_next_stage(tmp_path, captioner_dir, data, monkeypatch) -> None:
    """Stage 1 with LoRA saves an adapter; stage 2 given that folder loads the base model with the adapter merged
    in (plain weights, no adapter layers), so it trains from stage 1's result."""
    monkeypatch.setenv("RAPID_AGENT_CACHE", str(tmp_path / "cache"))  # where the merged checkpoint goes
    stage1 = tmp_path / "stage1"
    cfg = config(stage1, captioner_dir, use_peft=True, lora_r=4, lora_alpha=8, freeze_vision_tower=True, max_steps=1)
    trainer = build_trainer(cfg, reasoner=digit_reasoner(), train_dataset=data)
    trainer.train()
    trainer.save_model(str(stage1))
    assert (stage1 / "adapter_config.json").is_file()
    merged = {n: p.detach().clone() for n, p in trainer.model.merge_and_unload().named_parameters()}

    stage2 = config(tmp_path / "stage2", captioner_dir, model_name_or_path=str(stage1))
    trainer2 = build_trainer(stage2, reasoner=digit_reasoner(), train_dataset=data)
    names = [n for n, _ in trainer2.model.named_parameters()]
    assert not any("lora_" in n for n in names)
    base = snapshot(
        build_trainer(config(tmp_path / "base", captioner_dir), reasoner=digit_reasoner(), train_dataset=data).model
    )
    q_proj = next(n for n in names if n.endswith("language_model.layers.0.self_attn.q_proj.weight"))
    weights = dict(trainer2.model.named_parameters())
    assert not torch.equal(weights[q_proj], base[q_proj])  # stage 1's update is in
    assert torch.allclose(weights[q_proj], merged[q_proj])
    trainer2.train()


def test_an_old_trl_is_refused_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match=r"trl 1\.5\.1 is too old.*trl>=1\.6\.0.*scored 0"):
        check_trl("1.5.1")
    check_trl("1.6.0")


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


def test_reasoners_load_with_their_engine_options(tmp_path, monkeypatch) -> None:
    loaded = []

    def fake_load_engine(spec, role, **options):
        loaded.append((spec, options))
        return FunctionEngine(lambda r: "", spec=spec)

    monkeypatch.setattr("rapid_agent.rl.train.load_engine", fake_load_engine)
    cfg = VPOConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        reasoner="openai:r1@http://127.0.0.1:8000/v1",
        extra_reasoners=["hf:/models/small", "hf:/models/big"],
        reasoner_options={
            "max_retries": 3,
            "hf:/models/small": {"dtype": "float32"},
            "hf:/models/big": {"device_map": "auto"},
        },
    )
    engines = load_reasoners(cfg)
    assert [e.spec for e in engines] == cfg.reasoner_specs
    assert loaded == [
        ("openai:r1@http://127.0.0.1:8000/v1", {"max_retries": 3}),
        ("hf:/models/small", {"max_retries": 3, "dtype": "float32", "device": "cpu"}),  # on this process's device
        ("hf:/models/big", {"max_retries": 3, "device_map": "auto"}),  # spread over the GPUs instead
    ]


def test_an_unknown_engine_option_is_an_error_naming_it(tmp_path) -> None:
    cfg = VPOConfig(
        output_dir=str(tmp_path),
        report_to="none",
        reasoner="openai:r1@http://127.0.0.1:8000/v1",
        reasoner_options={"timeout": 600},  # the option is timeout_s
    )
    with pytest.raises(ValueError, match=r"unknown 'openai' engine option\(s\) \['timeout'\]"):
        load_reasoners(cfg)


def test_resume_true_takes_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    """A save cut short (no trainer_state.json, which the Trainer writes last) is passed over; steps sort as numbers."""
    for step, complete in ((2, True), (10, True), (12, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resolve_resume("true", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text("{}")
    assert resolve_resume(True, str(tmp_path)) == str(tmp_path / "checkpoint-12")
    assert resolve_resume("false", str(tmp_path)) is None
    assert resolve_resume("true", str(tmp_path / "nothing-yet")) is None  # a first run: start fresh
    with pytest.raises(ValueError, match="checkpoint-2x.*not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-2x"), str(tmp_path))
