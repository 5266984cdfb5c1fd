"""Reward functions with TRL's contract (lists in, `list[float | None]` out, `None` to skip), and their registry.

    vpo            the RAPID graph's verdict on each sampled perception (`rapid_agent.rl.vpo`): the frozen
                   reasoner's correctness, minus lambda for a correct output that holds no genuine caption
    accuracy       the tentative solution's boxed answer checked against gold with math-verify (GRPO stage)
    format         1 when the output has the parts its mode asks for: tags and a boxed answer

Recipes name the rewards they use (`rewards: [accuracy, format]`, weighted by TRL's `reward_weights`);
`REWARDS` maps those names to the factories here, and `rapid_agent.rl.train` builds them from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rapid_agent.answers import check_answer, last_boxed
from rapid_agent.perception import has_caption, has_solution, split_output
from rapid_agent.rl.vpo import RewardFunc, completion_text, vpo_reward

logger = logging.getLogger(__name__)


def _texts(completions: list) -> list[str | None]:
    """Each completion's text, None for one that is not text (skipped, not a crash)."""
    out: list[str | None] = []
    for completion in completions:
        try:
            out.append(completion_text(completion))
        except ValueError as exc:
            logger.warning("reward: skipping a sample: %s", exc)
            out.append(None)
    return out


def accuracy_reward(*, mode: str, answer_timeout_s: float = 5.0) -> RewardFunc:
    """1 when the tentative solution's last `\\boxed{}` matches the gold answer, else 0 (no box: 0); None (skipped)
    when the answer checker could not run."""
    if not has_solution(mode):
        raise ValueError(f"mode {mode!r} produces no solution to score")

    def accuracy(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float | None]:
        if len(answer) != len(completions):
            raise ValueError(f"accuracy reward: {len(answer)} answers for {len(completions)} completions")
        choices = kwargs.get("choices") or [()] * len(completions)
        rewards: list[float | None] = []
        for text, gold, options in zip(_texts(completions), answer, choices):
            if text is None or not isinstance(gold, str) or not gold.strip():
                rewards.append(None)
                continue
            solution = split_output(mode, text).solution or ""
            # only a boxed answer counts: without a box, check_answer would fall back to the text's last number
            if last_boxed(solution) is None:
                rewards.append(0.0)
                continue
            verdict = check_answer(solution, gold, choices=options or (), timeout_s=answer_timeout_s)
            if verdict.undecided:  # the checker could not run: no reward, never a wrong one
                logger.warning("accuracy reward: skipping a sample: %s", verdict.reason)
                rewards.append(None)
                continue
            rewards.append(1.0 if verdict.correct else 0.0)
        return rewards

    accuracy.__name__ = "accuracy"
    return accuracy


def format_reward(*, mode: str) -> RewardFunc:
    """1 when the output has every tagged part its mode asks for, non-empty, and the solution ends in a box."""

    def format_(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [None if t is None else 1.0 if well_formed(mode, t) else 0.0 for t in _texts(completions)]

    format_.__name__ = "format"
    return format_


def well_formed(mode: str, text: str) -> bool:
    low = text.lower()
    if "+" in mode:
        for tag in ("caption", "solution"):
            if f"<{tag}>" not in low or f"</{tag}>" not in low:
                return False
    part = split_output(mode, text)
    if has_caption(mode) and not (part.caption or "").strip():
        return False
    return not has_solution(mode) or last_boxed(part.solution or "") is not None


#: reward names (what recipes write in `rewards:`) to their factories
REWARDS: dict[str, Callable[..., RewardFunc]] = {
    "vpo": vpo_reward,
    "accuracy": accuracy_reward,
    "format": format_reward,
}

__all__ = [
    "REWARDS",
    "RewardFunc",
    "accuracy_reward",
    "completion_text",
    "format_reward",
    "vpo_reward",
    "well_formed",
]
