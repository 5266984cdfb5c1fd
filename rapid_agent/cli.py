"""`python -m rapid_agent`: `run` answers one question about one image; `demo` runs the offline demo; `serve` puts
pipelines behind an OpenAI-compatible endpoint.

Thin by design: parse arguments, build a `RapidContext`, call the library. The options that configure a run
(engines, mode, sampling per role, engine options, limits) are derived from `RapidContext` and `GenerationConfig`
themselves, with their help texts and defaults, so every command that runs the graph (`run`, `eval`, `serve`) takes
the same ones: `add_context_arguments` and `context_from_args`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Iterable
from typing import Any

from rapid_agent.backends import CAPTIONER_DEFAULTS, REASONER_DEFAULTS, BackendUnavailableError, GenerationConfig
from rapid_agent.config import RapidContext
from rapid_agent.perception import MODES
from rapid_agent.telemetry.setup import add_trace_argument, setup_tracing

ROLES = ("captioner", "reasoner")
_ROLE_DEFAULTS = {"captioner": CAPTIONER_DEFAULTS, "reasoner": REASONER_DEFAULTS}
#: RapidContext fields that no command line sets (Python objects)
_NOT_ON_THE_COMMAND_LINE = ("prompts",)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> type:
    """int, float, str or bool from a field annotation such as `int | None` (annotations are strings here)."""
    text = str(annotation)
    for kind in (bool, int, float):
        if kind.__name__ in text.replace("None", ""):
            return kind
    return str


def add_dataclass_arguments(group: Any, cls: type, *, skip: Iterable[str] = ()) -> None:
    """One option per scalar field of the dataclass `cls` (`--field-name`), typed, with its default and its `help`
    metadata; a bool field becomes `--name/--no-name`."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            group.add_argument(
                _flag(f.name), type=_scalar_type(f.type), default=f.default, help=f"{help_text} (default: %(default)s)"
            )


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of `cls` from the options `add_dataclass_arguments` added."""
    return cls(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in overrides}, **overrides
    )


def parse_option(text: str) -> tuple[str, Any]:
    """`key=value` with a JSON value (`timeout_s=600`, `extra_body={"top_k": 20}`), or a plain string value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"engine options look like key=value, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_context_arguments(parser: argparse.ArgumentParser, *, many: Iterable[str] = ()) -> None:
    """Add one option per RapidContext setting. Names in `many` ("reasoner", "mode") may be given several times."""
    many = set(many)
    group = parser.add_argument_group("pipeline", "which models, which perception mode, how each samples")
    hints = typing.get_type_hints(GenerationConfig)
    special = set(_NOT_ON_THE_COMMAND_LINE)
    for f in dataclasses.fields(RapidContext):
        help_text = f.metadata.get("help", "")
        if f.name in _NOT_ON_THE_COMMAND_LINE:
            continue
        if f.name in ROLES or f.name == "mode":
            default = f.default if f.name not in many else None
            extra = {"choices": MODES} if f.name == "mode" else {"metavar": "SPEC"}
            action = "append" if f.name in many else "store"
            repeat = " (repeat for several)" if f.name in many else ""
            group.add_argument(
                _flag(f.name),
                action=action,
                default=default,
                help=f"{help_text}{repeat} (default: {f.default})",
                **extra,
            )
        elif f.name.endswith("_gen"):
            role = f.name.removesuffix("_gen")
            for g in dataclasses.fields(GenerationConfig):
                default = getattr(_ROLE_DEFAULTS[role], g.name)
                group.add_argument(
                    _flag(f"{role}_{g.name}"),
                    type=_scalar_type(hints[g.name]),
                    default=default,
                    help=f"{role}: {g.metadata['help']} (default: %(default)s)",
                )
        elif f.name.endswith("_options"):
            role = f.name.removesuffix("_options")
            group.add_argument(
                _flag(f"{role}_option"),
                action="append",
                type=parse_option,
                default=[],
                metavar="KEY=VALUE",
                help=f"{help_text}; repeatable, values are JSON",
            )
        else:
            continue
        special.add(f.name)
    add_dataclass_arguments(group, RapidContext, skip=special)


def context_from_args(args: argparse.Namespace, **overrides: Any) -> RapidContext:
    """The RapidContext the parsed options describe; `overrides` set fields directly (e.g. one of several reasoners)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RapidContext):
        if f.name in _NOT_ON_THE_COMMAND_LINE or f.name in overrides:
            continue
        if f.name.endswith("_gen"):
            role = f.name.removesuffix("_gen")
            values[f.name] = GenerationConfig(
                **{g.name: getattr(args, f"{role}_{g.name}") for g in dataclasses.fields(GenerationConfig)}
            )
        elif f.name.endswith("_options"):
            values[f.name] = dict(getattr(args, f"{f.name.removesuffix('_options')}_option"))
        else:
            values[f.name] = getattr(args, f.name)
    return RapidContext(**values, **overrides)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, action="append", help="image path or data URL (repeat for several)")
    parser.add_argument("--question", required=True, help="the question about the image")
    parser.add_argument("--answer", help="gold answer: report whether the reasoner got it right")
    parser.add_argument("--choices", nargs="*", default=[], help="multiple-choice options, in letter order")
    add_context_arguments(parser)
    add_trace_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the final state as JSON")
    parser.add_argument("--quiet", action="store_true", help="do not stream the models' text while they write")


def run(args: argparse.Namespace) -> int:
    from rapid_agent.graphs import get_graph

    stream = not args.quiet and not args.json
    context = context_from_args(args).replace(stream=stream or args.stream)
    config: dict = {}  # tracing, when on (`main` set it up), hooks into every run by itself
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rapid_agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="answer one question about one image"))
    demo = commands.add_parser("demo", help="the offline RAPID demo: world, captioner, VPO, report")
    try:
        from rapid_agent.demo import add_arguments as add_demo_arguments
    except ImportError as exc:  # the light core: `demo` then says which extra to install
        from rapid_agent.extras import missing_extra

        demo.set_defaults(unavailable=missing_extra("demo", "the demo", exc))
    else:
        add_demo_arguments(demo)
    add_trace_argument(demo)
    from rapid_agent.serve.command import add_arguments as add_serve_arguments

    serve = commands.add_parser("serve", help="serve pipelines behind an OpenAI-compatible endpoint")
    add_serve_arguments(serve)
    add_trace_argument(serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "unavailable", None) is None:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if getattr(args, "unavailable", None) is not None:  # its options are unknown too: the extra comes first
            raise args.unavailable
        setup_tracing(args.trace, capture_content=args.trace_content)
        if args.command == "run":
            return run(args)
        if args.command == "serve":
            from rapid_agent.serve.command import main as serve_main

            return serve_main(args)
        from rapid_agent.demo import main as demo_main

        return demo_main(args) or 0
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # bad input or a bad setting: the message names the field
        print(f"error: {exc}", file=sys.stderr)
        return 2
