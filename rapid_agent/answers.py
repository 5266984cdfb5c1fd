"""Answer extraction and checking: a reasoner's output against the gold answer, for benchmark tables and RL rewards.

Where the answer is read
- By default (evaluation): the text after the last `</think>` (all of it when a `<think>` never closed), its last
  `MAX_ANSWER_CHARS` characters. math-verify extracts the answer: a `\\boxed{}` first (boxes joined by "and" or ","
  make a set), then "final answer is ...", LaTeX in `$...$` or `\\(...\\)`, then a plain number or expression.
- `final_box_only=True` (RL training, the paper's parse): only the last `\\boxed{}` after the last `</think>`. An
  output that opened `<think>` and never closed it, has no box, or was cut off (`finish_reason="length"`) has no
  answer. Nothing falls back to numbers or option names in the prose.

How it is compared
- Multiple choice (the gold is a letter such as `B`, `(B)`, `B. blue`, or the text of one of `choices`): as
  letters. A box may hold `b`, `(c)`, `Option C`, `\\text{B}`, `B. blue` or an option's text; a box naming two
  options (`B or C`) names none. Without a box (default mode only): "the answer is B", `(B)`, a line holding only
  the letter, else the option whose text comes last.
- Plain words (gold `Yes`, `blue`): as text, ignoring case.
- Everything else: math-verify, `verify(gold, pred)`, gold first (it is not symmetric).

Where it runs
Checks decidable without sympy (identical answers, plain numbers, letters, words) are decided in the calling process
in microseconds. The rest go to a small pool of worker processes (`rapid_agent._verify_pool`) that kills a check
when it passes `timeout_s`: sympy can hold the GIL for minutes, which no thread or signal in the caller can stop.
`check_answers` sends a whole batch to the pool at once; `acheck_answer` awaits one check without blocking the loop.

An output we cannot read is an outcome (`correct=False` and the reason), never an exception; a bad argument (a
non-positive timeout, choices given as one string, a missing gold answer) is a ValueError/TypeError naming it. A
check that could not run at all (no worker process could start, one died, the pool was stopped) is undecided:
`correct=None`, the reason saying why. Tables count it apart, rewards skip it, evaluation retries it; it is never a
wrong answer. A check that passes its time bound is wrong (`timed_out=True`), as in math-verify: the bound counts
the CPU time the check itself used, so the verdict does not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import re
import string
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from numbers import Number
from typing import Any

from rapid_agent import _verify_pool

#: the longest tail of an output that is searched for an answer; math-verify's regexes slow down on long texts
MAX_ANSWER_CHARS = 4000
MAX_PREDICTION_CHARS = 500
#: outputs up to this long have their check planned on the event loop's thread (microseconds), unless planning would
#: load math-verify; longer ones are planned in a worker thread
INLINE_PLAN_CHARS = 2000
LETTERS = string.ascii_uppercase
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
#: values of `Verdict.extracted_from`
SOURCES = ("boxed", "math-verify", "letter", "option text", "text")

_BOX_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_PREFIX = r"(?i:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)?"
_ONE_LETTER = re.compile(rf"{_PREFIX}[(\[]?([A-Za-z])[)\]]?[.:]?")
_LETTER_THEN_TEXT = re.compile(rf"{_PREFIX}(?:[(\[]([A-Za-z])[)\]]\s*|([A-Za-z])[.:)]\s+)(\S.*)", re.DOTALL)
_ANOTHER_OPTION = re.compile(r"(?:\bor\b|\band\b|,|/)\s*[(\[]?[A-Za-z][)\]]?(?!\w)", re.IGNORECASE)
_LETTER_IN_TEXT = re.compile(
    r"\(([A-Z])\)|(?i:\b(?:option|choice))\s*\(?([A-Z])\b|^[ \t*$]*\(?([A-Z])[).:]?[ \t*$]*$", re.MULTILINE
)
_WORDS = re.compile(r"[A-Za-z][A-Za-z '\-]*[A-Za-z]")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,4})?")
_INTEGER = re.compile(r"[-+]?\d+")
_MATHLIKE = re.compile(r"[\d\\]")
_MATH_HINT = re.compile(r"\d|\$|\\\(|\\\[")


class AnswerCheckError(RuntimeError):
    """The answer checker itself could not run (an infrastructure failure, never a property of the answer)."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one output.

    `prediction` is the answer read (None when none was found); `extracted_from` says where it came from (one of
    `SOURCES`: the last box, math-verify's extraction from the prose, a letter or an option's text named in the
    prose, or the whole output); `timed_out` marks a check ended by its timeout (then `correct` is False).
    `correct` is None when the check could not run (see `undecided`): no verdict, and `reason` says why.
    """

    correct: bool | None
    prediction: str | None
    reason: str
    extracted_from: str | None = None
    timed_out: bool = False

    @property
    def undecided(self) -> bool:
        """True when the checker could not run (an infrastructure failure, not a wrong answer)."""
        return self.correct is None


@dataclass(frozen=True)
class _Pending:
    """A check that needs math-verify: the worker function to call and how to read its result."""

    function: str
    args: tuple
    finish: Callable[[Any], Verdict]
    prediction: str | None
    source: str | None


# --- reading the answer -------------------------------------------------------------------------------------------


def strip_thinking(text: str) -> str:
    """The part of an output after its last `</think>` (reasoning models think first, then answer)."""
    return text.rsplit(THINK_CLOSE, 1)[-1] if THINK_CLOSE in text else text


def _last_box(text: str) -> tuple[int, str] | None:
    """Start and content of the last `\\boxed{...}`/`\\fbox{...}` whose braces close; one pass over the text."""
    open_braces: list[tuple[int, int] | None] = []  # for each open brace: (box start, content start) or None
    best: tuple[int, int, int] | None = None
    for match in _BOX_TOKENS.finditer(text):
        token = match.group()
        if token == "}":
            opened = open_braces.pop() if open_braces else None
            if opened is not None and (best is None or opened[0] > best[0]):
                best = (opened[0], opened[1], match.start())
        else:
            open_braces.append(None if token == "{" else (match.start(), match.end()))
    return (best[0], text[best[1] : best[2]]) if best else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces balanced; None if there is none.

    Linear in the length of `text`: unclosed boxes are skipped without rescanning the rest of the text.
    """
    found = _last_box(text)
    return found[1].strip() if found else None


