"""Evaluate a dataset through the RAPID graph: accuracy per perception mode for one reasoner, plus the captioner
answering alone ("end-to-end"), repeated over reasoner seeds for mean +- std.

    result = evaluate(dataset, context=RapidContext(captioner=..., reasoner=...), modes=("cap", "qcap+sol"),
                      end_to_end=True, seeds=(0, 1, 2))
    print(result.markdown())
    write_csv(result.summary, "table.csv")

A dataset is any `datasets.Dataset` or list of dicts with `question`, `image`, `answer` and optionally `choices`,
`id` and `level` columns. Every sample of every row and seed comes back as a record: a sample whose run failed
(bad input, an engine error, an answer check that could not run) is recorded with its errors and `correct=None`,
counted as errored and left out of the accuracy, since a failure is no verdict; a sample without a gold answer is
recorded and counted as skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rapid_agent.answers import check_answer
from rapid_agent.api import failure_text, solve_batch
from rapid_agent.backends import ChatRequest, load_engine
from rapid_agent.backends.base import redact
from rapid_agent.backends.batching import get_batcher
from rapid_agent.config import RapidContext
from rapid_agent.inputs import load_image
from rapid_agent.perception import check_mode

#: the row name of the captioner answering alone
END_TO_END = "end-to-end"
#: the columns a sample passes into the graph; the rest (level, description, ...) stays in the record only
_SAMPLE_KEYS = ("id", "question", "image", "answer", "choices")
#: what a record keeps from a graph result (the image is left out: records are written to disk)
_RESULT_KEYS = (
    "caption",
    "solution",
    "captioner_output",
    "reasoner_output",
    "prediction",
    "verdict",
    "metrics",
)


@dataclasses.dataclass
class RowSummary:
    """One table row: a perception mode (or the end-to-end row) over every seed."""

    row: str
    n: int  # samples with a verdict per seed (errored and skipped ones left out)
    seeds: int
    accuracy: float  # mean over seeds
    std: float  # sample standard deviation over seeds; 0 with one seed
    per_seed: list[float]
    errored: int  # samples whose run failed (no verdict), summed over seeds
    skipped: int  # samples without a gold answer, summed over seeds
    by_level: dict[int, float] = dataclasses.field(default_factory=dict)  # mean over seeds

    def formatted(self, digits: int = 1) -> str:
        pct = f"{100 * self.accuracy:.{digits}f}"
        return f"{pct} ± {100 * self.std:.{digits}f}" if self.seeds > 1 else pct


@dataclasses.dataclass
class EvalResult:
    """Per-sample records (one per sample, row and seed) and the summary table built from them."""

    records: list[dict]
    summary: list[RowSummary]

    def row(self, name: str) -> RowSummary:
        for summary in self.summary:
            if summary.row == name:
                return summary
        raise KeyError(f"no row {name!r}; rows are {[s.row for s in self.summary]}")

    def markdown(self) -> str:
        return to_markdown(self.summary)


def _rows(dataset: Any) -> list[dict]:
    if isinstance(dataset, dict):
        raise TypeError("evaluate takes a dataset split or a list of dicts, not a DatasetDict; pick a split")
    rows = [dict(row) for row in dataset]
    for i, row in enumerate(rows):
        if "question" not in row:
            raise ValueError(f"sample {i} has no 'question' column (columns: {sorted(row)})")
        if row.get("id") is None:
            row["id"] = str(i)
    return rows


def _sample(row: dict) -> dict:
    sample = {k: row[k] for k in _SAMPLE_KEYS if row.get(k) is not None}
    if sample.get("answer") is not None:
        sample["answer"] = str(sample["answer"])
    sample["choices"] = list(row.get("choices") or [])
    return sample


def _record(row: dict, name: str, seed: int | None, result: dict | None, errors: list[str]) -> dict:
    """A flat record of one sample's outcome; `correct` is None for any error (no verdict) and when there is no
    gold. A check that could not run (`correct` None beside a gold answer) is an error."""
    result = result or {}
    gold = row.get("answer")
    errors = [*errors, *result.get("errors", [])]
    if gold is not None and not errors and result.get("correct") is None:
        errors.append(f"answer check: {result.get('verdict') or 'no verdict'}")
    correct = None if gold is None or errors else bool(result.get("correct"))
    record = {
        "row": name,
        "seed": seed,
        "id": row["id"],
        "level": row.get("level"),
        "question": row["question"],
        "answer": None if gold is None else str(gold),
        "choices": list(row.get("choices") or []),
        "correct": correct,
        "errors": errors,
    }
    record.update({k: result.get(k) for k in _RESULT_KEYS})
    return record


def _graph_chunk(rows: list[dict], context: RapidContext, name: str, seed: int | None) -> list[dict]:
    try:
        results = solve_batch([_sample(r) for r in rows], context=context)
    except Exception as exc:  # a whole chunk failing is still recorded sample by sample
        return [_record(r, name, seed, None, [redact(f"batch: {type(exc).__name__}: {exc}")]) for r in rows]
    return [_record(r, name, seed, res, []) for r, res in zip(rows, results, strict=True)]


def _end_to_end_chunk(rows: list[dict], context: RapidContext, seed: int | None) -> list[dict]:
    """The captioner answers alone: `direct_answer` prompt with the image, output checked like a reasoner's."""
    requests: list[ChatRequest | None] = []
    errors: list[list[str]] = []
    for row in rows:
        try:
            image = load_image(row.get("image"), max_pixels=context.max_pixels)
            requests.append(
                ChatRequest(prompt=context.prompts.direct_answer.format(question=row["question"]), image=image)
            )
            errors.append([])
        except Exception as exc:
            requests.append(None)
            errors.append([failure_text(exc)])
    todo = [r for r in requests if r is not None]
    try:
        engine = load_engine(context.captioner, "captioner")
        gen = dataclasses.replace(context.captioner_gen, seed=seed) if seed is not None else context.captioner_gen
        outputs = iter(get_batcher(engine).submit_many(todo, gen))
    except Exception as exc:
        outputs = iter([exc] * len(todo))
    records = []
    for row, request, errs in zip(rows, requests, errors, strict=True):
        if request is None:
            records.append(_record(row, END_TO_END, seed, None, errs))
            continue
        out = next(outputs)
        if isinstance(out, Exception):
            records.append(_record(row, END_TO_END, seed, None, [redact(f"captioner: {out}")]))
            continue
        result: dict[str, Any] = {"captioner_output": out.text, "reasoner_output": None}
        if row.get("answer") is not None:
            verdict = check_answer(
                out.text, str(row["answer"]), choices=row.get("choices") or (), timeout_s=context.answer_timeout_s
            )
            result.update(correct=verdict.correct, prediction=verdict.prediction, verdict=verdict.reason)
        records.append(_record(row, END_TO_END, seed, result, []))
    return records


