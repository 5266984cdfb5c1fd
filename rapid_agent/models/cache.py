"""Building a model folder once, safely: under a file lock (several processes, e.g. an `accelerate` launch, agree on
one copy), in a staging folder renamed into place (a crash never leaves a folder that looks complete), and rebuilt
when the copy on disk does not check out."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def locked(path: Path) -> FileLock:
    """An exclusive lock on `path` (a sibling `.<name>.lock` file), held for the duration of a `with` block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.parent / f".{path.name}.lock")


def ensure_built(path: Path, build: Callable[[Path], object], is_valid: Callable[[Path], bool]) -> bool:
    """Make `path` hold a valid build: keep it when `is_valid(path)`, else `build(staging)` and move it into place.
    Returns whether it was built now."""
    path = Path(path)
    with locked(path):
        if path.is_dir() and is_valid(path):
            return False
        shutil.rmtree(path, ignore_errors=True)
        staging = path.with_name(f".{path.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            build(staging)
            os.replace(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return True