def _answer_text(output: str, final_box_only: bool) -> tuple[str | None, str]:
    """The text the answer is read from, or None and why there is none."""
    text = strip_thinking(output)
    if final_box_only:
        if THINK_OPEN in text:
            return None, "the output opened <think> and never closed it: no answer after the reasoning"
        return text, ""
    start = max(0, len(text) - MAX_ANSWER_CHARS)
    box = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
    if box >= 0 and len(text) - box <= 2 * MAX_ANSWER_CHARS:
        start = box  # a final box just before the window still counts
    return text[start:], ""


def _unwrap(text: str) -> str:
    """`\\text{B}` -> `B`, `$B$` -> `B`, `**B**` -> `B`."""
    for _ in range(4):
        text, changed = _WRAPPER.subn(r"\1", text)
        if not changed:
            break
    return text.replace("$", "").replace("**", "").strip()


def _norm_text(text: str) -> str:
    text = re.sub(r"\s+", " ", _unwrap(text).replace("\\", ""))
    return text.strip().strip(".,;:!").strip().lower()


def is_choice_gold(gold: str, choices: Sequence[str] = ()) -> bool:
    """Whether `gold` names an option: a letter (`B`, `(B)`, `B. blue`, `Option B`) or the text of one of `choices`."""
    return _gold_letter(str(gold), tuple(str(c) for c in choices or ())) is not None


def choice_letter(answer: str, choices: Sequence[str] = (), *, lowercase: bool = True) -> str | None:
    """The option letter an answer names: `B`, `b`, `(c)`, `[B]`, `B.`, `Option C`, `\\text{B}`, `B. blue`, or the
    text of one of `choices`; None when it names none or several (`B or C`)."""
    cleaned = _unwrap(str(answer))
    allowed = LETTERS[: len(choices)] if choices else LETTERS
    match = _ONE_LETTER.fullmatch(cleaned) or _LETTER_THEN_TEXT.match(cleaned)
    if match:
        letter = next(g for g in match.groups()[:2] if g)
        rest = match.group(3) if match.re is _LETTER_THEN_TEXT else ""
        if (letter.isupper() or lowercase) and letter.upper() in allowed and not _ANOTHER_OPTION.search(rest):
            return letter.upper()
    normalized = _norm_text(cleaned)
    for i, choice in enumerate(choices):
        if normalized and normalized == _norm_text(str(choice)):
            return LETTERS[i]
    return None


