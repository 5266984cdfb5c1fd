"""A content-checked on-disk cache for the demo's trained captioner.

An entry is a folder `<root>/<key>/` whose `manifest.json` names the key and every file with its size and SHA-256.
An entry is trusted only when the manifest parses, its key matches and every file is there with the recorded size
and digest; anything else (missing or truncated weights, a bad manifest, a key mismatch, a half-written folder) is
reported with its reason and the entry is rebuilt. Entries are built in a staging folder and renamed into place
under a file lock, so a crash never leaves a folder that looks complete and two processes never build one twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rapid_agent.models import locked

MANIFEST = "manifest.json"
#: environment variable that moves the cache (the CLI's `--cache-dir` wins over it)
CACHE_ENV = "RAPID_AGENT_DEMO_CACHE"


def default_cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/rapid_agent/demo").expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, key: str, info: dict[str, Any]) -> dict[str, Any]:
    """Record every file under `folder` (size and digest) with `key` and `info`; returns the manifest."""
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"key": key, "files": files, "info": info}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def check_entry(folder: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) for a trustworthy entry, else (None, why it cannot be trusted)."""
    if not folder.is_dir():
        return None, "not built yet"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "no manifest (incomplete build)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest: {exc}"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        return None, "manifest lists no files"
    if manifest.get("key") != key:
        return None, f"manifest key {manifest.get('key')!r} does not match the configuration's {key!r}"
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return None, f"missing file {name}"
        if path.stat().st_size != meta.get("size"):
            return None, f"{name} has {path.stat().st_size} bytes, the manifest says {meta.get('size')}"
        if sha256(path) != meta.get("sha256"):
            return None, f"{name} does not match its recorded SHA-256"
    return manifest, None


def ensure_entry(
    root: Path,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    *,
    on_rebuild: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """The folder of entry `key`, built by `build(staging_folder) -> info` unless a trustworthy one exists.

    Returns (folder, manifest, built_now). `on_rebuild(reason)` hears why an existing entry was not trusted.
    """
    folder = Path(root).expanduser() / key
    with locked(folder):
        manifest, reason = check_entry(folder, key)
        if manifest is not None:
            return folder, manifest, False
        if folder.exists():
            if on_rebuild is not None:
                on_rebuild(reason or "invalid")
            shutil.rmtree(folder)
        staging = folder.with_name(f".{key}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            info = build(staging)
            manifest = write_manifest(staging, key, info)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder, manifest, True
