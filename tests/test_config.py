"""One home per setting: the reasoner's sampling and the answer check default to the constants of
`rapid_agent.config` / `rapid_agent.backends` in every config that holds them, or differ where the field says why."""

from __future__ import annotations

import dataclasses
import inspect

from rapid_agent.backends import REASONER_DEFAULTS
from rapid_agent.config import STRICT_ANSWERS, TRAINING_STRICT_ANSWERS, RapidContext
from rapid_agent.demo.config import DemoConfig
from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.vpo import vpo_reward


def _help(cls: type, name: str) -> str:
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["help"]


def test_the_graph_defaults_are_the_shared_constants() -> None:
    context = RapidContext()
    assert context.reasoner_gen is REASONER_DEFAULTS
    assert context.strict_answers is STRICT_ANSWERS is False


def test_training_reuses_the_reasoner_sampling_and_says_why_it_scores_strictly(tmp_path) -> None:
    config = VPOConfig(output_dir=str(tmp_path), report_to="none")
    assert config.reasoner_gen == REASONER_DEFAULTS
    assert config.strict_answers is TRAINING_STRICT_ANSWERS is True
    assert "TRAINING_STRICT_ANSWERS" in _help(VPOConfig, "strict_answers")
    # the reward function alone scores as training does
    assert inspect.signature(vpo_reward).parameters["strict_answers"].default is TRAINING_STRICT_ANSWERS


def test_the_demo_differs_only_where_its_fields_say_why() -> None:
    config, shared = DemoConfig(), dataclasses.asdict(REASONER_DEFAULTS)
    differ = {k for k, v in dataclasses.asdict(config.reasoner_gen).items() if v != shared[k]}
    assert differ == {"temperature", "max_new_tokens"}
    for name in ("reasoner_temperature", "reasoner_max_new_tokens"):
        assert "REASONER_DEFAULTS" in _help(DemoConfig, name)
    assert config.strict_answers is STRICT_ANSWERS  # the graph's, not training's: its help says why
    assert "SmolLM2" in _help(DemoConfig, "strict_answers")


def test_the_demos_vpo_scores_and_samples_the_reasoner_as_its_table_does(tmp_path) -> None:
    """Both read `DemoConfig.strict_answers` and `DemoConfig.reasoner_gen`, whatever they are set to."""
    from rapid_agent.demo.rows import context
    from rapid_agent.demo.vpo import _vpo_config

    for config in (
        DemoConfig.preset(True),
        DemoConfig.preset(True, strict_answers=True, reasoner_temperature=0.0, reasoner_max_new_tokens=7),
    ):
        vpo = _vpo_config(config, tmp_path / "captioner", tmp_path / "out", "hf:x", penalty=0.5)
        table = context(config, None, "hf:x")
        assert vpo.strict_answers == table.strict_answers == config.strict_answers
        assert vpo.reasoner_gen == table.reasoner_gen == config.reasoner_gen
    assert (vpo.reasoner_top_p, vpo.reasoner_max_new_tokens) == (1.0, 7)  # greedy: no nucleus
