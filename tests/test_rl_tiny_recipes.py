"""The tiny CPU recipes start from the demo's perceiving base (`demo-base`) on the world it was pretrained on, with
the prompts it was pretrained with: otherwise the captioner is random, and its reward is 0 at every step.
(tests/test_rl_cli.py runs the VPO recipe end to end: its reward varies and its weights move.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from trl import TrlParser

from rapid_agent.demo.config import DEMO_PROMPTS
from rapid_agent.rl.config import SolutionConfig, VPOConfig
from rapid_agent.rl.data import load_train_dataset
from rapid_agent.rl.models import DEMO_BASE, load_captioner, resolve_model_path

RECIPES = Path(__file__).resolve().parents[1] / "rl" / "recipes"
TINY = [("tiny_cpu_vpo.yaml", VPOConfig), ("tiny_cpu_grpo.yaml", SolutionConfig)]


def recipe(name: str, cls, tmp_path: Path):
    parser = TrlParser((cls,))
    (config,) = parser.parse_args_and_config(["--config", str(RECIPES / name), "--output_dir", str(tmp_path)])
    return config


@pytest.mark.parametrize(("name", "cls"), TINY)
def test_the_tiny_recipes_start_from_the_demo_base_with_its_world_and_prompts(tmp_path, name, cls) -> None:
    config = recipe(name, cls, tmp_path)
    assert config.model_name_or_path == DEMO_BASE
    assert config.templates == DEMO_PROMPTS  # every prompt the base was taught and SmolLM2 was tuned for
    base = Path(resolve_model_path(DEMO_BASE))
    bound = json.loads((base / "manifest.json").read_text())["info"]["bound"]
    assert config.world_levels == bound["levels"] and config.world_max_objects == bound["max_objects"]
    assert config.world_seed == bound["world_seed"]
    rows = load_train_dataset(config)
    assert rows[0]["prompt"][0]["content"][1]["text"].startswith("Question:")  # the demo's query_caption
    assert rows[0]["image"].size == (bound["image_size"], bound["image_size"])


def test_demo_base_names_the_shipped_base_which_loads_as_the_policy(tmp_path) -> None:
    path = Path(resolve_model_path(DEMO_BASE))
    assert path.name == "pretrained" and path.parent.name == "demo" and (path / "model.safetensors").is_file()
    config = VPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, model_name_or_path=DEMO_BASE)
    model, processor = load_captioner(config)
    assert processor.tokenizer.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) > 500_000
    assert all(p.requires_grad for p in model.parameters())


def test_the_vpo_recipe_evaluates_the_live_policy_on_held_out_world_items(tmp_path) -> None:
    from rapid_agent.eval.adapters.world import WorldOptions

    config = recipe("tiny_cpu_vpo.yaml", VPOConfig, tmp_path)
    # the world adapter draws from the world seed's test split, which training leaves out (`world_test_size`)
    assert config.eval_benchmarks == ["world"] and not config.eval_options and config.eval_limit == 16
    assert config.world_seed == WorldOptions().seed and config.world_test_size >= WorldOptions().n
    assert [config.world_levels, config.world_max_objects] == [list(WorldOptions().levels), WorldOptions().max_objects]
    assert config.strict_answers is False  # SmolLM2 rarely writes \boxed{}: the strict parse would score all 0
    assert dataclasses.asdict(config.templates) == dataclasses.asdict(DEMO_PROMPTS)
