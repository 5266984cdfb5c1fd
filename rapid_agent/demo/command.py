"""The `demo` subcommand (`python -m rapid_agent demo`, `python -m rapid_agent.demo`): its options, parsed with
`HfArgumentParser`, then `run_demo`. Every option left unset keeps the preset's value (`DemoConfig.preset`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rapid_agent.cli_args import HelpFormatter, HfArgumentParser, TraceArguments, documented, parse
from rapid_agent.demo.run import DEFAULT_OUT, DEFAULT_REASONER, run_demo
from rapid_agent.telemetry.setup import setup_tracing


@documented
@dataclasses.dataclass
class DemoArguments:
    """The demo's command-line options."""

    quick: bool = False
    """tiny everything: a minute or two (used in CI)"""
    out: str = DEFAULT_OUT
    """report folder"""
    seeds: int | None = None
    """reasoner seeds per row (unset: 2, quick: 1)"""
    captioner_seed: int | None = None
    """seed of the captioner's init, data order and VPO (unset: 0)"""
    cache_dir: str | None = None
    """where trained captioners are cached (unset: $RAPID_AGENT_DEMO_CACHE or ~/.cache/rapid_agent/demo)"""
    reasoner: str | None = dataclasses.field(
        default=None, metadata={"help": f"reasoner spec (unset: {DEFAULT_REASONER})"}
    )
    vpo_steps: int | None = None
    """VPO steps (0 skips VPO)"""
    test_seed: int | None = None
    """seed of the test split (unset: 1, a split no setting was tuned on; 0: the world's own test split, which every
    tuning run measured)"""
    no_progress: bool = False
    """no progress bars"""


ARGUMENTS = (DemoArguments, TraceArguments)


def build_parser(prog: str = "python -m rapid_agent demo") -> HfArgumentParser:
    return HfArgumentParser(ARGUMENTS, prog=prog, description=__doc__, formatter_class=HelpFormatter)


def run(args: DemoArguments) -> int:
    """Run the demo with the options `args` sets (the `DemoConfig` fields they name override the preset's)."""
    overrides: dict[str, Any] = {}
    if args.reasoner:
        overrides["reasoner"] = args.reasoner
    if args.vpo_steps is not None:
        overrides["vpo_steps"] = args.vpo_steps
    if args.captioner_seed is not None:
        overrides["sft_seed"] = args.captioner_seed
    if args.test_seed is not None:
        overrides["test_seed"] = args.test_seed
    run_demo(
        out_dir=args.out,
        quick=args.quick,
        seeds=args.seeds,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        **overrides,
    )
    return 0


def main(argv: list[str], prog: str = "python -m rapid_agent demo") -> int:
    args, trace = parse(build_parser(prog), argv)
    setup_tracing(trace.trace, capture_content=trace.trace_content)
    return run(args)
