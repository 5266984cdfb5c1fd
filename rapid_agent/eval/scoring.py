"""Scoring pieces the benchmark adapters share: the outcome type, numbers and option letters read out of answers.

The graph's score node already checks every output the generic way (math-verify gold-first, option letters for
multiple choice; `rapid_agent.answers`). An adapter's `score` starts from that verdict, kept in the record, and adds
what its benchmark's own metric needs (MathVista's precision, DynaMath's float tolerance, LogicVista's several
letters). Everything here is pure: a record in, a `Score` out, so a JSONL can be re-scored without any model.

A check that could not run (`Verdict.correct is None`: the checker's worker processes failed) is no verdict: its
`Score.correct` is None too, unless the benchmark's own rule decides the answer without it, and the runner records
such a sample as an error to retry (`undecided`), never as a wrong answer.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rapid_agent.answers import extract_answer, strip_thinking
from rapid_agent.backends.base import redact
from rapid_agent.perception import answer_key

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Score:
    """One sample's outcome under its benchmark's metric; `correct` is None when it could not be decided."""

    correct: bool | None
    prediction: str | None
    reason: str


def graph_score(record: dict) -> Score:
    """The graph's own verdict (generic check), as recorded; None stays None (the check could not run)."""
    correct = record.get("graph_correct")
    return Score(
        None if correct is None else bool(correct), record.get("graph_prediction"), record.get("graph_verdict") or ""
    )


def safe_score(score: Callable[[dict], Score], record: dict) -> Score:
    """`score(record)`, or an undecided `Score` naming the exception when scoring raised (answer extraction whose
    worker could not run raises `AnswerCheckError`): one sample's failed check must not end a whole run."""
    try:
        return score(record)
    except Exception as exc:
        return Score(None, None, redact(f"{type(exc).__name__}: {exc}"))


def undecided(record: dict) -> None:
    """Make a record whose answer check could not run an error (no verdict, retried by `--retry-errors`)."""
    reason = record.get("verdict") or "no verdict"
    record.update(status="error", correct=None, errors=[*(record.get("errors") or []), f"answer check: {reason}"])


def answer_text(record: dict) -> str | None:
    """The output a record's answer is read from: the reasoner's, or in mode `direct` the captioner's."""
    return record.get(answer_key(record.get("mode") or "none"))


def final_answer(record: dict) -> str | None:
    """The final answer in the answering output: its last `\\boxed{}`, else the graph's fallback extraction."""
    output = answer_text(record)
    if not output:
        return None
    answer, _ = extract_answer(output, choices=record.get("choices") or ())
    return answer


_LATEX_WRAPPERS = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def clean_answer(text: str) -> str:
    """An answer with LaTeX dressing, currency, thousands separators and surrounding punctuation removed."""
    text = _LATEX_WRAPPERS.sub(r"\1", text)
    text = text.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("\\!", "").replace("\\,", "")
    text = text.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return text.strip().strip(".").strip()


def to_number(text: str | None, *, unit: str | None = None) -> float | None:
    """The single number an answer states (`12`, `-0.5`, `3/4`, `\\frac{3}{4}`, `2\\pi`, `45%`, `5 cm` with its
    unit), or None when it states none or several."""
    if text is None:
        return None
    text = clean_answer(text)
    if unit and text.lower().endswith(unit.lower()):
        text = text[: -len(unit)].strip()
    text = re.sub(r"\s*(?:\^\\circ|\^\{\\circ\}|°|degrees?)$", "", text)
    text = text.rstrip("%").strip()
    frac = re.fullmatch(r"\\frac\s*\{\s*([-+\d.]+)\s*\}\s*\{\s*([-+\d.]+)\s*\}", text) or re.fullmatch(
        r"([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", text
    )
    if frac:
        denominator = float(frac.group(2))
        return float(frac.group(1)) / denominator if denominator else None
    pi = re.fullmatch(r"([-+]?\d*(?:\.\d+)?)\s*\\?(?:pi|π)", text)
    if pi:
        factor = pi.group(1)
        return (float(factor) if factor not in ("", "+", "-") else float(f"{factor}1")) * math.pi
    if unit is None:  # a bare trailing unit word ("5 cm") when the benchmark names none
        text = re.sub(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*[A-Za-z]{1,6}\.?$", r"\1", text)
    return float(text) if _NUMBER.fullmatch(text) else None


def letter_set(text: str | None, *, allowed: str = LETTERS) -> frozenset[str]:
    """The option letters (or digits) an answer names: `A, C`, `(B) and (D)`, `AC`, `3`; empty when the answer holds
    anything else (a word is not an option list, even though its letters are)."""
    if not text:
        return frozenset()
    text = _LATEX_WRAPPERS.sub(r"\1", text)
    text = re.sub(r"\b(?:and|or|options?|choices?)\b", " ", text, flags=re.IGNORECASE)
    found: set[str] = set()
    for token in (t for t in re.split(r"[\s,;/&()\[\].:]+", text) if t):
        token = token.upper() if len(token) == 1 else token  # `c` is an option; `Ace` is a word
        if not all(ch in allowed for ch in token):
            return frozenset()
        found.update(token)
    return frozenset(found)


def literal(value: Any) -> Any:
    """A Python literal stored as text (MMMU's `"['a', 'b']"`), or the value itself when it is not one."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", clean_answer(text).lower()).strip()


def strip_output(output: str | None) -> str:
    return strip_thinking(output or "")
