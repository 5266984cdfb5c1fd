"""Paired differences between table rows: is one row better than another beyond noise?

A row is paired with its baseline on the items both scored (samples by id, or the adapter's items: We-Math's
composite problems, DynaMath's seed questions). Its difference is the mean over those items of row - baseline, with a
95% interval (`stats`: Agresti & Min's adjusted Wald interval when the items are right / wrong verdicts, a paired
bootstrap over items for other scores (We-Math); AVG: the benchmarks' differences averaged, their intervals combined
by MOVER as independent errors), marked `*` when the interval excludes 0. A bootstrap interval of no width (one item,
or every paired difference the same) cannot judge anything: such a difference is marked `?`, never beyond noise.
Items one row errored or skipped are left out of the pairing, so a difference may be over fewer items than either
score; its n says how many.

Rows are named by selectors (`--rows BASE OTHER ...`): a row number from the table's `#` column, or
`FIELD=VALUE[,FIELD=VALUE]` over run, captioner, reasoner, mode and settings (a bare VALUE is the reasoner). A value
matches exactly, or as a substring when no row matches exactly, and a selector must leave one row.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rapid_agent.eval.stats import Interval, average, bootstrap, paired_accuracy
from rapid_agent.eval.summary import Cell, Row, Summary

#: what a selector can name
FIELDS = ("run", "captioner", "reasoner", "mode", "settings")
#: said under every table of differences
NOTE = (
    "row - baseline in points, over the items both scored (n); 95% interval: Agresti-Min (paired) for right/wrong "
    "items, a paired bootstrap over items for We-Math and for rows of several seeds, AVG's combined by MOVER; "
    "* beyond noise (the interval excludes 0); ? cannot be judged (an interval of no width: one item, or every "
    "difference the same)"
)


@dataclass(frozen=True)
class Difference:
    """One benchmark's paired difference (fractions), over the `n` items both rows scored."""

    n: int = 0
    estimate: float = math.nan
    interval: Interval = field(default_factory=Interval)

    @property
    def judged(self) -> bool:
        """Whether the interval can tell noise from an effect: it exists and has width (a bootstrap over one item, or
        over differences all the same, has none)."""
        low, high = self.interval.low, self.interval.high
        return self.n > 0 and not (math.isnan(low) or math.isnan(high)) and high > low

    @property
    def beyond_noise(self) -> bool:
        return self.judged and self.interval.excludes(0.0)

    def to_dict(self) -> dict:
        finite = not math.isnan(self.estimate)
        return {
            "n": self.n,
            "difference": self.estimate if finite else None,
            "interval": self.interval.to_dict(),
            "judged": self.judged,
            "beyond_noise": self.beyond_noise,
        }


@dataclass
class Comparison:
    """Row `row` against row `baseline` (indices into the table): per benchmark and AVG."""

    row: int
    baseline: int
    cells: dict[str, Difference]
    avg: Difference


def paired_cell(row: Cell, base: Cell) -> Difference:
    """The paired difference of two cells of one benchmark."""
    return paired_items(row.items, base.items, binary=row.binary and base.binary)


def paired_items(row: Mapping[str, float], base: Mapping[str, float], *, binary: bool) -> Difference:
    """The mean of row - base over the items both have (item id -> value): Agresti-Min's interval when every value
    is right / wrong (`binary`), else a paired bootstrap over the items' differences."""
    diffs = [row[k] - base[k] for k in sorted(row.keys() & base.keys())]
    if not diffs:
        return Difference()
    n = len(diffs)
    if binary:
        interval = paired_accuracy(sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), n)
    else:
        interval = bootstrap(diffs)
    return Difference(n, statistics.fmean(diffs), interval)


