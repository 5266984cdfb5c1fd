"""The typed state of a RAPID run: the sample in, each node's outputs added as it runs.

Everything in the state is plain data (text, numbers, lists, dicts, bytes), so the graph runs under any LangGraph
checkpointer: images stay as the caller gave them (a path, URL, data URL or bytes) and are decoded inside the node
that needs them, never written back. (A PIL image passed in works without a checkpointer, but a checkpointer cannot
store it: give paths or bytes there.)

One invocation is one sample. On a checkpointed thread every key lives for one turn: once a run has finished, the
next write to the thread (a new input, or `update_state`) starts a new turn, and each key that write leaves out is
cleared, so nothing of the last sample (its image, gold answer, perception, verdict, errors, metrics) leaks into
the next. The thread's history keeps every turn. A run paused by an interrupt, or stopped by an exception (an input
that fails validation), has not finished: `invoke(None, thread)` resumes it with its state intact, and a new input
given instead joins that unfinished turn (what it leaves out keeps the unfinished run's value).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from langgraph.channels import BinaryOperatorAggregate, LastValue

# pydantic, which draws the graph's JSON schemas (LangGraph Studio's input form), takes no typing.TypedDict before 3.12
from typing_extensions import TypedDict

#: how a finished turn's value is stored in a checkpoint (a bare value is one from an unfinished turn)
_DONE = "__rapid_turn_done__"


def _unwrap(checkpoint: Any) -> tuple[Any, bool]:
    if isinstance(checkpoint, dict) and len(checkpoint) == 1 and _DONE in checkpoint:
        return checkpoint[_DONE], True
    return checkpoint, False


class _TurnScoped:
    """What makes a LangGraph channel hold one turn's value.

    LangGraph calls `finish()` on every channel when a run ends with nothing left to run (not when it pauses at an
    interrupt or stops on an exception), and `update()` on every channel after each step, with no values for the
    channels that step did not write. So a value that has seen its run finish belongs to the turn before once the
    next step comes: that step's write replaces it, or it is cleared. The flag is stored with the value, so a turn
    read back from any checkpointer still knows it has finished.
    """

    __slots__ = ()

    def _empty(self) -> Any:
        """A new empty channel like this one."""
        raise NotImplementedError

    def copy(self) -> Any:
        channel = super().copy()
        channel.done = self.done
        return channel

    def from_checkpoint(self, checkpoint: Any) -> Any:
        value, done = _unwrap(checkpoint)
        channel = super().from_checkpoint(value)
        channel.done = done
        return channel

    def checkpoint(self) -> Any:
        value = super().checkpoint()
        return {_DONE: value} if self.done else value

    def update(self, values: Sequence[Any]) -> bool:
        if self.done:  # the first step of a new turn
            self.value, self.done = self._empty().value, False
            return super().update(values) or True
        return super().update(values)

    def finish(self) -> bool:
        if self.done or not self.is_available():
            return False
        self.done = True
        return True


class TurnValue(_TurnScoped, LastValue):
    """The last value written in this turn (see `_TurnScoped`)."""

    __slots__ = ("done",)

    def __init__(self, typ: Any, key: str = "") -> None:
        super().__init__(typ, key)
        self.done = False

    def _empty(self) -> TurnValue:
        return TurnValue(self.typ, self.key)


class TurnAggregate(_TurnScoped, BinaryOperatorAggregate):
    """A reducer's running value (`errors`, `metrics`, `engines`) that starts empty again each turn."""

    __slots__ = ("done",)

    def __init__(self, typ: Any, operator: Callable[[Any, Any], Any]) -> None:
        super().__init__(typ, operator)
        self.done = False

    def _empty(self) -> TurnAggregate:
        return TurnAggregate(self.typ, self.operator)


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
    id: Annotated[str | None, TurnValue]
    question: Annotated[str, TurnValue]
    image: Annotated[Any, TurnValue]
    images: Annotated[list[Any], TurnValue]
    answer: Annotated[str | None, TurnValue]
    choices: Annotated[list[str], TurnValue]
    # perceive
    mode: Annotated[str, TurnValue]
    captioner_output: Annotated[str | None, TurnValue]
    caption: Annotated[str | None, TurnValue]
    solution: Annotated[str | None, TurnValue]
    perception_missing: Annotated[list[str], TurnValue]  # parts the mode asks for that the captioner did not write
    # reason
    reasoner_prompt: Annotated[str, TurnValue]
    reasoner_output: Annotated[str, TurnValue]
    reasoner_finish_reason: Annotated[str | None, TurnValue]
    # score
    prediction: Annotated[str | None, TurnValue]
    correct: Annotated[bool | None, TurnValue]
    verdict: Annotated[str | None, TurnValue]
    # bookkeeping: engine specs used, latencies and token counts per node, errors that skipped a sample
    engines: Annotated[dict[str, str], TurnAggregate(dict, merge_dicts)]
    metrics: Annotated[dict[str, float], TurnAggregate(dict, merge_dicts)]
    errors: Annotated[list[str], TurnAggregate(list, operator.add)]
