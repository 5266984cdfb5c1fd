"""The graph's nodes driven directly: many samples at the cost of a few coroutines each, not a LangGraph run each.

A compiled-graph invocation costs about a millisecond of CPU per sample (callback managers, channel bookkeeping,
per-call signature checks), which is more than an engine call to a fast server costs. `arun` walks one sample
along the graph's own routes (`graph.py`) through its own node functions (`nodes.py`), merges each update with the
state's own reducers (`state.py`) and returns the final state `graph.ainvoke(sample, context=context)` returns; an
exception a node raises comes out the same way. Batching is untouched: each node submits to its engine's
micro-batcher as under LangGraph, so a `Cohort` of `arun`s reaches each engine as one call per role.

What only a LangGraph run has is left out: checkpointers, callbacks in general (LangSmith's), streaming to the
custom stream, interrupts. A callback handler that declares `direct_runs` (tracing's, whose spans come from chain
start, end and error alone) is driven here with the events a LangGraph run would send it: the graph run, then each
node under it, the node's span current while it runs (so the engine spans hang under it). `direct_handlers` says
whether a run can go without LangGraph and which handlers it drives; `solve_batch` runs the compiled graph itself
when it cannot. The one-sample graph stays what users embed and serve.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_type_hints
from uuid import uuid4

from langchain_core.callbacks.manager import AsyncCallbackManager
from langchain_core.runnables.config import var_child_runnable_config
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


#: the compiled graph's name: its runs' name in callbacks (`graph.py` compiles it so)
GRAPH_NAME = "rapid"
_NODES = {"perceive": perceive, "reason": reason, "score": score}


def direct_handlers(context: RapidContext) -> list | None:
    """The callback handlers configured for every run (one switched off, `enabled` false, does not count) when runs
    under `context` can go without LangGraph, [] when there are none; None when a run needs LangGraph: streaming, a
    handler that does not declare `direct_runs` (LangSmith's), or a traced run inside another LangChain run (its
    spans hang under that run's, which only LangGraph knows). Checked once per batch, not per sample."""
    if context.stream:
        return None
    handlers = [h for h in AsyncCallbackManager.configure().handlers if getattr(h, "enabled", True)]
    if not handlers:
        return []
    if all(getattr(h, "direct_runs", False) for h in handlers) and var_child_runnable_config.get() is None:
        return handlers
    return None


def direct_run_possible(context: RapidContext) -> bool:
    """Whether runs under `context` can go without LangGraph (`direct_handlers`)."""
    return direct_handlers(context) is not None


def _apply(state: dict, update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        reducer = _REDUCERS.get(key)
        if reducer is not None:
            state[key] = reducer[0](state[key], value)
        elif key in _STATE_KEYS:  # LangGraph drops a key the state does not have, too
            state[key] = value


def _initial_state(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The state a run starts from: the sample's input keys, every reducer key empty."""
    state: dict[str, Any] = {key: sample[key] for key in INPUT_KEYS if key in sample}
    state.update({key: empty() for key, (_, empty) in _REDUCERS.items()})
    return state


async def arun(sample: Mapping[str, Any], context: RapidContext, handlers: Sequence[Any] = ()) -> dict:
    """One sample along perceive -> reason -> score as the compiled graph runs it (see the module). `handlers`
    (from `direct_handlers`) get what a LangGraph run of the compiled graph sends a handler that keeps to chain
    events: the graph run's start (the sample) and end (the final state) or error, and within it each node's, with
    LangGraph's node metadata, while the node's run is current for what it calls."""
    run_id = uuid4() if handlers else None
    _send(handlers, "on_chain_start", {}, dict(sample), run_id=run_id, parent_run_id=None, name=GRAPH_NAME)
    try:
        state = _initial_state(sample)
        node: str | None = "perceive"
        step = 1
        while node is not None:
            if handlers:
                update = await _traced_node(node, step, state, context, handlers, run_id)
            else:
                update = await _NODES[node](state, context)
            _apply(state, update)
            node, step = _next_node(node, state, context), step + 1
        final = {key: state[key] for key in STATE_KEYS if key in state}
    except BaseException as exc:
        _send(handlers, "on_chain_error", exc, run_id=run_id)
        raise
    _send(handlers, "on_chain_end", final, run_id=run_id)
    return final


def _next_node(node: str, state: dict, context: RapidContext) -> str | None:
    """The node after `node`, by the graph's own routes; None at the end."""
    if node == "perceive":
        after = route_after_perceive(state, context)
    elif node == "reason":
        after = after_reason(state)
    else:
        return None
    return after if after in _NODES else None


def _send(handlers: Sequence[Any], event: str, *args: Any, **kwargs: Any) -> None:
    for handler in handlers:
        getattr(handler, event)(*args, **kwargs)


async def _traced_node(
    node: str, step: int, state: dict, context: RapidContext, handlers: Sequence[Any], run_id: Any
) -> dict:
    """One node under the graph run `run_id`, with the events LangGraph sends about it."""
    node_id = uuid4()
    metadata = {"langgraph_step": step, "langgraph_node": node}
    tags = [f"graph:step:{step}"]
    _send(handlers, "on_chain_start", {}, state, run_id=node_id, parent_run_id=run_id, tags=tags,
          metadata=metadata, name=node)  # fmt: skip
    try:
        with contextlib.ExitStack() as scope:
            for handler in handlers:
                scope.enter_context(handler.current(node_id))
            update = await _NODES[node](state, context)
    except BaseException as exc:
        _send(handlers, "on_chain_error", exc, run_id=node_id)
        raise
    _send(handlers, "on_chain_end", update, run_id=node_id)
    return update
