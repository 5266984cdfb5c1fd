"""The VPO reward: the graph's verdict on sampled perceptions, several reasoners, malformed batches and a fuzz
run, with stand-in engines (no model)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rapid_agent.answers as answers
import rapid_agent.api as api
from rapid_agent.backends import Completion, Engine, GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.rl.caption_judge import EngineJudge
from rapid_agent.rl.rewards import vpo_reward

GEN = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=16)
_CAPTION = re.compile(r"Description:\n(.*?)\n\nQuestion:", re.DOTALL)


def caption_of(prompt: str) -> str:
    return _CAPTION.search(prompt).group(1)


def reasoner_reading(fn, **kwargs):
    """A stand-in reasoner answering from the caption it is shown; a caption saying FAIL makes its request fail."""

    def answer(request):
        caption = caption_of(request.prompt)
        if "FAIL" in caption:
            raise RuntimeError("reasoner down")
        return fn(caption)

    return FunctionEngine(answer, **kwargs)


class FinishingEngine(Engine):
    """Replies `fn(caption) -> (text, finish_reason)`: a reasoner whose outputs can be cut at the token budget."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.spec = "finishing"

    def generate(self, requests: Sequence, gen: GenerationConfig) -> list:
        out = []
        for request in requests:
            text, reason = self.fn(caption_of(request.prompt))
            out.append(Completion(text, 1, len(text.split()), finish_reason=reason))
        return out


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def call(reward, texts, *, answer="3", question="How many red circles are there?", **extra):
    metrics: dict[str, list[float]] = {}
    extras: dict[str, list] = {}
    out = reward(
        prompts=[[{"role": "user", "content": "..."}]] * len(texts),
        completions=[chat(t) if isinstance(t, str) else t for t in texts],
        question=[question] * len(texts),
        answer=[answer] * len(texts),
        log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
        log_extra=lambda column, values: extras.setdefault(column, []).extend(values),
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
    assert metrics["vpo/valid_caption_ratio_correct"] == [0.5]
    assert metrics["vpo/truncated_rate"] == [0.0]
    assert {"vpo/reasoner_latency_s", "vpo/reasoner_completion_tokens"} <= metrics.keys()
    # a penalty of 1 leaves a penalised sample reward 0, and it is still counted as penalised
    full = vpo_reward(reasoner, mode="cap", gen=GEN, judge=judge, caption_penalty=1.0, retries=0)
    rewards, metrics = call(full, texts)
    assert rewards == [1.0, 0.0, 0.0, None] and metrics["vpo/penalty_rate"] == [pytest.approx(1 / 3)]


def test_vpo_reward_is_the_graphs_verdict_one_graph_run_per_sample(monkeypatch) -> None:
    """The reward runs the graph (reason -> score: its nodes driven directly, or the compiled graph when a callback
    handler needs it) on each sampled perception, and agrees with the verdict `solve_batch` gives evaluation and
    serving for the same perception."""
    graph, direct = api.get_graph(), api.arun
    runs: list[dict] = []

    class CountingGraph:
        async def ainvoke(self, sample, context=None):
            runs.append(sample)
            return await graph.ainvoke(sample, context=context)

    async def counting_direct(sample, context, handlers=()):
        runs.append(sample)
        return await direct(sample, context, handlers)

    outputs = {"a": "So \\boxed{3}.", "b": "\\boxed{\\frac{6}{2}}", "c": "\\boxed{4}", "d": "\\boxed{B}"}
    reasoner = reasoner_reading(lambda cap: outputs[cap])
    reward = vpo_reward(reasoner, mode="cap", gen=GEN)
    monkeypatch.setattr(api, "get_graph", lambda: CountingGraph())
    monkeypatch.setattr(api, "arun", counting_direct)
    rewards, _ = call(reward, list(outputs))
    assert [r["captioner_output"] for r in runs] == list(outputs)
    monkeypatch.undo()
    context = RapidContext(captioner=None, reasoner=reasoner, mode="cap", reasoner_gen=GEN, strict_answers=True)
    question = "How many red circles are there?"
    samples = [{"question": question, "answer": "3", "captioner_output": text} for text in outputs]
    states = api.solve_batch(samples, context=context)
    assert rewards == [1.0 if s["correct"] else 0.0 for s in states] == [1.0, 1.0, 0.0, 0.0]


def test_vpo_reward_for_a_group_of_g_samples_is_one_batched_reasoner_call() -> None:
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}")
    reward = vpo_reward(reasoner, mode="qcap+sol", gen=GEN, judge=None)
    rewards, _ = call(
        reward, [f"<caption>{i} red circles</caption><solution>\\boxed{{3}}</solution>" for i in range(8)]
    )
    assert rewards == [1.0] * 8
    assert reasoner.num_calls == 1 and [len(c) for c in reasoner.calls] == [8]


