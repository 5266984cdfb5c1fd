"""Read a benchmark's rows from a hub id or a local copy, in the dataset's own schema.

A local copy is a file or a folder of parquet / JSONL / JSON / arrow files, as a hub snapshot (`git clone` of the
dataset repository, `huggingface-cli download`) or `Dataset.save_to_disk` leaves it. Images stay as the dataset stores
them, undecoded: embedded bytes (the `{"bytes", "path"}` struct of an `Image` column), or a path relative to the data
file or the copy's root. `image_value` turns any of these into what the graph accepts (bytes or an absolute path);
decoding waits until a sample is actually perceived.

    rows = load_rows("/data/MathVista", split="testmini")         # a local snapshot
    rows = load_rows("AI4Math/MathVista", split="testmini")       # the hub (or its local cache when offline)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: data-file suffixes a local copy may use, in the order they are preferred when one folder holds several formats
DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json")
#: the key each row carries with the folders its relative image paths are resolved against
BASE_DIRS = "__base_dirs__"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SourceError(ValueError):
    """A benchmark source that cannot be read; the message names the source and what was expected."""


def is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not Path(source).exists()


def load_rows(
    source: str | Path, *, split: str | None = None, config: str | None = None, strict: bool = True
) -> list[dict]:
    """Every row of `split` (and `config`) of a local copy or hub dataset, as plain dicts. A local folder whose file
    names carry no split at all (a copy of one split) is read whole unless `strict`."""
    path = Path(source).expanduser()
    if path.exists():
        return _local_rows(path, split=split, config=config, strict=strict)
    if isinstance(source, str) and is_hub_id(source):
        return _hub_rows(source, split=split, config=config)
    raise SourceError(
        f"benchmark source {str(source)!r} is neither an existing file or folder nor a hub id (owner/name)"
    )


def image_value(value: Any, base_dirs: Iterable[str | Path] = ()) -> Any:
    """What a dataset stores for an image, made ready for the graph: bytes, an absolute path, a data URL or a PIL
    image. None (or an empty cell) stays None; a relative path that exists under none of `base_dirs` is returned
    as given, so that loading it fails later with the path in the message."""
    if value is None:
        return None
    if isinstance(value, dict):  # the parquet form of a datasets `Image` column
        if value.get("bytes"):
            return bytes(value["bytes"])
        return image_value(value.get("path"), base_dirs)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) if value else None
    if isinstance(value, str):
        if not value.strip():
            return None
        if value.startswith("data:"):
            return value
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return str(candidate)
        for base in base_dirs:
            if (Path(base) / candidate).is_file():
                return str((Path(base) / candidate).resolve())
        return value
    return value  # a PIL image (rows built in memory) passes through


def _local_rows(path: Path, *, split: str | None, config: str | None, strict: bool) -> list[dict]:
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        return _saved_rows(path, split=split)
    files = [path] if path.is_file() else _data_files(path, split=split, config=config)
    if not files and not strict and split:
        files = _data_files(path, split=None, config=config)
    if not files:
        wanted = f" for split {split!r}" if split else ""
        raise SourceError(f"no {'/'.join(DATA_SUFFIXES)} data files{wanted} under {str(path)!r}")
    root = path if path.is_dir() else path.parent
    rows: list[dict] = []
    for file in files:
        bases = [str(file.parent), str(root)] + (
            [str(file.parent / "images")] if (file.parent / "images").is_dir() else []
        )
        for row in _read_file(file):
            row[BASE_DIRS] = bases
            rows.append(row)
    return rows


def _matches(part: str, name: str) -> bool:
    """`part` (a file stem or folder name) names `name`: equal, or `name` followed by a shard or format suffix
    (`testmini-00000-of-00001`, `testmini.parquet`), never a longer name (`sample_variant10` is not variant 1)."""
    return part == name or part.startswith(name + "-") or part.startswith(name + ".")


def _data_files(root: Path, *, split: str | None, config: str | None) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES and ".cache" not in p.parts)
    files = [f for f in files if f.name not in ("dataset_info.json", "state.json", "dataset_dict.json")]
    if config:
        scoped = [f for f in files if config in f.relative_to(root).parts[:-1]]
        files = scoped or files
    if split:
        files = [
            f
            for f in files
            if _matches(f.stem, split) or any(_matches(p, split) for p in f.relative_to(root).parts[:-1])
        ]
    for suffix in DATA_SUFFIXES:  # one format per copy: a snapshot holding parquet and a JSON export reads the parquet
        chosen = [f for f in files if f.suffix == suffix]
        if chosen:
            return chosen
    return []


def _read_file(file: Path) -> list[dict]:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(file).to_pylist()
    if file.suffix == ".arrow":
        import pyarrow as pa

        with file.open("rb") as f:
            try:
                return pa.ipc.open_stream(f).read_all().to_pylist()
            except pa.ArrowInvalid:
                f.seek(0)
                return pa.ipc.open_file(f).read_all().to_pylist()
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{file}:{number}: not a JSON line ({exc})") from None
        return rows
    data = json.loads(text)
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        # a JSON object of id -> row (LogicVista's dataset.json): the key becomes the row's `id`
        return [{"id": key, **value} for key, value in data.items()]
    raise SourceError(f"{file}: expected a JSON list of rows or an object of id -> row")


def _saved_rows(path: Path, *, split: str | None) -> list[dict]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise SourceError(f"{str(path)!r} has splits {sorted(loaded)}, not {split!r}")
        loaded = loaded[split]
    return _dataset_rows(loaded)


def _hub_rows(hub_id: str, *, split: str | None, config: str | None) -> list[dict]:
    import datasets

    try:
        loaded = datasets.load_dataset(hub_id, config, split=split)
    except Exception as exc:  # offline without a cache, a wrong config: say which source and what to do
        raise SourceError(
            f"cannot load {hub_id!r} (config {config!r}, split {split!r}) from the hub or its cache: {exc}. "
            "Pass a local copy instead: --benchmark NAME=/path/to/copy"
        ) from exc
    return _dataset_rows(loaded)


def _dataset_rows(dataset: Any) -> list[dict]:
    """Rows of a `datasets.Dataset` with image columns left undecoded (bytes), like a parquet file gives them."""
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(
            getattr(feature, "feature", None), datasets.Image
        ):
            dataset = dataset.cast_column(name, type(feature)(datasets.Image(decode=False)))
    return [dict(row) for row in dataset]
