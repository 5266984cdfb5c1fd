"""The short way to run the graph: one sample, or many in one batched pass that never loses a sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rapid_agent.config import RapidContext
from rapid_agent.graphs import get_graph


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
    """Run one sample through the graph. `overrides` are RapidContext fields (`reasoner="hf:..."`, `mode=...`)."""
    sample = {"image": image, "question": question, "answer": answer, "choices": list(choices)}
    return get_graph().invoke(sample, context=_context(context, overrides))


def _failed(sample: Any, exc: BaseException) -> dict:
    record = dict(sample) if isinstance(sample, dict) else {}
    return {**record, "correct": False if record.get("answer") is not None else None, "errors": [f"input: {exc}"]}


def solve_batch(samples: Sequence[dict], *, context: RapidContext | None = None, **overrides: Any) -> list[dict]:
    """Run many samples concurrently so that each engine sees few large batches. A sample whose input is invalid
    comes back with its error in `errors` (and `correct=False` when it had a gold answer) instead of raising."""
    results = get_graph().batch(
        list(samples),
        config={"max_concurrency": max(1, len(samples))},
        return_exceptions=True,
        context=_context(context, overrides),
    )
    return [_failed(s, r) if isinstance(r, BaseException) else r for s, r in zip(samples, results)]


async def asolve_batch(
    samples: Sequence[dict], *, context: RapidContext | None = None, **overrides: Any
) -> list[dict]:
    """Async `solve_batch`."""
    results = await get_graph().abatch(list(samples), return_exceptions=True, context=_context(context, overrides))
    return [_failed(s, r) if isinstance(r, BaseException) else r for s, r in zip(samples, results)]
