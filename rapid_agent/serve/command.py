"""The `serve` subcommand: the same pipeline options as `run` (engines, mode, sampling, engine options, limits),
the server's own options derived from `ServeConfig`, and any number of named pipelines.

    python -m rapid_agent serve --captioner hf:/models/captioner --reasoner hf:smollm2-135m-instruct \\
        --reasoner-max-new-tokens 512 --port 8000
    python -m rapid_agent serve --pipeline small=hf:/m/cap,hf:smollm2-135m-instruct,qcap+sol \\
        --pipeline text=,hf:smollm2-135m-instruct,none --api-key-file keys.txt

Nothing here imports the server's web stack, so `python -m rapid_agent --help` works without the `serve` extra.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rapid_agent.cli import add_context_arguments, add_dataclass_arguments, context_from_args, dataclass_from_args
from rapid_agent.config import RapidContext
from rapid_agent.serve.config import DEFAULT_MODEL_NAME, ServeConfig, load_pipelines_file, parse_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_context_arguments(parser)
    group = parser.add_argument_group("server", "where to listen, what to accept, which models to serve")
    group.add_argument(
        "--model-name",
        help="serve the pipeline the options above describe under this name (default: "
        f"{DEFAULT_MODEL_NAME!r} when no --pipeline or --pipelines-file is given)",
    )
    group.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="NAME=CAPTIONER,REASONER[,MODE]",
        help="serve another pipeline under NAME, with the options above for everything else; an empty CAPTIONER "
        "or REASONER means none (repeatable)",
    )
    group.add_argument("--pipelines-file", help="YAML or JSON list of pipelines: name plus RapidContext fields")
    add_dataclass_arguments(group, ServeConfig)
    group.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def serve_config_from_args(args: argparse.Namespace) -> ServeConfig:
    return dataclass_from_args(ServeConfig, args)


def pipelines_from_args(args: argparse.Namespace) -> dict[str, RapidContext]:
    base = context_from_args(args)
    pipelines: dict[str, RapidContext] = {}
    if args.pipelines_file:
        pipelines.update(load_pipelines_file(args.pipelines_file, base))
    for text in args.pipeline:
        name, context = parse_pipeline(text, base)
        if name in pipelines:
            raise ValueError(f"--pipeline {text!r}: a pipeline named {name!r} is defined already")
        pipelines[name] = context
    default_name = args.model_name or (None if pipelines else DEFAULT_MODEL_NAME)
    if default_name is not None:
        if default_name in pipelines:
            raise ValueError(f"--model-name {default_name!r}: a pipeline named so is defined already")
        pipelines = {default_name: base, **pipelines}
    return pipelines


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """LangGraph config for every graph run the server makes. Tracing needs nothing here: `--trace` (or the OTEL_*
    variables) switch it on for every run in the process (`rapid_agent.tracing.setup_tracing`, called by the CLI)."""
    return {}


def main(args: argparse.Namespace) -> int:
    from rapid_agent.serve import create_app, run_server
    from rapid_agent.serve.auth import load_api_keys

    config = serve_config_from_args(args)
    pipelines = pipelines_from_args(args)
    keys = load_api_keys(config.api_key_file, config.api_key_env)
    print(f"loading {len(pipelines)} pipeline(s): {', '.join(pipelines)}", file=sys.stderr, flush=True)
    app = create_app(pipelines, config, api_keys=keys, run_config=run_config(args))
    for name, pipeline in app.state.serve.pipelines.items():
        parts = pipeline.describe()
        print(f"  {name}: {parts['captioner']} -> {parts['reasoner']} ({parts['mode']})", file=sys.stderr)
    auth = f"{len(keys)} API key(s)" if keys else "no API key (anyone who reaches the port may use it)"
    print(f"serving on http://{config.host}:{config.port}/v1 with {auth}", file=sys.stderr, flush=True)
    run_server(
        app, host=config.host, port=config.port, drain_timeout_s=config.drain_timeout_s, log_level=args.log_level
    )
    return 0
