"""Writers for the summary: Markdown and CSV laid out like the paper's table, the full JSON, a PNG chart, and
several runs side by side.

    | Captioner | Reasoner | Mode | MathVista | MathVerse | ... | AVG |

Scores are percentages with one decimal, each with its 95% interval, `75.0 [68.2, 80.9]` (error bars in the chart;
`stats` says how each is computed); a cell a row has no records for is empty, and AVG is over the cells present.
Samples whose run failed (status `error`) are no verdict and stay out of a score; a cell (and AVG) that has any
says how many beside its score, `53.2 (3 err)` (a mark over the bar in the chart, a count in the CSV and JSON), so
a partial number is never read as final; `--retry-errors` runs them again. A row of several sampling seeds shows the
seeds' standard deviation beside its mean, `56.2 ±2.1 [48.1, 63.9]`; `metrics_markdown` lays out a benchmark's own
metrics per row (the world's accuracy per question level).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from rapid_agent.eval.stats import Interval
from rapid_agent.eval.summary import INTERVALS, Cell, Row, Summary

HEADER = ["Captioner", "Reasoner", "Mode"]
#: the per-cell numbers the CSV carries beside each score (then the cell's own metrics)
COUNTS = ("low", "high", "n", "scored", "errored", "skipped", "seeds", "seed_std")


def _pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def _scored_cell(score: float, errored: int, interval: Interval | None = None, seed_std: float = math.nan) -> str:
    """A score as the table shows it: with the spread over seeds and its interval, and how many failed runs it leaves
    out, when any."""
    text = _pct(score)
    if text and not math.isnan(seed_std):
        text += f" ±{_pct(seed_std)}"
    if text and interval is not None and not math.isnan(interval.low):
        text += f" [{_pct(interval.low)}, {_pct(interval.high)}]"
    return f"{text} ({errored} err)".strip() if errored else text


def _label_cells(row: Row, header: Sequence[str] = HEADER) -> list[str]:
    """The row's labels under `header` (some of HEADER); its settings beside the last when they tell it apart."""
    cells = [getattr(row, h.lower()) for h in header]
    if row.label_settings:
        cells[-1] = f"{cells[-1]} [{row.settings}]"
    return cells


def to_markdown(
    summary: Summary,
    *,
    run_names: Sequence[str] | None = None,
    counts: bool = True,
    intervals: bool = True,
    numbered: bool = False,
    header: Sequence[str] = HEADER,
    avg: bool = True,
) -> str:
    """The paper-style table, each score with its interval (`intervals`) and a cell with failed runs marked
    `(N err)`, with notes under the table; `counts` adds a second table of scored / errored / skipped samples per
    cell; `numbered` leads each row with its number (what `--rows` selects); `header` names the label columns shown
    (some of Captioner, Reasoner, Mode); `avg` adds the AVG column."""

    def lead_cells(i: int, row: Row) -> list[str]:
        return ([str(i + 1)] if numbered else []) + ([run_names[i]] if run_names else []) + _label_cells(row, header)

    lead = (["#"] if numbered else []) + (["Run"] if run_names else []) + list(header)
    titles = [title for _, title in summary.columns]
    lines = [
        _md_row(lead + titles + ["AVG"] * avg),
        "|" + "|".join(["---"] * len(lead) + ["---:"] * (len(titles) + avg)) + "|",
    ]
    for i, row in enumerate(summary.rows):
        scores = [_cell_text(row.cells.get(b), intervals) for b, _ in summary.columns]
        average = [_scored_cell(row.avg, row.errored, row.avg_interval if intervals else None)] * avg
        lines.append(_md_row(lead_cells(i, row) + scores + average))
    text = "\n".join(lines) + "\n"
    seeds = max((len(c.seeds) for row in summary.rows for c in row.cells.values()), default=0)
    if seeds > 1:
        text += f"\n±: the standard deviation of a row's score over its sampling seeds ({seeds}), beside their mean.\n"
    if intervals and summary.rows:
        text += f"\n[low, high]: {INTERVALS}.\n"
    errored = sum(row.errored for row in summary.rows)
    if errored:
        text += (
            f"\n(N err): {errored} sample(s) whose run failed (status `error`: an engine, a setting, an answer check "
            "that could not run) are left out of the score beside them, which is partial until they are run again "
            "(`--retry-errors`).\n"
        )
    if counts:
        lines = [
            "",
            "Samples per cell: scored / errored / skipped",
            "",
            _md_row(lead + titles),
            "|" + "|".join(["---"] * len(lead) + ["---:"] * len(titles)) + "|",
        ]
        for i, row in enumerate(summary.rows):
            cells = []
            for b, _ in summary.columns:
                cell = row.cells.get(b)
                cells.append(_counts_text(cell) if cell else "")
            lines.append(_md_row(lead_cells(i, row) + cells))
        text += "\n".join(lines) + "\n"
    return text


def _cell_text(cell: Cell | None, intervals: bool = True) -> str:
    if cell is None:
        return ""
    return _scored_cell(cell.score, cell.errored, cell.interval if intervals else None, cell.seed_std)


def metric_names(summary: Summary, benchmark: str) -> list[str]:
    """The metrics `benchmark`'s cells report beside their score, in order of first appearance."""
    cells = [row.cells[benchmark] for row in summary.rows if benchmark in row.cells]
    return [m for m in dict.fromkeys(m for c in cells for m in c.metrics) if m != "score"]


