"""The table, counted from the per-sample records: rows captioner x reasoner x mode, columns benchmarks and AVG.

Nothing here is stored: every number is recomputed from the JSONL records each time (`summarize(read_results(out))`).
A cell counts one record per sample: scored ones (a verdict) enter the benchmark's metric; skipped ones (bad data)
and errored ones (a run that failed: an engine, a setting, an answer check that could not run) are counted beside
it and leave its denominator, since an error is no verdict on the sample. A cell with errors is therefore partial
until they are run again (`--retry-errors`); the tables say so next to its score.

Every cell carries its 95% interval and the n it is over (the scored samples, or the adapter's items: We-Math's
composite problems, DynaMath's seed questions); AVG carries its cells' intervals combined (`stats` says how each is
computed).

Records of several sampling seeds (`EvalConfig.seeds`) fall in one row: its cell is the mean of each seed's score
(each metric likewise), with the seeds' spread beside it (`Cell.seeds`, `Cell.seed_std`), and its items are each
item's mean over the seeds, whose interval is a bootstrap over items (seeds of one item are not independent draws).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rapid_agent.eval.adapters import ADAPTERS, PAPER_BENCHMARKS, Adapter
from rapid_agent.eval.stats import LEVEL, Interval, average, bootstrap, wilson

#: what the table reads of a record (pass to `read_results(out, keep=SUMMARY_FIELDS)` to leave the outputs on disk)
SUMMARY_FIELDS = ("adapter", "status", "correct", "fields", "skip_reason")
#: what the intervals are, said under every table and in the JSON
INTERVALS = (
    f"{100 * LEVEL:.0f}% intervals: Wilson over the items right (samples; DynaMath: seed questions); We-Math: a seeded "
    "bootstrap over composite problems; a row of several sampling seeds: a bootstrap over its items' means over "
    "seeds; AVG: the benchmarks' intervals combined by MOVER (independent errors)"
)


@dataclass
class Cell:
    """One benchmark in one row."""

    benchmark: str
    scored: int = 0  # records with a verdict: the metric's denominator
    correct: int = 0
    errored: int = 0  # runs that failed: no verdict, outside the metric until retried
    skipped: int = 0  # bad data: outside the metric for good
    score: float = float("nan")
    interval: Interval = field(default_factory=Interval)
    n: int = 0  # the items the score is a mean over: scored samples, or the adapter's (problems, seeds)
    unit: str = "samples"
    binary: bool = True  # items are right / wrong: a Wilson interval (Agresti-Min paired); else a bootstrap
    metrics: dict[str, float] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict, repr=False)  # item id -> value: resampled and paired on
    seeds: dict[str, float] = field(default_factory=dict)  # sampling seed -> its score, when records have several

    @property
    def seed_std(self) -> float:
        """The sample standard deviation of the seeds' scores; NaN with fewer than two seeds."""
        return statistics.stdev(self.seeds.values()) if len(self.seeds) > 1 else math.nan


@dataclass
class Row:
    captioner: str
    reasoner: str
    mode: str
    settings: str
    cells: dict[str, Cell] = field(default_factory=dict)
    label_settings: bool = False  # shown only when two settings share captioner, reasoner and mode
    avg_interval: Interval = field(default_factory=Interval)

    @property
    def avg(self) -> float:
        scores = [c.score for c in self.cells.values() if not math.isnan(c.score)]
        return statistics.fmean(scores) if scores else float("nan")

    @property
    def errored(self) -> int:
        """Failed runs across the row's cells: its AVG is partial while this is not 0."""
        return sum(c.errored for c in self.cells.values())

    @property
    def name(self) -> str:
        suffix = f" [{self.settings}]" if self.label_settings else ""
        return f"{self.captioner} | {self.reasoner} | {self.mode}{suffix}"


@dataclass
class Summary:
    columns: list[tuple[str, str]]  # (benchmark label, column title), in table order
    rows: list[Row]
    metrics: dict[str, str] = field(default_factory=dict)  # benchmark label -> what its cell measures

    def to_dict(self) -> dict:
        return {
            "columns": [{"benchmark": b, "title": t, "metric": self.metrics.get(b, "")} for b, t in self.columns],
            "intervals": INTERVALS,
            "rows": [
                {
                    "captioner": row.captioner,
                    "reasoner": row.reasoner,
                    "mode": row.mode,
                    "settings": row.settings,
                    "avg": _finite(row.avg),
                    "avg_interval": row.avg_interval.to_dict(),
                    "errored": row.errored,
                    "benchmarks": {
                        label: {
                            "score": _finite(cell.score),
                            "interval": cell.interval.to_dict(),
                            "n": cell.n,
                            "unit": cell.unit,
                            "scored": cell.scored,
                            "correct": cell.correct,
                            "errored": cell.errored,
                            "skipped": cell.skipped,
                            "skip_reasons": cell.skip_reasons,
                            "metrics": {k: _finite(v) for k, v in cell.metrics.items()},
                            "seeds": {k: _finite(v) for k, v in cell.seeds.items()},
                            "seed_std": _finite(cell.seed_std),
                        }
                        for label, cell in row.cells.items()
                    },
                }
                for row in self.rows
            ],
        }


