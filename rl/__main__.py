"""Command line: `python -m rapid_agent.rl {grpo,vpo} --config RECIPE.yaml [--field value ...]`.

Thin on purpose: TRL's parser turns the stage's config dataclass (YAML recipe first, then command-line overrides)
into a config, and `rapid_agent.rl.train.main` does the rest. `--help` after a stage lists every field.
"""

from __future__ import annotations

import logging
import os
import sys

from rapid_agent.telemetry.setup import setup_tracing, split_trace_argument

try:
    from rapid_agent.rl.config import STAGES
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


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = (*STAGES, "plan")
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    from trl import TrlParser

    from rapid_agent.rl.plan import LayoutConfig

    command, rest = argv[0], argv[1:]
    stage = recipe_stage(rest) if command == "plan" else command
    if command == "plan":
        from rapid_agent.rl.plan import plan, report

        parser = TrlParser((STAGES[stage], LayoutConfig), prog="python -m rapid_agent.rl plan")
        config, layout = parser.parse_args_and_config(rest)
        recipe = rest[rest.index("--config") + 1] if "--config" in rest[:-1] else "RECIPE"
        result = plan(config, layout, stage=stage, recipe=recipe)
        print(report(result, layout, title=f"plan: {recipe} ({stage}, {config.model_name_or_path})"))
        return 0 if result.fits else 1
    require_deepspeed(rest)
    trace, trace_content, rest = split_trace_argument(rest)  # --trace console|otlp|FILE.jsonl, as every command
    setup_tracing(trace, capture_content=trace_content)
    parser = TrlParser((STAGES[stage], LayoutConfig), prog=f"python -m rapid_agent.rl {stage}")
    config, _ = parser.parse_args_and_config(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rapid_agent.rl.train import main

    main(stage, config)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
