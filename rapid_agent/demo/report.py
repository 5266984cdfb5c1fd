"""The demo's report folder: accuracy table (Markdown, CSV), VPO curves (PNG), example items (HTML with embedded
images), the trace of one graph run (JSON lines), per-sample records, and a README that sets each effect against
the run-to-run noise.

Noise is measured two ways and both are reported: the standard deviation of a row's accuracy over reasoner seeds,
and the standard error of a paired difference over test items (each item's correctness averaged over seeds, the
two rows compared item by item). An effect counts as "beyond noise" here when it exceeds twice that standard error.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapid_agent.backends.images import image_to_data_url
from rapid_agent.eval.evaluate import END_TO_END, EvalResult, RowSummary, write_csv

TABLE_MD = "accuracy.md"
TABLE_CSV = "accuracy.csv"
CURVES_PNG = "vpo_curves.png"
EXAMPLES_HTML = "examples.html"
TRACE_JSONL = "trace.jsonl"
RECORDS_JSONL = "records.jsonl"
README = "README.md"
SUMMARY_JSON = "summary.json"
REPORT_FILES = (TABLE_MD, TABLE_CSV, CURVES_PNG, EXAMPLES_HTML, TRACE_JSONL, RECORDS_JSONL, README, SUMMARY_JSON)


@dataclasses.dataclass
class Effect:
    """Accuracy of row `a` minus row `b` (in [-1, 1]): its paired standard error over items, and the standard
    deviation of the per-seed differences (None with fewer than two shared seeds)."""

    a: str
    b: str
    delta: float
    se: float
    n: int
    seed_std: float | None = None
    seeds: int = 1

    @property
    def beyond_noise(self) -> bool:
        return self.se > 0 and abs(self.delta) > 2 * self.se or (self.se == 0 and self.delta != 0)

    def text(self) -> str:
        verdict = "beyond noise" if self.beyond_noise else "within noise"
        spread = (
            f", seed-to-seed std {100 * self.seed_std:.1f} over {self.seeds} seeds"
            if self.seed_std is not None
            else ""
        )
        return f"{100 * self.delta:+.1f} points (paired SE {100 * self.se:.1f} over {self.n} items{spread}; {verdict})"


def _per_item(result: EvalResult, row: str) -> dict[str, float]:
    """Each item's correctness in `row`, averaged over seeds (errored samples count as wrong)."""
    sums: dict[str, list[float]] = {}
    for r in result.records:
        if r["row"] == row and r["correct"] is not None:
            sums.setdefault(r["id"], []).append(float(r["correct"]))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def paired_effect(a: EvalResult, row_a: str, b: EvalResult, row_b: str) -> Effect | None:
    """Row `row_a` of `a` against `row_b` of `b`, item by item; None when they share no item."""
    xa, xb = _per_item(a, row_a), _per_item(b, row_b)
    ids = sorted(set(xa) & set(xb))
    if not ids:
        return None
    diffs = [xa[i] - xb[i] for i in ids]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else 0.0
    seeds_a, seeds_b = _per_seed(a, row_a), _per_seed(b, row_b)
    shared = sorted(set(seeds_a) & set(seeds_b), key=str)
    per_seed = [seeds_a[s] - seeds_b[s] for s in shared]
    seed_std = None
    if len(per_seed) > 1:
        m = sum(per_seed) / len(per_seed)
        seed_std = math.sqrt(sum((d - m) ** 2 for d in per_seed) / (len(per_seed) - 1))
    return Effect(row_a, row_b, mean, math.sqrt(var / len(diffs)), len(ids), seed_std, max(len(shared), 1))


def _per_seed(result: EvalResult, row: str) -> dict[Any, float]:
    """Accuracy of `row` per seed."""
    by_seed: dict[Any, list[float]] = {}
    for r in result.records:
        if r["row"] == row and r["correct"] is not None:
            by_seed.setdefault(r["seed"], []).append(float(r["correct"]))
    return {s: sum(v) / len(v) for s, v in by_seed.items()}


def _renamed(summary: Sequence[RowSummary], stage: str) -> list[RowSummary]:
    return [dataclasses.replace(s, row=f"{stage}:{s.row}") for s in summary]


