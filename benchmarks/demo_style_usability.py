"""How often the demo's reasoner answers right from each description style, given the world's gold texts.

The demo's VPO can only raise accuracy if the captioner's styles differ in how usable they are to the reasoner:
this measures that, with no captioner at all. For held-out world items it writes each style's caption and tentative
solution (`rapid_agent.world.style_text`) as the VPO mode's output, hands it to the reasoner through the graph with
the demo's prompts and generation settings, and prints the accuracy per style and level (mean over seeds), beside
the world's exact solver on the same texts (what a perfect reasoner reaches from them). `--levels 3 --by-kind`
measures question kinds the demo does not ask yet, kind by kind: where a bare answer out-earns every description,
the shortcut VPO's caption penalty exists to stop pays (the exact solver knows levels 1 and 2 only).

    python benchmarks/demo_style_usability.py --items 48 --seeds 2
    python benchmarks/demo_style_usability.py --levels 3 --items 192 --seeds 1 --styles counts inventory answer --by-kind
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from rapid_agent import solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.config import RapidContext
from rapid_agent.demo.config import DemoConfig
from rapid_agent.demo.mixture import STYLED_MODE, tagged
from rapid_agent.demo.run import DEFAULT_REASONER
from rapid_agent.demo.solver import WorldSolver
from rapid_agent.world import STYLES, style_text


def accuracy(items: list[dict], style: str, context: RapidContext, key: str = "level") -> dict[Any, list[bool]]:
    """Each item's correctness from `style`'s texts, grouped by the item's `key` (its level or its kind)."""
    samples = [
        {
            "id": item["id"],
            "question": item["question"],
            "answer": item["answer"],
            "captioner_output": tagged(*style_text(item, style)),
        }
        for item in items
    ]
    groups: dict[Any, list[bool]] = {}
    for item, out in zip(items, solve_batch(samples, context=context), strict=True):
        groups.setdefault(item[key], []).append(bool(out.get("correct")) and not out.get("errors"))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=48, help="held-out items")
    parser.add_argument("--seeds", type=int, default=2, help="reasoner seeds")
    parser.add_argument("--reasoner", default=DEFAULT_REASONER)
    parser.add_argument("--styles", nargs="*", default=list(STYLES))
    parser.add_argument("--levels", type=int, nargs="+", default=None, help="question levels (default: the demo's)")
    parser.add_argument("--by-kind", action="store_true", help="columns per question kind instead of per level")
    args = parser.parse_args()

    config = DemoConfig(n_test=args.items)
    if args.levels:
        config = dataclasses.replace(config, levels=tuple(args.levels), sft_solution_levels=None)
    key = "kind" if args.by_kind else "level"
    items = list(config.build_world(n_train=64)["test"])
    reasoner = load_engine(args.reasoner, "reasoner", max_batch_size=config.reasoner_batch_size)
    gen = GenerationConfig(
        temperature=config.reasoner_temperature,
        top_p=0.95 if config.reasoner_temperature > 0 else 1.0,
        max_new_tokens=config.reasoner_max_new_tokens,
    )
    base = RapidContext(captioner=None, reasoner=reasoner, prompts=config.prompts, mode=STYLED_MODE, reasoner_gen=gen)
    print(f"{len(items)} held-out items, {args.seeds} seed(s), reasoner {args.reasoner}, mode {STYLED_MODE}")
    groups = sorted({item[key] for item in items}, key=str)
    names = [f"level {g}" if key == "level" else f"{g} (n={sum(i[key] == g for i in items)})" for g in groups]
    width = max(8, *(len(n) for n in names))
    heads = " ".join(f"{n:>{width}}" for n in names)
    print(f"{'style':<10} {'reasoner %':>10} {heads} {'solver %':>9} {'seconds':>8}")
    for style in args.styles:
        start = time.perf_counter()
        runs = [
            accuracy(items, style, base.replace(reasoner_gen=dataclasses.replace(gen, seed=s)), key)
            for s in range(args.seeds)
        ]
        per_group = {g: 100 * sum(sum(r[g]) for r in runs) / sum(len(r[g]) for r in runs) for g in runs[0]}
        overall = 100 * sum(sum(v) for r in runs for v in r.values()) / sum(len(v) for r in runs for v in r.values())
        solved = accuracy(items, style, base.replace(reasoner=WorldSolver()), key)
        solver = 100 * sum(sum(v) for v in solved.values()) / len(items)
        cells = " ".join(f"{per_group.get(g, float('nan')):>{width}.1f}" for g in groups)
        print(f"{style:<10} {overall:>10.1f} {cells} {solver:>9.1f} {time.perf_counter() - start:>8.0f}")


if __name__ == "__main__":
    main()
