"""Questions about a scene: templates by difficulty level, gold answers, the canonical description, solutions.

Level 1 reads one count. Level 2 reads two counts and applies the one operation the question names ("What is the
product of the number of red shapes and the number of circles?"): phrased so that a text-only reasoner given the
two counts only has to do the arithmetic. Level 3 needs more: a difference, a total over every group, a multiple
choice comparison or a weighted sum. Gold answers are computed here from the scene's objects; the independent
check from the description text lives in `oracle.py`. A template returns None when its quantity would be ill
defined for the scene (a tie for "most", a non-positive difference), and another is tried.

Besides the full description, each question has a query-related caption (`query_caption`): only the counts the
question asks about, a sentence each ("There are 2 red shapes. There are 3 circles.").
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rapid_agent.world.scenes import COLOURS, SHAPES, Scene

LETTERS = "ABCD"


@dataclass(frozen=True)
class Question:
    """A posed question: its text, gold answer, template `kind`, `level`, options and the template's parameters."""

    kind: str
    level: int
    text: str
    answer: str
    choices: tuple[str, ...] = ()
    params: dict = field(default_factory=dict, compare=False, hash=False)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe(scene: Scene) -> str:
    """The canonical description: counts per (colour, shape), ordered by palette colour then shape."""
    pairs = Counter((o.colour, o.shape) for o in scene.objects)
    parts = [f"{_plural(pairs[(c, s)], f'{c} {s}')}" for c in COLOURS for s in SHAPES if pairs[(c, s)]]
    return ", ".join(parts) + "." if parts else "No shapes."


def list_objects(scene: Scene) -> str:
    """Every object on its own, in reading order (row by row): "a red circle, a blue square, a red circle."."""
    ordered = sorted(scene.objects, key=lambda o: (o.row, o.col))
    return ", ".join(f"a {o.colour} {o.shape}" for o in ordered) + "." if ordered else "No shapes."


def _colour_counts(scene: Scene) -> Counter:
    return Counter(o.colour for o in scene.objects)


def _shape_counts(scene: Scene) -> Counter:
    return Counter(o.shape for o in scene.objects)


def _count_colour(scene: Scene, rng: random.Random) -> Question | None:
    colour = rng.choice(sorted(_colour_counts(scene)))
    n = _colour_counts(scene)[colour]
    return Question("count_colour", 1, f"How many {colour} shapes are there?", str(n), params={"colour": colour})


def _count_shape(scene: Scene, rng: random.Random) -> Question | None:
    shape = rng.choice(sorted(_shape_counts(scene)))
    n = _shape_counts(scene)[shape]
    return Question("count_shape", 1, f"How many {shape}s are there?", str(n), params={"shape": shape})


def _count_pair(scene: Scene, rng: random.Random) -> Question | None:
    colour, shape = rng.choice(sorted({(o.colour, o.shape) for o in scene.objects}))
    n = sum(o.colour == colour and o.shape == shape for o in scene.objects)
    text = f"How many {colour} {shape}s are there?"
    return Question("count_pair", 1, text, str(n), params={"colour": colour, "shape": shape})


def _two_present(counts: Counter, rng: random.Random) -> tuple[str, str] | None:
    present = sorted(counts)
    return tuple(rng.sample(present, 2)) if len(present) >= 2 else None


def _diff_colour(scene: Scene, rng: random.Random) -> Question | None:
    counts = _colour_counts(scene)
    pair = _two_present(counts, rng)
    if pair is None or counts[pair[0]] == counts[pair[1]]:
        return None
    a, b = sorted(pair, key=lambda c: -counts[c])  # "how many more a than b" only when a > b
    text = f"How many more {a} shapes than {b} shapes are there?"
    return Question("diff_colour", 3, text, str(counts[a] - counts[b]), params={"a": a, "b": b})


def _diff_shape(scene: Scene, rng: random.Random) -> Question | None:
    counts = _shape_counts(scene)
    pair = _two_present(counts, rng)
    if pair is None or counts[pair[0]] == counts[pair[1]]:
        return None
    a, b = sorted(pair, key=lambda s: -counts[s])
    text = f"How many more {a}s than {b}s are there?"
    return Question("diff_shape", 3, text, str(counts[a] - counts[b]), params={"a": a, "b": b})


