"""The typed state of a RAPID run: the sample in, each node's outputs added as it runs.

Everything in the state is plain data (text, numbers, lists, dicts, bytes), so the graph runs under any LangGraph
checkpointer: images stay as the caller gave them (a path, URL, data URL or bytes) and are decoded inside the node
that needs them, never written back. (A PIL image passed in works without a checkpointer, but a checkpointer cannot
store it: give paths or bytes there.)
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    """Reducer for per-node metrics: each node adds its own keys."""
    return {**(left or {}), **(right or {})}


class RapidInput(TypedDict, total=False):
    """What a caller passes in. `question` is required; the rest is optional (see `rapid_agent.inputs.Sample`).
    A sample that carries `captioner_output` (a perception computed earlier) skips the captioner."""

    question: str
    image: Any
    images: list[Any]
    answer: str | None
    choices: list[str]
    id: str | None
    captioner_output: str | None


class RapidState(TypedDict, total=False):
    # the sample (validated by the perceive node; images stay as given)
    id: str | None
    question: str
    image: Any
    images: list[Any]
    answer: str | None
    choices: list[str]
    # perceive
    mode: str
    captioner_output: str | None
    caption: str | None
    solution: str | None
    perception_missing: list[str]  # parts the mode asks for that the captioner did not write
    # reason
    reasoner_prompt: str
    reasoner_output: str
    reasoner_finish_reason: str | None
    # score
    prediction: str | None
    correct: bool | None
    verdict: str | None
    # bookkeeping: engine specs used, latencies and token counts per node, errors that skipped a sample
    engines: Annotated[dict[str, str], merge_dicts]
    metrics: Annotated[dict[str, float], merge_dicts]
    errors: Annotated[list[str], operator.add]
