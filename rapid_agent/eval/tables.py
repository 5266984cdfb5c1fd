"""Writers for the summary: Markdown and CSV laid out like the paper's table, the full JSON, a PNG chart, and
several runs side by side.

    | Captioner | Reasoner | Mode | MathVista | MathVerse | ... | AVG |

Scores are percentages with one decimal; a cell a row has no records for is empty, and AVG is over the cells present.
Samples whose run failed (status `error`) are no verdict and stay out of a score; a cell (and AVG) that has any
says how many beside its score, `53.2 (3 err)` (a mark over the bar in the chart, a count in the CSV and JSON), so
a partial number is never read as final; `--retry-errors` runs them again.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from rapid_agent.eval.summary import Cell, Row, Summary

HEADER = ["Captioner", "Reasoner", "Mode"]
#: the per-cell counts the CSV carries
COUNTS = ("scored", "errored", "skipped")


def _pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def _scored_cell(score: float, errored: int) -> str:
    """A score as the table shows it: with how many failed runs it leaves out, when any."""
    text = _pct(score)
    return f"{text} ({errored} err)".strip() if errored else text


def _label_cells(row: Row) -> list[str]:
    mode = f"{row.mode} [{row.settings}]" if row.label_settings else row.mode
    return [row.captioner, row.reasoner, mode]


def to_markdown(summary: Summary, *, run_names: Sequence[str] | None = None, counts: bool = True) -> str:
    """The paper-style table (a cell with failed runs marked `(N err)`, with a note under the table); `counts`
    adds a second table of scored / errored / skipped samples per cell."""
    lead = (["Run"] if run_names else []) + HEADER
    titles = [title for _, title in summary.columns]
    lines = [
        _md_row(lead + titles + ["AVG"]),
        "|" + "|".join(["---"] * len(lead) + ["---:"] * (len(titles) + 1)) + "|",
    ]
    for i, row in enumerate(summary.rows):
        scores = [_cell_text(row.cells.get(b)) for b, _ in summary.columns]
        avg = _scored_cell(row.avg, row.errored)
        lines.append(_md_row(([run_names[i]] if run_names else []) + _label_cells(row) + scores + [avg]))
    text = "\n".join(lines) + "\n"
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
                cells.append(f"{cell.scored} / {cell.errored} / {cell.skipped}" if cell else "")
            lines.append(_md_row(([run_names[i]] if run_names else []) + _label_cells(row) + cells))
        text += "\n".join(lines) + "\n"
    return text


def _cell_text(cell: Cell | None) -> str:
    return "" if cell is None else _scored_cell(cell.score, cell.errored)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def write_markdown(summary: Summary, path: str | Path) -> Path:
    return _write(path, to_markdown(summary))


def write_csv(summary: Summary, path: str | Path) -> Path:
    """One line per row: labels, each benchmark's score (a fraction), AVG, then scored / errored / skipped counts per
    benchmark (a score with errored samples is partial)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [b for b, _ in summary.columns]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [h.lower() for h in HEADER]
            + ["settings"]
            + labels
            + ["avg"]
            + [f"{b}_{k}" for b in labels for k in COUNTS]
        )
        for row in summary.rows:
            scores = [_frac(row.cells[b].score) if b in row.cells else "" for b in labels]
            counts = [str(getattr(row.cells[b], k)) if b in row.cells else "" for b in labels for k in COUNTS]
            writer.writerow([row.captioner, row.reasoner, row.mode, row.settings] + scores + [_frac(row.avg)] + counts)
    return path


def _frac(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def write_json(summary: Summary, path: str | Path) -> Path:
    return _write(path, json.dumps(summary.to_dict(), indent=2) + "\n")


def write_chart(summary: Summary, path: str | Path, *, title: str = "Accuracy per benchmark") -> Path:
    """A grouped bar chart: one group per benchmark (and AVG), one bar per table row; a bar whose score leaves out
    failed runs is hatched and marked `N err`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [title for _, title in summary.columns] + ["AVG"]
    width = 0.8 / max(1, len(summary.rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.5))
    for i, row in enumerate(summary.rows):
        values = [100 * row.cells[b].score if b in row.cells else math.nan for b, _ in summary.columns] + [
            100 * row.avg
        ]
        xs = [g + (i - (len(summary.rows) - 1) / 2) * width for g in range(len(groups))]
        heights = [0 if math.isnan(v) else v for v in values]
        bars = ax.bar(xs, heights, width, label=row.name)
        errored = [row.cells[b].errored if b in row.cells else 0 for b, _ in summary.columns] + [row.errored]
        for bar, x, height, count in zip(bars, xs, heights, errored, strict=True):
            if count:
                bar.set_hatch("//")
                ax.text(x, height + 1, f"{count} err", ha="center", va="bottom", fontsize=6, rotation=90, color="red")
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylabel("score %")
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