def test_truncated_reasoner_output_is_wrong_and_its_rate_is_logged() -> None:
    # the same boxed answer, once complete and once cut at the token budget
    reasoner = FinishingEngine(lambda cap: ("So \\boxed{3}", "length" if "cut" in cap else "stop"))
    rewards, metrics = call(vpo_reward(reasoner, mode="cap", gen=GEN), ["whole", "cut", "cut again", "whole too"])
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    assert metrics["vpo/truncated_rate"] == [0.5]


def test_training_scores_only_the_final_box_after_the_reasoning() -> None:
    outputs = {
        "box": "<think>3 circles</think> The answer is \\boxed{3}.",
        "no box": "There are 3 circles, so the answer is 3",  # the evaluation parse falls back to the last number
        "box only in thinking": "<think>it is \\boxed{3}, let me check",  # reasoning that never finished
    }
    reward = vpo_reward(reasoner_reading(lambda cap: outputs[cap]), mode="cap", gen=GEN)
    rewards, _ = call(reward, list(outputs))
    assert rewards == [1.0, 0.0, 0.0]


def test_judge_sees_only_correct_outputs_and_off_means_no_penalty() -> None:
    seen: list[str] = []
    judge_engine = FunctionEngine(lambda r: seen.append(r.prompt.rsplit("Text:", 1)[1]) or "no")
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}" if "three" in cap else "\\boxed{1}")
    texts = ["three", "one"]
    rewards, metrics = call(vpo_reward(reasoner, mode="cap", gen=GEN, judge=EngineJudge(judge_engine)), texts)
    assert rewards == [pytest.approx(0.9), 0.0] and len(seen) == 1 and "three" in seen[0]
    assert metrics["vpo/valid_caption_ratio_correct"] == [0.0]
    rewards, _ = call(vpo_reward(reasoner, mode="cap", gen=GEN, judge=None), texts)
    assert rewards == [1.0, 0.0]


def test_valid_caption_ratio_over_all_captions_is_logged_on_every_step() -> None:
    """With judge_scope 'all' the ratio (the paper's training plot) is there also on a step where nothing is
    correct; with 'correct' it is named so, and only the correct outputs' captions are judged."""
    judge = EngineJudge(FunctionEngine(lambda r: "yes" if "red" in r.prompt.rsplit("Text:", 1)[1] else "no"))
    always_wrong = reasoner_reading(lambda cap: "\\boxed{0}")
    reward = vpo_reward(always_wrong, mode="cap", gen=GEN, judge=judge, judge_scope="all")
    rewards, metrics = call(reward, ["two red circles", "circles", "a red square", "blue"])
    assert rewards == [0.0] * 4
    assert metrics["vpo/valid_caption_ratio_all"] == [0.5]
    assert "vpo/valid_caption_ratio_correct" not in metrics
    _, metrics = call(vpo_reward(always_wrong, mode="cap", gen=GEN, judge=judge), ["two red circles", "circles"])
    assert "vpo/valid_caption_ratio_all" not in metrics and "vpo/valid_caption_ratio_correct" not in metrics


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


def test_mismatched_batch_lists_fail_before_any_reasoner_call() -> None:
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}")
    reward = vpo_reward(reasoner, mode="cap", gen=GEN)
    with pytest.raises(ValueError, match=r"differ in length.*'completions': 3.*'answer': 2"):
        reward(prompts=[None] * 3, completions=[chat("a")] * 3, question=["q"] * 3, answer=["3", "3"])
    with pytest.raises(ValueError, match="choices"):
        reward(prompts=[None] * 2, completions=[chat("a")] * 2, question=["q"] * 2, answer=["3"] * 2, choices=[[]])
    assert reasoner.num_calls == 0


def test_malformed_samples_are_skipped_with_a_reason_and_the_rest_scored(caplog) -> None:
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}")
    reward = vpo_reward(reasoner, mode="cap", gen=GEN)
    completions = [chat("three circles"), None, [], chat(""), [{"role": "assistant"}], chat("3 circles"), "plain"]
    answers = ["3", "3", "3", "3", "3", None, 3]
    metrics: dict[str, list[float]] = {}
    with caplog.at_level("WARNING", logger="rapid_agent.rl.vpo"):
        rewards = reward(
            prompts=[None] * 7,
            completions=completions,
            question=["How many?"] * 7,
            answer=answers,
            log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
        )
    assert rewards == [1.0, None, None, None, None, None, 1.0]  # a numeric gold answer is read as text
    assert metrics["vpo/malformed"] == [5.0] and metrics["vpo/skipped"] == [5.0]
    assert reasoner.num_requests == 2
    assert "malformed" in caplog.text and "gold answer is missing" in caplog.text


