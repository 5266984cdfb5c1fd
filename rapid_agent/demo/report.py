"""The demo's report folder: accuracy table (Markdown, CSV), style shares, VPO curves (PNG), example items (HTML with
embedded images), the trace of one graph run (JSON lines), per-sample records, and a README that sets each effect
against the noise.

Noise is measured two ways and both are reported: the standard deviation over reasoner seeds (of a row's accuracy,
and of each effect's per-seed difference), and the standard error of a paired difference over test items (each
item's correctness, or share of samples, averaged over seeds, the two sides compared item by item). An effect
counts as "beyond noise" here when it exceeds twice that standard error.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rapid_agent.backends.images import image_to_data_url
from rapid_agent.eval.evaluate import END_TO_END, EvalResult, RowSummary, write_csv
from rapid_agent.world import KINDS, style_of

TABLE_MD = "accuracy.md"
TABLE_CSV = "accuracy.csv"
CURVES_PNG = "vpo_curves.png"
EXAMPLES_HTML = "examples.html"
TRACE_JSONL = "trace.jsonl"
RECORDS_JSONL = "records.jsonl"
README = "README.md"
SUMMARY_JSON = "summary.json"
REPORT_FILES = (TABLE_MD, TABLE_CSV, CURVES_PNG, EXAMPLES_HTML, TRACE_JSONL, RECORDS_JSONL, README, SUMMARY_JSON)
#: how each stage of the table is headed
STAGE_TITLES = {"sft": "SFT captioner", "vpo": "after VPO", "vpo-no-penalty": "after VPO without the penalty"}


def solver_row(mode: str) -> str:
    """The row of `mode`'s captions answered by the world's exact solver."""
    return f"{mode}>solver"


def majority_row(mode: str) -> str:
    """The row of `mode`'s captions answered by the reasoner's majority vote."""
    return f"{mode}>vote"


def row_label(row: str, config: Any) -> str:
    if row == END_TO_END:
        return "captioner alone (end to end)"
    if row.endswith(">solver"):
        return f"decoupled: {row.split('>')[0]}, exact solver on the same captions"
    if row.endswith(">vote"):
        return f"decoupled: {row.split('>')[0]}, reasoner majority of {config.majority_k} on the same captions"
    sampled = f" (captioner samples at T={config.vpo_temperature:g})" if row == config.vpo_mode else ""
    return f"decoupled: {row}{sampled}"


@dataclasses.dataclass
class Effect:
    """Side `a` minus side `b` (accuracy or a share, in [-1, 1]): its paired standard error over items, and the
    standard deviation of the per-seed differences (None with fewer than two shared seeds)."""

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


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def paired_values(a: Mapping[str, float], b: Mapping[str, float], name_a: str, name_b: str) -> Effect | None:
    """Per-item values of two sides compared item by item; None when they share no item."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    mean, std = _mean_std([a[i] - b[i] for i in ids])
    return Effect(name_a, name_b, mean, std / math.sqrt(len(ids)), len(ids))


def _per_item(result: EvalResult, row: str) -> dict[str, float]:
    """Each item's correctness in `row`, averaged over seeds (errored samples have no verdict and are left out)."""
    sums: dict[str, list[float]] = {}
    for r in result.records:
        if r["row"] == row and r["correct"] is not None:
            sums.setdefault(r["id"], []).append(float(r["correct"]))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _per_seed(result: EvalResult, row: str) -> dict[Any, float]:
    by_seed: dict[Any, list[float]] = {}
    for r in result.records:
        if r["row"] == row and r["correct"] is not None:
            by_seed.setdefault(r["seed"], []).append(float(r["correct"]))
    return {s: sum(v) / len(v) for s, v in by_seed.items()}


def paired_effect(
    a: EvalResult, row_a: str, b: EvalResult, row_b: str, name_a: str | None = None, name_b: str | None = None
) -> Effect | None:
    """Row `row_a` of `a` against `row_b` of `b`, item by item; None when they share no item."""
    effect = paired_values(_per_item(a, row_a), _per_item(b, row_b), name_a or row_a, name_b or row_b)
    if effect is None:
        return None
    seeds_a, seeds_b = _per_seed(a, row_a), _per_seed(b, row_b)
    shared = sorted(set(seeds_a) & set(seeds_b), key=str)
    if len(shared) > 1:
        effect.seed_std = _mean_std([seeds_a[s] - seeds_b[s] for s in shared])[1]
    effect.seeds = max(len(shared), 1)
    return effect


