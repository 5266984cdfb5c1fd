"""Per-step metrics on disk: a CSV that survives kills and resumes without gaps or duplicates, and the curve PNG.

TRL averages each logging step's metrics (its own `reward`, `reward_std`, ... and what the reward functions send
through `log_metric`) and hands them to every callback; TensorBoard, wandb or trackio get them through `report_to`.
`CsvLogger` is one more callback: it rewrites `metrics.csv` atomically at every log, and when training resumes
from a checkpoint at step N it first drops the rows after N, which the resumed run is about to log again.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
#: rate-like columns drawn in the curve PNG's second panel when present
RATE_COLUMNS = (
    "vpo/valid_caption_ratio_all",
    "vpo/valid_caption_ratio_correct",
    "vpo/reasoner_accuracy",
    "vpo/penalty_rate",
    "vpo/truncated_rate",
    "vpo/zero_variance_groups",  # groups that teach nothing (`rapid_agent.rl.dynamic`)
    "grpo/zero_variance_groups",
    "rewards/accuracy/mean",
    "rewards/format/mean",
)


def read_rows(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write all rows at once through a temporary file, so a kill never leaves half a file behind."""
    path = Path(path)
    columns: list[str] = ["step"]
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class CsvLogger(TrainerCallback):
    """Appends one row per logging step to `path` (main process only). The end-of-run summary is left out."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = (
                [r for r in read_rows(self.path) if int(r["step"]) <= state.global_step] if state.global_step else []
            )
            self.rows = kept
            write_rows(self.path, self.rows)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        values = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        row = {"step": state.global_step, **values}
        if self.rows and int(self.rows[-1]["step"]) == state.global_step:
            self.rows[-1].update(row)  # a second log at the same step (e.g. evaluation) joins its row
        else:
            self.rows.append(row)
        write_rows(self.path, self.rows)


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for row in rows:
        raw = row.get(column)
        if raw not in (None, ""):
            value = float(raw)
            if not math.isnan(value):
                steps.append(int(row["step"]))
                values.append(value)
    return steps, values


def eval_columns(rows: list[dict[str, str]]) -> list[str]:
    """The live-policy evaluation's accuracy columns (`eval/<benchmark>/accuracy`, see `rapid_agent.rl.live_eval`)."""
    names = {k for row in rows for k in row if k.startswith("eval/") and k.endswith("/accuracy")}
    return sorted(names)


def plot_curves(csv_path: str | Path, png_path: str | Path) -> Path | None:
    """Reward (mean and std band), the caption-validity/accuracy rates per step and, when the live policy was
    evaluated, each benchmark's accuracy with its 95% interval; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    steps, reward = _series(rows, "reward")
    evals = eval_columns(rows)
    if not steps and not evals:
        return None
    _, std = _series(rows, "reward_std")
    panels = 3 if evals else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3 * panels), sharex=True)
    top, bottom = axes[0], axes[1]
    top.plot(steps, reward, label="reward (mean)")
    if len(std) == len(reward):
        low, high = [r - s for r, s in zip(reward, std)], [r + s for r, s in zip(reward, std)]
        top.fill_between(steps, low, high, alpha=0.2, label="± std")
    top.set_ylabel("reward")
    top.legend(loc="best")
    for column in RATE_COLUMNS:
        xs, ys = _series(rows, column)
        if xs:
            bottom.plot(xs, ys, label=column)
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_xlabel("step")
    bottom.set_ylabel("rate")
    if bottom.lines:
        bottom.legend(loc="best", fontsize="small")
    if evals:
        _plot_evals(axes[2], rows, evals)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


def _plot_evals(axis, rows: list[dict[str, str]], columns: list[str]) -> None:
    for column in columns:
        xs, ys = _series(rows, column)
        line = axis.plot(xs, ys, marker="o", label=column.removeprefix("eval/"))[0]
        lows, highs = _series(rows, f"{column}_low"), _series(rows, f"{column}_high")
        if lows[0] == xs and highs[0] == xs:
            axis.fill_between(xs, lows[1], highs[1], alpha=0.15, color=line.get_color())
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel("step")
    axis.set_ylabel("live policy (95% interval)")
    axis.legend(loc="best", fontsize="small")
