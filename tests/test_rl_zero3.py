"""Frozen models beside a ZeRO-3 policy. ZeRO-3 is switched on here exactly as transformers reads it (a registered
DeepSpeed config whose stage is 3); DeepSpeed itself is not installed, so a model that transformers tried to build
inside `deepspeed.zero.Init` fails to import it, which is how these tests see a partitioned load."""

from __future__ import annotations

import weakref

import pytest
import torch

from rapid_agent.models import build_tiny_causal_lm
from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.train import load_reasoners, stage_rewards
from rapid_agent.rl.zero3 import outside_zero3_init, zero3_enabled


class Stage3:
    """What transformers keeps of a registered DeepSpeed config (`HfDeepSpeedConfig`): its stage and its dict."""

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}

    def is_zero3(self) -> bool:
        return True


@pytest.fixture
def zero3(monkeypatch):
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = Stage3()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", weakref.ref(registered))
    assert zero3_enabled()
    yield registered


@pytest.fixture(scope="module")
def reasoner_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("zero3") / "reasoner")


def vpo(tmp_path, reasoner_dir, **overrides) -> VPOConfig:
    settings = dict(
        output_dir=str(tmp_path),
        mode="cap",
        reasoner=f"hf:{reasoner_dir}",
        judge="off",
        report_to="none",
        use_cpu=True,
        activation_checkpointing=False,
    )
    return VPOConfig(**{**settings, **overrides})


def test_a_plain_load_under_zero3_would_be_partitioned(zero3, reasoner_dir) -> None:
    from transformers import AutoModelForCausalLM

    with pytest.raises(ImportError, match="deepspeed"):  # transformers went for deepspeed.zero.Init
        AutoModelForCausalLM.from_pretrained(reasoner_dir)


def test_hf_reasoners_and_judges_load_whole_under_zero3(zero3, tmp_path, reasoner_dir) -> None:
    from transformers import AutoModelForCausalLM

    cfg = vpo(tmp_path, reasoner_dir, judge=f"hf:{reasoner_dir}", caption_penalty=0.1)
    (engine,) = load_reasoners(cfg)
    with outside_zero3_init():
        reference = AutoModelForCausalLM.from_pretrained(reasoner_dir)
    assert zero3_enabled()  # switched back on for the policy
    for (name, p), (_, q) in zip(engine.model.named_parameters(), reference.named_parameters()):
        assert p.shape == q.shape and p.numel() > 0 and torch.equal(p, q), name
    _, _, judge = stage_rewards(cfg, reasoner=engine)
    assert judge.engine.model.get_input_embeddings().weight.numel() > 0


def test_a_device_map_for_a_frozen_model_is_refused_under_zero3_naming_the_alternative(
    zero3, tmp_path, reasoner_dir
) -> None:
    with pytest.raises(ValueError, match=r"reasoner_options.*device_map='auto'.*ZeRO-3.*openai:MODEL@"):
        vpo(tmp_path, reasoner_dir, reasoner_options={"device_map": "auto"})
    with pytest.raises(ValueError, match=r"judge_options.*ZeRO-3"):
        vpo(tmp_path, reasoner_dir, judge=f"hf:{reasoner_dir}", judge_options={"device_map": "auto"})


def test_a_device_map_is_fine_without_zero3(tmp_path, reasoner_dir) -> None:
    assert not zero3_enabled()
    vpo(tmp_path, reasoner_dir, reasoner_options={"device_map": "auto"})