def effects(results: dict[str, EvalResult], checks: dict[str, dict], config: Any) -> dict[str, list[Effect]]:
    """Every effect the report states, by claim (see `CLAIMS`)."""
    sft, mode = results["sft"], config.vpo_mode
    found: dict[str, list[Effect | None]] = {
        "decoupling": [
            paired_effect(sft, s.row, sft, END_TO_END) for s in sft.summary if s.row in (*config.modes, mode)
        ],
        "stronger": [],
    }
    for stage, result in results.items():
        rows = {s.row for s in result.summary}
        for extra in (solver_row(mode), majority_row(mode)):
            if extra in rows:
                found["stronger"].append(
                    paired_effect(result, extra, result, mode, f"{stage}:{extra}", f"{stage}:{mode}")
                )
    styles = {stage: c.get("styles") for stage, c in checks.items() if c.get("styles")}
    if "vpo" in results:
        found["vpo"] = [paired_effect(results["vpo"], mode, sft, mode, f"vpo:{mode}", f"sft:{mode}")]
        if "vpo" in styles and "sft" in styles:
            found["vpo"].append(
                paired_values(
                    styles["vpo"]["per_item_usable"], styles["sft"]["per_item_usable"], "vpo:usable", "sft:usable"
                )
            )
    if "vpo" in styles and "vpo-no-penalty" in styles:
        found["penalty"] = [
            paired_values(
                styles["vpo"]["per_item_descriptive"],
                styles["vpo-no-penalty"]["per_item_descriptive"],
                "vpo:valid captions",
                "vpo-no-penalty:valid captions",
            ),
            paired_effect(results["vpo"], mode, results["vpo-no-penalty"], mode, f"vpo:{mode}", f"no-penalty:{mode}"),
        ]
    return {k: [e for e in v if e is not None] for k, v in found.items()}


CLAIMS = {
    "decoupling": "Decoupled pipeline (SFT captioner) minus the captioner alone",
    "vpo": "After VPO minus before: accuracy of the VPO mode, and the share of usable (counts-style) samples",
    "penalty": "VPO with the caption penalty minus without: share of samples whose caption describes the image, "
    "and accuracy",
    "stronger": "A stronger reasoner on the same captions minus SmolLM2 on them (no captioner call)",
}


def combined_table(results: dict[str, EvalResult], config: Any) -> str:
    """One Markdown table: each row's accuracy per stage (SFT captioner, after VPO, ...)."""
    seeds = max(s.seeds for result in results.values() for s in result.summary)
    unit = " (mean ± std over seeds)" if seeds > 1 else ""
    stages = list(results)
    lines = [
        "| row | " + " | ".join(STAGE_TITLES.get(s, s) + f": accuracy %{unit}" for s in stages) + " | n | errored |",
        "|---|" + "---:|" * (len(stages) + 2),
    ]
    order = list(dict.fromkeys(s.row for result in results.values() for s in result.summary))
    for row in order:
        cells, n, errored = [], 0, 0
        for stage in stages:
            found = {s.row: s for s in results[stage].summary}.get(row)
            cells.append(found.formatted() if found else "")
            if found:
                n, errored = found.n, errored + found.errored
        lines.append(f"| {row_label(row, config)} | " + " | ".join(cells) + f" | {n} | {errored} |")
    return "\n".join(lines) + "\n"


def style_table(checks: dict[str, dict]) -> str:
    """Style shares of the VPO mode's held-out samples, per captioner (%)."""
    names = list(KINDS)
    lines = ["| captioner | " + " | ".join(names) + " | samples |", "|---|" + "---:|" * (len(names) + 1)]
    for stage, check in checks.items():
        found = check.get("styles")
        if found:
            cells = [f"{100 * found['shares'].get(s, 0):.1f}" for s in names]
            lines.append(f"| {STAGE_TITLES.get(stage, stage)} | " + " | ".join(cells) + f" | {found['samples']} |")
    return "\n".join(lines) + "\n"