def test_several_reasoners_reward_the_mean_verdict_and_log_each_accuracy() -> None:
    """A strong reasoner reads any caption; a weak one only a caption that states the count as a digit. The reward
    is the mean verdict, so a caption both can use earns more than one only the strong one can."""
    strong = reasoner_reading(lambda cap: "\\boxed{3}", spec="hf:strong-reasoner")
    weak = reasoner_reading(lambda cap: "\\boxed{3}" if "3" in cap else "\\boxed{0}", spec="openai:org/weak@http://x")
    reward = vpo_reward([strong, weak], mode="cap", gen=GEN, retries=0)
    rewards, metrics = call(reward, ["3 red circles", "three red circles", "FAIL"])
    assert rewards == [1.0, 0.5, None]
    assert reward.labels == ["strong-reasoner", "weak"]
    assert metrics["vpo/reasoner_accuracy/strong-reasoner"] == [1.0]
    assert metrics["vpo/reasoner_accuracy/weak"] == [0.5]
    assert strong.num_calls == 1 and weak.num_calls == 1
    weighted = vpo_reward([strong, weak], mode="cap", gen=GEN, weights=[1.0, 3.0])
    rewards, _ = call(weighted, ["3 red circles", "three red circles"])
    assert rewards == [1.0, 0.25]


def test_a_reasoner_that_fails_on_a_sample_is_left_out_of_its_mean() -> None:
    good = reasoner_reading(lambda cap: "\\boxed{3}", spec="hf:good")
    flaky = reasoner_reading(lambda cap: "\\boxed{0}" if cap != "down" else 1 / 0, spec="hf:flaky")
    rewards, metrics = call(vpo_reward([good, flaky], mode="cap", gen=GEN, retries=0), ["ok", "down"])
    assert rewards == [0.5, 1.0]  # "down": only the good reasoner answered
    assert metrics["vpo/skipped"] == [0.0]


def test_vpo_reward_arguments_are_checked() -> None:
    reasoner = reasoner_reading(lambda cap: "\\boxed{3}")
    with pytest.raises(ValueError, match="one non-negative weight per reasoner"):
        vpo_reward([reasoner], mode="cap", gen=GEN, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="judge_scope"):
        vpo_reward(reasoner, mode="cap", gen=GEN, judge_scope="some")
    with pytest.raises(TypeError, match="reasoners"):
        vpo_reward([], mode="cap", gen=GEN)


# --- fuzz: whatever TRL, the data or the reasoner hands over, one reward per completion and no crash or hang ------

_TEXT = st.text(max_size=40)
_CAPTIONS = st.sampled_from(
    [
        "two red circles",
        "<caption>3 squares</caption><solution>\\boxed{3}</solution>",
        "<caption>unclosed",
        "<solution>\\boxed{B}</solution>",
        "</caption><caption>",
        "x" * 5000,
    ]
)


def _chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# well-formed samples are drawn about as often as broken ones, so that many reach the graph and the reasoner
_COMPLETION = st.one_of(
    *[st.builds(_chat, _CAPTIONS)] * 4,
    st.builds(_chat, _TEXT),
    _TEXT,
    st.builds(lambda t: [{"role": "assistant", "content": [{"type": "text", "text": t}, {"type": "image"}]}], _TEXT),
    st.none(),
    st.integers(),
    st.just([]),
    st.just([{}]),
    st.builds(lambda t: [{"role": "assistant", "content": [{"text": 3}, t]}], _TEXT),
    st.dictionaries(_TEXT, _TEXT, max_size=2),
)
_QUESTION = st.one_of(
    *[st.sampled_from(["How many red circles are there?", "Which colour? A. red B. blue"])] * 4,
    st.text(min_size=1, max_size=40),
    st.none(),
    st.integers(),
)
_ANSWER = st.one_of(
    *[st.sampled_from(["3", "B", "\\frac{1}{2}", "x^2+1", ""])] * 4,
    _TEXT,
    st.integers(),
    st.none(),
    st.floats(),
    st.booleans(),
)
_CHOICES = st.one_of(
    *[st.lists(st.sampled_from(["red", "blue", "2", "\\frac{1}{2}"]), max_size=3)] * 4,
    st.none(),
    _TEXT,
    st.lists(st.one_of(_TEXT, st.none(), st.integers()), max_size=4),
)
#: reasoner outputs that have broken answer parsers: unclosed boxes, deep nesting, huge or odd texts, failures
_REPLIES = [
    "\\boxed{3}",
    "\\boxed{",
    "\\boxed{\\boxed{\\boxed{}}}",
    "<think>" + "\\boxed{3}",
    "</think></think>\\boxed{B}",
    "{" * 3000 + "\\boxed{" + "(" * 500,
    "\\boxed{" + "1+" * 2000 + "1}",
    "",
    "\x00\ud7ff\ufffd",
    "RAISE",
]
if hasattr(answers, "check_answers"):
    # a power tower sympy evaluates for minutes while holding the GIL: only an answer check in a worker process that
    # is killed at its timeout (the answer-checking rework) can bound it; a checking thread cannot be stopped
    _REPLIES.append("\\boxed{\\sqrt{\\sqrt{\\sqrt{2}}}^{10^{10}}}")


