"""The rule rewards (accuracy, format) and the reward registry."""

from __future__ import annotations

import pytest

from rapid_agent.rl.rewards import REWARDS, accuracy_reward, format_reward, vpo_reward, well_formed


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def call(reward, texts, *, answer="3"):
    completions = [chat(t) if isinstance(t, str) else t for t in texts]
    return reward(prompts=[None] * len(texts), completions=completions, answer=[answer] * len(texts)), None


def test_accuracy_reward_checks_the_solution_box_only() -> None:
    reward = accuracy_reward(mode="qcap+sol")
    texts = [
        "<caption>3 red circles</caption><solution>So \\boxed{3}</solution>",
        "<caption>\\boxed{3}</caption><solution>So \\boxed{4}</solution>",
        "<caption>3 red circles</caption><solution>the answer is 3</solution>",  # no box
        "<caption>x</caption><solution>\\boxed{\\frac{6}{2}}</solution>",  # math-verify equivalence
        [{"role": "assistant"}],  # not text: skipped
    ]
    rewards, _ = call(reward, texts)
    assert rewards == [1.0, 0.0, 0.0, 1.0, None]
    with pytest.raises(ValueError, match="cap"):
        accuracy_reward(mode="cap")


def test_accuracy_reward_skips_a_sample_whose_answer_check_could_not_run(monkeypatch) -> None:
    from rapid_agent import _verify_pool

    reward = accuracy_reward(mode="qcap+sol")
    texts = [
        "<caption>x</caption><solution>\\boxed{\\frac{6}{2}}</solution>",  # needs math-verify: a worker
        "<caption>x</caption><solution>\\boxed{3}</solution>",  # decided in-process
    ]
    _verify_pool.shutdown()
    monkeypatch.setattr(_verify_pool, "WORKER_MODULE", "rapid_agent._no_such_worker")  # no worker can start
    try:
        rewards, _ = call(reward, texts)
    finally:
        _verify_pool.shutdown()
    assert rewards == [None, 1.0]  # skipped, never a reward of 0 for a right answer


def test_format_reward() -> None:
    reward = format_reward(mode="qcap+sol")
    rewards, _ = call(reward, ["<caption>a</caption><solution>\\boxed{1}</solution>", "just text \\boxed{1}"])
    assert rewards == [1.0, 0.0]
    assert well_formed("sol", "so \\boxed{2}") and not well_formed("sol", "so 2")
    assert REWARDS["format"] is format_reward and REWARDS["vpo"] is vpo_reward
