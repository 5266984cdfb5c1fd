"""mkdocs hook: a source tree griffe can read for the API reference.

`graphs/`, `tools/` and `rl/` install as `rapid_agent.graphs`, `.tools` and `.rl` through setuptools' `package-dir`
mapping, which griffe (mkdocstrings' loader) cannot follow. At import time this hook builds
`.cache/docs-src/rapid_agent/`: a folder of symlinks to every entry of `rapid_agent/` plus the three mapped folders
as subpackages, which `mkdocs.yml` gives the python handler as its `paths`. Nothing is imported or copied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TREE = ROOT / ".cache" / "docs-src"
#: the setuptools package-dir mapping of pyproject.toml: subpackage name -> folder at the repository root
MAPPED = {"graphs": "graphs", "tools": "tools", "rl": "rl"}


def build_source_tree(root: Path = ROOT, out: Path = SOURCE_TREE) -> Path:
    """Make `out/rapid_agent` a folder of symlinks into the checkout (rebuilt when the entries changed); returns
    `out`. The new tree is built aside and renamed into place, so a build running beside this one never sees half
    a tree."""
    links = {e.name: e for e in (root / "rapid_agent").iterdir() if e.name != "__pycache__"}
    links.update({name: root / folder for name, folder in MAPPED.items()})
    package = out / "rapid_agent"
    if package.is_dir() and {e.name: Path(os.readlink(e)) for e in package.iterdir() if e.is_symlink()} == links:
        return out
    fresh = out / f".rapid_agent-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for name, target in links.items():
        os.symlink(target, fresh / name)
    stale = out / f".stale-{os.getpid()}"
    if package.exists():
        os.replace(package, stale)
    os.replace(fresh, package)
    shutil.rmtree(stale, ignore_errors=True)
    return out


build_source_tree()
