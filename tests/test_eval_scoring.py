"""Tests for the benchmark metrics (rapid_agent.eval.scoring and each adapter's score / aggregate), on records
built the way the runner builds them: the graph's generic verdict first, then the benchmark's own rules."""

from __future__ import annotations

import math

import pytest

from rapid_agent.answers import check_answer
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.eval.adapters import ADAPTERS
from rapid_agent.eval.answer_judge import Judge
from rapid_agent.eval.scoring import letter_set, to_number


def record(output: str, answer: str, *, choices=(), fields=None, **extra) -> dict:
    verdict = check_answer(output, answer, choices=choices)
    return {
        "status": "scored",
        "reasoner_output": output,
        "answer": answer,
        "choices": list(choices),
        "fields": fields or {},
        "graph_correct": verdict.correct,
        "graph_prediction": verdict.prediction,
        "graph_verdict": verdict.reason,
        **extra,
    }


def score(name: str, rec: dict) -> bool:
    return ADAPTERS[name](None).score(rec).correct


@pytest.mark.parametrize(
    "text, expected",
    [("12", 12.0), ("-0.5", -0.5), ("3/4", 0.75), ("\\frac{3}{4}", 0.75), ("1,000", 1000.0), ("\\$4.50", 4.5),
     ("45\\%", 45.0), ("5 cm", 5.0), ("30^\\circ", 30.0), ("2\\pi", 2 * math.pi), ("x + 1", None), ("1 and 2", None)],
)  # fmt: skip
def test_to_number(text: str, expected: float | None) -> None:
    assert to_number(text) == (pytest.approx(expected) if expected is not None else None)


def test_letter_set() -> None:
    assert letter_set("A, C") == {"A", "C"} == letter_set("(A) and (C)") == letter_set("AC")
    assert letter_set("\\text{B}") == {"B"}
    assert letter_set("the answer is B") == frozenset()  # words other than letters: not a list of options


def test_mathvista_answer_types_units_and_precision() -> None:
    float_fields = {
        "question_type": "free_form",
        "answer_type": "float",
        "precision": 1,
        "unit": "cm",
        "gold_text": "1.5",
    }
    assert score("mathvista", record("so \\boxed{1.53 cm}", "1.5", fields=float_fields))  # rounded to precision 1
    assert not score("mathvista", record("\\boxed{1.56}", "1.5", fields=float_fields))  # rounds to 1.6
    two = {**float_fields, "precision": 2, "unit": None, "gold_text": "1.45"}
    assert not score("mathvista", record("\\boxed{1.4}", "1.45", fields=two))
    integer = {"question_type": "free_form", "answer_type": "integer", "precision": 0, "gold_text": "3"}
    assert score("mathvista", record("\\boxed{3.0}", "3", fields=integer))
    assert score("mathvista", record("\\boxed{\\frac{6}{2}}", "3", fields=integer))
    assert not score("mathvista", record("\\boxed{4}", "3", fields=integer))
    listed = {"question_type": "free_form", "answer_type": "list", "gold_text": "[2007, 2008]"}
    assert score("mathvista", record("\\boxed{[2007, 2008]}", "[2007, 2008]", fields=listed))
    assert not score("mathvista", record("\\boxed{[2008, 2007]}", "[2007, 2008]", fields=listed))
    mc = {"question_type": "multi_choice", "answer_type": "text", "gold_text": "square"}
    assert score("mathvista", record("\\boxed{square}", "B", choices=["circle", "square"], fields=mc))  # option text
    assert score("mathvista", record("\\boxed{B}", "B", choices=["circle", "square"], fields=mc))


def test_mathvision_two_decimals() -> None:
    assert score("mathvision", record("\\boxed{2.504}", "2.5"))
    assert not score("mathvision", record("\\boxed{2.51}", "2.5"))
    assert score("mathvision", record("\\boxed{C}", "C", choices=["1", "2", "3"]))


def test_logicvista_option_sets() -> None:
    fields = {"gold_options": ["A", "C"]}
    assert score("logicvista", record("\\boxed{C, A}", "A, C", fields=fields))
    assert not score("logicvista", record("\\boxed{A}", "A, C", fields=fields))
    assert score("logicvista", record("\\boxed{3}", "3", fields={"gold_options": ["3"]}))