def compare_rows(rows: Sequence[Row], columns: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[Comparison]:
    """Each (row, baseline) pair of `pairs` (indices into `rows`) compared on the benchmarks both have."""
    out = []
    for i, j in pairs:
        row, base = rows[i], rows[j]
        cells = {
            label: paired_cell(row.cells[label], base.cells[label])
            for label in columns
            if label in row.cells and label in base.cells
        }
        present = [d for d in cells.values() if d.n]
        avg = Difference()
        if present:
            estimates = [d.estimate for d in present]
            interval = average(estimates, [d.interval for d in present], bounds=(-1.0, 1.0))
            avg = Difference(sum(d.n for d in present), statistics.fmean(estimates), interval)
        out.append(Comparison(i, j, cells, avg))
    return out


# choosing rows -------------------------------------------------------------------------------------------------
def _value(rows: Sequence[Row], names: Sequence[str] | None, i: int, name: str) -> str:
    if name == "run":
        return names[i] if names else ""
    return str(getattr(rows[i], name))


def select_row(selector: str, rows: Sequence[Row], names: Sequence[str] | None = None) -> int:
    """The index of the one row `selector` names (see the module docstring); a ValueError lists the candidates."""
    text = selector.strip()
    if text.isdigit():
        if not 1 <= int(text) <= len(rows):
            raise ValueError(f"row {text} does not exist: the table has rows 1 to {len(rows)}")
        return int(text) - 1
    criteria = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() in FIELDS:
            criteria.append((name.strip(), value.strip()))
        else:
            criteria.append(("reasoner", part.strip()))
    every = range(len(rows))
    found = [i for i in every if all(_value(rows, names, i, f) == v for f, v in criteria)]
    found = found or [i for i in every if all(v in _value(rows, names, i, f) for f, v in criteria)]
    if len(found) == 1:
        return found[0]
    listed = "; ".join(f"{i + 1}: {_label(rows, names, i)}" for i in (found or every))
    what = "several rows" if found else "no row"
    raise ValueError(f"row selector {selector!r} matches {what}; the rows: {listed}")


def default_pairs(rows: Sequence[Row], names: Sequence[str]) -> list[tuple[int, int]]:
    """Runs compared (several out folders): each row of a later run against the first run's row with the same
    captioner, reasoner and mode, or against the first run's only row; a row with neither is not compared."""
    first = [j for j, name in enumerate(names) if name == names[0]]
    pairs = []
    for i, name in enumerate(names):
        if name == names[0]:
            continue
        same = [j for j in first if (rows[j].captioner, rows[j].reasoner, rows[j].mode) == _triple(rows[i])]
        if len(same) == 1:
            pairs.append((i, same[0]))
        elif len(first) == 1:
            pairs.append((i, first[0]))
    return pairs


def _triple(row: Row) -> tuple[str, str, str]:
    return row.captioner, row.reasoner, row.mode


def _label(rows: Sequence[Row], names: Sequence[str] | None, i: int, other: int | None = None) -> str:
    """A row's fields (its settings only where they tell rows apart); beside `other`, those that differ from it."""
    shown = [f for f in FIELDS if f != "settings" or rows[i].label_settings]
    values = [(f, _value(rows, names, i, f)) for f in shown if f != "run" or names]
    if other is not None:
        values = [(f, v) for f, v in values if v != _value(rows, names, other, f)] or values
    return ", ".join(v for _, v in values if v)


# writing ---------------------------------------------------------------------------------------------------------
def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def difference_text(d: Difference) -> str:
    if not d.n:
        return ""
    text = _points(d.estimate)
    if not math.isnan(d.interval.low):
        text += f" [{_points(d.interval.low)}, {_points(d.interval.high)}]"
    mark = " *" if d.beyond_noise else "" if d.judged else " ?"
    return f"{text}{mark} (n={d.n})"


def differences_markdown(
    comparisons: Sequence[Comparison],
    rows: Sequence[Row],
    columns: Sequence[tuple[str, str]],
    names: Sequence[str] | None = None,
    *,
    numbered: bool = True,
) -> str:
    """A table of paired differences: one line per comparison, a column per benchmark and AVG, the note under it."""
    lines = [
        "| Row | Baseline | " + " | ".join(t for _, t in columns) + " | AVG |",
        "|---|---|" + "---:|" * (len(columns) + 1),
    ]
    for c in comparisons:
        row = (f"{c.row + 1}: " if numbered else "") + _label(rows, names, c.row, c.baseline)
        base = (f"{c.baseline + 1}: " if numbered else "") + _label(rows, names, c.baseline, c.row)
        cells = [difference_text(c.cells[b]) if b in c.cells else "" for b, _ in columns]
        lines.append(
            "| " + " | ".join(s.replace("|", "\\|") for s in [row, base, *cells, difference_text(c.avg)]) + " |"
        )
    return "\n".join(lines) + f"\n\n{NOTE}.\n"


def differences_to_dict(
    comparisons: Sequence[Comparison], rows: Sequence[Row], names: Sequence[str] | None = None
) -> list[dict]:
    def who(i: int) -> dict:
        return {f: _value(rows, names, i, f) for f in FIELDS if f != "run" or names}

    return [
        {
            "row": who(c.row),
            "baseline": who(c.baseline),
            "benchmarks": {label: d.to_dict() for label, d in c.cells.items()},
            "avg": c.avg.to_dict(),
        }
        for c in comparisons
    ]


def write_differences_csv(
    comparisons: Sequence[Comparison], rows: Sequence[Row], path: str | Path, names: Sequence[str] | None = None
) -> Path:
    """One line per comparison and benchmark (and AVG): who, n, the difference and its interval (fractions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [f for f in FIELDS if f != "run" or names]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [f"row_{k}" for k in fields]
            + [f"baseline_{k}" for k in fields]
            + ["benchmark", "n", "difference", "low", "high", "method", "beyond_noise"]
        )
        for c in comparisons:
            who = [_value(rows, names, c.row, k) for k in fields] + [
                _value(rows, names, c.baseline, k) for k in fields
            ]
            for label, d in [*c.cells.items(), ("AVG", c.avg)]:
                numbers = [_frac(d.estimate), _frac(d.interval.low), _frac(d.interval.high)]
                writer.writerow(who + [label, d.n, *numbers, d.interval.method, int(d.beyond_noise)])
    return path


def pair_rows(summary: Summary, names: Sequence[str], rows: Sequence[str] | None = None) -> list[Comparison]:
    """The comparisons `--rows` asks for (the baseline's selector, then the others'), or by default each row of a
    later run against its counterpart in the first (`default_pairs`)."""
    if rows is not None and len(rows) < 2:
        raise ValueError(f"--rows: name the baseline row and at least one row to compare with it, got {list(rows)}")
    if rows:
        base = select_row(rows[0], summary.rows, names)
        pairs = [(select_row(r, summary.rows, names), base) for r in rows[1:]]
    else:
        pairs = default_pairs(summary.rows, names)
    return compare_rows(summary.rows, [b for b, _ in summary.columns], pairs)


def compare_markdown(summary: Summary, names: Sequence[str], comparisons: Sequence[Comparison]) -> str:
    """The runs' table with numbered rows, then their paired differences (or how to ask for them)."""
    from rapid_agent.eval.tables import to_markdown

    text = to_markdown(summary, run_names=names, numbered=True)
    if comparisons:
        text += "\nPaired differences\n\n" + differences_markdown(comparisons, summary.rows, summary.columns, names)
    elif len(summary.rows) > 1:
        text += "\nNo rows paired: name them with --rows BASELINE ROW [ROW ...] (row numbers from the # column).\n"
    return text


def write_comparison(
    out: str | Path, summary: Summary, names: Sequence[str], comparisons: Sequence[Comparison], text: str
) -> None:
    """compare.md (`text`), compare.csv (the table), compare.json (table and differences), differences.csv and
    compare.png in `out`."""
    from rapid_agent.eval.tables import write_chart, write_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    write_csv(summary, out / "compare.csv")
    data = {**summary.to_dict(), "runs": list(names)}
    data["differences"] = differences_to_dict(comparisons, summary.rows, names)
    (out / "compare.json").write_text(json.dumps(data, indent=2) + "\n")
    write_differences_csv(comparisons, summary.rows, out / "differences.csv", names)
    write_chart(summary, out / "compare.png", title="Runs compared")


def _frac(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"
