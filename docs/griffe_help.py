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


class FieldHelp(griffe.Extension):
    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None and isinstance(node, ast.AnnAssign):
            text = field_help(node.value)
            if text:
                attr.docstring = griffe.Docstring(text, parent=attr)