def test_dynamath_float_tolerance_and_worst_case() -> None:
    floats = {"answer_type": "float"}
    assert score("dynamath", record("\\boxed{2.1004}", "2.100", fields=floats))
    assert not score("dynamath", record("\\boxed{2.102}", "2.100", fields=floats))
    assert score("dynamath", record("\\boxed{y = 2x}", "The line is y = 2x", fields={"answer_type": "free form"}))
    records = [
        {"correct": c, "fields": {"seed": seed}}
        for seed, c in [("1", True), ("1", True), ("1", True), ("2", True), ("2", False), ("2", True)]
    ]
    metrics = ADAPTERS["dynamath"](None).aggregate(records)
    assert metrics["average"] == pytest.approx(5 / 6)
    assert metrics["worst_case"] == metrics["score"] == 0.5  # seed 2 fails one variant


def test_mmmu_open_answers_and_multiple_golds() -> None:
    open_fields = {"question_type": "open", "golds": ["24/7", "3.429"]}
    assert score("mmmu", record("\\boxed{3.429}", "24/7", fields=open_fields))
    assert score("mmmu", record("\\boxed{24/7}", "24/7", fields=open_fields))
    assert score(
        "mmmu",
        record("\\boxed{the Baroque period}", "baroque", fields={"question_type": "open", "golds": ["baroque"]}),
    )
    mc = {"question_type": "multiple-choice", "golds": ["A", "C"]}
    assert score("mmmu", record("\\boxed{C}", "A", choices=["x", "y", "z"], fields=mc))


def test_wemath_four_dimensional_score() -> None:
    def problem(pid: str, n: int, subs: list[bool], multi: bool) -> list[dict]:
        keys = [f"{n}steps_{i}" for i in range(1, n + 1)] + [f"{n}steps_multi"]
        return [{"correct": c, "fields": {"problem": pid, "key": k}} for k, c in zip(keys, subs + [multi])]

    records = (
        problem("1", 2, [True, True], True)  # complete mastery
        + problem("2", 2, [True, True], False)  # inadequate generalization
        + problem("3", 3, [False, True, True], True)  # rote memorization (strict), complete mastery (loose)
        + problem("4", 3, [False, False, False], False)  # insufficient knowledge
        + problem("1", 3, [True, True, True], True)  # ID 1 again, among the 3-step problems: paired separately
        + [{"correct": True, "fields": {"problem": "9", "key": "2steps_1"}}]  # incomplete: left out
    )
    metrics = ADAPTERS["wemath"](None).aggregate(records)
    assert metrics["problems"] == 5
    assert (metrics["IK"], metrics["IG"], metrics["CM_strict"], metrics["RM_strict"]) == (1, 1, 2, 1)
    assert (metrics["CM_loose"], metrics["RM_loose"]) == (3, 0)
    assert metrics["score"] == pytest.approx((5 - 0.5 - 1 - 1) / 5)
    assert metrics["score_loose"] == pytest.approx((5 - 0.5 - 0 - 1) / 5)
    assert metrics["accuracy_2_step"] == 0.5 and metrics["accuracy_3_step"] == pytest.approx(2 / 3)


def test_mathverse_accuracy_per_version() -> None:
    records = [
        {"correct": True, "fields": {"version": "vision_only"}},
        {"correct": False, "fields": {"version": "vision_only"}},
        {"correct": True, "fields": {"version": "text_lite"}},
    ]
    metrics = ADAPTERS["mathverse"](None).aggregate(records)
    assert metrics["score"] == pytest.approx(2 / 3)
    assert metrics["accuracy_vision_only"] == 0.5 and metrics["accuracy_text_lite"] == 1.0


def test_judge_extracts_then_the_rules_score() -> None:
    engine = FunctionEngine(lambda r: "1.53" if "length" in r.prompt else "NONE", spec="judge-stub")
    fields = {"question_type": "free_form", "answer_type": "float", "precision": 1, "gold_text": "1.5"}
    records = [
        record("I think the length is about one and a half", "1.5", fields=fields, question="the length?"),
        record("no idea", "1.5", fields=fields, question="the width?"),
    ]
    for r in records:
        r["correct"] = ADAPTERS["mathvista"](None).score(r).correct
    Judge(engine).apply(records, ADAPTERS["mathvista"](None).score)
    assert records[0]["correct"] is True and records[0]["rule_correct"] is False
    assert records[0]["judge"] == "judge-stub" and records[0]["scored_by"] == "judge-extract"
    assert records[1]["correct"] is False and records[1]["verdict"] == "judge found no answer"
    assert engine.num_calls == 1  # both records in one engine call


