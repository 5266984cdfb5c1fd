"""The demo's report folder: the accuracy table (Markdown, CSV: `rapid_agent.eval.tables`, the benchmarks' writer),
style shares, VPO curves (PNG), example items (HTML with embedded images), the trace of one graph run (JSON lines),
the runner's per-sample records, and a README that sets each effect against the noise (`effects`).

Every number of the table is counted from the records in the folder by `rapid_agent.eval.summary`: a row per
captioner (stage, decoding), reasoner and mode, each cell the mean over reasoner seeds with its 95% interval.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rapid_agent.backends.images import image_to_data_url
from rapid_agent.demo.effects import CLAIMS, Effect, effects
from rapid_agent.demo.rows import BENCHMARK, sampled
from rapid_agent.eval.runner import NO_REASONER
from rapid_agent.eval.store import PERCEPTIONS, RESULTS, read_results
from rapid_agent.eval.summary import Summary, summarize
from rapid_agent.eval.tables import metric_names, metrics_markdown, to_markdown, write_csv
from rapid_agent.perception import DIRECT
from rapid_agent.world import KINDS, style_of

TABLE_MD = "accuracy.md"
TABLE_CSV = "accuracy.csv"
CURVES_PNG = "vpo_curves.png"
EXAMPLES_HTML = "examples.html"
TRACE_JSONL = "trace.jsonl"
RESULTS_JSONL = f"{RESULTS}.jsonl"
PERCEPTIONS_JSONL = f"{PERCEPTIONS}.jsonl"
README = "README.md"
SUMMARY_JSON = "summary.json"
REPORT_FILES = (
    TABLE_MD,
    TABLE_CSV,
    CURVES_PNG,
    EXAMPLES_HTML,
    TRACE_JSONL,
    RESULTS_JSONL,
    PERCEPTIONS_JSONL,
    README,
    SUMMARY_JSON,
)
#: how each captioner stage is headed
STAGE_TITLES = {"sft": "SFT captioner", "vpo": "after VPO", "vpo-no-penalty": "after VPO without the penalty"}


def legend(config: Any) -> str:
    """What the table's labels mean."""
    return (
        f"Captioner: the stage's captioner decoding greedily, as deployed; `T={config.vpo_temperature:g}`: sampling "
        "as VPO trains it, seeded like the reasoner. Reasoner `-`: none, mode `direct`: the captioner answers alone "
        "and its output is scored. `world-solver`: the world's exact solver on the same captions; `(majority of k)`: "
        "the reasoner's vote over k samples on them (seed 0). Scores in %, ± the spread over reasoner seeds.\n"
    )


def accuracy_table(table: Summary, config: Any) -> str:
    """The one table writer's Markdown, with the world's accuracy per question level under it."""
    levels = [m for m in metric_names(table, BENCHMARK) if m.startswith("level_")]
    text = to_markdown(table, counts=False, avg=False) + "\n" + legend(config)
    if levels:
        text += "\nAccuracy % per question level (mean over seeds)\n\n" + metrics_markdown(table, BENCHMARK, levels)
    return text


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


