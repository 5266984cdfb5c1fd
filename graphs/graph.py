"""The RAPID state machine: perceive -> reason -> score, built and compiled once.

    START -> perceive --(error, or no reasoner: perception only)--> END
                 |\\-> reason --(error)--> END
                 |        \\-> score -> END      (the answer read; with a gold answer, its verdict)
                 \\-(mode direct: the captioner answered)-> score

Backends and mode come from the per-call `RapidContext`: `graph.invoke(sample, context=RapidContext(...))`.
A sample carrying `captioner_output` is perceived already: perceive splits it and calls no captioner.
On a checkpointed thread each invocation is one sample: the state's keys live for one turn (see `state.py`).
`batch.py` walks the same nodes along the same routes without a LangGraph run per sample (what `solve_batch` uses).
Nodes are async; the sync API (`invoke`, `batch`) runs each node on a private event loop, also when the caller's
thread already runs one (a notebook, an async web handler), so both APIs share the engines' micro-batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Literal

from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime

from rapid_agent.config import RapidContext
from rapid_agent.graphs.nodes import perceive, reason, score
from rapid_agent.graphs.state import RapidInput, RapidState
from rapid_agent.perception import DIRECT

try:
    from langgraph._internal._runnable import RunnableCallable
except ImportError:  # a LangGraph that keeps it elsewhere
    RunnableCallable = None


def run_sync(coro: Awaitable) -> object:
    """Run `coro` to the end from sync code, in this thread when it runs no event loop, else in a helper thread
    that carries this thread's context variables (LangGraph's run context among them)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def _sync(afunc: Callable[[RapidState], Awaitable[dict]]) -> Callable[[RapidState], dict]:
    def run(state: RapidState) -> dict:
        return run_sync(afunc(state))

    run.__name__ = afunc.__name__
    return run


def _node(afunc: Callable[[RapidState], Awaitable[dict]]) -> Runnable:
    """The node as LangGraph's own callable runnable, which reads the functions' signatures once, here; a
    RunnableLambda (the fallback where LangGraph moved it) reads them on every call, several times a sample."""
    if RunnableCallable is None:
        return RunnableLambda(_sync(afunc), afunc=afunc, name=afunc.__name__)
    return RunnableCallable(_sync(afunc), afunc, name=afunc.__name__)


def route_after_perceive(state: RapidState, context: RapidContext | None) -> Literal["reason", "score", "__end__"]:
    """Where a sample goes after perceive, under the run's `context` (None: routed outside any run)."""
    if state.get("errors"):
        return END
    if state.get("mode") == DIRECT:  # the captioner's output is the answer: no reasoner, with or without one
        return "score"
    perception_only = context is not None and context.reasoner is None
    return END if perception_only else "reason"


def after_perceive(state: RapidState) -> Literal["reason", "score", "__end__"]:
    runtime = get_runtime(RapidContext)  # None when `update_state` (a Studio edit) routes outside any run
    return route_after_perceive(state, runtime.context if runtime is not None else None)


def after_reason(state: RapidState) -> Literal["score", "__end__"]:
    return END if state.get("errors") else "score"


def build_graph() -> StateGraph:
    """The uncompiled graph, for users who add nodes or a checkpointer before compiling."""
    graph = StateGraph(RapidState, context_schema=RapidContext, input_schema=RapidInput)
    graph.add_node("perceive", _node(perceive))
    graph.add_node("reason", _node(reason))
    graph.add_node("score", _node(score))
    graph.add_edge(START, "perceive")
    graph.add_conditional_edges("perceive", after_perceive)
    graph.add_conditional_edges("reason", after_reason)
    graph.add_edge("score", END)
    return graph


@lru_cache(maxsize=1)
def get_graph() -> CompiledStateGraph:
    """The compiled RAPID graph (compiled once per process)."""
    return build_graph().compile(name="rapid")
