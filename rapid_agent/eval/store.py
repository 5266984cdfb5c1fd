"""The out folder: append-only JSONL files of per-sample records, the only place results live.

    OUT/results.jsonl                       one record per sample, row (captioner x reasoner x mode) and settings
    OUT/perceptions.jsonl                   one captioner output per sample, mode, captioner and its settings
    OUT/results.shard-002-of-004.jsonl      what shard 2 of 4 wrote (shards never share a file)
    OUT/results.merged.jsonl                records `merge` brought in from other out folders

Every record is written whole, one line at a time, and flushed as soon as its batch finishes, so a killed run loses
only the batch in flight. Reading tolerates the half-written last line a kill can leave (a new writer truncates it
first), reads every file of its kind (all shards, any earlier run) and keeps one record per key: the latest. Each
writer holds an exclusive lock on its own file (`filelock`, on a hidden `.<file>.lock` beside it), so two writers can
never interleave lines in it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

RESULTS = "results"
PERCEPTIONS = "perceptions"

#: the fields that identify a result record: one per sample, table row, settings and sampling seed
RESULT_KEY = ("benchmark", "sample_id", "mode", "captioner", "reasoner", "settings", "seed")
#: the fields that identify a cached perception: one per sample, mode, captioner, its settings and sampling seed
#: (None for a greedy captioner, and in records written before seeds were kept: they read as seed None)
PERCEPTION_KEY = ("benchmark", "sample_id", "mode", "captioner", "settings", "seed")


def record_key(record: dict, fields: tuple[str, ...]) -> tuple:
    return tuple(record.get(f) for f in fields)


def shard_file(out: Path, kind: str, shard_index: int = 0, num_shards: int = 1) -> Path:
    if num_shards == 1:
        return out / f"{kind}.jsonl"
    return out / f"{kind}.shard-{shard_index:03d}-of-{num_shards:03d}.jsonl"


def kind_files(out: Path, kind: str) -> list[Path]:
    """Every file of `kind` in `out` (`kind.jsonl`, `kind.<anything>.jsonl`), in name order."""
    return sorted(
        p for p in Path(out).glob(f"{kind}*.jsonl") if p.name == f"{kind}.jsonl" or p.name.startswith(f"{kind}.")
    )


def read_lines(path: Path) -> Iterator[dict]:
    """The complete records of one file; a last line cut short by a kill is ignored, any other bad line raises."""
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write was cut off
                return
            raise ValueError(f"{path}:{number}: corrupt record (not JSON)") from None


def read_records(
    out: str | Path, kind: str, key: tuple[str, ...], keep: Collection[str] | None = None
) -> dict[tuple, dict]:
    """One record per key across every file of `kind`: the one written last. `keep` names the fields to hold on to
    (a full run's reasoner outputs can reach gigabytes; the table needs none of them)."""
    latest: dict[tuple, dict] = {}
    for path in kind_files(Path(out), kind):
        for record in read_lines(path):
            k = record_key(record, key)
            if k not in latest or record.get("time", 0) >= latest[k].get("time", 0):
                latest[k] = record if keep is None else {f: record.get(f) for f in (*key, "time", *keep)}
    return latest


def read_results(out: str | Path, keep: Collection[str] | None = None) -> list[dict]:
    return list(read_records(out, RESULTS, RESULT_KEY, keep).values())


class JsonlWriter:
    """Appends records to one file, whole lines only, under an exclusive lock held until `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # not thread-local: a runner may close its writer from another thread than the one that opened it
        self._lock = FileLock(path.with_name(f".{path.name}.lock"), timeout=0, thread_local=False)
        try:
            self._lock.acquire()
        except Timeout:
            raise RuntimeError(
                f"another process is writing {path}; give this run another --shard-index or out folder, or wait for it"
            ) from None
        try:
            self._file: IO[bytes] = path.open("a+b")
            self._repair()
        except BaseException:
            self.close()
            raise

    def _repair(self) -> None:
        """Cut a half-written last line (left by a kill) so the next record starts on its own line."""
        self._file.seek(0, os.SEEK_END)
        size = self._file.tell()
        if size == 0:
            return
        self._file.seek(max(0, size - 1))
        if self._file.read(1) == b"\n":
            return
        self._file.seek(0)
        data = self._file.read()
        self._file.truncate(data.rfind(b"\n") + 1)
        self._file.seek(0, os.SEEK_END)

    def append(self, records: Iterable[dict]) -> None:
        now = time.time()
        payload = b"".join(
            json.dumps({**r, "time": r.get("time", now)}, ensure_ascii=False, default=_jsonable).encode() + b"\n"
            for r in records
        )
        if payload:
            self._file.write(payload)
            self._file.flush()  # into the kernel: survives the process being killed (not a power cut)

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
        self._lock.release()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def merge(out: str | Path, sources: Iterable[str | Path]) -> int:
    """Bring the records of other out folders (shards run on other machines) into `out`, as `KIND.merged.jsonl`.
    Only records `out` lacks (by key, or newer) are added, so merging twice adds nothing. Returns how many."""
    out = Path(out)
    added = 0
    for kind, key in ((RESULTS, RESULT_KEY), (PERCEPTIONS, PERCEPTION_KEY)):
        have = read_records(out, kind, key)
        new: dict[tuple, dict] = {}
        for source in sources:
            if Path(source).resolve() == out.resolve():
                continue
            if not Path(source).is_dir():
                raise ValueError(f"merge source {str(source)!r} is not a folder")
            for k, record in read_records(source, kind, key).items():
                best = new.get(k) or have.get(k)
                if best is None or record.get("time", 0) > best.get("time", 0):
                    new[k] = record
        if new:
            with JsonlWriter(out / f"{kind}.merged.jsonl") as writer:
                writer.append(new.values())
            added += len(new) if kind == RESULTS else 0
    return added