def _total_colour(scene: Scene, rng: random.Random) -> Question | None:
    counts = _colour_counts(scene)
    pair = _two_present(counts, rng)
    if pair is None:
        return None
    a, b = (c for c in COLOURS if c in pair)
    text = f"How many {a} and {b} shapes are there in total?"
    return Question("total_colour", 3, text, str(counts[a] + counts[b]), params={"a": a, "b": b})


def _total_shape(scene: Scene, rng: random.Random) -> Question | None:
    counts = _shape_counts(scene)
    pair = _two_present(counts, rng)
    if pair is None:
        return None
    a, b = (s for s in SHAPES if s in pair)
    text = f"How many {a}s and {b}s are there in total?"
    return Question("total_shape", 3, text, str(counts[a] + counts[b]), params={"a": a, "b": b})


def _noun(group: str, by_colour: bool) -> str:
    return f"{group} shape" if by_colour else group


def _operation(op: str, by_colour: bool) -> Template:
    """A level-2 template: the product (op "*") or sum ("+") of two colour or shape counts."""
    name = "product" if op == "*" else "sum"

    def template(scene: Scene, rng: random.Random) -> Question | None:
        counts = _colour_counts(scene) if by_colour else _shape_counts(scene)
        # Both counts at least 2, so the answer is never one of the counts: copying a count is never right.
        pair = _two_present(Counter({g: n for g, n in counts.items() if n >= 2}), rng)
        if pair is None:
            return None
        a, b = pair
        na, nb = counts[a], counts[b]
        text = f"What is the {name} of the number of {_noun(a, by_colour)}s and the number of {_noun(b, by_colour)}s?"
        answer = na * nb if op == "*" else na + nb
        kind = f"{name}_{'colour' if by_colour else 'shape'}"
        return Question(kind, 2, text, str(answer), params={"a": a, "b": b, "op": op})

    return template


def _total(scene: Scene, rng: random.Random) -> Question | None:
    return Question("total", 3, "How many shapes are there in total?", str(len(scene.objects)))


def _most(kind: str, prompt: str, counts: Counter, options: tuple[str, ...], rng: random.Random) -> Question | None:
    ranked = sorted(options, key=lambda o: -counts[o])
    if counts[ranked[0]] == counts[ranked[1]]:
        return None  # a tie has no single right option
    shown = list(options)
    rng.shuffle(shown)  # shuffled so a letter does not stand for a fixed colour
    listing = " ".join(f"{letter}. {option}" for letter, option in zip(LETTERS, shown, strict=False))
    answer = LETTERS[shown.index(ranked[0])]
    return Question(kind, 3, f"{prompt} Options: {listing}", answer, tuple(shown), {"best": ranked[0]})


def _most_colour(scene: Scene, rng: random.Random) -> Question | None:
    return _most("most_colour", "Which colour has the most shapes?", _colour_counts(scene), COLOURS, rng)


def _most_shape(scene: Scene, rng: random.Random) -> Question | None:
    return _most("most_shape", "Which shape appears most often?", _shape_counts(scene), SHAPES, rng)


def _points(scene: Scene, rng: random.Random) -> Question | None:
    counts = _shape_counts(scene)
    pair = _two_present(counts, rng)
    if pair is None:
        return None
    a, b = (s for s in SHAPES if s in pair)
    wa, wb = rng.randint(1, 4), rng.randint(1, 4)
    text = (
        f"Each {a} is worth {_plural(wa, 'point')} and each {b} is worth {_plural(wb, 'point')}. "
        "How many points are there in total?"
    )
    answer = str(counts[a] * wa + counts[b] * wb)
    return Question("points", 3, text, answer, params={"a": a, "b": b, "wa": wa, "wb": wb})


Template = Callable[[Scene, random.Random], "Question | None"]
TEMPLATES: dict[int, dict[str, Template]] = {
    1: {"count_colour": _count_colour, "count_shape": _count_shape, "count_pair": _count_pair},
    2: {
        "product_colour": _operation("*", by_colour=True),
        "product_shape": _operation("*", by_colour=False),
        "sum_colour": _operation("+", by_colour=True),
        "sum_shape": _operation("+", by_colour=False),
    },
    3: {
        "diff_colour": _diff_colour,
        "diff_shape": _diff_shape,
        "total_colour": _total_colour,
        "total_shape": _total_shape,
        "total": _total,
        "most_colour": _most_colour,
        "most_shape": _most_shape,
        "points": _points,
    },
}


