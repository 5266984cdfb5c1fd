"""griffe extension for the API reference: a dataclass field's `metadata={"help": ...}` becomes its docstring.

The configuration dataclasses (`RapidContext`, `GenerationConfig`, `VPOConfig`, ...) document every field in its
`help`, which the command lines show (HfArgumentParser, argparse); without this the reference would list the fields
bare. Static: reads the source's `field(...)` call, imports nothing.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


def field_help(value: ast.expr | None) -> str | None:
    """The `help` text of `field(..., metadata={"help": ...})`, or None. An f-string keeps its placeholders."""
    if not (isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) == "field"):
        return None
    for keyword in value.keywords:
        if keyword.arg == "metadata" and isinstance(keyword.value, ast.Dict):
            for key, item in zip(keyword.value.keys, keyword.value.values):
                if isinstance(key, ast.Constant) and key.value == "help":
                    try:
                        return str(ast.literal_eval(item))
                    except ValueError:
                        return _text(item)
    return None


def _text(node: ast.expr) -> str:
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
            for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return ast.literal_eval(node) if isinstance(node, ast.Constant) else ast.unparse(node)


def field_default(value: ast.expr | None) -> str | None:
    """The default `field(default=X)` or `field(default_factory=f)` gives, as source (`X`, `f()`), or None."""
    if not (isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) == "field"):
        return None
    for keyword in value.keywords:
        if keyword.arg == "default":
            return ast.unparse(keyword.value)
        if keyword.arg == "default_factory":
            return ast.unparse(keyword.value) + "()"
    return None


def markdown_text(text: str) -> str:
    """`text` safe as Markdown: angle brackets outside code spans (`openai:<model>@<url>`) are not HTML tags."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


class FieldHelp(griffe.Extension):
    """Gives each dataclass field declared as `field(..., metadata={"help": ...})` its help as docstring, and
    shows its default (not the `field(...)` call) as its value."""

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, **kwargs: Any) -> None:
        if not isinstance(node, ast.AnnAssign):
            return
        text = field_help(node.value)
        if text and attr.docstring is None:
            attr.docstring = griffe.Docstring(markdown_text(text), parent=attr)
        default = field_default(node.value)
        if default is not None:
            attr.value = default