def level_table(results: dict[str, EvalResult], config: Any) -> str:
    """Accuracy % of every (stage, row) by question level (mean over seeds): where each route wins or loses."""
    rows = [(stage, s) for stage, result in results.items() for s in result.summary]
    levels = sorted({level for _, s in rows for level in s.by_level})
    lines = [
        "| captioner | row | " + " | ".join(f"level {lv}" for lv in levels) + " |",
        "|---|---|" + "---:|" * len(levels),
    ]
    for stage, s in rows:
        shown = [f"{100 * s.by_level[lv]:.1f}" if lv in s.by_level else "" for lv in levels]
        lines.append(f"| {STAGE_TITLES.get(stage, stage)} | {row_label(s.row, config)} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def style_accuracy_table(results: dict[str, EvalResult], config: Any) -> str:
    """The reasoner's accuracy % from each caption style the captioner sampled in the VPO mode, per stage and
    question level, with the number of samples: which styles pay, and whether the bare answer out-earns the
    descriptions (the shortcut the caption penalty exists to stop). Styles are read from each recorded caption."""
    found: dict[tuple[str, int, str], list[bool]] = {}
    for stage, result in results.items():
        for r in result.records:
            if r["row"] == config.vpo_mode and r["correct"] is not None:
                key = (stage, r.get("level"), style_of(r.get("caption")))
                found.setdefault(key, []).append(bool(r["correct"]))
    names = list(KINDS)
    lines = ["| captioner | level | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for stage, level in sorted(
        {(stage, level) for stage, level, _ in found}, key=lambda k: (list(results).index(k[0]), str(k[1]))
    ):
        cells = []
        for name in names:
            marks = found.get((stage, level, name), [])
            cells.append(f"{100 * sum(marks) / len(marks):.0f} (n={len(marks)})" if marks else "")
        lines.append(f"| {STAGE_TITLES.get(stage, stage)} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _renamed(summary: Sequence[RowSummary], stage: str) -> list[RowSummary]:
    return [dataclasses.replace(s, row=f"{stage}:{s.row}") for s in summary]


def write_curves(out: Path, vpo: dict[str, dict]) -> Path:
    """Per VPO run: reward per step, held-out style shares per measured step (usable and bare-answer), and the
    trainer's valid-caption ratio (the policy judge on correct training samples, where the penalty is on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rapid_agent.rl.metrics import read_rows

    path = out / CURVES_PNG
    if not vpo:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no VPO steps were run", ha="center", va="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    for stage, info in vpo.items():
        title = STAGE_TITLES.get(stage, stage)
        rows = read_rows(info["metrics_csv"]) if info.get("metrics_csv") else []
        steps = [int(r["step"]) for r in rows if r.get("reward")]
        top.plot(steps, [float(r["reward"]) for r in rows if r.get("reward")], marker=".", label=title)
        valid = [
            (int(r["step"]), float(r["vpo/valid_caption_ratio"])) for r in rows if r.get("vpo/valid_caption_ratio")
        ]
        if valid:
            bottom.plot(*zip(*valid), marker=".", label=f"{title}: policy judge, correct training samples")
        curve = info.get("style_curve") or []
        if curve:
            xs = [c["step"] for c in curve]
            middle.plot(xs, [c["counts"] for c in curve], marker="o", label=f"{title}: usable (counts)")
            middle.plot(xs, [c["answer"] for c in curve], marker="x", linestyle="--", label=f"{title}: bare answer")
            bottom.plot(xs, [c["descriptive"] for c in curve], marker="o", label=f"{title}: held-out, ground truth")
    top.set_ylabel("mean reward")
    middle.set_ylabel("share of held-out samples")
    bottom.set_ylabel("valid-caption ratio")
    bottom.set_xlabel("VPO step")
    for ax in (top, middle, bottom):
        if ax.lines:
            ax.legend(loc="best", fontsize="small")
    middle.set_ylim(-0.05, 1.05)
    bottom.set_ylim(-0.05, 1.05)
    fig.tight_layout()
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
            for row in (END_TO_END, mode, solver_row(mode)):
                r = by_key.get((stage, row, item["id"]))
                if r is None:
                    continue
                verdict = "✅ right" if r["correct"] else "❌ wrong"
                if r["errors"]:
                    verdict += " (error: " + "; ".join(r["errors"]) + ")"
                rows.append(
                    "<tr>"
                    f"<td>{_cell(STAGE_TITLES.get(stage, stage))}</td><td>{_cell(row)}</td>"
                    f"<td>{_cell(r.get('caption'))}</td>"
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
        "<p>Seed 0. Captions and solutions come from the captioner; the reasoners see only text.</p>"
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


def _pct(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, (int, float)) else "?"


def _checks_lines(checks: dict[str, dict]) -> list[str]:
    """What the captioner does against the world's truth, per stage."""
    lines = []
    sft = checks.get("sft", {})
    desc = sft.get("descriptions", {})
    if desc:
        levels = ", ".join(f"level {lv} {_pct(v)}" for lv, v in desc.get("query_caption_exact", {}).items())
        lines.append(
            f"- held-out descriptions exactly right: **{_pct(desc.get('exact'))}** (same counts "
            f"{_pct(desc.get('same_counts'))}, n={desc.get('n')}); query-related captions exactly right: {levels}"
        )
    for stage, check in checks.items():
        judge = check.get("judge")
        if judge:
            by_style = ", ".join(f"{s} {_pct(v)}" for s, v in judge["by_style"].items())
            lines.append(
                f"- {STAGE_TITLES.get(stage, stage)} as the caption judge (`judge: policy`): agrees with the ground "
                f"truth on **{_pct(judge['agreement'])}** of {judge['n']} held-out texts ({by_style}; no verdict: "
                f"{_pct(judge['unparsed'])})"
            )
        styles = check.get("styles")
        if styles:
            lines.append(
                f"- {STAGE_TITLES.get(stage, stage)} in the VPO mode: {_pct(styles['shares'].get('counts'))} of "
                f"{styles['samples']} held-out samples usable (counts style), {_pct(styles['shares'].get('answer'))} "
                f"bare answers, {_pct(styles.get('valid'))} valid (describe "
                f"the image); {_pct(styles['exact_in_style'])} word for word right in their style"
            )
    return lines


def _base_lines(info: dict[str, Any]) -> list[str]:
    """Where the captioner's SFT started: the pretrained perception base and its own figures, or random weights."""
    pre = info.get("base_pretraining")
    if not pre:
        return ["- the captioner's SFT started from random weights (`captioner_base: scratch`)"]
    exact = (pre.get("descriptions") or {}).get("exact")
    return [
        f"- its SFT started from the pretrained base `{info.get('base')}` (pretrained once on perception, then on "
        f"the whole mixture: {pre.get('steps')} steps on {pre.get('n_train')} items, "
        + (f"{_pct(exact)} of held-out descriptions exactly right" if exact is not None else "no figure recorded")
        + "; `python -m rapid_agent.demo.base` rebuilds it)"
    ]


def write_readme(
    out: Path, config: Any, summary: dict[str, Any], table: str, found: dict[str, list[Effect]], extra: str
) -> Path:
    cfg, timings, info = summary["config"], summary["timings"], summary["checks"].get("sft", {})
    styles = ", ".join(f"{s} {w:g}" for s, w in cfg["sft_styles"])
    lines = [
        "# RAPID demo report",
        "",
        "A miniature of RAPID on the synthetic world: a tiny Qwen2.5-VL captioner trained here (supervised, then "
        f"VPO) describes images; the frozen text-only reasoner `{summary['reasoner']}` answers from its text. "
        "This report states what was measured; it does not assert the paper's claims.",
        "",
        "## Setup",
        "",
        f"- world: {cfg['n_train']} training and {cfg['n_test']} held-out test items, levels {cfg['levels']}, "
        f"{cfg['image_size']}px images on a {cfg['grid']}x{cfg['grid']} grid, up to {cfg['max_objects']} objects",
        f"- captioner: {summary['captioner']}, {info.get('parameters', 0):,} parameters, seed {cfg['sft_seed']}, "
        f"{info.get('sft_steps', '?')} SFT steps "
        f"({'trained in this run' if summary['captioner_built'] else 'loaded from the cache'}); taught the "
        f"description, the query-related counts, its own tentative solution, the caption judge's yes/no, and in the "
        f"VPO mode `{cfg['vpo_mode']}` several styles ({styles}; answers only at level(s) "
        f"{cfg['sft_solution_levels']})",
        *_base_lines(info),
        f"- reasoner: temperature {cfg['reasoner_temperature']}, at most {cfg['reasoner_max_new_tokens']} new "
        f"tokens, {cfg['seeds']} seed(s) per row; the VPO mode's rows sample the captioner at temperature "
        f"{cfg['vpo_temperature']} with the same seed",
        f"- VPO: {cfg['vpo_steps']} steps, {cfg['vpo_prompts_per_step']} questions x {cfg['vpo_generations']} "
        f"samples per step, learning rate {cfg['vpo_lr']}, KL coefficient {cfg['vpo_beta']}, caption penalty {cfg['vpo_caption_penalty']} judged by "
        "the policy" + (", and the same run without the penalty" if cfg["vpo_compare_penalty"] else ""),
        "- wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings["wall_s"].items()),
        "- CPU time of this process (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings["cpu_s"].items()),
        "",
        "## The captioner against the world's truth",
        "",
        *_checks_lines(summary["checks"]),
        "",
        "## Accuracy on the held-out test split",
        "",
        table,
        extra,
        "## Effects against noise",
        "",
        "Each effect is a paired difference over the same test items (correctness, or a share of samples, averaged "
        "over seeds); 'beyond noise' means larger than twice its standard error.",
        "",
    ]
    for key, title in CLAIMS.items():
        if found.get(key):
            lines += [f"**{title}:**", ""]
            lines += [f"- {e.a} vs {e.b}: {e.text()}" for e in found[key]]
            lines.append("")
    lines += [
        "## Files",
        "",
        f"- `{TABLE_MD}`, `{TABLE_CSV}`: the table (CSV rows are `<stage>:<row>`, accuracies as fractions)",
        f"- `{CURVES_PNG}`: per VPO run, reward, held-out style shares and valid-caption ratio per step",
        f"- `{EXAMPLES_HTML}`: example items with image, caption, solution, reasoner output and verdict",
        f"- `{TRACE_JSONL}`: OpenTelemetry spans of one graph run",
        f"- `{RECORDS_JSONL}`: every sample of every row and seed; `{SUMMARY_JSON}`: settings and figures",
        "",
    ]
    path = out / README
    path.write_text("\n".join(lines))
    return path


def write_report(
    out: Path, config: Any, results: dict[str, EvalResult], summary: dict[str, Any], items: Sequence[dict]
) -> dict[str, Any]:
    """Every report file; returns what the summary adds: the table and the effects."""
    table = combined_table(results, config)
    (out / TABLE_MD).write_text(table)
    write_csv([s for stage, r in results.items() for s in _renamed(r.summary, stage)], out / TABLE_CSV)
    write_curves(out, {k: v for k, v in summary.get("vpo", {}).items()})
    write_examples(out, items, results, config.vpo_mode, config.n_examples)
    write_records(out, results)
    found = effects(results, summary["checks"], config)
    extra = (
        "## Styles of the VPO mode's held-out samples (%)\n\n"
        "A valid caption describes the image: in one of the styles but the bare answer, or mixed (a description in no "
        "single style's form: styles run together, a list cut off); other holds no description.\n\n"
        + style_table(summary["checks"])
        + "\n## By question level\n\n"
        + level_table(results, config)
        + f"\n## The reasoner's accuracy % from each caption style (`{config.vpo_mode}` samples, all seeds)\n\n"
        + style_accuracy_table(results, config)
    )
    added = {
        "table": {stage: [dataclasses.asdict(s) for s in r.summary] for stage, r in results.items()},
        "effects": {
            k: [dataclasses.asdict(e) | {"beyond_noise": e.beyond_noise} for e in v] for k, v in found.items()
        },
    }
    write_readme(out, config, summary | added, table, found, extra)
    path = out / SUMMARY_JSON
    path.write_text(json.dumps(summary | added, indent=2, default=str) + "\n")
    return added
