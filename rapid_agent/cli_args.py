"""One way to build a command line: transformers' `HfArgumentParser` (what TRL's `TrlParser` extends) over
dataclasses, each flag's help its field's docstring. Every command (`run`, `serve`, `demo`, `python -m
rapid_agent.eval`, `python -m rapid_agent.rl`) builds its parser from dataclasses here and in its own package.

- `documented(cls)`: a field's `help` is the string literal written under it (an attribute docstring) unless its
  metadata has one already; the dataclasses of every command are decorated with it.
- `PipelineArguments` (and `pipeline_arguments(many=...)`): the options that configure a graph run, derived from
  `RapidContext` and, per role, `GenerationConfig` (`--reasoner-temperature`, `--captioner-option KEY=VALUE`, ...),
  so that every command that runs the graph takes the same ones; `context_from` makes the `RapidContext`.
- `TraceArguments`: `--trace console|otlp|FILE.jsonl` and `--trace-content`, for every command.
- `parse(parser, argv)`: the parser's dataclasses; an unknown option or a bad value exits 2 naming it.

HfArgumentParser adds `--field_name` and `--field-name` for a field; a field's metadata goes to `add_argument` as
is (`choices`, `metavar`, `action="extend"` for a list option that may be repeated). A positional list or a
sub-command is added with argparse's own calls: the parser is an `argparse.ArgumentParser`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import typing
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from transformers import HfArgumentParser

from rapid_agent.backends import CAPTIONER_DEFAULTS, REASONER_DEFAULTS, GenerationConfig
from rapid_agent.config import RapidContext
from rapid_agent.perception import MODES
from rapid_agent.telemetry.attributes import CAPTURE_CONTENT_ENV
from rapid_agent.telemetry.setup import TRACE_HELP

__all__ = [
    "HelpFormatter",
    "HfArgumentParser",
    "PipelineArguments",
    "TraceArguments",
    "attribute_docs",
    "context_from",
    "documented",
    "field_help",
    "parse",
    "pipeline_arguments",
]

T = TypeVar("T")

ROLES = ("captioner", "reasoner")
_ROLE_DEFAULTS = {"captioner": CAPTIONER_DEFAULTS, "reasoner": REASONER_DEFAULTS}
#: RapidContext fields that no command line sets (Python objects)
_NOT_ON_THE_COMMAND_LINE = ("prompts",)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HfArgumentParser's formatter (each option's default after its help), the description as written."""


def attribute_docs(cls: type) -> dict[str, str]:
    """{field name: the string literal written right under the field in the class body}, over `cls`'s bases too,
    whitespace runs made single spaces. Empty where the source cannot be read (a class made at run time)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def documented(cls: type[T]) -> type[T]:
    """Decorator: each field of the dataclass `cls` without a `help` in its metadata takes its attribute docstring
    as its help (what `HfArgumentParser` shows). Returns `cls`."""
    docs = attribute_docs(cls)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata and f.name in docs:
            # argparse %-formats help texts
            f.metadata = MappingProxyType({**f.metadata, "help": docs[f.name].replace("%", "%%")})
    return cls


def field_help(cls: type, name: str) -> str:
    """A field's help: its metadata's, else its attribute docstring."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.metadata.get("help") or attribute_docs(cls).get(name, "")


def parse(parser: HfArgumentParser, argv: Sequence[str]) -> tuple[Any, ...]:
    """The instances of the parser's dataclasses (then a namespace of its other arguments, if it has any) from
    `argv`. An unknown option or a value of the wrong type exits 2 with argparse's message naming it; a dataclass's
    own check (its `__post_init__`) raises its ValueError naming the field."""
    *parsed, unknown = parser.parse_args_into_dataclasses(
        list(argv), return_remaining_strings=True, look_for_args_file=False
    )
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return tuple(parsed)


