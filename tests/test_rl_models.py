"""The built-in tiny captioner cache, the reasoner alias, and what trains under the PEFT and freezing switches."""

from __future__ import annotations

import re

import pytest

from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.models import (
    ensure_tiny_captioner,
    load_captioner,
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
