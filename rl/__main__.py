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

stages:
  grpo   GRPO on tentative solutions (rule-based reward: accuracy of the boxed answer)
  vpo    VPO: the frozen reasoner's correctness from the caption is the reward

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


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES:
        print(USAGE, file=sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    from trl import TrlParser

    stage = argv[0]
    require_deepspeed(argv[1:])
    trace, trace_content, rest = split_trace_argument(argv[1:])  # --trace console|otlp|FILE.jsonl, as every command
    setup_tracing(trace, capture_content=trace_content)
    parser = TrlParser(STAGES[stage], prog=f"python -m rapid_agent.rl {stage}")
    (config,) = parser.parse_args_and_config(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rapid_agent.rl.train import main

    main(stage, config)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