def test_judge_verdict_mode() -> None:
    engine = FunctionEngine(lambda r: "1" if "Gold answer: 7" in r.prompt else "0", spec="judge-stub")
    records = [record("\\boxed{seven}", "7", question="q"), record("\\boxed{8}", "9", question="q")]
    Judge(engine, mode="judge").apply(records, ADAPTERS["mathverse"](None).score)
    assert [r["correct"] for r in records] == [True, False]
    assert all(r["scored_by"] == "judge" for r in records)
    with pytest.raises(ValueError, match="judge mode"):
        Judge(engine, mode="vote")


def undecided(output: str, answer: str, *, choices=(), fields=None) -> dict:
    """A record whose generic check could not run (its worker processes failed): no verdict from the graph."""
    return {
        **record(output, answer, choices=choices, fields=fields),
        "graph_correct": None,
        "graph_verdict": "answer check could not run: the worker pool is stopped",
    }


@pytest.mark.parametrize(
    "name, rec",
    [
        ("mathvista", undecided("\\boxed{B}", "B", choices=["a", "b"], fields={"question_type": "multi_choice"})),
        ("mathvista", undecided("\\boxed{x+1}", "3", fields={"question_type": "free_form", "answer_type": "integer"})),
        (
            "mathvista",
            undecided("\\boxed{x, y}", "[1, 3]", fields={"question_type": "free_form", "answer_type": "list"}),
        ),
        ("mathvision", undecided("\\boxed{A}", "A", choices=["1", "2"])),
        ("mathvision", undecided("\\boxed{\\sqrt{2}}", "\\sqrt{2}")),
        ("mmmu", undecided("\\boxed{A}", "A", choices=["x", "y"], fields={"question_type": "multiple-choice"})),
        ("mmmu", undecided("\\boxed{x+x}", "2x", fields={"question_type": "open", "golds": ["2x"]})),
        ("dynamath", undecided("\\boxed{B}", "B", fields={"answer_type": "multiple choice"})),
        ("dynamath", undecided("\\boxed{x^2}", "2x", fields={"answer_type": "float"})),
        ("logicvista", undecided("no letter here", "A", fields={"gold_options": ["A"]})),
        ("mathverse", undecided("\\boxed{5/2}", "\\frac{5}{2}")),
        ("wemath", undecided("\\boxed{A}", "A", choices=["x", "y"])),
        ("generic", undecided("\\boxed{7}", "7")),
    ],
)
def test_an_undecided_check_stays_undecided(name: str, rec: dict) -> None:
    adapter = ADAPTERS[name](None) if name != "generic" else ADAPTERS[name]("unused.json")
    result = adapter.score(rec)
    assert result.correct is None, result  # never a wrong answer
    assert result.reason == "answer check could not run: the worker pool is stopped"


def test_a_benchmark_rule_still_decides_without_the_generic_check() -> None:
    floats = {"question_type": "free_form", "answer_type": "float", "precision": 1, "unit": "cm", "gold_text": "1.5"}
    assert score("mathvista", undecided("so \\boxed{1.53 cm}", "1.5", fields=floats)) is True
    assert score("mathvista", undecided("so \\boxed{1.7 cm}", "1.5", fields=floats)) is False
    assert score("dynamath", undecided("\\boxed{2.1004}", "2.100", fields={"answer_type": "float"})) is True


def test_scoring_that_raises_is_undecided_not_fatal() -> None:
    from rapid_agent.eval.scoring import safe_score

    def broken(record: dict):
        raise RuntimeError("answer extraction could not run: api_key=sk-abcdef1234567890")

    result = safe_score(broken, {})
    assert result.correct is None and result.reason.startswith("RuntimeError: answer extraction could not run")
    assert "abcdef1234567890" not in result.reason  # redacted


def test_judge_extract_with_an_undecided_check_makes_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import rapid_agent.answers
    from rapid_agent.answers import Verdict

    engine = FunctionEngine(lambda r: "B", spec="judge-stub")
    records = [record("I pick the second one", "B", choices=["x", "y"], question="which?", correct=False)]
    stopped = Verdict(None, None, "answer check could not run: the worker pool is stopped")  # type: ignore[arg-type]
    monkeypatch.setattr(rapid_agent.answers, "check_answer", lambda *a, **k: stopped)
    Judge(engine).apply(records, ADAPTERS["mathverse"](None).score)
    (rec,) = records
    assert rec["status"] == "error" and rec["correct"] is None and rec["rule_correct"] is False
    assert rec["errors"] == ["answer check: answer check could not run: the worker pool is stopped"]
