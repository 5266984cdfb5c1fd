"""Tests for rapid_agent.eval.evaluate: scripted captioners and the world's oracle as the reasoner."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence

import pytest

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.evaluate import END_TO_END, evaluate, summarize, to_markdown, write_csv, write_markdown
from rapid_agent.prompts import DEFAULT_PROMPTS
from rapid_agent.world import answer_from_description, generate_items

# Prompts whose reasoner side is trivially parseable by the oracle reasoner below.
PROMPTS = DEFAULT_PROMPTS.replace(
    system=None,
    reason="[C]{caption_block}[Q]{question}[S]{solution_block}[I]{instruction}",
    caption_block="{caption}",
    solution_block="{solution}",
    reason_instruction="",
)
WRONG = "9 red circles, 9 blue squares, 9 green triangles, 9 yellow circles."


def _items(n: int = 8) -> list[dict]:
    # levels 1 and 2 only: every answer there is a count, so the WRONG description is wrong for every question
    return generate_items(n, seed=3, levels=(1, 2))


def _captioner(items: Sequence[dict], good: set[int]) -> FunctionEngine:
    """Gives item i its true description/solution when i is in `good`, a wrong one otherwise."""
    by_image = {item["image"].tobytes(): i for i, item in enumerate(items)}

    def describe(request: ChatRequest) -> str:
        i = by_image[request.image.tobytes()]
        caption = items[i]["description"] if i in good else WRONG
        solution = items[i]["solution"] if i in good else "\\boxed{-1}"
        prompt = request.prompt
        if prompt == PROMPTS.direct_answer.format(question=items[i]["question"]):
            return solution  # end to end
        if "<caption>" in prompt:
            return f"<caption>{caption}</caption>\n<solution>{solution}</solution>"
        return solution if "solve the following problem" in prompt else caption

    return FunctionEngine(describe, spec="scripted-captioner")


def _oracle(request: ChatRequest) -> str:
    """A perfect reasoner: answers from the caption when there is one, else copies the tentative solution."""
    caption, question, solution = re.match(r"\[C\](.*)\[Q\](.*)\[S\](.*)\[I\]", request.prompt, re.DOTALL).groups()
    if caption:
        return f"\\boxed{{{answer_from_description(caption, question)}}}"
    return solution


def _context(captioner: Engine, reasoner: Engine) -> RapidContext:
    return RapidContext(captioner=captioner, reasoner=reasoner, prompts=PROMPTS)


def test_accuracy_table_for_a_scripted_captioner() -> None:
    items = _items(8)
    good = {0, 1, 2, 3, 4}
    reasoner = FunctionEngine(_oracle, spec="oracle")
    result = evaluate(
        items,
        context=_context(_captioner(items, good), reasoner),
        modes=("cap", "sol", "qcap+sol"),
        end_to_end=True,
        batch_size=3,
        progress=False,
    )
    assert [s.row for s in result.summary] == [END_TO_END, "cap", "sol", "qcap+sol"]
    for summary in result.summary:
        assert summary.accuracy == pytest.approx(5 / 8), summary.row
        assert (summary.n, summary.errored, summary.skipped, summary.seeds) == (8, 0, 0, 1)
    # per level: items cycle levels 1, 2, 1, 2, ...; good items 0-4 hold three of level 1 and two of level 2
    assert result.row("cap").by_level == {1: pytest.approx(3 / 4), 2: pytest.approx(2 / 4)}
    assert len(result.records) == 4 * 8
    wrong = [r for r in result.records if r["row"] == "cap" and not r["correct"]]
    assert {r["id"] for r in wrong} == {items[i]["id"] for i in (5, 6, 7)}
    assert all(r["caption"] == WRONG for r in wrong)
    # the end-to-end row never called the reasoner: 3 graph modes x 8 samples
    assert reasoner.num_requests == 3 * 8


def test_failed_samples_are_recorded_and_counted_apart() -> None:
    items = _items(4)
    failing = {items[1]["question"]}

    def flaky_reasoner(request: ChatRequest) -> str:
        if any(q in request.prompt for q in failing):
            raise RuntimeError("reasoner exploded")
        return _oracle(request)

    rows = [dict(item) for item in items]
    rows[2]["image"] = "/no/such/image.png"  # invalid input
    rows[3]["answer"] = None  # nothing to score against
    result = evaluate(
        rows,
        context=_context(_captioner(items, {0, 1, 2, 3}), FunctionEngine(flaky_reasoner)),
        modes=("cap",),
        end_to_end=True,
        progress=False,
    )
    cap = {r["id"]: r for r in result.records if r["row"] == "cap"}
    assert len(cap) == 4
    assert cap[items[0]["id"]]["correct"] is True
    # a failed run is no verdict: recorded with its errors, `correct` None, and left out of the accuracy
    assert cap[items[1]["id"]]["correct"] is None and "exploded" in " ".join(cap[items[1]["id"]]["errors"])
    assert cap[items[2]["id"]]["correct"] is None and cap[items[2]["id"]]["errors"][0].startswith("input: images")
    assert cap[items[3]["id"]]["correct"] is None and not cap[items[3]["id"]]["errors"]
    summary = result.row("cap")
    assert (summary.n, summary.errored, summary.skipped) == (1, 2, 1)
    assert summary.accuracy == 1.0
    e2e = result.row(END_TO_END)
    assert (e2e.n, e2e.errored, e2e.skipped) == (2, 1, 1)
    assert e2e.accuracy == 1.0
    assert e2e_errors(result, items[2]["id"])[0].startswith("input: image file not found")


def test_a_whole_batch_failing_loses_no_sample() -> None:
    class Broken(Engine):
        def generate(self, requests, gen):
            raise RuntimeError("engine down")

    items = _items(5)
    result = evaluate(items, context=_context(Broken(), Broken()), modes=("cap",), end_to_end=True, progress=False)
    assert len(result.records) == 10
    assert all(r["correct"] is None and r["errors"] for r in result.records)
    assert [(s.row, s.n, s.errored) for s in result.summary] == [(END_TO_END, 0, 5), ("cap", 0, 5)]
    assert all(math.isnan(s.accuracy) for s in result.summary)  # no verdict at all, not 0 %


def e2e_errors(result, sample_id: str) -> list[str]:
    return next(r["errors"] for r in result.records if r["row"] == END_TO_END and r["id"] == sample_id)


def test_an_answer_check_that_cannot_run_is_an_error_not_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from rapid_agent.answers import Verdict
    from rapid_agent.eval import evaluate as module

    items = _items(3)
    undecided = Verdict(None, "2", "answer check could not run: the worker processes died")  # type: ignore[arg-type]
    monkeypatch.setattr(module, "check_answer", lambda *a, **k: undecided)
    result = evaluate(
        items,
        context=_context(_captioner(items, {0, 1, 2}), FunctionEngine(_oracle)),
        modes=(),
        end_to_end=True,
        progress=False,
    )
    records = [r for r in result.records if r["row"] == END_TO_END]
    assert all(r["correct"] is None for r in records)
    assert all(r["errors"] == ["answer check: answer check could not run: the worker processes died"] for r in records)
    row = result.row(END_TO_END)
    assert (row.n, row.errored, row.skipped) == (0, 3, 0) and math.isnan(row.accuracy)


class SeededReasoner(Engine):
    """Right for even seeds, wrong for odd ones: the seed reaches the reasoner's GenerationConfig."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        self.seeds.append(gen.seed)
        return [Completion(_oracle(r) if gen.seed % 2 == 0 else "\\boxed{-7}") for r in requests]


