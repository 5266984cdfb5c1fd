"""The demo's table rows beyond a plain `evaluate` call: the VPO mode as the policy samples it, and other reasoners
answering from captions a row already produced.

    sampled_row(items, context, mode, seeds, temperature)   the captioner samples at `temperature`, seeded like the
                                                            reasoner, one seed after the other
    replay(result, row, reasoner, name, context)            the captions of `row` (every seed) handed to another
                                                            reasoner through the graph: no captioner call is made

Records have `evaluate`'s shape, so `summarize` and the report read them like any other row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from rapid_agent.api import solve_batch
from rapid_agent.backends import GenerationConfig
from rapid_agent.config import RapidContext
from rapid_agent.eval.evaluate import EvalResult, evaluate, summarize

#: what a replayed record keeps from the graph's result
_RESULT_KEYS = ("caption", "solution", "captioner_output", "reasoner_output", "prediction", "verdict", "metrics")


def merge(*results: EvalResult) -> EvalResult:
    """One result holding every record of `results`, summarised again (rows in order of first appearance)."""
    records = [r for result in results for r in result.records]
    return EvalResult(records, summarize(records))


def sampled_row(
    items: Sequence[dict],
    *,
    context: RapidContext,
    mode: str,
    seeds: Sequence[int],
    temperature: float,
    batch_size: int,
    progress: bool,
    description: str,
) -> EvalResult:
    """`mode` with the captioner sampling at `temperature` (the policy VPO trains): for reasoner seed s the
    captioner samples with seed s too, so each seed is one draw of the whole pipeline."""
    parts = []
    for seed in seeds:
        gen = dataclasses.replace(context.captioner_gen, temperature=temperature, top_p=1.0, seed=seed)
        parts.append(
            evaluate(
                items,
                context=context.replace(captioner_gen=gen),
                modes=(mode,),
                seeds=(seed,),
                batch_size=batch_size,
                progress=progress,
                description=f"{description} seed {seed}",
            )
        )
    return merge(*parts)


def _record(source: dict, name: str, result: dict) -> dict:
    errors = list(result.get("errors") or [])
    gold = source.get("answer")
    record = {k: source.get(k) for k in ("seed", "id", "level", "question", "answer", "choices")}
    record |= {
        "row": name,
        # a run that failed (an engine, an answer check that could not run) has no verdict: counted apart
        "correct": None if gold is None or errors or result.get("correct") is None else bool(result["correct"]),
        "errors": errors,
    }
    return record | {k: result.get(k) for k in _RESULT_KEYS}


def replay(
    result: EvalResult,
    row: str,
    *,
    reasoner: Any,
    name: str,
    context: RapidContext,
    gen: GenerationConfig | None = None,
    batch_size: int = 64,
    progress: bool = False,
    seeds: Sequence[Any] | None = None,
) -> EvalResult:
    """Row `name`: `reasoner` answers from the captioner outputs that row `row` of `result` recorded, seed by seed,
    through the graph with no captioner (`captioner=None`: each sample carries its `captioner_output`). A source
    record without an output (its captioner call failed) stays failed. `seeds`: only those seeds' records."""
    sources = [r for r in result.records if r["row"] == row and (seeds is None or r["seed"] in seeds)]
    if not sources:
        raise ValueError(f"no records of row {row!r} to replay; rows are {sorted({r['row'] for r in result.records})}")
    base = context.replace(captioner=None, reasoner=reasoner, mode=row)
    records: list[dict] = []
    bar = tqdm(total=len(sources), desc=name, unit="sample", disable=not progress, leave=False)
    for seed in dict.fromkeys(r["seed"] for r in sources):
        mine = [r for r in sources if r["seed"] == seed]
        reasoner_gen = dataclasses.replace(gen or context.reasoner_gen, seed=seed)
        ready = [r for r in mine if r.get("captioner_output") is not None]
        samples = [
            {
                "id": r["id"],
                "question": r["question"],
                "answer": r["answer"],
                "choices": r.get("choices") or [],
                "captioner_output": r["captioner_output"],
            }
            for r in ready
        ]
        outs: dict[str, dict] = {}
        for lo in range(0, len(samples), batch_size):
            chunk = samples[lo : lo + batch_size]
            for sample, out in zip(chunk, solve_batch(chunk, context=base.replace(reasoner_gen=reasoner_gen))):
                outs[sample["id"]] = out
            bar.update(len(chunk))
        for r in mine:
            out = outs.get(r["id"], {"errors": ["no captioner output to replay"]})
            records.append(_record(r, name, out))
    bar.close()
    return EvalResult(records, summarize(records))