def metrics_markdown(
    summary: Summary, benchmark: str, names: Sequence[str] | None = None, *, header: Sequence[str] = HEADER
) -> str:
    """One benchmark's own metrics per row, in percent (default: every metric its cells report but the score), e.g.
    the world's accuracy per question level."""
    names = list(names) if names is not None else metric_names(summary, benchmark)
    titles = [n.replace("_", " ") for n in names]
    lines = [_md_row(list(header) + titles), "|" + "|".join(["---"] * len(header) + ["---:"] * len(names)) + "|"]
    for row in summary.rows:
        cell = row.cells.get(benchmark)
        if cell is not None:
            lines.append(_md_row(_label_cells(row, header) + [_pct(cell.metrics.get(n, math.nan)) for n in names]))
    return "\n".join(lines) + "\n"


def _counts_text(cell: Cell) -> str:
    """scored / errored / skipped, and the n the score is over when its items are not the scored samples."""
    text = f"{cell.scored} / {cell.errored} / {cell.skipped}"
    return f"{text} (n={cell.n} {cell.unit})" if cell.unit != "samples" else text


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def write_markdown(summary: Summary, path: str | Path) -> Path:
    return _write(path, to_markdown(summary))


def write_csv(summary: Summary, path: str | Path) -> Path:
    """One line per row: labels, each benchmark's score (a fraction), AVG and its interval, then per benchmark its
    interval, n, and scored / errored / skipped counts (a score with errored samples is partial)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [b for b, _ in summary.columns]
    metrics = [(b, m) for b in labels for m in metric_names(summary, b)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [h.lower() for h in HEADER]
            + ["settings"]
            + labels
            + ["avg", "avg_low", "avg_high"]
            + [f"{b}_{k}" for b in labels for k in COUNTS]
            + [f"{b}_{m}" for b, m in metrics]
        )
        for row in summary.rows:
            scores = [_frac(row.cells[b].score) if b in row.cells else "" for b in labels]
            avg = [_frac(row.avg), _frac(row.avg_interval.low), _frac(row.avg_interval.high)]
            counts = [_csv_count(row.cells[b], k) if b in row.cells else "" for b in labels for k in COUNTS]
            own = [_frac(row.cells[b].metrics.get(m, math.nan)) if b in row.cells else "" for b, m in metrics]
            writer.writerow([row.captioner, row.reasoner, row.mode, row.settings] + scores + avg + counts + own)
    return path


def _csv_count(cell: Cell, name: str) -> str:
    if name in ("low", "high"):
        return _frac(getattr(cell.interval, name))
    if name == "seeds":
        return str(len(cell.seeds) or 1)
    if name == "seed_std":
        return _frac(cell.seed_std)
    return str(getattr(cell, name))


def _frac(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def write_json(summary: Summary, path: str | Path) -> Path:
    return _write(path, json.dumps(summary.to_dict(), indent=2) + "\n")


def write_chart(summary: Summary, path: str | Path, *, title: str = "Accuracy per benchmark") -> Path:
    """A grouped bar chart: one group per benchmark (and AVG), one bar per table row with its 95% interval as an error
    bar; a bar whose score leaves out failed runs is hatched and marked `N err`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [title for _, title in summary.columns] + ["AVG"]
    width = 0.8 / max(1, len(summary.rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.5))
    for i, row in enumerate(summary.rows):
        cells = [row.cells.get(b) for b, _ in summary.columns]
        values = [100 * c.score if c else math.nan for c in cells] + [100 * row.avg]
        intervals = [c.interval if c else Interval() for c in cells] + [row.avg_interval]
        xs = [g + (i - (len(summary.rows) - 1) / 2) * width for g in range(len(groups))]
        heights = [0 if math.isnan(v) else v for v in values]
        # an error bar spans the interval; none where there is no score or no interval
        # (clamped at 0: at 100% Wilson's upper bound can come out a rounding error below the score)
        below = [
            0 if math.isnan(v) or math.isnan(c.low) else max(0.0, v - 100 * c.low) for v, c in zip(values, intervals)
        ]
        above = [
            0 if math.isnan(v) or math.isnan(c.high) else max(0.0, 100 * c.high - v) for v, c in zip(values, intervals)
        ]
        bars = ax.bar(xs, heights, width, label=row.name, yerr=[below, above], capsize=2, error_kw={"elinewidth": 0.8})
        errored = [c.errored if c else 0 for c in cells] + [row.errored]
        for bar, x, height, top, count in zip(bars, xs, heights, above, errored, strict=True):
            if count:
                bar.set_hatch("//")
                y = height + top + 1
                ax.text(x, y, f"{count} err", ha="center", va="bottom", fontsize=6, rotation=90, color="red")
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylabel("score % (bars: 95% interval)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=120, bbox_inches="tight")  # room for the legend beside the axes
    plt.close(fig)
    return path


def write_all(summary: Summary, out: str | Path, *, stem: str = "summary") -> dict[str, Path]:
    """Markdown, CSV, JSON and PNG next to the records."""
    out = Path(out)
    return {
        "markdown": write_markdown(summary, out / f"{stem}.md"),
        "csv": write_csv(summary, out / f"{stem}.csv"),
        "json": write_json(summary, out / f"{stem}.json"),
        "png": write_chart(summary, out / f"{stem}.png"),
    }


def compare(summaries: Sequence[tuple[str, Summary]]) -> tuple[Summary, list[str]]:
    """Several runs in one table: the union of their columns, each row tagged with its run's name."""
    columns: list[tuple[str, str]] = []
    for _, summary in summaries:
        columns += [c for c in summary.columns if c not in columns]
    rows, names = [], []
    for name, summary in summaries:
        rows += summary.rows
        names += [name] * len(summary.rows)
    metrics = {label: text for _, summary in summaries for label, text in summary.metrics.items()}
    return Summary(columns, rows, metrics), names


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
