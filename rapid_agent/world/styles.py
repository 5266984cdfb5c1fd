"""Several true ways to put one item into words, unequally usable by a small text-only reasoner.

A pretrained vision-language model can describe an image in many ways; RAPID's VPO rewards the ones its reasoner
turns into right answers. The world offers the same choice: for each item, a caption and a tentative solution in
one of these styles, all true to the image.

    counts     the counts the question asks about, a sentence each, then a solution that sets up the operation
               (level 1: the count and its boxed answer; level 2: "Compute 2 * 3.", the arithmetic left to the
               reasoner)
    inventory  the full description, a count per colour and shape: the reasoner must add up the groups it needs
    objects    every object on its own: the reasoner must count them itself
    vague      only which colours are there, no counts
    answer     no description at all, only the answer ("6.", then "The answer is \\boxed{6}."): the shortcut VPO's
               caption penalty exists to stop

`style_of` reads a caption's style back from its form: one of the styles, "mixed" when the caption holds a
description that fits no single style (a counts sentence run into an inventory, a list cut off by the token budget:
what a sampled captioner writes now and then), or "other" when it holds none ("Some.", "boxed{1}").
`is_description` is the ground truth a caption judge is measured against and the valid-caption ratio is counted by:
every style but `answer` describes the image, and so does a mixed caption.
"""

from __future__ import annotations

import re

from rapid_agent.world.scenes import COLOURS, SHAPES

STYLES: tuple[str, ...] = ("counts", "inventory", "objects", "vague", "answer")
#: the styles that describe the image (everything but the bare answer)
DESCRIPTIVE: tuple[str, ...] = ("counts", "inventory", "objects", "vague")
#: a caption that describes the image in no single style's form, and one that does not describe it at all
MIXED, OTHER = "mixed", "other"
#: what `style_of` can return, in table order
KINDS: tuple[str, ...] = (*STYLES, MIXED, OTHER)
#: the solution of a style that leaves all of the work to the reasoner
PLAN = "Count the shapes it asks about."

_COLOUR = "(?:" + "|".join(COLOURS) + ")"
_SHAPE = "(?:" + "|".join(SHAPES) + ")"
_GROUP = rf"(?:{_COLOUR} shape|{_COLOUR} {_SHAPE}|{_SHAPE})s?"
_FORMS: dict[str, re.Pattern[str]] = {
    "counts": re.compile(rf"(?:There (?:is|are) \d+ {_GROUP}\.\s*)+"),
    "inventory": re.compile(rf"\d+ {_COLOUR} {_SHAPE}s?(?:, \d+ {_COLOUR} {_SHAPE}s?)*\."),
    "objects": re.compile(rf"an? {_COLOUR} {_SHAPE}(?:, an? {_COLOUR} {_SHAPE})*\."),
    "vague": re.compile(rf"Some {_COLOUR}(?:(?:, | and ){_COLOUR})* shapes\."),
    "answer": re.compile(r"(?:The answer is )?(?:\\boxed\{[^{}]*\}|-?\d+)\.?"),
}
#: one piece of a description in any style: a count sentence, a counted kind, an object, the colours seen
_PIECE = re.compile(rf"There (?:is|are) \d+ {_GROUP}|\d+ {_COLOUR} {_SHAPE}|\ban? {_COLOUR} {_SHAPE}|Some {_COLOUR}")
_OPERATION = re.compile(r"what is the (product|sum) of", re.IGNORECASE)
_STATED = re.compile(r"There (?:is|are) (\d+) ")


def _vague(objects: str) -> str:
    colours = [c for c in COLOURS if f" {c} " in f" {objects} "]
    if not colours:
        return "Some shapes."
    listed = colours[0] if len(colours) == 1 else ", ".join(colours[:-1]) + " and " + colours[-1]
    return f"Some {listed} shapes."


def counts_solution(item: dict) -> str:
    """The tentative solution of the counts style: level 1's worked solution (it only reads a count); on level 2
    the two counts set up in the operation the question names, the arithmetic left to the reasoner. (Measured with
    SmolLM2 on 48 level-2 items: "Compute 2 * 3." 67%, "2 * 3 = ?" 67%, "The product is 2 * 3." 54%, restating
    the two counts 44-62%.)"""
    if item["level"] == 1:
        return item["solution"]
    operation = _OPERATION.match(item["question"])
    stated = _STATED.findall(item["query_caption"])
    if operation is None or len(stated) != 2:
        return item["query_caption"]  # a kind without a named operation: the counts are all it can set up
    symbol = "*" if operation.group(1).lower() == "product" else "+"
    return f"Compute {stated[0]} {symbol} {stated[1]}."


def style_text(item: dict, style: str) -> tuple[str, str]:
    """(caption, tentative solution) of `item` in `style`; every text is true to the item's scene."""
    if style == "counts":
        return item["query_caption"], counts_solution(item)
    if style == "inventory":
        return item["description"], PLAN
    if style == "objects":
        return item["objects"], PLAN
    if style == "vague":
        return _vague(item["objects"]), PLAN
    if style == "answer":
        return f"{item['answer']}.", f"The answer is \\boxed{{{item['answer']}}}."
    raise ValueError(f"unknown style {style!r}; choose from {STYLES}")


def style_of(caption: str | None) -> str:
    """The style a caption is written in, read from its form; "mixed" when it fits none but holds a piece of a
    description, else "other"."""
    text = " ".join((caption or "").split())
    for style, form in _FORMS.items():
        if form.fullmatch(text):
            return style
    return MIXED if _PIECE.search(text) else OTHER


def describes(kind: str) -> bool:
    """Whether a caption of this `style_of` kind describes the image (a valid caption)."""
    return kind in DESCRIPTIVE or kind == MIXED


def is_description(caption: str | None) -> bool:
    """Whether a caption describes the image (any descriptive style, or a mixed one), as opposed to a bare answer
    or nothing."""
    return describes(style_of(caption))
