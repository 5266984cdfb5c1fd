"""Stage configs: validation names the bad field, every shipped recipe parses and validates, the CLI documents all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from trl import TrlParser

from rapid_agent.rl.__main__ import cli
from rapid_agent.rl.config import STAGES, SolutionConfig, VPOConfig

RECIPES = Path(__file__).resolve().parents[1] / "rl" / "recipes"


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (VPOConfig, "mode", "qcap+answer"),
        (VPOConfig, "mode", "none"),
        (VPOConfig, "caption_penalty", 1.5),
        (VPOConfig, "reasoner", "gpt4"),
        (VPOConfig, "judge", "nobody"),
        (VPOConfig, "reasoner_temperature", -0.1),
        (VPOConfig, "reasoner_top_p", 0.0),
        (VPOConfig, "reasoner_max_new_tokens", 0),
        (VPOConfig, "reasoner_retries", -1),
        (VPOConfig, "lora_r", 0),
        (VPOConfig, "world_train_size", 0),
        (VPOConfig, "max_pixels", 10),
        (VPOConfig, "model_dtype", "float8"),
        (VPOConfig, "answer_column", ""),
        (SolutionConfig, "mode", "qcap"),
        (SolutionConfig, "format_reward_weight", -1.0),
    ],
)
def test_validation_error_names_the_field_and_quotes_the_value(tmp_path, cls, field, value) -> None:
    with pytest.raises(ValueError) as info:
        cls(output_dir=str(tmp_path), report_to="none", **{field: value})
    message = str(info.value)
    assert message.startswith(field) and repr(value) in message


def test_valid_config_keeps_trl_fields() -> None:
    config = VPOConfig(output_dir="out", report_to="none", num_generations=4, per_device_train_batch_size=8)
    assert config.caption_penalty == 0.1 and config.judge == "policy" and config.judges_captions
    assert config.reasoner_temperature == 0.6 and config.reasoner_top_p == 0.95
    assert config.num_generations == 4 and config.generation_batch_size == 8
    assert not VPOConfig(output_dir="out", report_to="none", mode="sol").judges_captions


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(tmp_path, recipe: Path) -> None:
    stage = recipe.stem.rsplit("_", 1)[-1]
    assert stage in STAGES, f"recipe {recipe.name} must end in _grpo.yaml or _vpo.yaml"
    (config,) = TrlParser(STAGES[stage]).parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path)]
    )
    assert isinstance(config, STAGES[stage])
    if "qwen2_5_vl" in recipe.name:  # the paper's settings
        assert (config.temperature, config.learning_rate) == (1.0, 1e-6)
        world = 8  # GPUs the recipes are written for
        assert config.per_device_train_batch_size * world * config.gradient_accumulation_steps == 256
        if stage == "grpo":
            assert (config.num_generations, config.epsilon, config.epsilon_high, config.beta) == (8, 0.2, 0.25, 0.0)
            assert config.max_steps == 200
        else:
            assert (config.num_generations, config.beta, config.caption_penalty) == (4, 1e-3, 0.1)
            assert config.reasoner.startswith("openai:")


def test_accelerate_configs_exist() -> None:
    names = {p.name for p in (RECIPES / "accelerate").glob("*.yaml")}
    assert {"multi_gpu.yaml", "zero3.yaml", "cpu_ddp.yaml"} <= names


def test_cli_help_lists_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["vpo", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    missing = [f.name for f in dataclasses.fields(VPOConfig) if f.init and f"--{f.name}" not in out]
    assert not missing


def test_cli_without_stage_prints_usage(capsys) -> None:
    assert cli([]) == 0 and "grpo" in capsys.readouterr().out
    assert cli(["train"]) == 2
