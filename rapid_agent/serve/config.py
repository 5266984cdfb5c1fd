"""The server's settings (`ServeConfig`: bind address, limits, auth, queue) and its pipelines: each model name the
server answers to maps to one `RapidContext` (captioner + reasoner + mode + generation and engine options).

Pipelines come from `NAME=CAPTIONER,REASONER[,MODE]` strings (the `--pipeline` option) or a YAML/JSON file whose
entries name any RapidContext field; both start from a base context (the command line's context options), so
generation and engine options given once apply to every pipeline unless an entry overrides them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from rapid_agent.backends import GenerationConfig
from rapid_agent.config import RapidContext

#: what a served model name may look like (it appears in URLs, metrics labels and logs)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
#: the name of the pipeline the command line's context options describe, when no other name is given
DEFAULT_MODEL_NAME = "rapid"


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens and what it accepts. Every limit answers a request that crosses it with a 4xx."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0 for every interface)"})
    port: int = field(default=8000, metadata={"help": "port to bind (0: any free port)"})
    api_key_file: str | None = field(
        default=None, metadata={"help": "file of accepted API keys, one a line ('#' comments); enables auth"}
    )
    api_key_env: str = field(
        default="RAPID_API_KEYS",
        metadata={"help": "environment variable holding accepted API keys, comma-separated; enables auth when set"},
    )
    max_body_bytes: int = field(
        default=20 * 2**20, metadata={"help": "largest request body accepted; larger ones get 413"}
    )
    max_image_pixels: int = field(
        default=25_000_000,
        metadata={"help": "refuse images with more pixels than this (read from the header, before decoding)"},
    )
    request_timeout_s: float = field(
        default=300.0, metadata={"help": "per-request bound, queueing included; a request past it gets 504"}
    )
    max_active: int = field(
        default=64,
        metadata={"help": "requests running through the pipeline at once (they share the engines' batches)"},
    )
    max_queue: int = field(
        default=256, metadata={"help": "requests waiting for a slot; beyond them a request gets 429 + Retry-After"}
    )
    allow_remote_images: bool = field(
        default=False,
        metadata={
            "help": "fetch http(s) image URLs; never from a loopback, private, link-local, multicast, unspecified or "
            "reserved address unless --remote-image-allow names it"
        },
    )
    remote_image_allow: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "internal hosts and networks remote images may come from all the same: comma-separated host "
            "names, addresses and CIDR networks, e.g. 'images.internal,10.1.0.0/16'"
        },
    )
    remote_image_max_bytes: int = field(default=10 * 2**20, metadata={"help": "largest remote image fetched"})
    remote_image_timeout_s: float = field(default=10.0, metadata={"help": "time bound on fetching one remote image"})
    drain_timeout_s: float = field(
        default=60.0,
        metadata={"help": "on shutdown, how long in-flight requests may take to finish (new ones get 503)"},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")
        for name in ("max_body_bytes", "max_image_pixels", "max_active", "remote_image_max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue!r}")
        for name in ("request_timeout_s", "remote_image_timeout_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        allow = self.remote_image_allow  # the command line gives one comma-separated string
        entries = allow.split(",") if isinstance(allow, str) else list(allow)
        entries = tuple(str(e).strip() for e in entries if str(e).strip())
        split_allow_list(entries)
        object.__setattr__(self, "remote_image_allow", entries)


#: a host name as an allow-list may name it (letters, digits, '-', '_', dot-separated labels)
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def split_allow_list(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[IPv4Network | IPv6Network, ...]]:
    """`remote_image_allow` as host names (lower case, no trailing dot) and networks (an address is a network of
    one). Raises ValueError quoting an entry that is neither."""
    hosts, networks = set(), []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if not _HOST_NAME.match(name):
            raise ValueError(f"remote_image_allow: {entry!r} is neither a host name nor an IP address or CIDR network")
        hosts.add(name)
    return frozenset(hosts), tuple(networks)


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ValueError(
            f"pipeline name {name!r} must start with a letter or digit and hold only letters, digits and ._:/- "
            "(at most 128 characters)"
        )
    return name


def parse_pipeline(text: str, base: RapidContext) -> tuple[str, RapidContext]:
    """`NAME=CAPTIONER,REASONER[,MODE]` as a named context. An empty captioner or reasoner means none (a mode
    'none' pipeline needs no captioner; a pipeline without a reasoner answers with the captioner's text)."""
    name, sep, rest = text.partition("=")
    parts = [p.strip() for p in rest.split(",")]
    if not sep or len(parts) not in (2, 3):
        raise ValueError(f"--pipeline looks like NAME=CAPTIONER,REASONER[,MODE], got {text!r}")
    changes: dict[str, Any] = {"captioner": parts[0] or None, "reasoner": parts[1] or None}
    if len(parts) == 3:
        changes["mode"] = parts[2]
    try:
        return check_model_name(name.strip()), base.replace(**changes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--pipeline {text!r}: {exc}") from None


def context_from_entry(entry: Mapping[str, Any], base: RapidContext) -> RapidContext:
    """A RapidContext from one config-file entry: RapidContext fields over `base`; `captioner_gen`/`reasoner_gen`
    given as mappings change only the settings they name."""
    changes = dict(entry)
    for role in ("captioner", "reasoner"):
        gen = changes.get(f"{role}_gen")
        if isinstance(gen, Mapping):
            changes[f"{role}_gen"] = dataclasses.replace(getattr(base, f"{role}_gen"), **gen)
    if "prompts" in changes:
        raise ValueError("prompts cannot be set from a pipelines file")
    return base.replace(**changes)


def load_pipelines_file(path: str | Path, base: RapidContext) -> dict[str, RapidContext]:
    """Pipelines from a YAML or JSON file: a list of entries, each a `name` plus RapidContext fields, e.g.

    - name: rapid-small
      captioner: hf:/models/captioner
      reasoner: openai:qwen3@http://127.0.0.1:8001/v1
      mode: qcap+sol
      reasoner_gen: {max_new_tokens: 2048}
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--pipelines-file: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # a YAML or JSON syntax error: say which file
        raise ValueError(f"--pipelines-file {str(path)!r} is not valid {path.suffix or 'YAML'}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"--pipelines-file {str(path)!r}: expected a non-empty list of pipelines")
    pipelines: dict[str, RapidContext] = {}
    for i, entry in enumerate(data):
        where = f"--pipelines-file {str(path)!r}, entry {i + 1}"
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ValueError(f"{where}: expected a mapping with a 'name', got {entry!r}")
        entry = dict(entry)
        name = entry.pop("name")
        try:
            check_model_name(name)
            if name in pipelines:
                raise ValueError(f"pipeline {name!r} is defined twice")
            pipelines[name] = context_from_entry(entry, base)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return pipelines


def generation_for_request(
    gen: GenerationConfig,
    *,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
) -> GenerationConfig:
    """The answering model's sampling for one request: the request's settings over the pipeline's, with
    `max_tokens` capped at the pipeline's `max_new_tokens` (a client cannot make the server write more)."""
    changes: dict[str, Any] = {}
    if max_tokens is not None:
        changes["max_new_tokens"] = min(max_tokens, gen.max_new_tokens)
    if temperature is not None:
        changes["temperature"] = temperature
    if top_p is not None:
        changes["top_p"] = top_p
    if seed is not None:
        changes["seed"] = seed
    return dataclasses.replace(gen, **changes) if changes else gen
