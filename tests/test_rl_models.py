"""The built-in tiny captioner cache, the reasoner alias, what trains under the PEFT and freezing switches, and the\nfloat32 master weights that let a tiny learning rate move them."""

from __future__ import annotations

import re

import pytest
import torch

from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.models import (
    ensure_tiny_captioner,
    load_captioner,
    master_dtype,
    peft_config,
    resolve_model_path,
    vision_tower,
)


def test_builtin_tiny_captioner_builds_into_the_cache_and_is_rebuilt_when_corrupt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAPID_AGENT_CACHE", str(tmp_path / "cache"))
    path = resolve_model_path("tiny-qwen2.5-vl")
    assert path == str(tmp_path / "cache" / "models" / "tiny-qwen2.5-vl")
    weights = next((tmp_path / "cache" / "models" / "tiny-qwen2.5-vl").glob("*.safetensors"))
    built = weights.stat().st_mtime_ns
    assert resolve_model_path("tiny-qwen2.5-vl") == path and weights.stat().st_mtime_ns == built  # reused
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download / interrupted build
    resolve_model_path("tiny-qwen2.5-vl")
    assert weights.stat().st_size > 100_000
    model, processor = load_captioner(
        VPOConfig(output_dir=str(tmp_path), report_to="none", model_name_or_path="tiny-qwen2.5-vl")
    )
    assert processor.tokenizer.padding_side == "left" and hasattr(processor, "image_processor")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert resolve_model_path("/some/dir") == "/some/dir"


def test_smollm2_alias_resolves_to_the_shipped_gguf(smollm2_gguf) -> None:
    from rapid_agent.backends.hf import _resolve_source

    assert _resolve_source("smollm2-135m-instruct") == smollm2_gguf


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory):
    return ensure_tiny_captioner(tmp_path_factory.mktemp("models") / "tiny")


def _config(tmp_path, captioner_dir, **kw) -> VPOConfig:
    return VPOConfig(output_dir=str(tmp_path), report_to="none", model_name_or_path=str(captioner_dir), **kw)


def test_freeze_vision_tower_without_peft(tmp_path, captioner_dir) -> None:
    model, _ = load_captioner(_config(tmp_path, captioner_dir, freeze_vision_tower=True))
    assert not any(p.requires_grad for p in vision_tower(model).parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())
    model, _ = load_captioner(_config(tmp_path, captioner_dir))
    assert all(p.requires_grad for p in vision_tower(model).parameters())


@pytest.mark.parametrize("freeze", [True, False])
def test_lora_targets_the_language_model_and_the_vision_tower_follows_the_switch(tmp_path, captioner_dir, freeze):
    from peft import get_peft_model

    config = _config(tmp_path, captioner_dir, use_peft=True, freeze_vision_tower=freeze)
    model, _ = load_captioner(config)
    peft_model = get_peft_model(model, peft_config(config, model))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all("language_model" in n for n in lora)
    assert all(re.search(r"\.(q|k|v|o|gate|up|down)_proj\.", n) for n in lora)
    vision_trainable = [n for n in trainable if ".visual." in n and "lora_" not in n]
    assert bool(vision_trainable) is (not freeze)
    assert not any("language_model" in n and "lora_" not in n for n in trainable)


# --- float32 master weights ----------------------------------------------------------------------------------------


def test_parameters_load_in_float32_also_where_a_gpu_would_pick_bfloat16(tmp_path, captioner_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model, _ = load_captioner(_config(tmp_path, captioner_dir, bf16=False, use_cpu=True))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_half_precision_parameters_need_deepspeed(tmp_path, captioner_dir, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    config = _config(tmp_path, captioner_dir, model_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"model_dtype 'bfloat16' trains without float32 master weights"):
        load_captioner(config)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` with a ZeRO config sets
    assert master_dtype(config) == torch.bfloat16


def _lm_step(model, *, lr: float, autocast: bool) -> dict[str, torch.Tensor]:
    """One AdamW step on a language-modelling loss; returns each parameter's change."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ids = torch.randint(10, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return {n: (p.detach().float() - before[n].float()) for n, p in model.named_parameters()}


def test_a_tiny_lr_step_moves_fp32_master_weights_as_the_fp32_reference_does(tmp_path, captioner_dir) -> None:
    """At lr 1e-6 a bfloat16-autocast step on float32 parameters moves the weights as a float32 step does, while
    the same step on bfloat16 parameters leaves almost all of them where they were."""
    config = _config(tmp_path, captioner_dir)
    language = "language_model"
    deltas = {}
    for name, autocast in (("fp32", False), ("masters", True)):
        model, _ = load_captioner(config)
        deltas[name] = {n: d for n, d in _lm_step(model, lr=1e-6, autocast=autocast).items() if language in n}
    model, _ = load_captioner(config)
    deltas["bf16"] = {n: d for n, d in _lm_step(model.to(torch.bfloat16), lr=1e-6, autocast=False).items()}
    deltas["bf16"] = {n: d for n, d in deltas["bf16"].items() if language in n}

    flat = {k: torch.cat([d.flatten() for d in v.values()]) for k, v in deltas.items()}
    # the weights the float32 reference moves (embedding rows of tokens not in the batch get no gradient)
    trained = flat["fp32"] != 0
    assert trained.float().mean() > 0.5

    def moved(which: str) -> float:
        return (flat[which][trained] != 0).float().mean().item()

    print(f"share of the reference's moved weights that move at lr 1e-6: bf16 autocast on fp32 masters "
          f"{moved('masters'):.3f}, pure bf16 parameters {moved('bf16'):.3f}")  # fmt: skip
    assert moved("masters") > 0.99
    # Adam's first step is lr * sign(grad): the autocast step must agree with the reference on (nearly) every weight
    agree = (torch.sign(flat["masters"][trained]) == torch.sign(flat["fp32"][trained])).float().mean().item()
    assert agree > 0.95, agree
    assert flat["masters"].abs().max().item() == pytest.approx(1e-6, rel=0.05)
    assert moved("bf16") < 0.2
