"""The VPO reward: the RAPID graph's verdict on each sampled perception, with TRL's reward contract.

Each sampled captioner output goes into the graph as a given perception (`captioner_output`), so the graph's own
reason -> score path answers and judges it: the same prompts, answer parse and scoring as evaluation and serving,
one batched reasoner call per reasoner for the whole batch (`asolve_batch` tells the micro-batcher the batch size).
Training scores strictly by default (`strict_answers`, `rapid_agent.config.TRAINING_STRICT_ANSWERS`: only the final
`\\boxed{}` after the reasoning counts), and a reasoner output cut at its token budget (`finish_reason == "length"`)
is wrong whatever it holds; the graph's own default, for evaluation and serving, reads the answer anywhere.

    reward = mean over reasoners of [correct]   (weighted; one reasoner in the paper)
             x (1 - lambda) when a judge says the output holds no genuine caption

How it departs from a plain rule reward: the score depends on what frozen models do with the completion. A batch
whose lists disagree in length is a caller bug and raises before any reasoner is paid for; a malformed sample (no
text, no gold answer, bad choices) is skipped (`None`, which TRL >= 1.6 leaves out of the advantage baseline) with
its reason logged; a sample whose reasoner calls failed after `retries` rounds (tenacity, exponential waits) is
skipped too. There is always exactly one reward per completion. The function counts the reasoner requests it has
sent (`reasoner_calls`, retries included), which the trainer logs per step (`rapid_agent.rl.dynamic`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Number
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential, wait_none

from rapid_agent.api import asolve_batch
from rapid_agent.backends import Engine, GenerationConfig
from rapid_agent.config import TRAINING_STRICT_ANSWERS, RapidContext
from rapid_agent.graphs.graph import run_sync
from rapid_agent.perception import has_caption
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float | None]]
Judge = Callable[[Sequence[str | None]], list[bool | None]]
#: longest reasoner output kept in the completions table (`log_extra`), so a runaway answer cannot bloat the logs
MAX_LOGGED_CHARS = 4000


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or a conversational `[{"role": "assistant", ...}]` list.
    Raises ValueError (saying what it got) for anything else, so that a caller can skip that sample."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, (list, tuple)):
            return "".join(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    raise ValueError(f"completion is neither text nor a chat message list: {completion!r:.80}")


@dataclass
class _Sample:
    """One completion made ready for the graph, or the reason it cannot be scored."""

    index: int
    graph_input: dict | None
    problem: str | None


def _text_or_number(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Number) and not isinstance(value, bool) and math.isfinite(float(value)):  # type: ignore[arg-type]
        return str(value)
    return None


def _choices(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return None
    options = [_text_or_number(c) for c in value]
    return None if any(o is None for o in options) else options  # type: ignore[return-value]


def prepare_batch(completions: Any, question: Any, answer: Any, choices: Any = None) -> list[_Sample]:
    """Check the batch as a whole (raise on lists that disagree in length: nothing can be matched up), then each
    sample (a malformed one gets the reason it is skipped)."""
    columns = {"completions": completions, "question": question, "answer": answer}
    if choices is not None:
        columns["choices"] = choices
    for name, values in columns.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"vpo reward: {name} must be a list, got {type(values).__name__}")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"vpo reward: the batch's lists differ in length ({lengths}); one entry per completion")
    out = []
    for i, completion in enumerate(completions):
        problem = None
        try:
            text = completion_text(completion)
        except ValueError as exc:
            text, problem = "", str(exc)
        q = question[i].strip() if isinstance(question[i], str) else ""
        gold = _text_or_number(answer[i])
        options = _choices(choices[i] if choices is not None else None)
        if problem is None and not text.strip():
            problem = "empty completion"
        elif problem is None and not q:
            problem = f"question is not a non-empty string: {question[i]!r:.80}"
        elif problem is None and gold is None:
            problem = f"gold answer is missing or not text: {answer[i]!r:.80}"
        elif problem is None and options is None:
            problem = f"choices are not a list of option texts: {choices[i]!r:.80}"
        sample = None
        if problem is None:
            sample = {"id": str(i), "question": q, "answer": gold, "choices": options, "captioner_output": text}
        out.append(_Sample(i, sample, problem))
    return out


def _retryable(state: dict) -> bool:
    """A run that failed inside the reasoner (a timeout, a server error): worth another round."""
    return any(str(e).startswith("reasoner:") for e in state.get("errors") or [])


def _outcome(state: dict, strict: bool) -> bool | None:
    """The graph's verdict on one run: True/False, or None when there is none (the run failed)."""
    if state.get("errors") or state.get("correct") is None:
        return None
    # strictly, a truncated output is wrong whatever its text holds (the graph's strict parse agrees, once wired)
    return bool(state["correct"]) and not (strict and state.get("reasoner_finish_reason") == "length")


