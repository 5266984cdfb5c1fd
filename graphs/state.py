"""The typed state of a RAPID run: the validated sample in, each node's outputs added as it runs."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from PIL import Image


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    """Reducer for per-node metrics: each node adds its own keys."""
    return {**(left or {}), **(right or {})}


class RapidInput(TypedDict, total=False):
    """What a caller passes in. `question` is required; the rest is optional (see `rapid_agent.inputs.Sample`)."""

    question: str
    image: Any
    answer: str | None
    choices: list[str]
    id: str | None


class RapidState(TypedDict, total=False):
    # the sample (validated by the perceive node)
    id: str | None
    question: str
    image: Image.Image | Any
    answer: str | None
    choices: list[str]
    # perceive
    mode: str
    captioner_output: str | None
    caption: str | None
    solution: str | None
    # reason
    reasoner_prompt: str
    reasoner_output: str
    # score
    prediction: str | None
    correct: bool | None
    verdict: str | None
    # bookkeeping: engine specs used, latencies and token counts per node, errors that skipped a sample
    engines: Annotated[dict[str, str], merge_dicts]
    metrics: Annotated[dict[str, float], merge_dicts]
    errors: Annotated[list[str], operator.add]
