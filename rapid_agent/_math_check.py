"""The math-verify half of answer checking: the code that runs inside the checking worker processes.

Everything here may call sympy, and sympy can run for ever holding the GIL (`10^{10^{8}}` against `3`), so it only
ever runs in a worker process (this file run as its main module: the `serve` loop at the end) that
`rapid_agent._verify_pool` kills when its time is up. It imports math-verify and the standard library only. math-verify's own signal-based
timeouts are therefore switched off (`parsing_timeout=None`, `timeout_seconds=None`): the pool is the one bound.
Always `verify(gold, pred)`, gold first: math-verify is not symmetric. The one exception to "workers only" is
`string_extract`, pure regex, which the caller runs in-process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify


class _DropTimeoutDisabled(logging.Filter):
    """math-verify warns once per process that its timeout is off; here the pool's kill is the timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabled())

#: a box first, then math-verify's own order: "final answer is", "answer:", any LaTeX, any number or expression
CONFIGS = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")
_NUMBERISH = re.compile(r"[-+]?[\d ,.]*\d[\d ,.]*\s*%?")
_MATHLIKE = re.compile(r"[\d\\]")
_SCIENTIFIC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?!\w)")


def normalize(text: str) -> str:
    """What LaTeX misreads: `1.5e3` (`e` is Euler's number) -> `1.5\\times 10^{3}`; `30°` -> `30^{\\circ}`."""
    return _SCIENTIFIC.sub(r"\1\\times 10^{\2}", text).replace("°", "^{\\circ}")


def parse_gold(gold: str) -> list:
    """Gold answers are usually written bare (`\\frac{1}{2}`, `(1,2]`), and math-verify reads LaTeX only between
    delimiters: wrap a bare one, and fall back to reading it as written."""
    gold = normalize(gold)
    if _DELIMITED.search(gold):
        return parse(gold, CONFIGS, parsing_timeout=None)
    if _NUMBERISH.fullmatch(gold):
        # `1 000`, `1000,99`: its number reader knows separators, LaTeX reads `1,2` as a set: either reading counts
        return parse(f"${gold}$", CONFIGS, parsing_timeout=None) + parse(gold, CONFIGS, parsing_timeout=None)
    return parse(f"${gold}$", CONFIGS, parsing_timeout=None) or parse(gold, CONFIGS, parsing_timeout=None)


def parse_prediction(text: str, box: str | None = None) -> tuple[list, str | None]:
    """What math-verify reads from an output, and that answer as text; a boxed number with separators is also
    read as a plain number (see `parse_gold`)."""
    parsed = parse(normalize(text), CONFIGS, parsing_timeout=None)
    read = shown(parsed)
    if box is not None and _NUMBERISH.fullmatch(box):
        parsed = parsed + parse(box, CONFIGS, parsing_timeout=None)
    return parsed, read


def shown(parsed: list) -> str | None:
    """The text math-verify extracted (its fallback string), else the parsed expression printed."""
    if not parsed:
        return None
    text = parsed[-1] if isinstance(parsed[-1], str) else str(parsed[0])
    return text[:500]


def math_equal(gold: str, text: str, box: str | None) -> tuple[bool | None, str | None]:
    """Whether math-verify finds `text`'s answer equal to `gold`, and the answer it read.

    `None` for the verdict means math-verify could not read one side; the caller then compares the answer (the
    box's content, when there is one) with the gold answer as plain text. `box` is the content of the output's
    only or last box, None when it has none.
    """
    gold_parsed = parse_gold(gold)
    pred_parsed, prediction = parse_prediction(text, box)
    prediction = prediction or box
    if not gold_parsed or not pred_parsed:
        return None, prediction
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None)), prediction


def extract(text: str) -> str | None:
    """The answer math-verify reads from an output."""
    return parse_prediction(text)[1]


def matching_choices(answer: str, choices: Sequence[str]) -> list[int]:
    """Indices of the options math-verify finds equal to `answer` (an option written as `\\frac{1}{2}` matches
    a boxed `0.5`)."""
    pred_parsed, _ = parse_prediction(f"\\boxed{{{answer}}}", answer)
    if not pred_parsed:
        return []
    found = []
    for i, choice in enumerate(choices):
        if not _MATHLIKE.search(choice):
            continue  # words parse as products of symbols: `red` would equal `der`
        gold_parsed = parse_gold(choice)
        if gold_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None):
            found.append(i)
    return found


def raw_verify(gold: str, pred: str) -> bool:
    """math-verify with all its defaults, `verify(parse(gold), parse(pred))`: the baseline that
    tests/test_answers_mathverify.py and benchmarks/answer_check.py measure `check_answer` against."""
    return bool(verify(parse(gold, parsing_timeout=None), parse(pred, parsing_timeout=None), timeout_seconds=None))


def string_extract(text: str, strings: tuple[str, ...], anchored_only: bool) -> str | None:
    """math-verify's string extraction ("the answer is B", "final answer: yes"): regexes only, no sympy, so
    safe to run in the caller's process."""
    config = StringExtractionConfig(strings=strings, lowercase=False, try_extract_without_anchor=not anchored_only)
    found = parse(text, [config], parsing_timeout=None)
    return found[0] if found else None


# --- the worker process (this file as `__main__`, started by rapid_agent._verify_pool) ---------------------------

#: what a worker may be asked to run (string_extract runs in the caller)
FUNCTIONS = {f.__name__: f for f in (math_equal, matching_choices, extract, raw_verify)}


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the thread that started it ends, even while sympy holds the GIL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker still exits when its stdin closes
        pass


def serve() -> None:
    """Answer one JSON request per line on stdin (`{"function": name, "args": [...]}`) with one JSON line on the
    original stdout: `{"result": ...}` or `{"error": "Type: message"}`. Anything else the libraries print goes to
    stderr, so it cannot corrupt a reply. Ends when stdin closes."""
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the caller's terminal is the caller's to handle
    _die_with_parent()
    print(json.dumps({"ready": os.getpid()}), file=replies)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            reply = {"result": FUNCTIONS[request["function"]](*request["args"])}
        except Exception as exc:  # sympy raising on a strange expression: the caller decides what it means
            reply = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        print(json.dumps(reply), file=replies)


if __name__ == "__main__":
    serve()