def _fuzz_reasoner() -> FunctionEngine:
    def reply(request) -> str:
        text = _REPLIES[sum(map(ord, request.prompt)) % len(_REPLIES)]
        if text == "RAISE":
            raise RuntimeError("the server dropped the connection")
        return text

    return FunctionEngine(reply)


# derandomize: the same examples on every run, so CI never meets a new one by chance (change the test to explore)
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(min_value=1, max_value=5))
def test_fuzzed_batches_give_one_reward_per_completion_without_crashing_or_hanging(data, n) -> None:
    completions = data.draw(st.lists(_COMPLETION, min_size=n, max_size=n))
    questions = data.draw(st.lists(_QUESTION, min_size=n, max_size=n))
    answers = data.draw(st.lists(_ANSWER, min_size=n, max_size=n))
    choices = data.draw(st.one_of(st.none(), st.lists(_CHOICES, min_size=n, max_size=n)))
    mode = data.draw(st.sampled_from(["cap", "qcap+sol", "sol"]))
    verdicts = ["yes", "no", "", "maybe", "Yes, it does."]
    judge = EngineJudge(FunctionEngine(lambda r: verdicts[len(r.prompt) % len(verdicts)]))
    reasoner = _fuzz_reasoner()
    reward = vpo_reward(
        [reasoner], mode=mode, gen=GEN, judge=judge, retries=1, answer_timeout_s=1.0, judge_scope="all"
    )
    start = time.perf_counter()
    rewards = reward(
        prompts=[None] * n,
        completions=completions,
        question=questions,
        answer=answers,
        **({} if choices is None else {"choices": choices}),
    )
    elapsed = time.perf_counter() - start
    assert len(rewards) == n
    assert all(r is None or (isinstance(r, float) and 0.0 <= r <= 1.0) for r in rewards)
    # the stand-in reasoner answers at once and every answer check is bounded by answer_timeout_s (1 s)
    assert elapsed < 5 + 2.0 * n, f"a reward call of {n} samples took {elapsed:.1f} s"


def test_every_odd_reasoner_output_with_every_answer_kind_gives_a_reward_in_time() -> None:
    """The reasoner's side, exhaustively (a seeded generator): each odd output against each kind of gold answer and
    choices, in one batch of valid samples, so every sample reaches the reasoner and the answer check."""
    rng = random.Random(0)
    golds = [("3", None), ("B", ["red", "blue"]), ("\\frac{1}{2}", None), ("x^2+1", None), ("Yes", None), (7, [])]
    cases = [(reply, gold, options) for reply in _REPLIES for gold, options in golds]
    rng.shuffle(cases)
    by_caption = {f"case {i}": reply for i, (reply, _, _) in enumerate(cases)}

    def reply(request) -> str:
        text = by_caption[caption_of(request.prompt)]
        if text == "RAISE":
            raise RuntimeError("the server dropped the connection")
        return text

    reasoner = FunctionEngine(reply, max_batch_size=len(cases))  # one engine call can take the whole batch
    reward = vpo_reward(reasoner, mode="cap", gen=GEN, retries=1, answer_timeout_s=1.0)
    start = time.perf_counter()
    rewards = reward(
        prompts=[None] * len(cases),
        completions=[chat(caption) for caption in by_caption],
        question=["How many?"] * len(cases),
        answer=[gold for _, gold, _ in cases],
        choices=[options for _, _, options in cases],
    )
    elapsed = time.perf_counter() - start
    assert len(rewards) == len(cases) and reasoner.num_calls == 2  # one batch, one retry round for the failures
    raising = [r for (text, _, _), r in zip(cases, rewards) if text == "RAISE"]
    assert raising and all(r is None for r in raising)
    assert all(isinstance(r, float) and 0.0 <= r <= 1.0 for (text, _, _), r in zip(cases, rewards) if text != "RAISE")
    # and the rewards are the verdicts, not just numbers: the one plain right answer scores 1, against others 0
    plain = {str(gold): r for (text, gold, _), r in zip(cases, rewards) if text == "\\boxed{3}"}
    assert plain["3"] == 1.0 and plain["\\frac{1}{2}"] == plain["x^2+1"] == plain["Yes"] == 0.0
    assert elapsed < 10 + 1.0 * len(cases), f"{len(cases)} samples took {elapsed:.1f} s"
