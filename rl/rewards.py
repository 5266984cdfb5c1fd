"""Reward functions with TRL's contract: lists in (prompts, completions, dataset columns), `list[float | None]` out.

    vpo            the frozen reasoner's correctness from each sampled caption, minus lambda for a correct output
                   that holds no genuine caption; None for a sample whose reasoner call failed (TRL skips it)
    accuracy       the tentative solution's boxed answer checked against gold with math-verify (GRPO stage)
    format         1 when the output has the parts its mode asks for: tags and a boxed answer (GRPO stage)

Parameterised rewards come from factories; `REWARDS` maps names to them. Each VPO reward call makes one
micro-batched reasoner call for all its samples (retries aside), so G samples of a prompt cost one engine call.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from rapid_agent.answers import check_answer, last_boxed
from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.backends.batching import get_batcher
from rapid_agent.perception import Perception, has_caption, has_solution, reasoner_request, split_output
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or a conversational `[{"role": "assistant", ...}]` list."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _noop(*_: Any, **__: Any) -> None:
    return None


def call_reasoner(
    engine: Engine, requests: Sequence[ChatRequest], gen: GenerationConfig, retries: int
) -> list[Completion | Exception]:
    """All requests in one micro-batched call; requests that failed get up to `retries` more rounds."""
    batcher = get_batcher(engine)
    results = batcher.submit_many(requests, gen)
    for _ in range(retries):
        failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        if not failed:
            break
        for i, result in zip(failed, batcher.submit_many([requests[i] for i in failed], gen)):
            results[i] = result
    return results


def vpo_reward(
    reasoner: Engine,
    *,
    mode: str,
    gen: GenerationConfig,
    judge: Callable[[Sequence[str | None]], list[bool | None]] | None = None,
    caption_penalty: float = 0.1,
    retries: int = 1,
    templates: Prompts = DEFAULT_PROMPTS,
    answer_timeout_s: float = 5.0,
) -> RewardFunc:
    """The VPO reward. `judge` (see `rapid_agent.rl.judge`) sees only the captions of correct outputs."""
    penalise = judge is not None and caption_penalty > 0 and has_caption(mode)

    def vpo(
        prompts: list, completions: list, question: list[str], answer: list[str], **kwargs: Any
    ) -> list[float | None]:
        log_metric, log_extra = kwargs.get("log_metric", _noop), kwargs.get("log_extra", _noop)
        choices = kwargs.get("choices") or [()] * len(completions)
        parts: list[Perception] = [split_output(mode, completion_text(c)) for c in completions]
        requests = [reasoner_request(q, p, mode, templates) for q, p in zip(question, parts)]
        start = time.perf_counter()
        results = call_reasoner(reasoner, requests, gen, retries)
        latency = time.perf_counter() - start
        rewards: list[float | None] = []
        correct: list[int] = []
        for i, (result, gold) in enumerate(zip(results, answer)):
            if isinstance(result, Exception):
                rewards.append(None)
                continue
            verdict = check_answer(result.text, gold, choices=choices[i] or (), timeout_s=answer_timeout_s)
            rewards.append(1.0 if verdict.correct else 0.0)
            if verdict.correct:
                correct.append(i)
        genuine = judge([parts[i].caption for i in correct]) if penalise else [True] * len(correct)
        for i, verdict in zip(correct, genuine):
            if verdict is False:
                rewards[i] = 1.0 - caption_penalty
        _log_vpo(log_metric, results, len(correct), genuine, latency, penalise)
        log_extra("reasoner_output", [r.text if isinstance(r, Completion) else f"error: {r}" for r in results])
        return rewards

    vpo.__name__ = "vpo"
    vpo.judge = judge if penalise else None  # type: ignore[attr-defined]  # for inspection and tests
    return vpo


def _log_vpo(
    log_metric: Callable[[str, float], None],
    results: list[Completion | Exception],
    num_correct: int,
    genuine: list[bool | None],
    latency: float,
    penalise: bool,
) -> None:
    done = [r for r in results if isinstance(r, Completion)]
    skipped = len(results) - len(done)
    if skipped:
        first = next(r for r in results if isinstance(r, Exception))
        logger.warning(
            "vpo: %d of %d samples skipped, reasoner failed after retries: %s", skipped, len(results), first
        )
    log_metric("vpo/skipped", float(skipped))
    log_metric("vpo/reasoner_latency_s", latency)
    if done:
        log_metric("vpo/reasoner_accuracy", num_correct / len(done))
        log_metric("vpo/penalty_rate", sum(g is False for g in genuine) / len(done))
        log_metric("vpo/reasoner_completion_tokens", statistics.fmean(r.completion_tokens for r in done))
        log_metric("vpo/reasoner_prompt_tokens", statistics.fmean(r.prompt_tokens for r in done))
    if penalise and genuine:
        log_metric("vpo/valid_caption_ratio", sum(g is not False for g in genuine) / len(genuine))
        log_metric("vpo/judge_unparsed", float(sum(g is None for g in genuine)))


def accuracy_reward(*, mode: str, answer_timeout_s: float = 5.0) -> RewardFunc:
    """1 when the tentative solution's last `\\boxed{}` matches the gold answer, else 0 (no box: 0)."""
    if not has_solution(mode):
        raise ValueError(f"mode {mode!r} produces no solution to score")

    def accuracy(prompts: list, completions: list, answer: list[str], **kwargs: Any) -> list[float | None]:
        choices = kwargs.get("choices") or [()] * len(completions)
        rewards: list[float | None] = []
        for completion, gold, options in zip(completions, answer, choices):
            solution = split_output(mode, completion_text(completion)).solution or ""
            # only a boxed answer counts: without a box, check_answer would fall back to the text's last number
            boxed = last_boxed(solution) is not None
            ok = boxed and check_answer(solution, gold, choices=options or (), timeout_s=answer_timeout_s).correct
            rewards.append(1.0 if ok else 0.0)
        return rewards

    accuracy.__name__ = "accuracy"
    return accuracy


def format_reward(*, mode: str) -> RewardFunc:
    """1 when the output has every tagged part its mode asks for, non-empty, and the solution ends in a box."""

    def format_(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [1.0 if well_formed(mode, completion_text(c)) else 0.0 for c in completions]

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


REWARDS: dict[str, Callable[..., RewardFunc]] = {
    "vpo": vpo_reward,
    "accuracy": accuracy_reward,
    "format": format_reward,
}

__all__ = [
    "REWARDS",
    "RewardFunc",
    "accuracy_reward",
    "call_reasoner",
    "completion_text",
    "format_reward",
    "vpo_reward",
    "well_formed",
]