def _gold_letter(gold: str, choices: tuple[str, ...]) -> str | None:
    # a lowercase letter is an option only when there are options: without them `b` is more likely a variable
    return choice_letter(gold, choices, lowercase=bool(choices))


class _NeedsImport(Exception):
    """Planning on an event loop's thread reached math-verify before it was loaded: plan in a thread instead."""


#: set while a check is planned on an event loop's thread, where loading math-verify would block the loop
_on_loop: contextvars.ContextVar[bool] = contextvars.ContextVar("rapid_plan_on_loop", default=False)


def _string_extract(text: str, strings: Sequence[str], *, anchored_only: bool) -> str | None:
    if _on_loop.get() and "rapid_agent._math_check" not in sys.modules:
        raise _NeedsImport
    from rapid_agent._math_check import string_extract  # deferred: loads math-verify (and sympy) on first use

    return string_extract(text, tuple(strings), anchored_only)


def _letter_from_text(text: str, choices: tuple[str, ...]) -> tuple[str | None, str | None]:
    """A letter named in unboxed prose: "answer is B", then the last `(B)`/`option B`/lone `B` line, then the
    option whose text is named last."""
    whole = text.strip()
    if len(whole) <= 200 and (letter := choice_letter(whole, choices)):  # the whole output is the answer
        return letter, "letter" if _ONE_LETTER.fullmatch(_unwrap(whole)) else "option text"
    allowed = LETTERS[: len(choices)] if choices else LETTERS[:10]
    anchored = _string_extract(text, tuple(allowed), anchored_only=True)
    if anchored:
        return anchored.upper(), "letter"
    letters = [g for m in _LETTER_IN_TEXT.finditer(text) for g in m.groups() if g and g in allowed]
    if letters:
        return letters[-1], "letter"
    best: tuple[int, int, int] | None = None
    for i, choice in enumerate(choices):
        needle = str(choice).strip()
        if not needle:
            continue
        for match in re.finditer(rf"(?<!\w){re.escape(needle)}(?!\w)", text, flags=re.IGNORECASE):
            best = max(best or (-1, -1, -1), (match.end(), len(needle), i))
    return (LETTERS[best[2]], "option text") if best else (None, None)


# --- deciding without sympy -------------------------------------------------------------------------------------


def _plain_number(text: str) -> Decimal | None:
    if len(text) > 60 or not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except DecimalException:
        return None


def _fast_equal(gold: str, pred: str) -> bool | None:
    """Decide identical answers and plain numbers in-process; None when math-verify must decide.

    Agrees with math-verify: integers compare exactly; with a decimal point it rounds to 6 places, so values
    closer than that are left to it.
    """
    gold, pred = gold.strip().strip("$").strip(), pred.strip().strip("$").strip()
    if gold == pred and gold:
        return True
    a, b = _plain_number(gold), _plain_number(pred)
    if a is None or b is None:
        return None
    try:
        if a == b:
            return True
        if _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(pred):
            return False
        return False if abs(a - b) > Decimal("2e-6") else None
    except DecimalException:
        return None


# --- planning one check -------------------------------------------------------------------------------------------


def _clip(prediction: str | None) -> str | None:
    """Predictions are logged per sample: a runaway box is cut to its first `MAX_PREDICTION_CHARS`."""
    return prediction[:MAX_PREDICTION_CHARS] if prediction is not None else None


def _verdict(correct: bool, prediction: str | None, source: str | None, how: str = "") -> Verdict:
    return Verdict(correct, _clip(prediction), ("match" if correct else "mismatch") + how, source)


