"""Command line: `python -m rapid_agent.rl {grpo,vpo} --config RECIPE.yaml [--field value ...]`.

Thin on purpose: TRL's parser turns the stage's config dataclass (YAML recipe first, then command-line overrides)
into a config, and `rapid_agent.rl.train.main` does the rest. `--help` after a stage lists every field.
"""

from __future__ import annotations

import logging
import os
import sys

from rapid_agent.telemetry.setup import setup_tracing

try:
    from trl import TrlParser

    from rapid_agent.cli_args import HfArgumentParser, TraceArguments
    from rapid_agent.rl.config import STAGES
    from rapid_agent.rl.plan import LayoutConfig
except ImportError as exc:  # the light core has no trl/torch: name the extra that brings them
    from rapid_agent.extras import MissingExtraError, missing_extra

    error = missing_extra("rl", "training (python -m rapid_agent.rl)", exc)
    if not isinstance(error, MissingExtraError):
        raise
    sys.exit(f"error: {error}")

USAGE = """usage: python -m rapid_agent.rl {grpo,vpo} --config RECIPE.yaml [--field value ...]
       python -m rapid_agent.rl plan --config RECIPE.yaml [--gpu-memory-gib N] [--gpus-per-node N]

commands:
  grpo   GRPO on tentative solutions (rule-based reward: accuracy of the boxed answer)
  vpo    VPO: the frozen reasoner's correctness from the caption is the reward
  plan   the recipe's node layout and each GPU's memory; exits 1 when it does not fit

`python -m rapid_agent.rl vpo --help` lists every option; recipes live in rl/recipes/."""


def require_deepspeed(args: list[str]) -> None:
    """Under DeepSpeed (`accelerate launch` with a ZeRO config, or `--deepspeed`), fail first with the extra to
    install: without it the config's own DeepSpeed setup fails deep inside transformers or accelerate."""
    asked = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true", "yes") or any(
        a == "--deepspeed" or a.startswith("--deepspeed=") for a in args
    )
    if not asked:
        return
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        from rapid_agent.extras import MissingExtraError, missing_extra

        error = missing_extra("deepspeed", "training under DeepSpeed ZeRO (the paper recipes)", exc)
        if not isinstance(error, MissingExtraError):
            raise  # deepspeed is there but broken: its own error says more
        raise SystemExit(f"error: {error}") from None


def recipe_stage(argv: list[str]) -> str:
    """The stage a recipe is for (`plan` takes no stage): vpo when it names the vpo reward or a reasoner."""
    import yaml

    path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    data = yaml.safe_load(open(path)) if path else {}
    return "vpo" if "vpo" in (data.get("rewards") or []) or "reasoner" in data else "grpo"


def build_parser(stage: str, prog: str | None = None) -> TrlParser:
    """A stage's parser: TRL's (an `HfArgumentParser` that reads `--config RECIPE.yaml` first) over the stage's
    config and the layout."""
    return TrlParser((STAGES[stage], LayoutConfig), prog=prog or f"python -m rapid_agent.rl {stage}")


def parse_stage(parser: TrlParser, argv: list[str]) -> tuple:
    """(config, layout) from the recipe, then the command line; an option neither knows exits 2 naming it."""
    config, layout, from_recipe, from_line = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if from_recipe:
        parser.error(
            f"the recipe sets unknown fields: {', '.join(key.removeprefix('--') for key in from_recipe[::2])}"
        )
    if from_line:
        parser.error(f"unrecognized arguments: {' '.join(from_line)}")
    return config, layout


def split_trace(argv: list[str]) -> tuple[TraceArguments, list[str]]:
    """`--trace` and `--trace-content` (as every command takes them), and the rest for TRL's parser: tracing is set
    up, and a bad target refused, before the recipe is read."""
    parser = HfArgumentParser(TraceArguments, add_help=False, allow_abbrev=False)
    trace, rest = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    return trace, rest


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = (*STAGES, "plan")
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "plan":
        from rapid_agent.rl.plan import plan, report

        stage = recipe_stage(rest)
        config, layout = parse_stage(build_parser(stage, "python -m rapid_agent.rl plan"), rest)
        recipe = rest[rest.index("--config") + 1] if "--config" in rest[:-1] else "RECIPE"
        result = plan(config, layout, stage=stage, recipe=recipe)
        print(report(result, layout, title=f"plan: {recipe} ({stage}, {config.model_name_or_path})"))
        return 0 if result.fits else 1
    require_deepspeed(rest)
    trace, rest = split_trace(rest)
    setup_tracing(trace.trace, capture_content=trace.trace_content)
    config, _ = parse_stage(build_parser(command), rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rapid_agent.rl.train import main

    main(command, config)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
