"""Dynamic sampling against the paper's VPO on the demo world, paired, at the same number of reasoner calls.

The demo's SFT captioner (`--captioner-seed`, cached by `rapid_agent.demo.captioner`; the same for every seed, so
that the seeds vary VPO alone and no seed pays a 200-step SFT), then for each VPO seed the demo's VPO
(`rapid_agent.demo.vpo.run_vpo`: the demo's settings and caption penalty, `seed` the VPO seed) twice from it:

    dynamic         `dynamic_sampling: true` for `--steps` optimizer steps; it spends what its rounds cost
    default         the option off, given as many steps as it takes to spend the same reasoner calls (the dynamic
                    run's total over prompts x samples per step, rounded to whole steps: both totals are printed)
    default-steps   the option off for `--steps` steps, as many as the dynamic run (fewer reasoner calls): what
                    the extra calls of dynamic sampling buy at a given number of updates

Every trained captioner, and the SFT captioner once, is then measured on the same held-out items
(`DemoConfig.test_items`, the demo's table split): `--samples` outputs per item in the VPO mode as the policy
samples them (temperature 1; sample j seeds captioner and reasoner with j in every arm), each answered by the
reasoner through the graph. Accuracy is the share answered right, "usable" the share of captions in the one style
SmolLM2 can use (counts, `measure.USABLE`). Differences are dynamic - the other arm, paired over items (mean of
per-item differences, its standard error); the pooled rows pair every (seed, item).

Every sample and every training run is one record in `<out>/records.jsonl` (append-only; a run already there is
not run again); the table is computed from the records alone, also by `--table RECORDS`.

    python benchmarks/dynamic_sampling.py --seeds 0 1 2 --steps 5 --items 48 --samples 2
    python benchmarks/dynamic_sampling.py --table benchmarks/results/dynamic_sampling.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ARMS = ("dynamic", "default", "default-steps")
#: the arms the dynamic run is compared with, and what they hold equal
BASELINES = {"default": "same reasoner calls", "default-steps": "same steps"}


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def reasoner_calls(metrics_csv: Path) -> tuple[float, list[dict[str, str]]]:
    from rapid_agent.rl.metrics import read_rows

    rows = [r for r in read_rows(metrics_csv) if r.get("vpo/reasoner_calls")]
    return sum(float(r["vpo/reasoner_calls"]) for r in rows), rows


def train(
    arm: str, config: Any, *, seed_dir: Path, world: Any, reasoner: Any, spec: str, captioner: Path, **kw: Any
) -> dict:
    """One VPO run of the demo; its record (steps, reasoner calls, wall time, the step metrics' means)."""
    from rapid_agent.demo.vpo import run_vpo

    items = world["train"].select(range(min(len(world["train"]), config.vpo_train_items)))
    info = run_vpo(
        config,
        captioner=captioner,
        reasoner=reasoner,
        reasoner_spec=spec,
        train_items=items,
        probe_items=[],
        output_dir=seed_dir / arm,
        penalty=config.vpo_caption_penalty,
        progress=False,
        **kw,
    )
    calls, rows = reasoner_calls(info["metrics_csv"])

    def mean(column: str) -> float:
        values = [float(r[column]) for r in rows if r.get(column)]
        return statistics.fmean(values) if values else math.nan

    return {
        "record": "run",
        "arm": arm,
        "steps": info["steps"],
        "reasoner_calls": calls,
        "wall_s": info["seconds"],
        "zero_variance_groups": mean("vpo/zero_variance_groups"),
        "generation_rounds": mean("vpo/generation_rounds"),
        "zero_variance_trained": mean("vpo/zero_variance_trained"),
        "reward": mean("reward"),
        "captioner": str(info["captioner"]),
    }


def evaluate(arm: str, captioner: Path, items: list[dict], config: Any, reasoner: Any, samples: int) -> list[dict]:
    """`samples` sampled VPO-mode outputs per item, answered by the reasoner through the graph: one record each."""
    from rapid_agent import solve_batch
    from rapid_agent.backends import GenerationConfig, load_engine
    from rapid_agent.config import RapidContext
    from rapid_agent.demo.measure import USABLE
    from rapid_agent.world import style_of

    engine = load_engine(f"hf:{captioner}", "captioner", max_batch_size=64)
    inputs = [{k: item[k] for k in ("id", "question", "image", "answer", "choices")} for item in items]
    out = []
    for j in range(samples):
        t = config.reasoner_temperature
        context = RapidContext(
            captioner=engine,
            reasoner=reasoner,
            mode=config.vpo_mode,
            prompts=config.prompts,
            captioner_gen=GenerationConfig(
                temperature=config.vpo_temperature, top_p=1.0, max_new_tokens=config.captioner_max_new_tokens, seed=j
            ),
            reasoner_gen=GenerationConfig(
                temperature=t, top_p=0.95 if t > 0 else 1.0, max_new_tokens=config.reasoner_max_new_tokens, seed=j
            ),
        )
        for item, state in zip(items, solve_batch(inputs, context=context), strict=True):
            style = style_of(state.get("caption"))
            correct = bool(state.get("correct")) and not state.get("errors")
            sample = {"record": "sample", "arm": arm, "item": item["id"], "sample": j, "correct": correct}
            out.append({**sample, "style": style, "usable": style == USABLE})
    return out


def setup(args: argparse.Namespace, records: Path) -> dict[str, Any]:
    """The world, the SFT captioner (built once into the cache), the reasoner and the held-out items; the SFT
    captioner's own samples are appended to `records` unless they are there."""
    from rapid_agent.backends import load_engine
    from rapid_agent.demo.captioner import ensure_captioner
    from rapid_agent.demo.config import DemoConfig
    from rapid_agent.demo.run import DEFAULT_REASONER

    config = DemoConfig(sft_seed=args.captioner_seed, n_test=args.items, vpo_steps=args.steps, curve_every=0)
    world = config.build_world()
    captioner, _, _ = ensure_captioner(
        config, list(world["train"]), list(world["test"]), cache_root=args.cache_dir, progress=False
    )
    spec = args.reasoner or DEFAULT_REASONER
    reasoner = load_engine(spec, "reasoner")
    reasoner.max_batch_size = config.reasoner_batch_size
    found = {"config": config, "world": world, "captioner": captioner, "reasoner": reasoner, "spec": spec}
    found["items"] = config.test_items()
    if not any(r["record"] == "sample" and r["arm"] == "sft" for r in read_records(records)):
        samples = evaluate("sft", captioner, found["items"], config, reasoner, args.samples)
        append(records, [{**s, "seed": None} for s in samples])
    return found


def run_seed(seed: int, setup: dict[str, Any], args: argparse.Namespace, records: Path) -> None:
    """The VPO runs of one seed that `records` lacks, from the SFT captioner, each appended with its held-out samples
    as soon as it is measured."""
    config, world, captioner = setup["config"], setup["world"], setup["captioner"]
    have = {r["arm"]: r for r in read_records(records) if r["record"] == "run" and r["seed"] == seed}
    common = {"seed_dir": args.out / f"seed{seed}", "world": world, "captioner": captioner}
    common |= {"reasoner": setup["reasoner"], "spec": setup["spec"]}
    per_step = config.vpo_prompts_per_step * config.vpo_generations  # reasoner calls of one round
    for arm in ARMS:
        if arm in have:
            continue
        options: dict[str, Any] = {"seed": seed}
        if arm == "dynamic":
            options |= {"dynamic_sampling": True, "dynamic_sampling_max_rounds": args.max_rounds}
        steps = args.steps if arm == "dynamic" else have["dynamic"]["steps"]
        if arm == "default":
            steps = max(1, round(have["dynamic"]["reasoner_calls"] / per_step))
        run = train(arm, dataclasses.replace(config, vpo_steps=steps), rl_options=options, **common)
        start = time.perf_counter()
        samples = evaluate(arm, Path(run["captioner"]), setup["items"], config, setup["reasoner"], args.samples)
        have[arm] = {**run, "seed": seed, "eval_s": time.perf_counter() - start}
        append(records, [have[arm]] + [{**sample, "seed": seed} for sample in samples])


def _paired(differences: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(differences)
    se = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else math.nan
    return mean, se


def table(records: list[dict[str, Any]]) -> str:
    """The Markdown table of `records`: each seed's runs and the dynamic run's paired differences from the others,
    then all seeds pooled."""
    runs = {(r["seed"], r["arm"]): r for r in records if r["record"] == "run"}
    per_item: dict[tuple[Any, str, str], dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["record"] == "sample":
            per_item[(r["seed"], r["arm"], r["item"])]["correct"].append(r["correct"])
            per_item[(r["seed"], r["arm"], r["item"])]["usable"].append(r["usable"])
    seeds = sorted({seed for seed, _ in runs})

    def share(seed: Any, arm: str, key: str) -> dict[str, float]:
        return {i: statistics.fmean(v[key]) for (s, a, i), v in per_item.items() if s == seed and a == arm}

    def diffs(seed: Any, arm: str, key: str) -> list[float]:
        dyn, other = share(seed, "dynamic", key), share(seed, arm, key)
        return [dyn[i] - other[i] for i in sorted(dyn) if i in other]

    def cell(values: list[float]) -> str:
        mean, se = _paired(values)
        return f"{100 * mean:+.1f} ({100 * se:.1f})"

    lines = [
        "| seed | run | steps | reasoner calls | rounds a step | zero-variance groups | trained on zero-variance | "
        "accuracy | usable | VPO wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sft = share(None, "sft", "correct"), share(None, "sft", "usable")
    if sft[0]:
        acc, usable = (statistics.fmean(v.values()) for v in sft)
        lines.append(f"| - | SFT captioner (before VPO) | 0 | 0 | | | | {acc:.1%} | {usable:.1%} | |")
    pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
    for seed in seeds:
        for arm in (a for a in ARMS if (seed, a) in runs):
            run = runs[(seed, arm)]
            acc = statistics.fmean(share(seed, arm, "correct").values())
            usable = statistics.fmean(share(seed, arm, "usable").values())
            lines.append(
                f"| {seed} | {arm} | {run['steps']} | {run['reasoner_calls']:.0f} | {run['generation_rounds']:.2f} | "
                f"{run['zero_variance_groups']:.1%} | {run['zero_variance_trained']:.1%} | {acc:.1%} | {usable:.1%} | "
                f"{run['wall_s']:.0f} |"
            )
        for arm, held in BASELINES.items():
            if (seed, arm) not in runs or (seed, "dynamic") not in runs:
                continue
            cells = []
            for key in ("correct", "usable"):
                values = diffs(seed, arm, key)
                pooled[(arm, key)] += values
                cells.append(cell(values))
            wall = runs[(seed, "dynamic")]["wall_s"] - runs[(seed, arm)]["wall_s"]
            lines.append(
                f"| {seed} | dynamic - {arm} ({held}, n={len(values)}) | | | | | | {cells[0]} | {cells[1]} | "
                f"{wall:+.0f} |"
            )
    if len(seeds) > 1:
        for arm, held in BASELINES.items():
            if pooled[(arm, "correct")]:
                walls = [runs[(s, "dynamic")]["wall_s"] - runs[(s, arm)]["wall_s"] for s in seeds if (s, arm) in runs]
                lines.append(
                    f"| all | dynamic - {arm} ({held}, n={len(pooled[(arm, 'correct')])}) | | | | | | "
                    f"{cell(pooled[(arm, 'correct')])} | {cell(pooled[(arm, 'usable')])} | "
                    f"{statistics.fmean(walls):+.0f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="VPO seeds")
    parser.add_argument(
        "--captioner-seed", type=int, default=0, help="seed of the SFT captioner every seed starts from"
    )
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps of the dynamic-sampling run")
    parser.add_argument("--max-rounds", type=int, default=3, help="dynamic_sampling_max_rounds")
    parser.add_argument("--items", type=int, default=48, help="held-out items (the demo's table split)")
    parser.add_argument("--samples", type=int, default=2, help="sampled outputs per item and run")
    parser.add_argument("--reasoner", default=None, help="reasoner spec (default: the demo's SmolLM2)")
    parser.add_argument("--cache-dir", default=None, help="the demo's captioner cache (default: the demo's)")
    parser.add_argument("--out", type=Path, default=Path("reports/dynamic_sampling"), help="runs and records.jsonl")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of this records file")
    args = parser.parse_args()
    if args.table:
        print(table(read_records(args.table)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rapid_agent.demo.run import quiet_libraries

    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    start = time.perf_counter()
    with quiet_libraries():
        found = setup(args, records)
        print(f"SFT captioner ready and measured at {time.perf_counter() - start:.0f} s", flush=True)
        for seed in args.seeds:
            run_seed(seed, found, args, records)
            print(f"seed {seed} done at {time.perf_counter() - start:.0f} s", flush=True)
    print(table(read_records(records)))
    print(f"records: {records}; this invocation: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
