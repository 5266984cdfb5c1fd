"""Benchmark adapters, registered by name: the paper's seven, the synthetic world (the demo's), and a generic one for
any dataset.

--benchmark mathvista                      the benchmark's hub id (AI4Math/MathVista)
--benchmark mathvista=/data/MathVista      a local copy (folder or file)
--benchmark generic:charts=/data/c.jsonl   any dataset; `charts` names its table column
--option mathverse.versions=vision_only    an adapter option (`NAME.FIELD=VALUE`)
--benchmark world --option world.seed=1    the synthetic world's items, drawn from its seed
"""

from __future__ import annotations

from typing import Any

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options
from rapid_agent.eval.adapters.dynamath import DynaMath
from rapid_agent.eval.adapters.generic import Generic
from rapid_agent.eval.adapters.logicvista import LogicVista
from rapid_agent.eval.adapters.mathverse import MathVerse
from rapid_agent.eval.adapters.mathvision import MathVision
from rapid_agent.eval.adapters.mathvista import MathVista
from rapid_agent.eval.adapters.mmmu import MMMU
from rapid_agent.eval.adapters.wemath import WeMath
from rapid_agent.eval.adapters.world import World

#: every adapter by its command-line name
ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls for cls in (MathVista, MathVerse, MathVision, WeMath, LogicVista, DynaMath, MMMU, World, Generic)
}
#: the paper's table, in its column order
PAPER_BENCHMARKS = ("mathvista", "mathverse", "mathvision", "wemath", "logicvista", "dynamath", "mmmu")

__all__ = [
    "ADAPTERS",
    "PAPER_BENCHMARKS",
    "Adapter",
    "BadRow",
    "EvalSample",
    "Options",
    "build_adapter",
    "parse_benchmark",
]


def parse_benchmark(text: str) -> tuple[str, str, str | None]:
    """`NAME[=SOURCE]` or `generic:LABEL=SOURCE` -> (adapter name, label, source or None for the hub id)."""
    head, sep, source = text.partition("=")
    adapter, _, label = head.strip().partition(":")
    adapter = adapter.lower()
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown benchmark {adapter!r} in {text!r}; known: {sorted(ADAPTERS)}")
    if label and adapter != "generic":
        raise ValueError(f"only the generic adapter takes a label (generic:LABEL=SOURCE), got {text!r}")
    if adapter == "generic" and not (label and sep and source.strip()):
        raise ValueError(f"the generic adapter needs a label and a source: generic:LABEL=PATH_OR_HUB_ID, got {text!r}")
    return adapter, label or adapter, (source.strip() or None) if sep else None


def build_adapter(text: str, options: dict[str, dict[str, Any]] | None = None) -> Adapter:
    """The adapter a `--benchmark` value names, with the `--option LABEL.FIELD=VALUE` values given for its label."""
    name, label, source = parse_benchmark(text)
    return ADAPTERS[name](source, label=label, **(options or {}).get(label, {}))


def parse_option(text: str) -> tuple[str, str, str]:
    """`LABEL.FIELD=VALUE` -> (label, field, value)."""
    key, sep, value = text.partition("=")
    label, dot, field = key.strip().partition(".")
    if not (sep and dot and label and field):
        raise ValueError(
            f"--option must look like NAME.FIELD=VALUE (e.g. mathverse.versions=vision_only), got {text!r}"
        )
    return label.lower() if label.lower() in ADAPTERS else label, field.strip(), value.strip()