def _finite(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


_adapters: dict[tuple[str, str], Adapter] = {}


def adapter_for(name: str, label: str) -> Adapter:
    """An adapter instance for scoring and aggregation only (no source is read)."""
    if (name, label) not in _adapters:
        if name not in ADAPTERS:
            raise ValueError(f"records name an unknown adapter {name!r}; known: {sorted(ADAPTERS)}")
        _adapters[(name, label)] = ADAPTERS[name](None, label=label)
    return _adapters[(name, label)]


def summarize(records: Iterable[dict], order: Sequence[str] = ()) -> Summary:
    """Count the records into the table. `order` lists benchmark labels first (default: the paper's order)."""
    records = sorted(records, key=lambda r: r.get("time", 0))
    labels = {r["benchmark"]: r.get("adapter", r["benchmark"]) for r in records}
    preferred = list(order) + [b for b in PAPER_BENCHMARKS if b not in order]
    columns = [b for b in preferred if b in labels] + sorted(b for b in labels if b not in preferred)
    grouped: dict[tuple, dict[str, list[dict]]] = {}
    for record in records:
        key = (record.get("captioner") or "-", record["reasoner"], record["mode"], record.get("settings", ""))
        grouped.setdefault(key, {}).setdefault(record["benchmark"], []).append(record)
    rows = []
    for (captioner, reasoner, mode, settings), by_benchmark in grouped.items():
        row = Row(captioner, reasoner, mode, settings)
        for label in columns:
            if label in by_benchmark:
                row.cells[label] = _cell(label, labels[label], by_benchmark[label])
        row.avg_interval = average_interval(row.cells.values())
        rows.append(row)
    triples = [(r.captioner, r.reasoner, r.mode) for r in rows]
    for row in rows:
        row.label_settings = triples.count((row.captioner, row.reasoner, row.mode)) > 1
    titles = [(label, adapter_for(labels[label], label).column) for label in columns]
    return Summary(titles, rows, {label: adapter_for(labels[label], label).metric for label in columns})


def _cell(label: str, adapter_name: str, records: list[dict]) -> Cell:
    cell = Cell(label)
    scored = [r for r in records if r.get("status") == "scored"]
    for record in records:
        if record.get("status") == "skipped":
            cell.skipped += 1
            reason = str(record.get("skip_reason") or "unknown")
            cell.skip_reasons[reason] = cell.skip_reasons.get(reason, 0) + 1
    cell.scored = len(scored)
    cell.correct = sum(bool(r.get("correct")) for r in scored)
    cell.errored = sum(r.get("status") == "error" for r in records)
    adapter = adapter_for(adapter_name, label)
    cell.unit, cell.binary = adapter.unit, adapter.binary_items
    by_seed: dict[str, list[dict]] = {}
    for record in scored:
        by_seed.setdefault(str(record.get("seed")), []).append(record)
    if len(by_seed) == 1:
        cell.metrics = adapter.aggregate(scored)
        cell.score = cell.metrics.get("score", float("nan"))
        cell.items = adapter.items(scored)
        cell.n = len(cell.items)
        if adapter.binary_items:
            cell.interval = wilson(round(sum(cell.items.values())), cell.n)
        else:
            cell.interval = bootstrap(list(cell.items.values()))
    elif by_seed:
        per_seed = {seed: adapter.aggregate(mine) for seed, mine in by_seed.items()}
        names = dict.fromkeys(name for metrics in per_seed.values() for name in metrics)
        cell.metrics = {n: statistics.fmean(m[n] for m in per_seed.values() if n in m) for n in names}
        cell.score = cell.metrics.get("score", float("nan"))
        cell.seeds = {seed: metrics.get("score", float("nan")) for seed, metrics in per_seed.items()}
        values: dict[str, list[float]] = {}
        for mine in by_seed.values():
            for item, value in adapter.items(mine).items():
                values.setdefault(item, []).append(value)
        cell.items = {item: statistics.fmean(v) for item, v in values.items()}
        cell.n = len(cell.items)
        cell.binary = False  # an item's mean over seeds is a share, not right / wrong
        cell.interval = bootstrap(list(cell.items.values()))
    return cell


def average_interval(cells: Iterable[Cell]) -> Interval:
    """AVG's interval: its cells' intervals combined as independent errors (`stats.average`)."""
    present = [c for c in cells if not math.isnan(c.score)]
    return average([c.score for c in present], [c.interval for c in present])
