"""Stage chaining from a LoRA adapter folder: the next stage's policy and its KL reference are both the stage-1
weights (base + adapter), and the merge is done on whole weights also when ZeRO-3 is on."""

from __future__ import annotations

import weakref

import datasets
import pytest
import torch

from rapid_agent.models import build_tiny_qwen2_5_vl
from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.models import merged_checkpoint
from rapid_agent.rl.train import build_trainer
from rapid_agent.rl.zero3 import zero3_enabled

Q_PROJ = "language_model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A LoRA adapter on a tiny Qwen2.5-VL, as a `use_peft` stage saves it, with a non-zero update; and the weights
    it stands for (base + update), merged here by PEFT in memory."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    root = tmp_path_factory.mktemp("stages")
    base = build_tiny_qwen2_5_vl(root / "base")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)  # a trained adapter: B is no longer zero
    peft.save_pretrained(root / "adapter")
    merged = {n: p.detach().clone() for n, p in peft.merge_and_unload().named_parameters()}
    return root / "adapter", base, merged


def weight(named, suffix: str) -> torch.Tensor:
    return next(p for n, p in named if n.endswith(suffix)).detach()


def test_the_kl_reference_of_the_next_stage_is_the_stage1_weights(stage1, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAPID_AGENT_CACHE", str(tmp_path / "cache"))
    adapter, base, merged = stage1
    cfg = VPOConfig(
        output_dir=str(tmp_path / "out"),
        model_name_or_path=str(adapter),
        mode="cap",
        reasoner="hf:unused",
        judge="off",
        beta=0.001,  # VPO's KL term: TRL builds a reference model
        per_device_train_batch_size=4,
        num_generations=2,
        report_to="none",
        use_cpu=True,
        activation_checkpointing=False,
    )
    rows = [{"prompt": [{"role": "user", "content": "q"}], "question": "q", "answer": "1"}] * 4
    from rapid_agent.backends.stand_in import FunctionEngine

    trainer = build_trainer(
        cfg, reasoner=FunctionEngine(lambda r: "1"), train_dataset=datasets.Dataset.from_list(rows)
    )
    stage1_q = merged[next(n for n in merged if n.endswith(Q_PROJ))]
    policy_q = weight(trainer.model.named_parameters(), Q_PROJ)
    reference_q = weight(trainer.ref_model.named_parameters(), Q_PROJ)
    assert torch.allclose(policy_q, stage1_q) and torch.allclose(reference_q, stage1_q)
    from transformers import AutoModelForImageTextToText

    base_q = weight(AutoModelForImageTextToText.from_pretrained(base).named_parameters(), Q_PROJ)
    assert not torch.allclose(reference_q, base_q)  # the reference is not the base model


class Stage3:
    """What transformers keeps of a registered DeepSpeed config whose stage is 3 (see tests/test_rl_zero3.py)."""

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}

    def is_zero3(self) -> bool:
        return True


def test_the_adapter_is_merged_on_whole_weights_under_zero3(stage1, tmp_path, monkeypatch) -> None:
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import deepspeed as hf_deepspeed

    monkeypatch.setenv("RAPID_AGENT_CACHE", str(tmp_path / "cache"))
    adapter, _, merged = stage1
    registered = Stage3()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", weakref.ref(registered))
    assert zero3_enabled()
    # without DeepSpeed installed, a load inside zero.Init fails to import it: the merge ran outside
    path = merged_checkpoint(adapter)
    assert zero3_enabled()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    saved = AutoModelForImageTextToText.from_pretrained(path)
    for name, param in saved.named_parameters():
        assert torch.allclose(param, merged[name]), name
    assert merged_checkpoint(adapter) == path  # built once
