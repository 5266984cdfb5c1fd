"""Fuzzing answer checking: malformed outputs, golds and choices (huge strings, nested unclosed braces, unicode,
None, numbers) never crash `check_answer`/`check_answers` and never keep them past their timeout."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rapid_agent.answers import SOURCES, Verdict, check_answer, check_answers

TIMEOUT_S = 2.0
#: result delivery, a worker replaced after a kill, a loaded 2-core machine; a hang would be minutes
SLACK_S = 4.0
PIECES = [
    r"\boxed{",
    r"\fbox{",
    "{",
    "}",
    "<think>",
    "</think>",
    "$",
    r"\(",
    r"\)",
    r"\frac",
    r"\sqrt",
    r"\text{",
    "^",
    "10",
    "1",
    "-",
    ".",
    ",",
    " ",
    "\n",
    "B",
    "(c)",
    "or",
    "answer is",
    "final answer is",
    "%",
    "°",
    "e5",
    "é",
    "∞",
    "🙂",
    "\x00",
    "\\",
]
malformed = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
outputs = st.one_of(st.none(), st.text(max_size=300), malformed, st.integers(), st.floats())
golds = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(min_size=1, max_size=40).filter(str.strip),
    malformed.filter(str.strip),
    st.sampled_from(["B", "(c)", "B. blue", "Yes", r"\frac{1}{2}", "(1,2]", r"\{1,2\}", "1,000", "3e8", "25%"]),
)
choices = st.one_of(
    st.none(), st.lists(st.one_of(st.text(max_size=20), st.integers(), st.sampled_from(["blue", "$1$"])), max_size=6)
)
FUZZ = settings(
    max_examples=120, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True, scope="module")
def warm_pool():
    """Start the worker pool before the timings: its first start imports sympy."""
    check_answer(r"\boxed{\frac{1}{2}}", "0.5")


def well_formed(verdict: Verdict) -> bool:
    return (
        isinstance(verdict, Verdict)
        and isinstance(verdict.correct, bool)
        and isinstance(verdict.reason, str)
        and verdict.extracted_from in (*SOURCES, None)
        and (verdict.prediction is None or isinstance(verdict.prediction, str))
    )


@FUZZ
@given(output=outputs, gold=golds, options=choices, final_box_only=st.booleans())
@example(output="\\boxed{" * 50_000 + "1" + "}" * 50_000, gold="1", options=None, final_box_only=False)
@example(output="{" * 100_000 + r"\boxed{2}", gold="2", options=None, final_box_only=True)
@example(output="x" * 1_000_000 + r"\boxed{\frac{1}{2}}", gold="0.5", options=None, final_box_only=False)
@example(output=r"\boxed{10^{10^{8}}}", gold="3", options=None, final_box_only=False)
@example(output="<think>" * 1000 + "</think>" * 1000, gold="B", options=["a", "b"], final_box_only=True)
def test_check_answer_never_crashes_nor_hangs(output, gold, options, final_box_only):
    started = time.monotonic()
    verdict = check_answer(output, gold, choices=options, timeout_s=TIMEOUT_S, final_box_only=final_box_only)
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    assert well_formed(verdict)
    if output is None:
        assert verdict.correct is False


@settings(FUZZ, max_examples=25)
@given(batch=st.lists(st.tuples(outputs, golds, choices), min_size=1, max_size=12))
def test_check_answers_never_crashes_nor_hangs(batch):
    out, gold, options = zip(*batch)
    started = time.monotonic()
    verdicts = check_answers(out, gold, choices=options, timeout_s=TIMEOUT_S)
    # each check's timeout starts when a worker takes it: a batch waits at most its length in timeouts
    assert time.monotonic() - started < len(batch) * TIMEOUT_S + SLACK_S
    assert len(verdicts) == len(batch) and all(well_formed(v) for v in verdicts)
