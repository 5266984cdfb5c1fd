"""Optional API-key auth: `Authorization: Bearer <key>` checked against keys from a file and/or an environment
variable. Keys are compared in constant time (`hmac.compare_digest`, against every key, no early exit), so response
times tell nothing about how much of a guess was right; no key is ever logged or echoed.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path


def load_api_keys(path: str | Path | None = None, env: str | None = None) -> tuple[str, ...]:
    """Accepted keys: one per line of `path` (blank lines and `#` comments skipped) plus the comma-separated ones in
    the environment variable `env`. Empty when neither gives any (auth off)."""
    keys: list[str] = []
    if path is not None:
        target = Path(path).expanduser()
        try:
            lines = target.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--api-key-file: cannot read {str(target)!r}: {exc.strerror or exc}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise ValueError(f"--api-key-file {str(target)!r} holds no key")
    if env:
        keys += [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
    for key in keys:
        if any(c.isspace() for c in key) or not key.isprintable():
            raise ValueError("an API key holds whitespace or unprintable characters")
    return tuple(dict.fromkeys(keys))


class KeyChecker:
    """Checks `Authorization` header values against the accepted keys. With no keys, every request passes."""

    def __init__(self, keys: tuple[str, ...] | list[str] = ()) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> bool:
        if not self._keys:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in self._keys:  # every key compared, whatever matched earlier
            ok |= hmac.compare_digest(given, key)
        return ok and bool(given)