def ask(scene: Scene, level: int, rng: random.Random, kind: str | None = None) -> Question | None:
    """A question of `level` (template `kind`, or a uniform random one) about `scene`; None if ill defined there."""
    if level not in TEMPLATES:
        raise ValueError(f"level must be one of {sorted(TEMPLATES)}, got {level!r}")
    kind = kind if kind is not None else rng.choice(sorted(TEMPLATES[level]))
    if kind not in TEMPLATES[level]:
        raise ValueError(f"kind {kind!r} is not a level-{level} template; choose from {sorted(TEMPLATES[level])}")
    return TEMPLATES[level][kind](scene, rng) if scene.objects else None


#: level-3 kinds that combine two counts like level 2 does, with the operation implied by the kind
_TWO_COUNTS_LEVEL3 = ("diff_colour", "total_colour", "diff_shape", "total_shape")


def _has(n: int, noun: str) -> str:
    return f"There {'is' if n == 1 else 'are'} {_plural(n, noun)}"


def solution(scene: Scene, question: Question) -> str:
    """A short worked solution of `question` from the scene's counts, ending in `\\boxed{answer}`."""
    p, colours, shapes = question.params, _colour_counts(scene), _shape_counts(scene)
    kind = question.kind
    if kind == "count_colour":
        body = f"{_has(colours[p['colour']], p['colour'] + ' shape')}."
    elif kind == "count_shape":
        body = f"{_has(shapes[p['shape']], p['shape'])}."
    elif kind == "count_pair":
        n = sum(o.colour == p["colour"] and o.shape == p["shape"] for o in scene.objects)
        body = f"{_has(n, p['colour'] + ' ' + p['shape'])}."
    elif kind in ("product_colour", "product_shape", "sum_colour", "sum_shape", *_TWO_COUNTS_LEVEL3):
        counts, noun = (colours, " shape") if kind.endswith("colour") else (shapes, "")
        na, nb = counts[p["a"]], counts[p["b"]]
        op = p.get("op") or ("-" if kind.startswith("diff") else "+")
        result = {"*": na * nb, "+": na + nb, "-": na - nb}[op]
        body = f"{_has(na, p['a'] + noun)}. {_has(nb, p['b'] + noun)}. {na} {op} {nb} = {result}."
    elif kind == "total":
        pairs = Counter((o.colour, o.shape) for o in scene.objects)
        groups = [pairs[(c, s)] for c in COLOURS for s in SHAPES if pairs[(c, s)]]  # the description's order
        sums = f"{' + '.join(map(str, groups))} = " if len(groups) > 1 else ""
        body = f"There are {sums}{_plural(len(scene.objects), 'shape')} in total."
    elif kind in ("most_colour", "most_shape"):
        counts = colours if kind == "most_colour" else shapes
        noun = " shape" if kind == "most_colour" else ""
        listed = ", ".join(_plural(counts[o], o + noun) for o in question.choices)
        body = f"Counts: {listed}. The most common is {p['best']}, option {question.answer}."
    elif kind == "points":
        na, nb = shapes[p["a"]], shapes[p["b"]]
        total = na * p["wa"] + nb * p["wb"]
        body = f"{_has(na, p['a'])}. {_has(nb, p['b'])}. {na} * {p['wa']} + {nb} * {p['wb']} = {total}."
    else:
        raise ValueError(f"unknown question kind {kind!r}")
    return f"{body} \\boxed{{{question.answer}}}"


def query_caption(scene: Scene, question: Question) -> str:
    """The query-related caption: a sentence with only the counts `question` is about, and no answer."""
    p, colours, shapes = question.params, _colour_counts(scene), _shape_counts(scene)
    kind = question.kind
    if kind == "count_colour":
        groups = [(colours[p["colour"]], p["colour"] + " shape")]
    elif kind == "count_shape":
        groups = [(shapes[p["shape"]], p["shape"])]
    elif kind == "count_pair":
        n = sum(o.colour == p["colour"] and o.shape == p["shape"] for o in scene.objects)
        groups = [(n, f"{p['colour']} {p['shape']}")]
    elif kind in ("total", "most_colour", "most_shape"):
        return describe(scene)  # about every group: the full description is the query-related one
    else:  # two groups, by colour or by shape
        by_colour = kind.endswith("colour")
        counts = colours if by_colour else shapes
        groups = [(counts[p[k]], p[k] + (" shape" if by_colour else "")) for k in ("a", "b")]
    return " ".join(f"{_has(n, noun)}." for n, noun in groups)