def combined_table(sft: EvalResult, vpo: EvalResult | None) -> str:
    """One Markdown table: each row's accuracy with the SFT captioner, after VPO, and the change."""
    seeds = max(s.seeds for s in sft.summary)
    unit = "accuracy % (mean ± std over seeds)" if seeds > 1 else "accuracy %"
    lines = [
        f"| row | SFT captioner: {unit} | after VPO | change (points) | n | errored |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    after = {s.row: s for s in vpo.summary} if vpo is not None else {}
    for s in sft.summary:
        label = "captioner alone (end to end)" if s.row == END_TO_END else f"decoupled: {s.row}"
        v = after.get(s.row)
        change = f"{100 * (v.accuracy - s.accuracy):+.1f}" if v is not None else ""
        errored = s.errored + (v.errored if v is not None else 0)
        lines.append(f"| {label} | {s.formatted()} | {v.formatted() if v else ''} | {change} | {s.n} | {errored} |")
    return "\n".join(lines) + "\n"


def level_table(results: dict[str, EvalResult]) -> str:
    """Accuracy % of every (captioner, row) by question level (mean over seeds): where each route wins or loses."""
    rows = [(stage, s) for stage, result in results.items() for s in result.summary]
    levels = sorted({level for _, s in rows for level in s.by_level})
    lines = [
        "| captioner | row | " + " | ".join(f"level {lv}" for lv in levels) + " |",
        "|---|---|" + "---:|" * len(levels),
    ]
    for stage, s in rows:
        label = "captioner alone (end to end)" if s.row == END_TO_END else f"decoupled: {s.row}"
        shown = [f"{100 * s.by_level[lv]:.1f}" if lv in s.by_level else "" for lv in levels]
        lines.append(f"| {stage} | {label} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, sft: EvalResult, vpo: EvalResult | None) -> tuple[Path, Path]:
    md = out / TABLE_MD
    md.write_text(combined_table(sft, vpo))
    rows = _renamed(sft.summary, "sft") + (_renamed(vpo.summary, "vpo") if vpo is not None else [])
    return md, write_csv(rows, out / TABLE_CSV)


def write_curves(out: Path, metrics_csv: Path | None) -> Path:
    """The VPO reward and valid-caption curves; a placeholder image saying why when there was no VPO run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out / CURVES_PNG
    if metrics_csv is not None and metrics_csv.is_file():
        from rapid_agent.rl.metrics import plot_curves

        if plot_curves(metrics_csv, path) is not None:
            return path
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, "no VPO steps were logged in this run", ha="center", va="center")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value)).replace("\n", "<br>")


def write_examples(out: Path, items: Sequence[dict], results: dict[str, EvalResult], mode: str, n: int) -> Path:
    """An HTML page with `n` test items: image, question, gold, then per stage the captioner alone and `mode`."""
    by_key = {
        (stage, r["row"], r["id"]): r for stage, res in results.items() for r in res.records if r["seed"] in (0, None)
    }
    blocks = []
    for item in items[:n]:
        rows = []
        for stage in results:
            for row in (END_TO_END, mode):
                r = by_key.get((stage, row, item["id"]))
                if r is None:
                    continue
                verdict = "✅ right" if r["correct"] else "❌ wrong"
                if r["errors"]:
                    verdict += " (error: " + "; ".join(r["errors"]) + ")"
                rows.append(
                    "<tr>"
                    f"<td>{_cell(stage)}</td><td>{_cell(row)}</td><td>{_cell(r.get('caption'))}</td>"
                    f"<td>{_cell(r.get('solution') if row != END_TO_END else r.get('captioner_output'))}</td>"
                    f"<td>{_cell(r.get('reasoner_output'))}</td><td>{_cell(r.get('prediction'))}</td>"
                    f"<td>{_cell(verdict)}</td></tr>"
                )
        blocks.append(
            "<section>"
            f'<img src="{image_to_data_url(item["image"])}" alt="scene {_cell(item["id"])}" width="168">'
            f"<div><p><b>{_cell(item['question'])}</b><br>gold answer: <b>{_cell(item['answer'])}</b> · "
            f"level {_cell(item.get('level'))} · true description: {_cell(item.get('description'))}</p>"
            "<table><tr><th>captioner</th><th>row</th><th>caption</th><th>solution / output</th>"
            "<th>reasoner output</th><th>answer</th><th>verdict</th></tr>" + "".join(rows) + "</table></div></section>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>RAPID demo: examples</title><style>"
        "body{font-family:sans-serif;margin:2em}section{display:flex;gap:1.5em;margin-bottom:2em}"
        "img{image-rendering:pixelated;border:1px solid #ccc;align-self:flex-start}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ddd;padding:4px;vertical-align:top}"
        "</style></head><body><h1>RAPID demo: example test items</h1>"
        "<p>Reasoner seed 0. Captions and solutions come from the captioner; the reasoner sees only text.</p>"
        + "".join(blocks)
        + "</body></html>\n"
    )
    path = out / EXAMPLES_HTML
    path.write_text(page)
    return path


def write_records(out: Path, results: dict[str, EvalResult]) -> Path:
    path = out / RECORDS_JSONL
    with path.open("w") as f:
        for stage, result in results.items():
            for r in result.records:
                f.write(json.dumps({"stage": stage, **r}, default=str) + "\n")
    return path


def effects(sft: EvalResult, vpo: EvalResult | None, vpo_mode: str) -> dict[str, list[Effect]]:
    """Decoupling against the captioner alone (each mode, SFT captioner) and VPO against SFT (each remeasured row)."""
    decoupling = [paired_effect(sft, s.row, sft, END_TO_END) for s in sft.summary if s.row != END_TO_END]
    out: dict[str, list[Effect]] = {"decoupling": [e for e in decoupling if e is not None]}
    if vpo is not None:
        lifts = [paired_effect(vpo, s.row, sft, s.row) for s in vpo.summary]
        out["vpo"] = [e for e in lifts if e is not None]
        rapid = paired_effect(vpo, vpo_mode, sft, END_TO_END)
        out["rapid"] = [rapid] if rapid is not None else []
    return out


def write_readme(
    out: Path, summary: dict[str, Any], table: str, found: dict[str, list[Effect]], by_level: str = ""
) -> Path:
    cfg, timings, captioner = summary["config"], summary["timings"], summary["captioner"]
    desc = captioner.get("descriptions", {})
    lines = [
        "# RAPID demo report",
        "",
        "A miniature of RAPID on the synthetic world: a tiny Qwen2.5-VL captioner trained here (supervised) "
        f"describes images; the frozen text-only reasoner `{summary['reasoner']}` answers from its text. "
        "This report states what was measured; it does not assert the paper's claims.",
        "",
        "## Setup",
        "",
        f"- world: {cfg['n_train']} training and {cfg['n_test']} held-out test items, levels {cfg['levels']}, "
        f"{cfg['image_size']}px images on a {cfg['grid']}x{cfg['grid']} grid, up to {cfg['max_objects']} objects",
        f"- captioner: {captioner.get('parameters', '?'):,} parameters, {captioner.get('sft_steps', '?')} SFT steps "
        f"in {captioner.get('sft_seconds', 0):.0f} s "
        f"({'trained in this run' if summary['captioner_built'] else 'loaded from the cache'}); held-out "
        f"descriptions exactly right: {100 * desc.get('exact', float('nan')):.0f}%, same counts: "
        f"{100 * desc.get('same_counts', float('nan')):.0f}% (n={desc.get('n', '?')}); query-related captions "
        "exactly right: "
        + (", ".join(f"level {lv} {100 * v:.0f}%" for lv, v in desc.get("query_caption_exact", {}).items()) or "?"),
        "- what the captioner was taught: to perceive (the description, the query-related caption) on every "
        "training item; worked solutions "
        + (
            "on every level"
            if cfg.get("sft_solution_levels") is None
            else f"to the answer only at level(s) {', '.join(map(str, cfg['sft_solution_levels']))}; on the others "
            "its tentative solution stops at the counts it read (it is not taught their arithmetic)"
        ),
        f"- reasoner: temperature {cfg['reasoner_temperature']}, at most {cfg['reasoner_max_new_tokens']} new "
        f"tokens, {cfg['seeds']} seed(s) per row",
        f"- VPO: {cfg['vpo_steps']} steps in mode `{cfg['vpo_mode']}`, {cfg['vpo_prompts_per_step']} questions x "
        f"{cfg['vpo_generations']} samples per step, caption penalty {cfg['vpo_caption_penalty']}",
        "- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "## Accuracy on the held-out test split",
        "",
        table,
        *(
            [
                "## By question level",
                "",
                f"Accuracy % (mean over seeds) on the {cfg['n_test']} test items.",
                "",
                by_level,
            ]
            if by_level
            else []
        ),
        "## Effects against noise",
        "",
        "Each effect is a paired difference over the same test items (correctness averaged over seeds); "
        "'beyond noise' means larger than twice its standard error. The seed-to-seed standard deviation of each "
        "row is in the table.",
        "",
    ]
    titles = {
        "decoupling": "Decoupled pipeline (SFT captioner) minus the captioner alone",
        "vpo": "After VPO minus before (same row)",
        "rapid": "Decoupled after VPO (the VPO mode) minus the SFT captioner alone",
    }
    for key, title in titles.items():
        if found.get(key):
            lines += [f"**{title}:**", ""]
            lines += [f"- {e.a} vs {e.b}: {e.text()}" for e in found[key]]
            lines.append("")
    lines += [
        "## Files",
        "",
        f"- `{TABLE_MD}`, `{TABLE_CSV}`: the table (CSV rows are `sft:<row>` and `vpo:<row>`, accuracies as fractions)",
        f"- `{CURVES_PNG}`: VPO reward and valid-caption rate per step",
        f"- `{EXAMPLES_HTML}`: example items with image, caption, solution, reasoner output and verdict",
        f"- `{TRACE_JSONL}`: OpenTelemetry spans of one graph run",
        f"- `{RECORDS_JSONL}`: every sample of every row and seed; `{SUMMARY_JSON}`: settings and figures",
        "",
    ]
    path = out / README
    path.write_text("\n".join(lines))
    return path


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / SUMMARY_JSON
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path