def evaluate(
    dataset: Any,
    *,
    context: RapidContext,
    modes: Sequence[str] = ("qcap+sol",),
    end_to_end: bool = False,
    seeds: Sequence[int | None] = (None,),
    batch_size: int = 32,
    progress: bool = True,
    description: str = "evaluate",
) -> EvalResult:
    """Run every sample through the graph once per mode and seed (and through the captioner alone when
    `end_to_end`). The seed goes into the reasoner's (and, end to end, the captioner's) `GenerationConfig`; a
    deterministic row (greedy end-to-end captioner) runs once and its records are reused for every seed."""
    for mode in modes:
        check_mode(mode)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    seeds = list(seeds) or [None]
    rows = _rows(dataset)
    names = ([END_TO_END] if end_to_end else []) + list(modes)
    e2e_once = context.captioner_gen.greedy
    total = len(rows) * (len(modes) * len(seeds) + (1 if e2e_once else len(seeds)) * end_to_end)
    records: list[dict] = []
    with tqdm(total=total, desc=description, unit="sample", disable=not progress, leave=False) as bar:
        for name in names:
            e2e_records: list[dict] | None = None
            for seed in seeds:
                if name == END_TO_END and e2e_records is not None:
                    records.extend({**r, "seed": seed} for r in e2e_records)
                    continue
                bar.set_postfix_str(f"{name} seed={seed}")
                done: list[dict] = []
                for lo in range(0, len(rows), batch_size):
                    chunk = rows[lo : lo + batch_size]
                    if name == END_TO_END:
                        done.extend(_end_to_end_chunk(chunk, context, seed))
                    else:
                        gen = context.reasoner_gen
                        if seed is not None:
                            gen = dataclasses.replace(gen, seed=seed)
                        done.extend(_graph_chunk(chunk, context.replace(mode=name, reasoner_gen=gen), name, seed))
                    bar.update(len(chunk))
                if name == END_TO_END and e2e_once:
                    e2e_records = done
                records.extend(done)
    return EvalResult(records, summarize(records, rows=names))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _verdicts(records: Iterable[dict]) -> list[dict]:
    """The records with a verdict: a gold answer and a run that did not fail."""
    return [r for r in records if r["correct"] is not None and not r.get("errors")]


