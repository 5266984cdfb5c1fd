"""The `serve` subcommand: the same pipeline options as `run` (engines, mode, sampling, engine options, limits),
the server's own options derived from `ServeConfig`, and any number of named pipelines.

    python -m rapid_agent serve --captioner hf:/models/captioner --reasoner hf:smollm2-135m-instruct \\
        --reasoner-max-new-tokens 512 --port 8000
    python -m rapid_agent serve --pipeline small=hf:/m/cap,hf:smollm2-135m-instruct,qcap+sol \\
        --pipeline text=,hf:smollm2-135m-instruct,none --api-key-file keys.txt

Nothing here imports the server's web stack, so `python -m rapid_agent --help` works without the `serve` extra.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import typing
from typing import Any, Literal

from rapid_agent.cli_args import (
    HelpFormatter,
    HfArgumentParser,
    PipelineArguments,
    TraceArguments,
    context_from,
    documented,
    field_help,
    parse,
)
from rapid_agent.config import RapidContext
from rapid_agent.serve.config import DEFAULT_MODEL_NAME, ServeConfig, load_pipelines_file, parse_pipeline
from rapid_agent.telemetry.setup import setup_tracing


def _server_options() -> type:
    """`ServeConfig`'s fields as options, each with its default and help; the allow-list is one comma-separated
    string on a command line (ServeConfig splits it)."""
    hints = typing.get_type_hints(ServeConfig)
    made = []
    for f in dataclasses.fields(ServeConfig):
        kind = str if f.name == "remote_image_allow" else hints[f.name]
        made.append(
            (f.name, kind, dataclasses.field(default=f.default, metadata={"help": field_help(ServeConfig, f.name)}))
        )
    cls = dataclasses.make_dataclass("ServerOptions", made, namespace={"_argument_group_name": "server"})
    cls.__module__ = __name__
    return cls


ServerOptions = _server_options()


@documented
@dataclasses.dataclass
class ServeArguments:
    """Which pipelines to serve, besides the one the pipeline options describe."""

    _argument_group_name = "pipelines"

    model_name: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "serve the pipeline the pipeline options describe under this name (unset: "
            f"{DEFAULT_MODEL_NAME!r} when no --pipeline or --pipelines-file is given)"
        },
    )
    pipeline: list[str] = dataclasses.field(
        default_factory=list, metadata={"action": "extend", "metavar": "NAME=CAPTIONER,REASONER[,MODE]"}
    )
    """serve another pipeline under NAME, with the pipeline options for everything else; an empty CAPTIONER or
    REASONER means none (repeatable)"""
    pipelines_file: str | None = None
    """YAML or JSON list of pipelines: name plus RapidContext fields"""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """the server's log level"""


ARGUMENTS = (PipelineArguments, ServerOptions, ServeArguments, TraceArguments)


def build_parser() -> HfArgumentParser:
    return HfArgumentParser(
        ARGUMENTS, prog="python -m rapid_agent serve", description=__doc__, formatter_class=HelpFormatter
    )


def serve_config_from(options: Any) -> ServeConfig:
    return ServeConfig(**dataclasses.asdict(options))


def pipelines_from(pipeline: Any, serve: ServeArguments) -> dict[str, RapidContext]:
    """The served pipelines by name: the one the pipeline options describe, then --pipelines-file's, then each
    --pipeline's (every one starting from the pipeline options)."""
    base = context_from(pipeline)
    pipelines: dict[str, RapidContext] = {}
    if serve.pipelines_file:
        pipelines.update(load_pipelines_file(serve.pipelines_file, base))
    for text in serve.pipeline:
        name, context = parse_pipeline(text, base)
        if name in pipelines:
            raise ValueError(f"--pipeline {text!r}: a pipeline named {name!r} is defined already")
        pipelines[name] = context
    default_name = serve.model_name or (None if pipelines else DEFAULT_MODEL_NAME)
    if default_name is not None:
        if default_name in pipelines:
            raise ValueError(f"--model-name {default_name!r}: a pipeline named so is defined already")
        pipelines = {default_name: base, **pipelines}
    return pipelines


def main(argv: list[str]) -> int:
    from rapid_agent.serve import create_app, run_server
    from rapid_agent.serve.auth import load_api_keys

    pipeline, options, serve, trace = parse(build_parser(), argv)
    setup_tracing(trace.trace, capture_content=trace.trace_content)
    config = serve_config_from(options)
    pipelines = pipelines_from(pipeline, serve)
    keys = load_api_keys(config.api_key_file, config.api_key_env)
    print(f"loading {len(pipelines)} pipeline(s): {', '.join(pipelines)}", file=sys.stderr, flush=True)
    app = create_app(pipelines, config, api_keys=keys)  # tracing, when on, hooks into every run by itself
    for name, served in app.state.serve.pipelines.items():
        parts = served.describe()
        print(f"  {name}: {parts['captioner']} -> {parts['reasoner']} ({parts['mode']})", file=sys.stderr)
    auth = f"{len(keys)} API key(s)" if keys else "no API key (anyone who reaches the port may use it)"
    print(f"serving on http://{config.host}:{config.port}/v1 with {auth}", file=sys.stderr, flush=True)
    # What starting made (modules, models, the app: ~240k objects on openai: engines) is never freed while serving:
    # frozen, the collector's full passes stop walking it (each took tens of ms, ~0.5 ms of CPU a request under load;
    # benchmarks/overhead.py). The process is ours, unlike a library call's, so freezing it is ours to decide.
    gc.collect()
    gc.freeze()
    run_server(
        app, host=config.host, port=config.port, drain_timeout_s=config.drain_timeout_s, log_level=serve.log_level
    )
    return 0
