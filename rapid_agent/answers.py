"""Answer extraction and checking: the reasoner's final `\\boxed{}` against the gold answer.

math-verify does the mathematical comparison (always `verify(gold, pred)`, it is not symmetric). Its timeouts use
`signal.alarm`, which only works in the main thread, so elsewhere we switch them off and bound the time ourselves
with a daemon thread. Multiple-choice golds (a single letter) are compared as letters, never through sympy.
A reasoner output we cannot read is an outcome (`correct=False` with the reason), not an exception.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

T = TypeVar("T")


class _DropTimeoutDisabled(logging.Filter):
    """math-verify warns on every call made without its signal timeout; we bound the time ourselves instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabled())

#: longest tail of a reasoner output we hand to math-verify; its regexes are quadratic on long inputs
MAX_PARSE_CHARS = 2000
LETTERS = "ABCDEFGHIJ"
_LETTER_GOLD = re.compile(r"^\(?([A-J])\)?\.?$")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THINK_END = "</think>"


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one output: `prediction` is the extracted answer (None when nothing was found)."""

    correct: bool
    prediction: str | None
    reason: str
    extracted_from: str | None = None  # "boxed" or "fallback"


def strip_thinking(text: str) -> str:
    """The part of an output after its last `</think>` (reasoning models think first, then answer)."""
    return text.rsplit(_THINK_END, 1)[-1] if _THINK_END in text else text


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces balanced; None if there is none."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:i]
                    break
    return found.strip() if found is not None else None


def is_choice_gold(gold: str) -> bool:
    return bool(_LETTER_GOLD.match(gold.strip()))


def extract_answer(output: str, *, choices: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """The final answer of `output` and where it came from: the last box, else a fallback on the text's end."""
    text = strip_thinking(output)
    boxed = last_boxed(text)
    if boxed:
        return boxed, "boxed"
    tail = text[-MAX_PARSE_CHARS:]
    patterns = [r"answer(?:\s+is)?\s*[:=]?\s*\$?([^\n$]+?)\$?\s*(?:\.|$)", r"=\s*(-?\d[\d,./]*)\s*\.?\s*$"]
    for pattern in patterns:
        found = re.findall(pattern, tail, flags=re.IGNORECASE | re.MULTILINE)
        if found:
            return found[-1].strip(), "fallback"
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:/\d+)?", tail)
    if numbers and not choices:
        return numbers[-1], "fallback"
    if choices:
        letters = re.findall(r"\(([A-J])\)|\b([A-J])[.)]|^\s*([A-J])\s*$", tail, flags=re.MULTILINE)
        if letters:
            return next(x for x in letters[-1] if x), "fallback"
        # an answer written as an option's text: the option named last in the output
        named = [
            (m.start(), LETTERS[i])
            for i, c in enumerate(choices)
            for m in re.finditer(rf"\b{re.escape(str(c))}\b", tail, flags=re.IGNORECASE)
        ]
        if named:
            return max(named)[1], "fallback"
    return None, None


def choice_letter(answer: str, choices: Sequence[str] = ()) -> str | None:
    """Read a letter from an answer such as `B`, `(B)`, `B. red`, `\\text{B}`, or the text of a choice."""
    cleaned = re.sub(r"\\text\{([^}]*)\}", r"\1", answer).strip().strip("$ ")
    match = re.match(r"^\(?([A-J])\)?(?:[.:)\s]|$)", cleaned)
    if match:
        return match.group(1)
    for i, choice in enumerate(choices):
        if cleaned.lower() == str(choice).strip().lower():
            return LETTERS[i]
    return None


def _bounded(fn: Callable[[], T], timeout_s: float) -> T:
    """Run `fn` with a wall-clock bound from any thread (math-verify's own timeout is disabled off the main thread)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"answer verification took longer than {timeout_s} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _math_equal(gold: str, pred: str, timeout_s: float) -> bool:
    main = threading.current_thread() is threading.main_thread()
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def run(parse_timeout: int | None, verify_timeout: int | None) -> bool:
        gold_parsed = parse(f"${gold}$", configs, parsing_timeout=parse_timeout) or parse(
            gold, configs, parsing_timeout=parse_timeout
        )
        pred_parsed = parse(f"${pred}$", configs, parsing_timeout=parse_timeout) or parse(
            pred, configs, parsing_timeout=parse_timeout
        )
        if not gold_parsed or not pred_parsed:
            return gold.strip() == pred.strip()
        return verify(gold_parsed, pred_parsed, timeout_seconds=verify_timeout)

    if main:
        seconds = max(1, int(timeout_s))
        return run(seconds, seconds)
    return _bounded(lambda: run(None, None), timeout_s)


def check_answer(output: str, gold: str, *, choices: Sequence[str] = (), timeout_s: float = 5.0) -> Verdict:
    """Check a reasoner output against `gold`; letters for multiple choice, math-verify for everything else."""
    pred, source = extract_answer(output, choices=choices)
    if pred is None:
        return Verdict(False, None, "no \\boxed{} answer and no final answer found in the output")
    pred = pred[:MAX_PARSE_CHARS]
    if is_choice_gold(gold):
        letter = choice_letter(pred, choices)
        if letter is None:
            return Verdict(False, pred, f"answer {pred!r} names no option letter", source)
        correct = letter == _LETTER_GOLD.match(gold.strip()).group(1)
        return Verdict(correct, letter, "match" if correct else "mismatch", source)
    try:
        correct = _math_equal(gold, pred, timeout_s)
    except TimeoutError as exc:
        return Verdict(False, pred, str(exc), source)
    except Exception as exc:  # sympy can raise anything on odd inputs; that is a failed check, not a crash
        return Verdict(False, pred, f"verification error: {type(exc).__name__}: {exc}", source)
    return Verdict(correct, pred, "match" if correct else "mismatch", source)