def _accuracy(records: Iterable[dict]) -> float:
    scored = [r["correct"] for r in _verdicts(records)]
    return sum(scored) / len(scored) if scored else float("nan")


def summarize(records: Sequence[dict], rows: Sequence[str] | None = None) -> list[RowSummary]:
    """The table: accuracy per row (mean and std over seeds) over the samples with a verdict, counts (errored and
    skipped samples apart), and accuracy per level when known."""
    rows = list(rows) if rows is not None else list(dict.fromkeys(r["row"] for r in records))
    out = []
    for name in rows:
        mine = [r for r in records if r["row"] == name]
        seeds = list(dict.fromkeys(r["seed"] for r in mine))
        per_seed = [_accuracy(r for r in mine if r["seed"] == s) for s in seeds]
        levels = sorted({r["level"] for r in mine if r.get("level") is not None})
        by_level = {
            int(level): _mean([_accuracy(r for r in mine if r["seed"] == s and r["level"] == level) for s in seeds])
            for level in levels
        }
        out.append(
            RowSummary(
                row=name,
                n=len(_verdicts(mine)) // max(len(seeds), 1),
                seeds=len(seeds),
                accuracy=_mean(per_seed),
                std=_std(per_seed),
                per_seed=per_seed,
                errored=sum(bool(r.get("errors")) for r in mine),
                skipped=sum(r["correct"] is None and not r.get("errors") for r in mine),
                by_level=by_level,
            )
        )
    return out


def _levels(summary: Sequence[RowSummary]) -> list[int]:
    return sorted({level for row in summary for level in row.by_level})


def to_markdown(summary: Sequence[RowSummary], digits: int = 1) -> str:
    """A Markdown table: accuracy in percent (mean ± std over seeds), n, errors, skipped, per level."""
    levels = _levels(summary)
    seeds = max((row.seeds for row in summary), default=1)
    acc = "accuracy % (mean ± std)" if seeds > 1 else "accuracy %"
    header = ["row", acc, "n", "seeds", "errored", "skipped", *(f"level {lv} %" for lv in levels)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in summary:
        cells = [row.row, row.formatted(digits), str(row.n), str(row.seeds), str(row.errored), str(row.skipped)]
        cells += [f"{100 * row.by_level[lv]:.{digits}f}" if lv in row.by_level else "" for lv in levels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(summary: Sequence[RowSummary], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_markdown(summary))
    return path


def write_csv(summary: Sequence[RowSummary], path: str | Path) -> Path:
    """One line per row; accuracies as fractions, per-seed accuracies joined by ';'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = _levels(summary)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "row",
                "accuracy",
                "std",
                "n",
                "seeds",
                "errored",
                "skipped",
                "per_seed",
                *(f"level_{lv}" for lv in levels),
            ]
        )
        for row in summary:
            writer.writerow(
                [
                    row.row,
                    f"{row.accuracy:.4f}",
                    f"{row.std:.4f}",
                    row.n,
                    row.seeds,
                    row.errored,
                    row.skipped,
                    ";".join(f"{a:.4f}" for a in row.per_seed),
                    *(f"{row.by_level[lv]:.4f}" if lv in row.by_level else "" for lv in levels),
                ]
            )
    return path
