"""The graph's nodes driven directly: many samples at the cost of a few coroutines each, not a LangGraph run each.

A compiled-graph invocation costs about a millisecond of CPU per sample (callback managers, channel bookkeeping,
per-call signature checks), which is more than an engine call to a fast server costs. `arun` walks one sample
along the graph's own routes (`graph.py`) through its own node functions (`nodes.py`), merges each update with the
state's own reducers (`state.py`) and returns the final state `graph.ainvoke(sample, context=context)` returns; an
exception a node raises comes out the same way. Batching is untouched: each node submits to its engine's
micro-batcher as under LangGraph, so a `Cohort` of `arun`s reaches each engine as one call per role.

What only a LangGraph run has is left out: checkpointers, callbacks (tracing's node spans, LangSmith), streaming to
the custom stream, interrupts. `direct_run_possible` says whether a run needs none of them; `solve_batch` runs the
compiled graph itself when one does. The one-sample graph stays what users embed and serve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from langchain_core.callbacks.manager import AsyncCallbackManager
from langgraph.channels import BinaryOperatorAggregate

from rapid_agent.config import RapidContext
from rapid_agent.graphs.graph import after_reason, route_after_perceive
from rapid_agent.graphs.nodes import perceive, reason, score
from rapid_agent.graphs.state import RapidInput, RapidState


def _reducers() -> dict[str, tuple[Callable[[Any, Any], Any], Callable[[], Any]]]:
    """The state's reducer keys: each one's operator and a factory of its empty value (read off `RapidState`)."""
    out = {}
    for key, hint in get_type_hints(RapidState, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, BinaryOperatorAggregate):
                out[key] = (meta.operator, meta.typ)
    return out


#: the keys a caller's sample may set (the graph's input schema), and every key of the state, in the graph's order
INPUT_KEYS = tuple(RapidInput.__annotations__)
STATE_KEYS = tuple(RapidState.__annotations__)
_STATE_KEYS = frozenset(STATE_KEYS)
_REDUCERS = _reducers()


def direct_run_possible(context: RapidContext) -> bool:
    """Whether runs under `context` need nothing only LangGraph gives: no streaming, and no callback handler
    configured for every run (tracing's, LangSmith's; one switched off, `enabled` false, does not count). Checked
    once per batch, not per sample."""
    if context.stream:
        return False
    return not any(getattr(h, "enabled", True) for h in AsyncCallbackManager.configure().handlers)


def _apply(state: dict, update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        reducer = _REDUCERS.get(key)
        if reducer is not None:
            state[key] = reducer[0](state[key], value)
        elif key in _STATE_KEYS:  # LangGraph drops a key the state does not have, too
            state[key] = value


async def arun(sample: Mapping[str, Any], context: RapidContext) -> dict:
    """One sample along perceive -> reason -> score as the compiled graph runs it (see the module)."""
    state: dict[str, Any] = {key: sample[key] for key in INPUT_KEYS if key in sample}
    state.update({key: empty() for key, (_, empty) in _REDUCERS.items()})
    _apply(state, await perceive(state, context))
    after = route_after_perceive(state, context)
    if after == "reason":
        _apply(state, await reason(state, context))
        after = after_reason(state)
    if after == "score":
        _apply(state, await score(state, context))
    return {key: state[key] for key in STATE_KEYS if key in state}
