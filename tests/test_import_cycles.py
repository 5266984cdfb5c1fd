"""No import cycles among the package's modules (ARCHITECTURE: imports point down the layers; no cycles).

The graph is built from the source with `ast`, so an import inside a function counts as much as one at the top: a
function-level import that only dodges a cycle at load time still ties the two modules together."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the packages and the folders they install from (pyproject's package-dir: graphs/, tools/ and rl/ sit at the root)
PACKAGES = {
    "rapid_agent": ROOT / "rapid_agent",
    "rapid_agent.graphs": ROOT / "graphs",
    "rapid_agent.tools": ROOT / "tools",
    "rapid_agent.rl": ROOT / "rl",
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if "pretrained" in parts:  # model folders shipped as data
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (`from a.b import c` counts a.b.c when c is a module, else a.b)."""

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        deps: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(known(a.name) for a in node.names if a.name.startswith("rapid_agent"))
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    module = ".".join(base + ([module] if module else []))
                if module.startswith("rapid_agent"):
                    for alias in node.names:
                        full = f"{module}.{alias.name}"
                        deps.add(full if full in mods else known(module))
        deps.discard(name)
        deps.discard(None)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path) -> None:
    pkg = tmp_path / "rapid_agent"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from rapid_agent.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from . import a\n")
    (pkg / "c.py").write_text("import rapid_agent.a\n")
    mods = {"rapid_agent": pkg / "__init__.py", **{f"rapid_agent.{m}": pkg / f"{m}.py" for m in "abc"}}
    assert cycles(import_graph(mods)) == [["rapid_agent.a", "rapid_agent.b"]]


def test_no_import_cycles() -> None:
    mods = modules()
    assert "rapid_agent.rl.train" in mods and "rapid_agent.graphs.graph" in mods  # the mapped folders are read
    assert cycles(import_graph(mods)) == []
