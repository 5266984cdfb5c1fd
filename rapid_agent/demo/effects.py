"""The demo's claims as paired differences between rows of the one summary, with `rapid_agent.eval`'s intervals.

An effect is row `a` minus row `b` over the test items both scored: each item's correctness (its mean over seeds
when a row has several) or, for the captioner's styles, its share of samples in a style. The interval is
`rapid_agent.eval.compare`'s: Agresti & Min's for one seed's right / wrong items, a paired bootstrap over items
otherwise. "Beyond noise" means the interval excludes 0; an interval of no width (one item, or every difference the
same) cannot judge, and is never called beyond noise. Beside it, the spread of the per-seed differences.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapid_agent.demo.config import DemoConfig
from rapid_agent.demo.rows import BENCHMARK, sampled
from rapid_agent.eval.compare import Difference, paired_cell, paired_items
from rapid_agent.eval.runner import NO_REASONER
from rapid_agent.eval.summary import Row, Summary
from rapid_agent.perception import DIRECT

#: the claims the report states, in order
CLAIMS = {
    "decoupling": "Decoupled pipeline (SFT captioner) minus the captioner alone",
    "deployed": "`qcap+sol` decoded as deployed (greedy captioner) minus `qcap`, before and after VPO: the paper's "
    "claim is that the trained `qcap+sol` pipeline beats `qcap`",
    "vpo": "After VPO minus before: accuracy of the VPO mode as the policy samples it and as deployed, and the share "
    "of usable (counts-style) samples",
    "penalty": "VPO with the caption penalty minus without: share of samples whose caption describes the image, "
    "and accuracy",
    "stronger": "A stronger reasoner on the same captions minus the reasoner on them (no captioner call)",
}


@dataclass
class Effect:
    """`a` minus `b`: the paired difference, and the standard deviation of the per-seed differences (None with
    fewer than two shared seeds)."""

    a: str
    b: str
    difference: Difference
    seed_std: float | None = None
    seeds: int = 1

    @property
    def delta(self) -> float:
        return self.difference.estimate

    @property
    def beyond_noise(self) -> bool:
        return self.difference.beyond_noise

    def verdict(self) -> str:
        if not self.difference.judged:
            return "cannot be judged: its interval has no width"
        return "beyond noise" if self.beyond_noise else "within noise"

    def text(self) -> str:
        d = self.difference
        interval = f" [{100 * d.interval.low:+.1f}, {100 * d.interval.high:+.1f}]" if d.judged else ""
        spread = f", seed-to-seed std {100 * self.seed_std:.1f}" if self.seed_std is not None else ""
        return f"{100 * d.estimate:+.1f} points{interval} over {d.n} items{spread}; {self.verdict()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            **self.difference.to_dict(),
            "seed_std": self.seed_std,
            "seeds": self.seeds,
        }


def find_row(table: Summary, captioner: str, reasoner: str, mode: str) -> Row | None:
    return next((r for r in table.rows if (r.captioner, r.reasoner, r.mode) == (captioner, reasoner, mode)), None)


def row_effect(table: Summary, a: tuple[str, str, str], b: tuple[str, str, str], reasoner: str) -> Effect | None:
    """Row `a` minus row `b` (each captioner, reasoner, mode) on the demo's items; None when either is missing.
    `reasoner`, the demo's own, is left out of the rows' names."""
    row_a, row_b = find_row(table, *a), find_row(table, *b)
    if row_a is None or row_b is None or BENCHMARK not in row_a.cells or BENCHMARK not in row_b.cells:
        return None
    cell_a, cell_b = row_a.cells[BENCHMARK], row_b.cells[BENCHMARK]
    difference = paired_cell(cell_a, cell_b)
    if not difference.n:
        return None
    shared = [s for s in cell_a.seeds if s in cell_b.seeds]
    spread = statistics.stdev(cell_a.seeds[s] - cell_b.seeds[s] for s in shared) if len(shared) > 1 else None
    return Effect(name(a, reasoner), name(b, reasoner), difference, spread, max(len(shared), 1))


def share_effect(a: Mapping[str, float], b: Mapping[str, float], name_a: str, name_b: str) -> Effect | None:
    """Per-item shares of samples (a captioner's styles) compared item by item; None when no item is shared."""
    difference = paired_items(a, b, binary=False)
    return Effect(name_a, name_b, difference) if difference.n else None


def name(key: tuple[str, str, str], reasoner: str) -> str:
    """A row as the effects name it: `captioner:mode`, and its reasoner when that is not `reasoner`."""
    captioner, row_reasoner, mode = key
    other = row_reasoner not in (reasoner, NO_REASONER)
    return f"{captioner}:{mode}" + (f" ({row_reasoner})" if other else "")


def effects(table: Summary, checks: dict[str, dict], config: DemoConfig, reasoner: str) -> dict[str, list[Effect]]:
    """Every effect the report states, by claim (see `CLAIMS`); `reasoner` is the demo reasoner's label."""
    mode = config.vpo_mode
    alone = ("sft", NO_REASONER, DIRECT)

    def effect(a: tuple[str, str, str], b: tuple[str, str, str]) -> Effect | None:
        return row_effect(table, a, b, reasoner)

    stages = [s for s in ("sft", "vpo", "vpo-no-penalty") if find_row(table, s, reasoner, mode)]
    found: dict[str, list[Effect | None]] = {
        "decoupling": [effect(("sft", reasoner, m), alone) for m in config.modes]
        + [effect(("sft", reasoner, mode), alone), effect((sampled("sft", config), reasoner, mode), alone)],
        "deployed": [effect((s, reasoner, mode), ("sft", reasoner, m)) for s in stages for m in config.modes],
        "stronger": [],
    }
    for stage in stages:
        policy = sampled(stage, config)
        others = [
            r.reasoner for r in table.rows if r.captioner == policy and r.mode == mode and r.reasoner != reasoner
        ]
        found["stronger"] += [effect((policy, other, mode), (policy, reasoner, mode)) for other in others]
    styles = {stage: c.get("styles") for stage, c in checks.items() if c.get("styles")}
    if "vpo" in stages:
        found["vpo"] = [
            effect((sampled("vpo", config), reasoner, mode), (sampled("sft", config), reasoner, mode)),
            effect(("vpo", reasoner, mode), ("sft", reasoner, mode)),
        ]
        if "vpo" in styles and "sft" in styles:
            usable = (styles["vpo"]["per_item_usable"], styles["sft"]["per_item_usable"])
            found["vpo"].append(share_effect(*usable, "vpo:usable", "sft:usable"))
    if "vpo" in styles and "vpo-no-penalty" in styles:
        valid = (styles["vpo"]["per_item_descriptive"], styles["vpo-no-penalty"]["per_item_descriptive"])
        policy, free = sampled("vpo", config), sampled("vpo-no-penalty", config)
        found["penalty"] = [
            share_effect(*valid, "vpo:valid captions", "vpo-no-penalty:valid captions"),
            effect((policy, reasoner, mode), (free, reasoner, mode)),
            effect(("vpo", reasoner, mode), ("vpo-no-penalty", reasoner, mode)),
        ]
    return {k: [e for e in v if e is not None] for k, v in found.items() if any(e is not None for e in v)}
