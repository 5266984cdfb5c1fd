"""The one way the library names a configuration by a short hash: the cache keys of built models (the demo's
captioners, merged LoRA checkpoints) and the settings fingerprints of evaluation records. Equal JSON-able values
give equal keys on every machine and run (keys sorted, no whitespace, non-JSON values by `str`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(payload: Any, length: int = 16) -> str:
    """The first `length` hex digits of the SHA-256 of `payload` as canonical JSON."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
