"""`python -m rapid_agent`: `run` answers one question about one image; `demo` runs the offline demo; `serve` puts
pipelines behind an OpenAI-compatible endpoint.

Thin by design: this module dispatches; each command parses its dataclasses with `HfArgumentParser`
(`rapid_agent.cli_args`) and calls the library. The options that configure a run (engines, mode, sampling per role,
engine options, limits) are derived from `RapidContext` and `GenerationConfig` themselves (`PipelineArguments`), so
every command that runs the graph (`run`, `eval`, `serve`) takes the same ones.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

from rapid_agent.backends import BackendUnavailableError
from rapid_agent.cli_args import (
    HelpFormatter,
    HfArgumentParser,
    PipelineArguments,
    TraceArguments,
    context_from,
    documented,
    parse,
)
from rapid_agent.serve import command as serve_command
from rapid_agent.telemetry.setup import setup_tracing

PROG = "python -m rapid_agent"


@documented
@dataclasses.dataclass
class RunArguments:
    """`run`: one question about one image (or several images)."""

    image: list[str] = dataclasses.field(metadata={"action": "extend"})
    """image path or data URL (repeat for several)"""
    question: str
    """the question about the image"""
    answer: str | None = None
    """gold answer: report whether the reasoner got it right"""
    choices: list[str] = dataclasses.field(default_factory=list)
    """multiple-choice options, in letter order"""
    json: bool = False
    """print the final state as JSON"""
    quiet: bool = False
    """do not stream the models' text while they write"""


RUN_ARGUMENTS = (RunArguments, PipelineArguments, TraceArguments)


def build_run_parser() -> HfArgumentParser:
    """The `run` command's parser."""
    return HfArgumentParser(
        RUN_ARGUMENTS,
        prog=f"{PROG} run",
        description="Answer one question about one image.",
        formatter_class=HelpFormatter,
    )


def run(argv: list[str]) -> int:
    from rapid_agent.graphs import get_graph

    args, pipeline, trace = parse(build_run_parser(), argv)
    setup_tracing(trace.trace, capture_content=trace.trace_content)
    stream = not args.quiet and not args.json
    context = context_from(pipeline).replace(stream=stream or pipeline.stream)
    config: dict = {}  # tracing, when on, hooks into every run by itself
    sample = {"images": args.image, "question": args.question, "answer": args.answer, "choices": args.choices}
    state: dict = {}
    role = None
    for mode, chunk in get_graph().stream(sample, config, context=context, stream_mode=["custom", "values"]):
        if mode == "values":
            state = chunk
        elif stream:  # the models' text as it is generated, so a long CPU generation is never a silent wait
            if chunk["role"] != role:
                role = chunk["role"]
                print(f"\n-- {role} (streaming) --", file=sys.stderr, flush=True)
            print(chunk["text"], end="", file=sys.stderr, flush=True)
    if role is not None:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in state.items() if k not in ("image", "images")}, indent=2, default=str))
    else:
        print_state(state)
    return 1 if state.get("errors") else 0


def print_state(state: dict) -> None:
    rows = [
        ("captioner", state.get("engines", {}).get("captioner")),
        ("reasoner", state.get("engines", {}).get("reasoner")),
        ("mode", state.get("mode")),
        ("caption", state.get("caption")),
        ("tentative solution", state.get("solution")),
        ("reasoner output", state.get("reasoner_output")),
        ("answer", state.get("prediction")),
    ]
    if state.get("answer") is not None:
        rows.append(("correct", f"{state.get('correct')} (gold {state['answer']}: {state.get('verdict')})"))
    for error in state.get("errors") or []:
        rows.append(("error", error))
    for label, value in rows:
        if value is not None:
            print(f"== {label}\n{str(value).strip()}\n")


def _demo(argv: list[str]) -> int:
    try:
        from rapid_agent.demo import command
    except ImportError as exc:  # the light core: `demo` then says which extra to install
        from rapid_agent.extras import missing_extra

        raise missing_extra("demo", "the demo", exc) from None
    return command.main(argv)


def _demo_arguments() -> tuple[type, ...]:
    try:
        from rapid_agent.demo.command import ARGUMENTS
    except ImportError:  # the light core: `demo` says which extra to install when it runs
        return ()
    return ARGUMENTS


def _demo(argv: list[str]) -> int:
    try:
        from rapid_agent.demo import command
    except ImportError as exc:  # the light core: `demo` then says which extra to install
        from rapid_agent.extras import missing_extra

        raise missing_extra("demo", "the demo", exc) from None
    return command.main(argv)


#: name -> (what it does, its entry point taking the arguments after the name)
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "run": ("answer one question about one image", run),
    "demo": ("the offline RAPID demo: world, captioner, VPO, report", _demo),
    "serve": ("serve pipelines behind an OpenAI-compatible endpoint", serve_command.main),
}


def build_parser() -> HfArgumentParser:
    """`python -m rapid_agent`'s parser: one sub-command each, each an `HfArgumentParser` over that command's
    dataclasses (what `--help` shows; each command's `main` parses its arguments with its own `build_parser`)."""
    parser = HfArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    arguments = {"run": RUN_ARGUMENTS, "demo": _demo_arguments(), "serve": serve_command.ARGUMENTS}
    for name, (help_text, _) in COMMANDS.items():
        commands.add_parser(name, dataclass_types=arguments[name], help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # --help, or the error naming the unknown command (exit 2)
    try:
        return COMMANDS[argv[0]][1](argv[1:]) or 0
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # bad input or a bad setting: the message names the field
        print(f"error: {exc}", file=sys.stderr)
        return 2