@dataclasses.dataclass
class TraceArguments:
    """The tracing options every command takes (`rapid_agent.telemetry.setup_tracing`)."""

    _argument_group_name = "tracing"

    trace: str | None = dataclasses.field(
        default=None, metadata={"metavar": "console|otlp|FILE.jsonl", "help": TRACE_HELP}
    )
    trace_content: bool | None = dataclasses.field(
        default=None,
        metadata={
            "nargs": "?",
            "const": True,
            "help": "also record prompt and completion text in the trace (off by default, as the GenAI conventions "
            f"ask; or set {CAPTURE_CONTENT_ENV}=true)",
        },
    )


def _spec_or_mode(f: dataclasses.Field, many: bool) -> tuple[str, Any, dataclasses.Field]:
    metadata = {"help": field_help(RapidContext, f.name)}
    metadata |= {"choices": MODES} if f.name == "mode" else {"metavar": "SPEC"}
    if many:  # --reasoner a --reasoner b (or --reasoner a b): every one given
        metadata["help"] += " (repeat for several)"
        return f.name, list[str] | None, dataclasses.field(default=None, metadata={**metadata, "action": "extend"})
    return f.name, str, dataclasses.field(default=f.default, metadata=metadata)


def pipeline_arguments(*, many: Iterable[str] = ()) -> type:
    """The dataclass of the options that configure a graph run, one per `RapidContext` field: the engines
    (`--captioner`, `--reasoner`: a spec), `--mode`, each role's sampling as `--ROLE-FIELD` (a `GenerationConfig`
    field, with the role's default), each role's engine options as `--ROLE-option KEY=VALUE` (repeatable, values
    JSON) and the scalar settings. Names in `many` ("reasoner", "mode") take several values (a list)."""
    many = set(many)
    context_types = typing.get_type_hints(RapidContext)
    gen_types = typing.get_type_hints(GenerationConfig)
    made: list[tuple[str, Any, dataclasses.Field]] = []
    for f in dataclasses.fields(RapidContext):
        if f.name in _NOT_ON_THE_COMMAND_LINE:
            continue
        if f.name in ROLES or f.name == "mode":
            made.append(_spec_or_mode(f, f.name in many))
        elif f.name.endswith("_gen"):
            role = f.name.removesuffix("_gen")
            for g in dataclasses.fields(GenerationConfig):
                default = getattr(_ROLE_DEFAULTS[role], g.name)
                help_text = f"{role}: {field_help(GenerationConfig, g.name)}"
                made.append(
                    (
                        f"{role}_{g.name}",
                        gen_types[g.name],
                        dataclasses.field(default=default, metadata={"help": help_text}),
                    )
                )
        elif f.name.endswith("_options"):
            metadata = {
                "help": f"{field_help(RapidContext, f.name)}; repeatable, values are JSON",
                "metavar": "KEY=VALUE",
                "action": "extend",
            }
            made.append(
                (
                    f"{f.name.removesuffix('_options')}_option",
                    list[str],
                    dataclasses.field(default_factory=list, metadata=metadata),
                )
            )
        else:
            default = dataclasses.field(default=f.default, metadata={"help": field_help(RapidContext, f.name)})
            made.append((f.name, context_types[f.name], default))
    name = "PipelineArguments" if not many else "Pipeline" + "".join(sorted(m.title() for m in many)) + "Arguments"
    cls = dataclasses.make_dataclass(name, made, namespace={"_argument_group_name": "pipeline"})
    cls.__module__ = __name__
    return cls


#: `run` and `serve`: one captioner, one reasoner, one mode
PipelineArguments = pipeline_arguments()


def parse_option(flag: str, text: str) -> tuple[str, Any]:
    """`key=value` with a JSON value (`timeout_s=600`, `extra_body={"top_k": 20}`), or a plain string value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{flag}: engine options look like key=value, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def context_from(args: Any, **overrides: Any) -> RapidContext:
    """The RapidContext that parsed pipeline options describe; `overrides` set fields directly (e.g. one of
    several reasoners)."""
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
            role = f.name.removesuffix("_options")
            flag = f"--{role}-option"
            values[f.name] = dict(parse_option(flag, text) for text in getattr(args, f"{role}_option"))
        else:
            values[f.name] = getattr(args, f.name)
    return RapidContext(**values, **overrides)
