"""Perception modes: prompts per mode, splitting outputs, and the reasoner prompt's parts and warnings."""

import pytest

from rapid_agent.perception import MODES, Perception, captioner_prompt, reasoner_prompt, split_output
from rapid_agent.prompts import DEFAULT_PROMPTS

QUESTION = "How many red circles are there?"


def test_every_mode_has_its_prompt():
    prompts = {mode: captioner_prompt(mode, QUESTION) for mode in MODES}
    assert prompts["none"] is None
    assert QUESTION not in prompts["cap"]  # a generic caption does not see the question
    for mode in ("qcap", "sol", "cap+sol", "qcap+sol"):
        assert QUESTION in prompts[mode]
    for mode in ("cap", "qcap"):
        assert "Do not" in prompts[mode] and "\\boxed" not in prompts[mode]
    for mode in ("sol", "cap+sol", "qcap+sol"):
        assert "\\boxed{}" in prompts[mode]
    assert len(set(p for p in prompts.values() if p)) == 5


def test_unknown_mode_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown perception mode 'qcap\+cot'.*qcap\+sol"):
        captioner_prompt("qcap+cot", QUESTION)


def test_split_combined_output():
    out = "<caption>3 red circles, 1 blue square.</caption>\n<solution>3 red. \\boxed{3}</solution>"
    parts = split_output("qcap+sol", out)
    assert parts.caption == "3 red circles, 1 blue square."
    assert parts.solution == "3 red. \\boxed{3}"


def test_split_when_tags_are_missing():
    assert split_output("cap+sol", "just a description") == Perception("just a description", None)
    assert split_output("qcap", "plain caption") == Perception("plain caption", None)
    assert split_output("sol", "3 + 1 = 4 \\boxed{4}") == Perception(None, "3 + 1 = 4 \\boxed{4}")
    # an unterminated solution tag still yields the solution
    assert split_output("qcap+sol", "<caption>a</caption><solution>b \\boxed{1}").solution == "b \\boxed{1}"


def test_reasoner_prompt_parts_and_warnings():
    prompt = reasoner_prompt(QUESTION, Perception("3 red circles", "so \\boxed{3}"), "qcap+sol")
    assert prompt.index("3 red circles") < prompt.index(QUESTION) < prompt.index("so \\boxed{3}")
    assert "may itself contain wrong solutions" in prompt and "may be wrong" in prompt
    assert prompt.rstrip().endswith("\\boxed{}.")
    caption_only = reasoner_prompt(QUESTION, Perception("3 red circles", None), "cap")
    assert "Tentative solution" not in caption_only
    solution_only = reasoner_prompt(QUESTION, Perception(None, "\\boxed{3}"), "sol")
    assert "Description" not in solution_only and "Tentative solution" in solution_only
    assert reasoner_prompt(QUESTION, Perception(None, None), "none").startswith(QUESTION)


def test_prompts_are_overridable():
    custom = DEFAULT_PROMPTS.replace(caption="List the objects.")
    assert captioner_prompt("cap", QUESTION, custom) == "List the objects."
