"""An oracle reasoner: answers a world question from text alone, by regex.

It shares no arithmetic with the generator in `questions.py` on purpose: the tests use it to check every
generated gold answer, and other tests use it as a perfect reasoner. `answer_from_description` reads counts back
from a full description ("2 red circles, 1 blue square."), so it also scores a captioner's description: a wrong
count gives a wrong answer. `answer_from_text` reads any of the world's description styles (`styles.py`): stated
group counts ("There are 3 red shapes."), a full description, or a list of single objects, and falls back to an
answer the text states outright; it is the upper bound of a reasoner that reads perfectly from the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_COLOURS = ("red", "blue", "green", "yellow")
_SHAPES = ("circle", "square", "triangle")
_COUNT = re.compile(r"(\d+)\s+(red|blue|green|yellow)\s+(circle|square|triangle)s?\b", re.IGNORECASE)
_OPTION = re.compile(r"\b([A-D])\.\s*([a-z]+)", re.IGNORECASE)
_WORTH = re.compile(r"each (circle|square|triangle) is worth (\d+) points?", re.IGNORECASE)


_OBJECT = re.compile(r"\ban?\s+(red|blue|green|yellow)\s+(circle|square|triangle)\b", re.IGNORECASE)
_STATED_GROUP = re.compile(
    r"there (?:is|are) (\d+) ((?:(?:red|blue|green|yellow) )?(?:shape|circle|square|triangle))s?\b", re.IGNORECASE
)
_STATED_ANSWER = re.compile(r"\\boxed\{\s*([^{}]+?)\s*\}|answer is\s+(-?\d+)", re.IGNORECASE)
_GROUP = re.compile(r"\b(\d+)\s+(?:(?:red|blue|green|yellow)\s+)?(?:shape|circle|square|triangle)s?\b", re.IGNORECASE)


def states_a_count(text: str) -> bool:
    """Whether `text` states how many of some group there are ("2 red shapes", "1 circle", "3 blue squares")."""
    return bool(_GROUP.search(text))


def parse_counts(description: str) -> dict[tuple[str, str], int]:
    """(colour, shape) -> count as stated in the description; a repeated pair adds up, an unstated one is 0."""
    counts: dict[tuple[str, str], int] = {}
    for n, colour, shape in _COUNT.findall(description):
        key = (colour.lower(), shape.lower())
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _count(counts: dict[tuple[str, str], int], phrase: str) -> int:
    """How many objects a noun phrase like "red shapes", "squares", "blue circles" or "red" refers to."""
    words = re.findall(r"[a-z]+", phrase.lower())
    colour = next((w for w in words if w in _COLOURS), None)
    shape = next((w.rstrip("s") for w in words if w.rstrip("s") in _SHAPES), None)
    if colour is None and shape is None and "shapes" not in words:
        raise ValueError(f"cannot tell what {phrase!r} counts")
    return sum(n for (c, s), n in counts.items() if colour in (None, c) and shape in (None, s))


def _most(counts: dict[tuple[str, str], int], options: Sequence[str], by_colour: bool) -> str:
    totals = [sum(n for (c, s), n in counts.items() if (c if by_colour else s) == o.lower()) for o in options]
    best = max(totals)
    if totals.count(best) != 1:
        raise ValueError(f"no single option has the most: {dict(zip(options, totals, strict=True))}")
    return "ABCD"[totals.index(best)]


def answer_from_description(description: str, question: str, choices: Sequence[str] = ()) -> str:
    """The answer to `question` implied by `description`: an integer string, or an option letter.

    `choices` are the multiple-choice options in letter order; when empty they are read from the question's
    "Options: A. red B. blue ..." text. Raises ValueError for a question it cannot read or a tie.
    """
    counts = parse_counts(description)
    q = " ".join(question.split())
    low = q.lower()
    if low.startswith("which"):
        options = list(choices) or [text for _, text in _OPTION.findall(q.split("Options:", 1)[-1])]
        if not options or "most" not in low:
            raise ValueError(f"cannot read a multiple-choice question from {question!r}")
        return _most(counts, options, by_colour=bool(re.match(r"which colou?r", low)))
    worth = _WORTH.findall(q)
    if worth:
        shape_total = {s: sum(n for (_, sh), n in counts.items() if sh == s) for s in _SHAPES}
        return str(sum(shape_total[s.lower()] * int(w) for s, w in worth))
    if m := re.match(r"what is the (product|sum) of the number of (.+?) and the number of (.+?)\?", low):
        a, b = _count(counts, m[2]), _count(counts, m[3])
        return str(a * b if m[1] == "product" else a + b)
    if m := re.match(r"how many more (.+?) than (.+?) are there", low):
        return str(_count(counts, m[1]) - _count(counts, m[2]))
    if m := re.match(r"how many (.+?) and (.+?) are there in total", low):
        return str(_count(counts, m[1]) + _count(counts, m[2]))
    if m := re.match(r"how many (.+?) are there", low):
        return str(_count(counts, m[1]))
    raise ValueError(f"cannot read question {question!r}")


def _group_key(phrase: str) -> tuple[str | None, str | None]:
    words = re.findall(r"[a-z]+", phrase.lower())
    colour = next((w for w in words if w in _COLOURS), None)
    shape = next((w.rstrip("s") for w in words if w.rstrip("s") in _SHAPES), None)
    return colour, shape


def _stated_groups(text: str) -> dict[tuple[str | None, str | None], int]:
    """Counts the text states group by group: "There are 3 red shapes." -> {("red", None): 3}."""
    return {_group_key(noun): int(n) for n, noun in _STATED_GROUP.findall(text)}


def _objects(text: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for colour, shape in _OBJECT.findall(text):
        key = (colour.lower(), shape.lower())
        counts[key] = counts.get(key, 0) + 1
    return counts


def answer_from_text(text: str, question: str) -> str | None:
    """The answer to a level-1 or level-2 `question` that `text` implies, or None when it cannot tell.

    Counts come from, in order: group counts the text states for exactly the groups asked about, a full
    description's per-kind counts, single objects listed one by one. A text with no counts (a vague caption) gives
    the answer it states outright (`\\boxed{6}`, "the answer is 6"), if any."""
    low = " ".join(question.split()).lower()
    if m := re.match(r"what is the (product|sum) of the number of (.+?) and the number of (.+?)\?", low):
        op, phrases = m[1], [m[2], m[3]]
    elif m := re.match(r"how many (.+?) are there\?", low):
        op, phrases = None, [m[1]]
    else:
        return None
    stated = _stated_groups(text)
    wanted = [_group_key(p) for p in phrases]
    if all(key in stated for key in wanted):
        values = [stated[key] for key in wanted]
    else:
        counts = parse_counts(text) or _objects(text)
        if not counts:
            found = _STATED_ANSWER.findall(text)
            return next((a or b for a, b in reversed(found)), None)
        values = [_count(counts, p) for p in phrases]
    if op is None:
        return str(values[0])
    return str(values[0] * values[1] if op == "product" else values[0] + values[1])