def _no_box(final_box_only: bool) -> Verdict:
    where = "after the reasoning" if final_box_only else "and no final answer found in the output"
    return Verdict(False, None, f"no \\boxed{{}} answer {where}")


def _plan_choice(text: str, gold: str, choices: tuple[str, ...], final_box_only: bool) -> Verdict | _Pending:
    box = last_boxed(text)
    if box is None:
        if final_box_only:
            return _no_box(True)
        letter, source = _letter_from_text(text, choices)
        if letter is None:
            return Verdict(False, None, "no \\boxed{} answer and no option letter or option text found in the output")
        return _verdict(letter == gold, letter, source)
    letter = choice_letter(box, choices)
    if letter is not None:
        return _verdict(letter == gold, letter, "boxed")
    if choices and _MATHLIKE.search(box) and len(box) <= MAX_ANSWER_CHARS:

        def finish(indices: list[int]) -> Verdict:  # an option written `\frac{1}{2}` is named by a boxed `0.5`
            if len(indices) != 1:
                what = "no option" if not indices else "several options"
                return Verdict(False, _clip(box), f"boxed answer {box[:80]!r} equals {what}", "boxed")
            return _verdict(LETTERS[indices[0]] == gold, LETTERS[indices[0]], "boxed")

        return _Pending("matching_choices", (box, choices), finish, _clip(box), "boxed")
    return Verdict(False, _clip(box), f"boxed answer {box[:80]!r} names no option letter", "boxed")


def _plan_words(text: str, gold: str, final_box_only: bool) -> Verdict:
    box = last_boxed(text)
    if box is not None:
        return _verdict(_norm_text(box) == _norm_text(gold), box, "boxed", " (as text)")
    if final_box_only:
        return _no_box(True)
    if _norm_text(text) == _norm_text(gold):  # the whole output is the answer
        return _verdict(True, text.strip(), "text", " (as text)")
    yes_no = _norm_text(gold) in ("yes", "no")
    strings = ("yes", "no", "Yes", "No", "YES", "NO") if yes_no else tuple(dict.fromkeys((gold, gold.lower())))
    found = _string_extract(text, strings, anchored_only=not yes_no)
    if found is None:
        return _no_box(False)
    return _verdict(_norm_text(found) == _norm_text(gold), found, "text", " (as text)")


def _math_finish(gold: str, box: str | None, source: str) -> Callable[[Any], Verdict]:
    def finish(result: tuple[bool | None, str | None]) -> Verdict:
        correct, prediction = result
        if correct is not None:
            return _verdict(correct, prediction, source)
        shown = box if box is not None else prediction
        if shown is None:
            return Verdict(False, None, "math-verify found no answer in the output", source)
        # math-verify could not read one side (a word, a name): compare as text
        return _verdict(_norm_text(shown) == _norm_text(gold), shown, source, " (as text)")

    return finish


def _plan_math(text: str, gold: str, final_box_only: bool) -> Verdict | _Pending:
    found = _last_box(text)
    box = found[1].strip() if found else None
    if final_box_only:
        if box is None:
            return _no_box(True)
        if len(box) > MAX_ANSWER_CHARS:
            return Verdict(False, _clip(box), f"boxed answer longer than {MAX_ANSWER_CHARS} characters", "boxed")
        decided = _fast_equal(gold, box)
        if decided is not None:
            return _verdict(decided, box, "boxed")
        pending = _math_finish(gold, box, "boxed")
        return _Pending("math_equal", (gold, f"\\boxed{{{box}}}", box), pending, _clip(box), "boxed")
    boxes = text.count("\\boxed") + text.count("\\fbox")
    whole = text.strip()
    if boxes == 1 and box is not None:
        decided = _fast_equal(gold, box)
        if decided is not None:
            return _verdict(decided, box, "boxed")
    elif boxes == 0:
        decided = _fast_equal(gold, whole) if len(whole) <= 200 else None  # the whole output may be the answer
        if decided is not None:
            return _verdict(decided, whole, "text")
        if not _MATH_HINT.search(text):  # no digit, no LaTeX: nothing math-verify could read
            return _no_box(False)
    source = "boxed" if boxes else "math-verify"
    only_box = box if boxes == 1 else None
    return _Pending("math_equal", (gold, text, only_box), _math_finish(gold, box, source), _clip(box), source)


