"""Hub datasets whose images ship as archives beside the table, fetched and unpacked once into the cache.

ViRL39K (`TIGER-Lab/ViRL39K`) is the case this is for: its repository holds one table, `39Krelease.parquet`, whose
`image` column lists paths such as `images/xxx.png`, and the images themselves in `images.zip`. Its card says to
download the repository and unzip the archive next to the table. `datasets.load_dataset("TIGER-Lab/ViRL39K")`
loads the table only, so every relative path resolves against the working directory and every row is dropped.

`fetch_hub_dataset` does what the card says with the `huggingface_hub` API: `snapshot_download` (cached by the hub
client, and offline once cached), then every `.zip` of the snapshot unpacked under
`$RAPID_AGENT_CACHE/datasets/<repo>/<revision>/`, once, under a lock, into a staging folder renamed into place (an
interrupted unpack is redone, never half used). Relative image paths then start from that folder.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

from rapid_agent.models import ensure_built
from rapid_agent.rl.models import cache_root

logger = logging.getLogger(__name__)

#: files of a dataset repository worth downloading: tables, archives of images, and the card
TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
ARCHIVE_SUFFIX = ".zip"
_MARKER = ".unpacked.json"


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` with no path that exists locally."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).expanduser().exists() and not name.startswith((".", "~"))


def fetch_hub_dataset(repo_id: str, *, revision: str | None = None) -> tuple[Path, Path | None]:
    """Download `repo_id`'s tables and image archives (cached) and unpack the archives once.

    Returns the snapshot folder (the tables) and the folder relative image paths start from (the unpacked archives;
    None when the repository has no archive, i.e. its images are inside the tables)."""
    from huggingface_hub import snapshot_download

    patterns = [f"*{s}" for s in (*TABLE_SUFFIXES, ARCHIVE_SUFFIX)]  # fnmatch: `*` crosses folders too
    snapshot = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns))
    archives = sorted(p for p in snapshot.rglob(f"*{ARCHIVE_SUFFIX}") if p.is_file())
    if not archives:
        return snapshot, None
    # the snapshot folder is named after the commit it holds: one unpacked copy per revision of the dataset
    target = cache_root() / "datasets" / repo_id.replace("/", "__") / snapshot.name
    identity = [{"archive": str(a.relative_to(snapshot)), "bytes": a.stat().st_size} for a in archives]

    def unpacked(path: Path) -> bool:
        marker = path / _MARKER
        return marker.is_file() and json.loads(marker.read_text()) == identity

    def unpack(staging: Path) -> None:
        staging.mkdir(parents=True)
        for archive in archives:
            logger.info("unpacking %s into %s", archive.name, target)
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(staging)  # zipfile drops absolute and '..' parts of member names
        (staging / _MARKER).write_text(json.dumps(identity))

    if ensure_built(target, unpack, unpacked):
        logger.info("%s: unpacked %d archive(s) into %s", repo_id, len(archives), target)
    return snapshot, target


def table_files(snapshot: Path, split: str) -> list[Path]:
    """The table files of `split` in a snapshot: parquet when there is any (else JSON lines, JSON, CSV), and of
    those the ones whose name mentions the split, when some do (`data/train-0000.parquet`); else all of them (a
    single-table release such as `39Krelease.parquet`)."""
    for suffix in TABLE_SUFFIXES:
        files = sorted(p for p in snapshot.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
        if files:
            named = [p for p in files if split in p.relative_to(snapshot).as_posix()]
            return named or files
    return []
