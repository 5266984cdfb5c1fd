"""Stage configs: validation names the bad field, engine options and reasoners, rewards named by recipes, every
shipped recipe parses and says which lines are the paper's, the CLI documents all."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from trl import TrlParser

from rapid_agent.rl.__main__ import cli
from rapid_agent.rl.config import STAGE_REWARDS, STAGES, SolutionConfig, VPOConfig
from rapid_agent.rl.plan import LayoutConfig, Training
from rapid_agent.rl.rewards import REWARDS

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
        (VPOConfig, "judge_scope", "some"),
        (VPOConfig, "min_kept_fraction", 1.5),
        (VPOConfig, "dataset_num_proc", 0),
        (VPOConfig, "reasoner_retry_wait_s", -1.0),
        (VPOConfig, "reasoner_options", "{not json"),
        (VPOConfig, "reasoner_options", "[1, 2]"),
        (VPOConfig, "reasoner_weights", [1.0, 2.0]),
        (VPOConfig, "rewards", ["accuracy"]),
        (VPOConfig, "rewards", ["format"]),
        (SolutionConfig, "mode", "qcap"),
        (SolutionConfig, "rewards", ["vpo"]),
        (SolutionConfig, "rewards", ["accuracy", "accuracy"]),
    ],
)
def test_validation_error_names_the_field_and_quotes_the_value(tmp_path, cls, field, value) -> None:
    with pytest.raises(ValueError) as info:
        cls(output_dir=str(tmp_path), report_to="none", **{field: value})
    message = str(info.value)
    assert message.startswith(field) and repr(value) in message


def test_reasoners_and_their_engine_options() -> None:
    config = VPOConfig(
        output_dir="out",
        report_to="none",
        reasoner="openai:r1@http://a:8000/v1",
        extra_reasoners=["hf:/models/small"],
        reasoner_weights=[2.0, 1.0],
        reasoner_options='{"timeout_s": 1800, "hf:/models/small": {"device_map": "auto"}}',  # as the CLI gives it
    )
    assert config.reasoner_specs == ["openai:r1@http://a:8000/v1", "hf:/models/small"]
    assert config.options_for("openai:r1@http://a:8000/v1") == {"timeout_s": 1800}
    assert config.options_for("hf:/models/small") == {"timeout_s": 1800, "device_map": "auto"}
    with pytest.raises(ValueError, match=r"^extra_reasoners: .*'gpt4'"):
        VPOConfig(output_dir="out", report_to="none", extra_reasoners=["gpt4"])
    with pytest.raises(ValueError, match=r"^extra_reasoners must not repeat a reasoner"):
        VPOConfig(output_dir="out", report_to="none", reasoner="hf:x", extra_reasoners=["hf:x"])
    with pytest.raises(ValueError, match=r"^reasoner_options\['hf:x'\] must be a mapping"):
        VPOConfig(output_dir="out", report_to="none", reasoner="hf:x", reasoner_options={"hf:x": 3})


def test_the_rewards_recipes_may_name_are_the_registry() -> None:
    assert {name for names in STAGE_REWARDS.values() for name in names} == set(REWARDS)
    assert SolutionConfig(output_dir="out", report_to="none").rewards == ["accuracy"]
    assert VPOConfig(output_dir="out", report_to="none", rewards=["vpo", "format"]).rewards == ["vpo", "format"]
    with pytest.raises(ValueError, match=r"^reward_weights must give one weight per reward"):
        SolutionConfig(output_dir="out", report_to="none", rewards=["accuracy", "format"], reward_weights=[1.0])


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
    config, layout = TrlParser((STAGES[stage], LayoutConfig)).parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path)]
    )
    assert isinstance(config, STAGES[stage])
    if "qwen2_5_vl" in recipe.name:  # the paper's settings
        size = re.search(r"qwen2_5_vl_(\d+)b", recipe.name).group(1)
        assert (config.temperature, config.learning_rate, config.max_steps) == (1.0, 1e-6, 200)
        world = Training.read(layout.accelerate_config).processes  # the training GPUs of the recipe's layout
        assert world == (16 if size == "72" else 8)
        assert config.per_device_train_batch_size * world * config.gradient_accumulation_steps == 256
        assert (config.epsilon, config.epsilon_high, config.loss_type, config.scale_rewards) == (
            0.2,
            0.25,
            "dapo",
            "group",
        )
        assert config.model_dtype == "auto"  # float32 master weights
        if stage == "grpo":
            assert (config.num_generations, config.beta, config.rewards) == (
                8 if size in ("3", "7") else 4,
                0.0,
                ["accuracy"],
            )
        else:
            assert (config.num_generations, config.beta, config.caption_penalty) == (4, 1e-3, 0.1)
            # the host is the launcher's to fill in (python -m rapid_agent.rl plan prints the layout)
            assert config.reasoner == "openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://${REASONER_HOST}:8000/v1"
            assert config.strict_answers and config.judge_scope == "all"
            # long reasoning: minutes per request, hundreds of requests in flight
            options = config.options_for(config.reasoner)
            assert options["timeout_s"] >= 1800 and options["max_concurrency"] >= 128


PAPER_RECIPES = sorted(RECIPES.glob("qwen2_5_vl_*.yaml"))


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: p.name)
def test_every_paper_recipe_line_says_where_it_comes_from(recipe: Path) -> None:
    text = recipe.read_text()
    unmarked = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not re.search(r"\s#\s*(paper|ours)\b", line)
    ]
    assert not unmarked, f"{recipe.name}: lines that do not say 'paper' or 'ours': {unmarked}"
    launch = re.search(r"--config_file (rl/recipes/accelerate/\w+\.yaml)", text)
    assert launch and (RECIPES.parents[1] / launch.group(1)).is_file()
    accelerate = yaml.safe_load((RECIPES.parents[1] / launch.group(1)).read_text())
    # float32 masters: a DeepSpeed ZeRO stage (optimizer-held masters) with bfloat16 compute
    assert accelerate["distributed_type"] == "DEEPSPEED" and accelerate["mixed_precision"] == "bf16"


def test_the_paper_runs_grpo_before_vpo_except_for_32b() -> None:
    names = {p.name for p in PAPER_RECIPES}
    for size in ("3b", "7b", "72b"):
        assert f"qwen2_5_vl_{size}_grpo.yaml" in names
        vpo = yaml.safe_load((RECIPES / f"qwen2_5_vl_{size}_vpo.yaml").read_text())
        assert vpo["model_name_or_path"] == f"runs/qwen2_5_vl_{size}_grpo"
    assert "qwen2_5_vl_32b_grpo.yaml" not in names


def test_accelerate_configs_exist() -> None:
    names = {p.name for p in (RECIPES / "accelerate").glob("*.yaml")}
    assert {"multi_gpu.yaml", "zero2.yaml", "zero3.yaml", "cpu_ddp.yaml"} <= names


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


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: p.name)
def test_vllm_gets_a_context_sized_to_the_prompt_and_completion_budgets(tmp_path, recipe: Path) -> None:
    """Left unset, vLLM asks for the model's 128k context and refuses to start when one such request does not fit
    its cache (vllm/v1/core/kv_cache_planning.py, check_enough_kv_cache_memory)."""
    stage = recipe.stem.rsplit("_", 1)[-1]
    config, _ = TrlParser((STAGES[stage], LayoutConfig)).parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path)]
    )
    assert config.use_vllm
    text, image, completion = config.max_prompt_text_tokens, config.max_pixels // (28 * 28), 1024
    assert config.max_completion_length == completion and image == 1280
    assert config.vllm_max_model_length == text + image + completion == 3328
    explicit, _ = TrlParser((STAGES[stage], LayoutConfig)).parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--vllm_max_model_length", "8192"]
    )
    assert explicit.vllm_max_model_length == 8192