def _plan(output: Any, gold: Any, choices: Any, final_box_only: bool, finish_reason: str | None) -> Verdict | _Pending:
    gold_text = _gold_text(gold)
    options = _options(choices)
    if output is None:
        return Verdict(False, None, "no output to check (output is None)")
    text = _as_text(output, "output")
    if final_box_only and finish_reason == "length":
        return Verdict(False, None, "the output was cut off (finish_reason='length'): no final answer")
    text, why = _answer_text(text, final_box_only)
    if text is None:
        return Verdict(False, None, why)
    letter = _gold_letter(gold_text, options)
    if letter is not None:
        return _plan_choice(text, letter, options, final_box_only)
    if _WORDS.fullmatch(_unwrap(gold_text)):
        return _plan_words(text, _unwrap(gold_text), final_box_only)
    return _plan_math(text, gold_text, final_box_only)


# --- arguments ----------------------------------------------------------------------------------------------------


def _as_text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Number):
        return str(value)
    raise TypeError(f"{name} must be a string (or a number), got {type(value).__name__}: {value!r:.80}")


def _gold_text(gold: Any) -> str:
    if gold is None:
        raise ValueError("gold is None: there is no answer to check against")
    text = _as_text(gold, "gold").strip()
    if not text:
        raise ValueError(f"gold is empty ({gold!r}): there is no answer to check against")
    return text


def _options(choices: Any) -> tuple[str, ...]:
    if choices is None:
        return ()
    if isinstance(choices, (str, bytes)):
        raise TypeError(f"choices must be a sequence of option texts, got one string: {choices!r:.80}")
    options = tuple(_as_text(c, "each of choices") if c is not None else "" for c in choices)
    if len(options) > len(LETTERS):
        raise ValueError(f"choices has {len(options)} options; at most {len(LETTERS)} (A-Z) are supported")
    return options


