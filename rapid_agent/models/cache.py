"""Building a model folder once, safely: under a file lock (several processes, e.g. an `accelerate` launch, agree on
one copy), in a staging folder renamed into place (a crash never leaves a folder that looks complete), and rebuilt
when the copy on disk does not check out."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a sibling `.<name>.lock` file) for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