def test_seeds_give_mean_and_std_and_greedy_end_to_end_runs_once() -> None:
    items = _items(4)
    captioner = _captioner(items, {0, 1, 2, 3})
    reasoner = SeededReasoner()
    result = evaluate(
        items,
        context=_context(captioner, reasoner),
        modes=("cap",),
        end_to_end=True,
        seeds=(0, 1, 2),
        progress=False,
    )
    cap = result.row("cap")
    assert cap.per_seed == [1.0, 0.0, 1.0]
    assert cap.accuracy == pytest.approx(2 / 3)
    assert cap.std == pytest.approx(0.57735, abs=1e-4)
    assert set(reasoner.seeds) == {0, 1, 2}
    e2e = result.row(END_TO_END)
    assert (e2e.seeds, e2e.accuracy, e2e.std) == (3, 1.0, 0.0)
    # greedy captioner: end to end ran for 4 samples once, cap ran 4 samples x 3 seeds
    assert captioner.num_requests == 4 + 4 * 3
    assert len(result.records) == 2 * 3 * 4


def test_writers(tmp_path) -> None:
    records = [
        {"row": "cap", "seed": s, "id": str(i), "level": 1 + i % 2, "correct": (i + s) % 2 == 0, "errors": []}
        for s in (0, 1)
        for i in range(4)
    ]
    records.append({"row": "cap", "seed": 0, "id": "x", "level": 1, "correct": None, "errors": []})
    summary = summarize(records)
    assert summary[0].per_seed == [0.5, 0.5]
    md = write_markdown(summary, tmp_path / "t.md").read_text()
    assert md == to_markdown(summary)
    assert "| cap | 50.0 ± 0.0 | 4 | 2 | 0 | 1 |" in md
    assert "level 1 %" in md and "level 2 %" in md
    with write_csv(summary, tmp_path / "t.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["row"] == "cap" and float(row["accuracy"]) == 0.5 and row["per_seed"] == "0.5000;0.5000"
    assert row["skipped"] == "1" and float(row["level_1"]) == pytest.approx(0.5)


def test_bad_mode_and_dataset_dict_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown perception mode 'capx'"):
        evaluate([], context=RapidContext(), modes=("capx",), progress=False)
    with pytest.raises(TypeError, match="pick a split"):
        evaluate({"train": []}, context=RapidContext(), progress=False)