def _check_timeout(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


# --- running checks -----------------------------------------------------------------------------------------------


def _failed(pending: _Pending, error: BaseException, timeout_s: float) -> Verdict:
    if isinstance(error, (TimeoutError, concurrent.futures.TimeoutError)):
        reason = f"answer check timed out after {timeout_s:g} s of CPU (its worker process was killed)"
        return Verdict(False, pending.prediction, reason, pending.source, timed_out=True)
    if isinstance(error, _verify_pool.WorkerError):
        return Verdict(None, pending.prediction, f"answer check could not run: {error}", pending.source)
    # math-verify raised on this output (sympy refusing an expression): the answer could not be compared
    return Verdict(False, pending.prediction, f"verification error: {error}", pending.source)


def _resolve(pending: _Pending, future: concurrent.futures.Future, timeout_s: float) -> Verdict:
    try:
        return pending.finish(future.result())
    except Exception as exc:  # a timeout, a worker that died, sympy raising: a failed check, not a crash
        return _failed(pending, exc, timeout_s)


def check_answer(
    output: str | None,
    gold: str | float,
    *,
    choices: Sequence[str] | None = (),
    timeout_s: float = 5.0,
    final_box_only: bool = False,
    finish_reason: str | None = None,
) -> Verdict:
    """Check one output against `gold`; see the module docstring for how the answer is read and compared.

    `final_box_only=True` is the training-mode parse (the last box after the reasoning, nothing else); with it a
    `finish_reason` of "length" (a truncated output) is wrong. `timeout_s` bounds the math-verify part, which runs
    in a worker process that is killed when it passes the bound.
    """
    timeout_s = _check_timeout(timeout_s)
    plan = _plan(output, gold, choices, final_box_only, finish_reason)
    if isinstance(plan, Verdict):
        return plan
    return _resolve(plan, _verify_pool.submit(plan.function, plan.args, timeout_s), timeout_s)


async def acheck_answer(
    output: str | None,
    gold: str | float,
    *,
    choices: Sequence[str] | None = (),
    timeout_s: float = 5.0,
    final_box_only: bool = False,
    finish_reason: str | None = None,
) -> Verdict:
    """`check_answer` for event loops: nothing slow runs on the loop's thread. Reading the answer of a long output
    (math-verify's regexes), or one that would load math-verify, runs in a worker thread; a short one is read here,
    where a thread hop would cost more than the reading. The math-verify part is awaited from a worker process."""
    timeout_s = _check_timeout(timeout_s)
    plan = _plan_on_loop(output, gold, choices, final_box_only, finish_reason)
    if plan is None:
        plan = await asyncio.to_thread(_plan, output, gold, choices, final_box_only, finish_reason)
    if isinstance(plan, Verdict):
        return plan
    future = _verify_pool.submit(plan.function, plan.args, timeout_s)  # queues only: workers start in their threads
    try:
        return plan.finish(await asyncio.wrap_future(future))
    except Exception as exc:
        return _failed(plan, exc, timeout_s)


def _plan_on_loop(
    output: Any, gold: Any, choices: Any, final_box_only: bool, finish_reason: str | None
) -> Verdict | _Pending | None:
    """`_plan` on this thread when that is cheap (a short output, math-verify not to be loaded), else None."""
    if not (output is None or (isinstance(output, str) and len(output) <= INLINE_PLAN_CHARS)):
        return None
    token = _on_loop.set(True)
    try:
        return _plan(output, gold, choices, final_box_only, finish_reason)
    except _NeedsImport:
        return None
    finally:
        _on_loop.reset(token)


def check_answers(
    outputs: Sequence[str | None],
    golds: Sequence[str | float],
    *,
    choices: Sequence[Sequence[str] | None] | None = None,
    timeout_s: float = 5.0,
    final_box_only: bool = False,
    finish_reasons: Sequence[str | None] | None = None,
) -> list[Verdict]:
    """Check many outputs at once: the ones that need math-verify all go to the worker pool together.

    `choices` and `finish_reasons`, when given, hold one entry per output. `timeout_s` bounds each check once a
    worker starts it. Every argument is validated before any check runs.
    """
    timeout_s = _check_timeout(timeout_s)
    outputs, golds = list(outputs), list(golds)
    per_item = {"golds": golds, "choices": choices, "finish_reasons": finish_reasons}
    for name, values in per_item.items():
        if values is not None and len(values) != len(outputs):
            raise ValueError(f"{name} has {len(values)} entries for {len(outputs)} outputs")
    options = list(choices) if choices is not None else [()] * len(outputs)
    reasons = list(finish_reasons) if finish_reasons is not None else [None] * len(outputs)
    plans = [_plan(*args, final_box_only, reason) for args, reason in zip(zip(outputs, golds, options), reasons)]
    futures = {
        i: _verify_pool.submit(p.function, p.args, timeout_s) for i, p in enumerate(plans) if isinstance(p, _Pending)
    }
    return [p if isinstance(p, Verdict) else _resolve(p, futures[i], timeout_s) for i, p in enumerate(plans)]


def extract_answer(
    output: str | None,
    *,
    choices: Sequence[str] | None = (),
    final_box_only: bool = False,
    timeout_s: float = 5.0,
) -> tuple[str | None, str | None]:
    """The answer `check_answer` would read from `output`, and where it came from (one of `SOURCES`).

    With `choices`, a letter; otherwise the last box, or (default mode) what math-verify extracts from the prose.
    An extraction past `timeout_s` finds nothing; one that could not run at all raises `AnswerCheckError`.
    """
    timeout_s = _check_timeout(timeout_s)
    if output is None:
        return None, None
    text, _ = _answer_text(_as_text(output, "output"), final_box_only)
    if text is None:
        return None, None
    options = _options(choices)
    box = last_boxed(text)
    if box is not None:
        letter = choice_letter(box, options) if options else None
        return (letter or box), "boxed"
    if final_box_only:
        return None, None
    if options:
        return _letter_from_text(text, options)
    future = _verify_pool.submit("extract", (text,), timeout_s)
    try:
        found = future.result()
    except _verify_pool.WorkerError as exc:
        raise AnswerCheckError(f"answer extraction could not run: {exc}") from exc
    except Exception:  # timed out, or math-verify raised on this text: nothing found
        return None, None
    return (found, "math-verify") if found is not None else (None, None)