def _label(engine: Engine, taken: set[str]) -> str:
    """A short metric-friendly name for a reasoner: its model's last path part, made unique."""
    spec = str(getattr(engine, "spec", "") or type(engine).__name__)
    model = spec.split(":", 1)[-1].split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1] or spec
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[:48] or "reasoner"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}_{n}", n + 1
    taken.add(label)
    return label


def vpo_reward(
    reasoners: Engine | Sequence[Engine],
    *,
    mode: str,
    gen: GenerationConfig,
    judge: Judge | None = None,
    caption_penalty: float = 0.1,
    retries: int = 1,
    templates: Prompts = DEFAULT_PROMPTS,
    answer_timeout_s: float = 5.0,
    weights: Sequence[float] | None = None,
    judge_scope: str = "correct",
    strict_answers: bool = TRAINING_STRICT_ANSWERS,
    retry_wait_s: float = 0.0,
) -> RewardFunc:
    """The VPO reward over one or several frozen reasoners. `judge` (see `rapid_agent.rl.caption_judge`) sees the captions
    of correct outputs (`judge_scope="correct"`) or of every output (`"all"`)."""
    engines = [reasoners] if isinstance(reasoners, Engine) else list(reasoners)
    if not engines or not all(isinstance(e, Engine) for e in engines):
        raise TypeError(f"reasoners must be an Engine or a non-empty list of them, got {reasoners!r}")
    weights = [1.0] * len(engines) if weights is None else [float(w) for w in weights]
    if len(weights) != len(engines) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be one non-negative weight per reasoner, not all 0, got {weights!r}")
    if judge_scope not in ("correct", "all"):
        raise ValueError(f"judge_scope must be 'correct' or 'all', got {judge_scope!r}")
    taken: set[str] = set()
    labels = [_label(e, taken) for e in engines]
    contexts = [
        RapidContext(
            captioner=None,
            reasoner=engine,
            mode=mode,
            reasoner_gen=gen,
            prompts=templates,
            answer_timeout_s=answer_timeout_s,
            strict_answers=strict_answers,
        )
        for engine in engines
    ]
    penalise = judge is not None and caption_penalty > 0 and has_caption(mode)
    wait = wait_exponential(multiplier=retry_wait_s, max=60) if retry_wait_s > 0 else wait_none()

    def run_graph(inputs: list[dict]) -> list[list[dict]]:
        """Every reasoner's graph runs over `inputs`, with retry rounds for runs that failed in the reasoner."""
        states: list[list[dict]] = [[{} for _ in inputs] for _ in engines]
        pending = [(r, i) for r in range(len(engines)) for i in range(len(inputs))]

        def one_round() -> list[tuple[int, int]]:
            nonlocal pending
            by_reasoner: dict[int, list[int]] = {}
            for r, i in pending:
                by_reasoner.setdefault(r, []).append(i)

            vpo.reasoner_calls += len(pending)  # type: ignore[attr-defined]  # paid, whatever comes back

            async def all_reasoners() -> list[list[dict]]:
                runs = [asolve_batch([inputs[i] for i in idx], context=contexts[r]) for r, idx in by_reasoner.items()]
                return list(await asyncio.gather(*runs))

            for (r, idx), results in zip(by_reasoner.items(), run_sync(all_reasoners())):  # type: ignore[arg-type]
                for i, state in zip(idx, results):
                    states[r][i] = state
            pending = [(r, i) for r, i in pending if _retryable(states[r][i])]
            return pending

        def give_up(retry_state: RetryCallState) -> list[tuple[int, int]]:
            return retry_state.outcome.result() if retry_state.outcome else pending

        # a round that raises (a bug, not a reasoner failure) is not retried: retry_if_result looks at results only
        Retrying(
            stop=stop_after_attempt(retries + 1), wait=wait, retry=retry_if_result(bool), retry_error_callback=give_up
        )(one_round)
        return states

    def vpo(prompts: list, completions: list, question: list, answer: list, **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric") or _noop
        log_extra = kwargs.get("log_extra") or _noop
        batch = prepare_batch(completions, question, answer, kwargs.get("choices"))
        valid = [s for s in batch if s.graph_input is not None]
        start = time.perf_counter()
        states = run_graph([s.graph_input for s in valid]) if valid else [[] for _ in engines]
        latency = time.perf_counter() - start

        rewards: list[float | None] = [None] * len(batch)
        captions: list[str | None] = [None] * len(batch)
        outcomes: list[list[bool | None]] = [[None] * len(batch) for _ in engines]
        for k, sample in enumerate(valid):
            for r in range(len(engines)):
                outcomes[r][sample.index] = _outcome(states[r][k], strict_answers)
            answered = [(weights[r], outcomes[r][sample.index]) for r in range(len(engines))]
            answered = [(w, ok) for w, ok in answered if ok is not None]
            total = sum(w for w, _ in answered)
            if answered and total > 0:
                rewards[sample.index] = sum(w for w, ok in answered if ok) / total
            first = next((states[r][k] for r in range(len(engines)) if states[r][k].get("caption")), states[0][k])
            captions[sample.index] = first.get("caption")

        scored = [i for i, r in enumerate(rewards) if r is not None]
        asked = [i for i in scored if rewards[i] > 0] if judge_scope == "correct" else scored
        verdicts: list[bool | None] = []
        penalised = 0
        if penalise:
            # called on every step, also with nothing to judge: the policy judge's parameter gathering is collective
            verdicts = list(judge([captions[i] for i in asked]))  # type: ignore[misc]
            if len(verdicts) != len(asked):
                raise RuntimeError(f"the judge returned {len(verdicts)} verdicts for {len(asked)} captions")
            for i, genuine in zip(asked, verdicts):
                if genuine is False and rewards[i]:
                    rewards[i] = rewards[i] * (1.0 - caption_penalty)
                    penalised += 1  # counted here: at caption_penalty 1 the reward it leaves is 0

        _log(log_metric, batch, states, outcomes, labels, rewards, verdicts, penalised, penalise, judge_scope, latency)
        log_extra("reasoner_output", _logged_outputs(batch, valid, states[0]))
        return rewards

    vpo.__name__ = "vpo"
    vpo.judge = judge if penalise else None  # type: ignore[attr-defined]  # for inspection and tests
    vpo.labels = labels  # type: ignore[attr-defined]
    vpo.reasoner_calls = 0  # type: ignore[attr-defined]  # requests sent so far, retries included (per process)
    return vpo


def _noop(*_: Any, **__: Any) -> None:
    return None


def _logged_outputs(batch: list[_Sample], valid: list[_Sample], states: list[dict]) -> list[str]:
    out = [f"skipped: {s.problem}" for s in batch]
    for sample, state in zip(valid, states):
        text = state.get("reasoner_output")
        out[sample.index] = text[-MAX_LOGGED_CHARS:] if isinstance(text, str) else f"error: {state.get('errors')}"
    return out


def _log(
    log_metric: Callable[[str, float], None],
    batch: list[_Sample],
    states: list[list[dict]],
    outcomes: list[list[bool | None]],
    labels: list[str],
    rewards: list[float | None],
    verdicts: list[bool | None],
    penalised: int,
    penalise: bool,
    judge_scope: str,
    latency: float,
) -> None:
    malformed = Counter(s.problem.split(":", 1)[0] for s in batch if s.problem)
    if malformed:
        example = next(s for s in batch if s.problem)
        count = sum(malformed.values())
        logger.warning(
            "vpo: %d malformed sample(s) skipped (%s); e.g. #%d: %s",
            count,
            dict(malformed),
            example.index,
            example.problem,
        )
    failed = [e for runs in states for st in runs for e in (st.get("errors") or [])]
    skipped = sum(r is None for r in rewards)
    if failed:
        logger.warning("vpo: %d reasoner run(s) failed after retries; e.g. %s", len(failed), failed[0])
    log_metric("vpo/skipped", float(skipped))
    log_metric("vpo/malformed", float(sum(malformed.values())))
    log_metric("vpo/reasoner_latency_s", latency)
    done = [st for runs in states for st in runs if st.get("reasoner_output") is not None]
    if done:
        log_metric("vpo/truncated_rate", statistics.fmean(st.get("reasoner_finish_reason") == "length" for st in done))
        tokens = [st.get("metrics", {}).get("reasoner_completion_tokens", 0) for st in done]
        log_metric("vpo/reasoner_completion_tokens", statistics.fmean(tokens))
    all_outcomes = [ok for per in outcomes for ok in per if ok is not None]
    if all_outcomes:
        log_metric("vpo/reasoner_accuracy", statistics.fmean(all_outcomes))
    if len(labels) > 1:
        for label, per in zip(labels, outcomes):
            answered = [ok for ok in per if ok is not None]
            if answered:
                log_metric(f"vpo/reasoner_accuracy/{label}", statistics.fmean(answered))
    if penalise:
        scored = [r for r in rewards if r is not None]
        if scored:
            log_metric("vpo/penalty_rate", penalised / len(scored))
        if verdicts:
            log_metric(f"vpo/valid_caption_ratio_{judge_scope}", statistics.fmean(v is not False for v in verdicts))
            log_metric("vpo/judge_unparsed", float(sum(v is None for v in verdicts)))
