"""The VPO, accuracy and format rewards and the caption judges, with stand-in engines (no model)."""

from __future__ import annotations

import re

import pytest

from rapid_agent.backends import GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.judge import EngineJudge, build_judge, parse_verdict
from rapid_agent.rl.rewards import REWARDS, accuracy_reward, format_reward, vpo_reward, well_formed

GEN = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=16)
_CAPTION = re.compile(r"Description:\n(.*?)\n\nQuestion:", re.DOTALL)


def caption_of(prompt: str) -> str:
    return _CAPTION.search(prompt).group(1)


def reasoner_reading(fn):
    """A stand-in reasoner answering from the caption it is shown; a caption saying FAIL makes its request fail."""

    def answer(request):
        caption = caption_of(request.prompt)
        if "FAIL" in caption:
            raise RuntimeError("reasoner down")
        return fn(caption)

    return FunctionEngine(answer)


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def call(reward, texts, *, answer="3", question="How many red circles are there?", **extra):
    metrics: dict[str, list[float]] = {}
    out = reward(
        prompts=[[{"role": "user", "content": "..."}]] * len(texts),
        completions=[chat(t) for t in texts],
        question=[question] * len(texts),
        answer=[answer] * len(texts),
        log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
        log_extra=lambda column, values: None,
        **extra,
    )
    return out, metrics


def test_vpo_reward_scores_correct_penalised_wrong_and_failed_samples_in_one_reasoner_call() -> None:
    # the reasoner counts the circles the caption names; the judge calls a caption genuine if it names a colour
    reasoner = reasoner_reading(lambda cap: f"\\boxed{{{cap.count('circle')}}}")
    judge = EngineJudge(FunctionEngine(lambda r: "yes" if "red" in r.prompt.rsplit("Text:", 1)[1] else "no"))
    reward = vpo_reward(reasoner, mode="cap", gen=GEN, judge=judge, caption_penalty=0.1, retries=0)
    texts = [
        "Three red shapes: a circle, a circle and a circle.",  # correct, genuine
        "circle circle circle",  # correct, no genuine caption
        "One red circle.",  # wrong
        "FAIL",  # the reasoner call fails
    ]
    rewards, metrics = call(reward, texts)
    assert rewards == [1.0, pytest.approx(0.9), 0.0, None]
    assert reasoner.num_calls == 1 and reasoner.num_requests == 4
    assert metrics["vpo/skipped"] == [1.0]
    assert metrics["vpo/reasoner_accuracy"] == [pytest.approx(2 / 3)]
    assert metrics["vpo/penalty_rate"] == [pytest.approx(1 / 3)]
    assert metrics["vpo/valid_caption_ratio"] == [0.5]
    assert {"vpo/reasoner_latency_s", "vpo/reasoner_completion_tokens"} <= metrics.keys()


def test_vpo_reward_for_a_group_of_g_samples_is_one_batched_reasoner_call() -> None:
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}")
    reward = vpo_reward(reasoner, mode="qcap+sol", gen=GEN, judge=None)
    rewards, _ = call(
        reward, [f"<caption>{i} red circles</caption><solution>\\boxed{{3}}</solution>" for i in range(8)]
    )
    assert rewards == [1.0] * 8
    assert reasoner.num_calls == 1 and [len(c) for c in reasoner.calls] == [8]


def test_judge_sees_only_correct_outputs_and_off_means_no_penalty() -> None:
    seen: list[str] = []
    judge_engine = FunctionEngine(lambda r: seen.append(r.prompt.rsplit("Text:", 1)[1]) or "no")
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}" if "three" in cap else "\\boxed{1}")
    texts = ["three", "one"]
    rewards, _ = call(vpo_reward(reasoner, mode="cap", gen=GEN, judge=EngineJudge(judge_engine)), texts)
    assert rewards == [pytest.approx(0.9), 0.0] and len(seen) == 1 and "three" in seen[0]
    rewards, _ = call(vpo_reward(reasoner, mode="cap", gen=GEN, judge=None), texts)
    assert rewards == [1.0, 0.0]


def test_reasoner_failures_are_retried_before_a_sample_is_skipped() -> None:
    attempts: dict[str, int] = {}

    def flaky(request):
        caption = caption_of(request.prompt)
        attempts[caption] = attempts.get(caption, 0) + 1
        if caption == "flaky" and attempts[caption] == 1:
            raise RuntimeError("timeout")
        if caption == "down":
            raise RuntimeError("reasoner down")
        return "\\boxed{3}"

    reasoner = FunctionEngine(flaky)
    rewards, metrics = call(vpo_reward(reasoner, mode="cap", gen=GEN, retries=2), ["flaky", "down", "fine"])
    assert rewards == [1.0, None, 1.0]
    assert attempts == {"flaky": 2, "down": 3, "fine": 1}
    assert metrics["vpo/skipped"] == [1.0]


def test_vpo_reward_reads_multiple_choice_letters() -> None:
    reasoner = reasoner_reading(lambda cap: "The answer is \\boxed{B}.")
    reward = vpo_reward(reasoner, mode="cap", gen=GEN)
    rewards, _ = call(reward, ["red and blue"], answer="B", choices=[["red", "blue"]])
    assert rewards == [1.0]


def test_empty_caption_is_not_genuine_without_asking_the_judge() -> None:
    engine = FunctionEngine(lambda r: "yes")
    judge = EngineJudge(engine)
    assert judge(["", None, "  ", "two red circles"]) == [False, False, False, True]
    assert engine.num_requests == 1


def test_parse_verdict() -> None:
    assert parse_verdict(" Yes.") is True
    assert parse_verdict("no, it only answers") is False
    assert parse_verdict("maybe") is None
    assert build_judge("off") is None


def test_accuracy_reward_checks_the_solution_box_only() -> None:
    reward = accuracy_reward(mode="qcap+sol")
    texts = [
        "<caption>3 red circles</caption><solution>So \\boxed{3}</solution>",
        "<caption>\\boxed{3}</caption><solution>So \\boxed{4}</solution>",
        "<caption>3 red circles</caption><solution>the answer is 3</solution>",  # no box
        "<caption>x</caption><solution>\\boxed{\\frac{6}{2}}</solution>",  # math-verify equivalence
    ]
    rewards, _ = call(reward, texts)
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="cap"):
        accuracy_reward(mode="cap")


def test_format_reward() -> None:
    reward = format_reward(mode="qcap+sol")
    rewards, _ = call(reward, ["<caption>a</caption><solution>\\boxed{1}</solution>", "just text \\boxed{1}"])
    assert rewards == [1.0, 0.0]
    assert well_formed("sol", "so \\boxed{2}") and not well_formed("sol", "so 2")
    assert set(REWARDS) == {"vpo", "accuracy", "format"}
