"""The reasoner sweep: one captioner's cached perceptions, every reasoner run over them, and how each differs from a
baseline reasoner, with its noise (the paper's "plug in a stronger reasoner without retraining", measured).

    python -m rapid_agent.eval sweep --out runs/paper --baseline hf:Qwen/Qwen3-8B \\
        [--benchmark ... --reasoner openai:qwen3-32b@http://h:8000/v1 ...]

A view over the records in the out folder: the rows of one captioner and mode (one per reasoner), each score with its
interval, and each reasoner's paired difference against the baseline's (`compare`). Reasoners named with `--reasoner`
are run first, over the cached perceptions only (`EvalConfig(perceive=False)`): the captioner is never loaded nor
called, and a sample with no cached perception is left unrun (a warning counts them), never perceived anew.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rapid_agent.backends.base import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.eval.compare import (
    Comparison,
    compare_rows,
    differences_markdown,
    differences_to_dict,
    select_row,
    write_differences_csv,
)
from rapid_agent.eval.summary import Summary, summarize


class CachedCaptioner(Engine):
    """Stands in the context for the captioner whose perceptions are cached: it bears that captioner's spec (the
    cache key's name for it; any string, loadable or not) and refuses to be called."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        raise RuntimeError(f"the sweep never calls the captioner ({self.spec!r}); its perceptions are read from --out")


@dataclass
class Sweep:
    captioner: str
    mode: str
    summary: Summary  # one row per reasoner over this captioner's perceptions in this mode
    baseline: int  # its row
    comparisons: list[Comparison]

    def markdown(self) -> str:
        from rapid_agent.eval.tables import to_markdown

        rows = self.summary.rows
        head = (
            f"Reasoner sweep over the perceptions of {self.captioner} (mode {self.mode}); "
            f"baseline {rows[self.baseline].reasoner}\n\n"
        )
        table = to_markdown(self.summary, counts=False, header=("Reasoner",))
        differences = differences_markdown(self.comparisons, rows, self.summary.columns, numbered=False)
        return f"{head}{table}\nPaired differences against the baseline\n\n{differences}"

    def write(self, out: str | Path) -> dict[str, Path]:
        """sweep.md, sweep.csv (the differences, one line per reasoner and benchmark), sweep.json in `out`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = self.summary.rows
        data = {
            "captioner": self.captioner,
            "mode": self.mode,
            "baseline": rows[self.baseline].reasoner,
            "table": self.summary.to_dict(),
            "differences": differences_to_dict(self.comparisons, rows),
        }
        (out / "sweep.md").write_text(self.markdown())
        (out / "sweep.json").write_text(json.dumps(data, indent=2) + "\n")
        return {
            "markdown": out / "sweep.md",
            "csv": write_differences_csv(self.comparisons, rows, out / "sweep.csv"),
            "json": out / "sweep.json",
        }


def choose(given: str | None, available: Iterable[str], what: str) -> str:
    """`given` (exactly, or as the one value containing it), or the only value available; else a ValueError."""
    options = sorted(set(available))
    if given is None:
        if len(options) == 1:
            return options[0]
        raise ValueError(f"the records hold {len(options)} {what}s {options}; name one with --{what}")
    if given in options:
        return given
    found = [o for o in options if given in o]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"--{what} {given!r} matches {found or 'none'} of the records' {what}s {options}")


def perceived(records: Iterable[dict], captioner: str | None = None) -> tuple[str, list[str]]:
    """The captioner a sweep reads (`captioner`, or the only one) and the modes its records are in."""
    records = [r for r in records if r.get("mode") != "none" and r.get("captioner") not in (None, "-")]
    if not records:
        raise ValueError("no record with a captioner's perception in this out folder: run the benchmarks first")
    chosen = choose(captioner, (r["captioner"] for r in records), "captioner")
    return chosen, sorted({r["mode"] for r in records if r["captioner"] == chosen})


def sweep(records: Sequence[dict], *, baseline: str, captioner: str | None = None, mode: str | None = None) -> Sweep:
    """The sweep table from result records: `baseline` selects the baseline row (a reasoner, exactly or as a unique
    substring, or a `compare` selector), `captioner` and `mode` may be left out when the records hold one."""
    captioner, modes = perceived(records, captioner)
    mode = choose(mode, modes, "mode")
    mine = [r for r in records if r.get("captioner") == captioner and r.get("mode") == mode]
    summary = summarize(mine)
    base = select_row(baseline, summary.rows)
    summary.rows.insert(0, summary.rows.pop(base))  # the baseline leads the table
    base = 0
    pairs = [(i, base) for i in range(len(summary.rows)) if i != base]
    columns = [label for label, _ in summary.columns]
    return Sweep(captioner, mode, summary, base, compare_rows(summary.rows, columns, pairs))
