"""How often the demo's reasoner answers right from each description style, given the world's gold texts.

The demo's VPO can only raise accuracy if the captioner's styles differ in how usable they are to the reasoner:
this measures that, with no captioner at all. For held-out world items it writes each style's caption and tentative
solution (`rapid_agent.world.style_text`) as the VPO mode's output, hands it to the reasoner through the graph with
the demo's prompts and generation settings, and prints the accuracy per style and level (mean over seeds), beside
the world's exact solver on the same texts (what a perfect reasoner reaches from them).

    python benchmarks/demo_style_usability.py --items 48 --seeds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from rapid_agent import solve_batch
from rapid_agent.backends import GenerationConfig, load_engine
from rapid_agent.config import RapidContext
from rapid_agent.demo.config import DemoConfig
from rapid_agent.demo.mixture import STYLED_MODE, tagged
from rapid_agent.demo.run import DEFAULT_REASONER
from rapid_agent.demo.solver import WorldSolver
from rapid_agent.world import STYLES, style_text


def accuracy(items: list[dict], style: str, context: RapidContext) -> dict[int, list[bool]]:
    samples = [
        {
            "id": item["id"],
            "question": item["question"],
            "answer": item["answer"],
            "captioner_output": tagged(*style_text(item, style)),
        }
        for item in items
    ]
    by_level: dict[int, list[bool]] = {}
    for item, out in zip(items, solve_batch(samples, context=context), strict=True):
        by_level.setdefault(item["level"], []).append(bool(out.get("correct")) and not out.get("errors"))
    return by_level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=48, help="held-out items")
    parser.add_argument("--seeds", type=int, default=2, help="reasoner seeds")
    parser.add_argument("--reasoner", default=DEFAULT_REASONER)
    parser.add_argument("--styles", nargs="*", default=list(STYLES))
    args = parser.parse_args()

    config = DemoConfig(n_test=args.items)
    items = list(config.build_world(n_train=64)["test"])
    reasoner = load_engine(args.reasoner, "reasoner", max_batch_size=config.reasoner_batch_size)
    gen = GenerationConfig(
        temperature=config.reasoner_temperature,
        top_p=0.95 if config.reasoner_temperature > 0 else 1.0,
        max_new_tokens=config.reasoner_max_new_tokens,
    )
    base = RapidContext(captioner=None, reasoner=reasoner, prompts=config.prompts, mode=STYLED_MODE, reasoner_gen=gen)
    print(f"{len(items)} held-out items, {args.seeds} seed(s), reasoner {args.reasoner}, mode {STYLED_MODE}")
    print(f"{'style':<10} {'reasoner %':>10} {'level 1':>8} {'level 2':>8} {'solver %':>9} {'seconds':>8}")
    for style in args.styles:
        start = time.perf_counter()
        runs = [
            accuracy(items, style, base.replace(reasoner_gen=dataclasses.replace(gen, seed=s)))
            for s in range(args.seeds)
        ]
        levels = sorted(runs[0])
        per_level = {lv: 100 * sum(sum(r[lv]) for r in runs) / sum(len(r[lv]) for r in runs) for lv in levels}
        overall = 100 * sum(sum(v) for r in runs for v in r.values()) / sum(len(v) for r in runs for v in r.values())
        solved = accuracy(items, style, base.replace(reasoner=WorldSolver()))
        solver = 100 * sum(sum(v) for v in solved.values()) / len(items)
        cells = " ".join(f"{per_level.get(lv, float('nan')):>8.1f}" for lv in (1, 2))
        print(f"{style:<10} {overall:>10.1f} {cells} {solver:>9.1f} {time.perf_counter() - start:>8.0f}")


if __name__ == "__main__":
    main()