def style_accuracy_table(records: Sequence[dict], config: Any, reasoner: str) -> str:
    """The reasoner's accuracy % from each caption style the captioner sampled in the VPO mode, per stage and
    question level, with the number of samples: which styles pay, and whether the bare answer out-earns the
    descriptions (the shortcut the caption penalty exists to stop). Styles are read from each recorded caption."""
    stages = {sampled(stage, config): stage for stage in STAGE_TITLES}
    found: dict[tuple[str, Any, str], list[bool]] = {}
    for r in records:
        stage = stages.get(r.get("captioner"))
        if stage and r["mode"] == config.vpo_mode and r["reasoner"] == reasoner and r.get("status") == "scored":
            key = (stage, (r.get("fields") or {}).get("level"), style_of(r.get("caption")))
            found.setdefault(key, []).append(bool(r["correct"]))
    names = list(KINDS)
    lines = ["| captioner | level | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    order = list(STAGE_TITLES)
    for stage, level in sorted(
        {(stage, level) for stage, level, _ in found}, key=lambda k: (order.index(k[0]), str(k[1]))
    ):
        cells = []
        for name in names:
            marks = found.get((stage, level, name), [])
            cells.append(f"{100 * sum(marks) / len(marks):.0f} (n={len(marks)})" if marks else "")
        lines.append(f"| {STAGE_TITLES.get(stage, stage)} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def write_examples(
    out: Path, items: Sequence[dict], records: Sequence[dict], config: Any, reasoner: str, n: int
) -> Path:
    """An HTML page with `n` test items: image, question, gold, then per stage the captioner alone, the VPO mode as
    deployed and as sampled, and the exact solver on the sampled captions (seed 0)."""
    by_key = {
        (r["captioner"], r["reasoner"], r["mode"], r["sample_id"]): r for r in records if r.get("seed") in (0, None)
    }
    mode = config.vpo_mode
    blocks = []
    for item in items[:n]:
        rows = []
        for stage in STAGE_TITLES:
            shown = [
                (stage, NO_REASONER, DIRECT),
                (stage, reasoner, mode),
                (sampled(stage, config), reasoner, mode),
                (sampled(stage, config), "world-solver", mode),
            ]
            for captioner, row_reasoner, row_mode in shown:
                r = by_key.get((captioner, row_reasoner, row_mode, item["id"]))
                if r is None:
                    continue
                verdict = "✅ right" if r.get("correct") else "❌ wrong"
                if r.get("errors"):
                    verdict += " (error: " + "; ".join(r["errors"]) + ")"
                row = row_mode if row_reasoner in (reasoner, NO_REASONER) else f"{row_mode}, {row_reasoner}"
                rows.append(
                    "<tr>"
                    f"<td>{_cell(captioner)}</td><td>{_cell(row)}</td>"
                    f"<td>{_cell(r.get('caption'))}</td>"
                    f"<td>{_cell(r.get('captioner_output') if row_mode == DIRECT else r.get('solution'))}</td>"
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
    """The report's README: setup, the captioner against the truth, the table, the effects against noise."""
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
        _split_line(cfg),
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
        f"## Accuracy on the held-out test split (world seed {cfg['test_seed']})",
        "",
        table,
        extra,
        "## Effects against noise",
        "",
        "Each effect is a paired difference over the same test items (each item's correctness, or its share of "
        "samples, averaged over seeds) with its 95% interval: Agresti-Min for one seed's right/wrong items, a paired "
        "bootstrap over items otherwise (`rapid_agent.eval.stats`). 'Beyond noise' means the interval excludes 0; an "
        "interval of no width (one item, or every difference the same) cannot judge the difference.",
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
        f"- `{TABLE_MD}`, `{TABLE_CSV}`: the table (`rapid_agent.eval.tables`: the CSV has each score, its interval, "
        "counts, the spread over seeds and the accuracy per level, as fractions)",
        f"- `{CURVES_PNG}`: per VPO run, reward, style shares (on the world's own test split) and valid-caption "
        "ratio per step",
        f"- `{EXAMPLES_HTML}`: example items with image, caption, solution, reasoner output and verdict",
        f"- `{TRACE_JSONL}`: OpenTelemetry spans of one graph run",
        f"- `{RESULTS_JSONL}`: every sample of every row and seed (the runner's records: "
        "`python -m rapid_agent.eval --compare` reads this folder); "
        f"`{PERCEPTIONS_JSONL}`: the captioner outputs they were answered from; `{SUMMARY_JSON}`: settings and figures",
        "",
    ]
    path = out / README
    path.write_text("\n".join(lines))
    return path


def _split_line(cfg: dict[str, Any]) -> str:
    if cfg["test_seed"] == cfg["world_seed"]:
        return (
            f"- test split: the world's own (seed {cfg['world_seed']}), the split every demo setting was tuned on: "
            "its figures flatter the settings"
        )
    return (
        f"- test split: {cfg['n_test']} items of world seed {cfg['test_seed']}, which no setting was tuned on and "
        "none of whose scenes and questions the captioner or its pretrained base trained on (the VPO curves use the "
        f"world's own test split, seed {cfg['world_seed']})"
    )


def write_report(out: Path, config: Any, summary: dict[str, Any], items: Sequence[dict]) -> dict[str, Any]:
    """Every report file from the records in `out`; returns what the summary adds: the table and the effects."""
    records = read_results(out)
    table = summarize(records)
    reasoner = summary["reasoner"]
    (out / TABLE_MD).write_text(accuracy_table(table, config))
    write_csv(table, out / TABLE_CSV)
    write_curves(out, dict(summary.get("vpo", {})))
    write_examples(out, items, records, config, reasoner, config.n_examples)
    found = effects(table, summary["checks"], config, reasoner)
    extra = (
        "## Styles of the VPO mode's held-out samples (%)\n\n"
        "A valid caption describes the image: in one of the styles but the bare answer, or mixed (a description in no "
        "single style's form: styles run together, a list cut off); other holds no description.\n\n"
        + style_table(summary["checks"])
        + f"\n## The reasoner's accuracy % from each caption style (`{config.vpo_mode}` samples, all seeds)\n\n"
        + style_accuracy_table(records, config, reasoner)
    )
    added = {"table": table.to_dict(), "effects": {k: [e.to_dict() for e in v] for k, v in found.items()}}
    write_readme(out, config, summary | added, accuracy_table(table, config), found, extra)
    path = out / SUMMARY_JSON
    path.write_text(json.dumps(summary | added, indent=2, default=str) + "\n")
    return added
