"""The short way to run the graph: one sample, or many in one batched pass that never loses a sample.

`solve_batch` knows how many runs it starts, so it tells the engines' micro-batchers (a `Cohort`): each engine then
gets the batch's requests as one call, instead of whatever a debounce window happened to catch. It drives the
graph's nodes directly (`graphs/batch.py`: the same nodes, routes and final state, at a fraction of a LangGraph run's
CPU per sample; tracing's callback handler gets the events a LangGraph run would send it) unless streaming or
another callback handler (LangSmith's) needs the compiled graph itself. Samples that carry
`captioner_output` skip the captioner; a context without a reasoner stops after perception. Both sync functions
work from code that already runs an event loop (a notebook, an async web handler).

A sample that fails comes back with one message in `errors`, and `correct=None` (a failure is no verdict):
`input: ...` when its own data is bad (the `Sample` model refuses its question, choices or gold, an image is missing
or unreadable), `error: <Type>: ...` for anything else (an engine that cannot load, a wrong setting, a bug), which a
caller should treat as a failed run to retry, not as a property of the sample. Both are redacted (`redact`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from pydantic import ValidationError

from rapid_agent.backends.base import redact
from rapid_agent.backends.batching import Cohort, current_cohort
from rapid_agent.config import RapidContext
from rapid_agent.graphs import get_graph
from rapid_agent.graphs.batch import arun, direct_handlers
from rapid_agent.graphs.graph import run_sync
from rapid_agent.inputs import ImageError, Sample


def _context(context: RapidContext | None, overrides: dict[str, Any]) -> RapidContext:
    context = context or RapidContext()
    return context.replace(**overrides) if overrides else context


def solve(
    image: Any,
    question: str,
    *,
    answer: str | None = None,
    choices: Sequence[str] = (),
    context: RapidContext | None = None,
    **overrides: Any,
) -> dict:
    """Run one sample through the graph. `image` is one image or a list of them; `overrides` are RapidContext
    fields (`reasoner="hf:..."`, `mode=...`)."""
    images = list(image) if isinstance(image, (list, tuple)) else [image] if image is not None else []
    sample = {"images": images, "question": question, "answer": answer, "choices": choices}
    return get_graph().invoke(sample, context=_context(context, overrides))


def failure_text(exc: BaseException) -> str:
    """What `errors` says of an exception a sample's run raised: `input: <field>: <why>` for the sample's own bad
    data, `error: <Type>: <message>` for anything else; redacted and bounded either way."""
    if isinstance(exc, ValidationError) and exc.title == Sample.__name__:
        parts = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return redact("input: " + "; ".join(parts))
    if isinstance(exc, ImageError):
        return redact(f"input: {exc}")
    return redact(f"error: {type(exc).__name__}: {exc}")


def _failed(sample: Any, error: str) -> dict:
    record = dict(sample) if isinstance(sample, dict) else {}
    return {**record, "correct": None, "errors": [error]}


async def asolve_batch(
    samples: Sequence[dict], *, context: RapidContext | None = None, **overrides: Any
) -> list[dict]:
    """Run many samples concurrently so that each engine sees one large batch per role. A sample whose run fails
    comes back with its error in `errors` (`input: ...` or `error: ...`, see the module) and `correct=None` instead
    of raising; results are in input order."""
    samples = list(samples)
    if not samples:
        return []
    context = _context(context, overrides)
    handlers = direct_handlers(context)
    if handlers is not None:  # the graph's nodes and routes without a LangGraph run per sample
        invoke = partial(arun, context=context, handlers=handlers)
    else:  # streaming, or a callback handler only a LangGraph run can feed: the compiled graph itself
        invoke = partial(get_graph().ainvoke, context=context)
    cohort = Cohort(len(samples))

    async def run(sample: Any) -> dict:
        try:
            if not isinstance(sample, dict):
                return _failed(
                    sample, f"input: a sample is a dict with at least a 'question', got {type(sample).__name__}"
                )
            return await invoke(sample)
        except Exception as exc:
            return _failed(sample, failure_text(exc))
        finally:
            cohort.finish()

    token = current_cohort.set(cohort)
    try:
        return list(await asyncio.gather(*(run(s) for s in samples)))
    finally:
        current_cohort.reset(token)


def solve_batch(samples: Sequence[dict], *, context: RapidContext | None = None, **overrides: Any) -> list[dict]:
    """`asolve_batch` for sync code."""
    return run_sync(asolve_batch(samples, context=context, **overrides))  # type: ignore[return-value]
