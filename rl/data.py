"""Training data: any question/image/answer table mapped to what TRL's GRPOTrainer takes.

Each row becomes a conversational `prompt` (an image part, then the captioner prompt of the perception mode), an
`image`, and the columns the rewards read: `question`, gold `answer` (a `\\boxed{}` around it removed) and `choices`.
Rows whose image is missing or unreadable, that hold several images, or whose gold answer is empty or unparseable
are dropped and counted by reason in the log.

Sources: the built-in `world` (the seeded synthetic world), a local .parquet/.jsonl/.json/.csv file or a directory of
them (or one saved with `save_to_disk`), or a hub id. ViRL39K (`TIGER-Lab/ViRL39K`) is one parquet table with
columns `question` (with an `<image>` placeholder), `answer` (boxed), `image` (a list of paths such as
`images/xxx.png`) plus `qid`, `category`, `source` and pass rates, and its images come as `images.zip`: a hub id is
fetched and its archives unpacked once into the cache (`rapid_agent.rl.hub`), and relative paths start there.

Images are decoded by `rapid_agent.inputs.load_image`, the one place inference decodes them too (transparency laid
on white, the same pixel budget), so the policy trains on the pixels it will see when it captions. A row whose
image is already what `load_image` gives keeps its file; any other is stored as the decoded PNG.

Training refuses a dataset with no usable row, or fewer than `min_kept_fraction` of its rows, with the counts per
reason: a wrong `image_root` must not start a run on a sliver of the data.
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

from rapid_agent.answers import last_boxed
from rapid_agent.inputs import DEFAULT_MAX_PIXELS, ImageError, load_image
from rapid_agent.perception import captioner_prompt
from rapid_agent.prompts import DEFAULT_PROMPTS, Prompts
from rapid_agent.rl.config import WORLD, RapidRLConfig

logger = logging.getLogger(__name__)

_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
_SAVED = ("dataset_info.json", "state.json", "dataset_dict.json")
_PLACEHOLDER = re.compile(r"<image\s*\d*>", re.IGNORECASE)
_TEXT = datasets.Value("string")
_ROW_FEATURES = datasets.Features(
    {
        "prompt": [{"role": _TEXT, "content": [{"type": _TEXT, "text": _TEXT}]}],
        "image": datasets.Image(decode=False),
        "question": _TEXT,
        "answer": _TEXT,
        "choices": datasets.List(_TEXT),
        "_drop": _TEXT,  # why the row is dropped; empty for kept rows
    }
)


def load_train_dataset(config: RapidRLConfig) -> datasets.Dataset:
    """The training split of `config.dataset_name`, prepared for the trainer; drops are logged, and a dataset that
    kept too few rows is refused."""
    raw, root = load_raw(config)
    dataset, dropped = prepare_dataset(
        raw,
        mode=config.mode,
        question_column=config.question_column,
        image_column=config.image_column,
        answer_column=config.answer_column,
        choices_column=config.choices_column,
        image_root=config.image_root or root,
        templates=config.templates,
        max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS,
        num_proc=config.dataset_num_proc,
    )
    check_kept(len(dataset), dropped, config.min_kept_fraction, config.dataset_name)
    if config.max_samples is not None:
        dataset = dataset.select(range(min(config.max_samples, len(dataset))))
    if dropped:
        total = sum(dropped.values())
        logger.warning(
            "data %s: kept %d rows, dropped %d: %s", config.dataset_name, len(dataset), total, dict(dropped)
        )
    else:
        logger.info("data %s: %d rows, none dropped", config.dataset_name, len(dataset))
    return dataset


class DatasetError(ValueError):
    """The training data is unusable as a whole (no rows, or too few kept); the message gives the counts."""


def check_kept(kept: int, dropped: Counter, min_fraction: float, source: str) -> None:
    """Refuse a dataset with no usable row, or one that kept less than `min_fraction` of its rows."""
    total = kept + sum(dropped.values())
    reasons = ", ".join(f"{reason}: {count}" for reason, count in dropped.most_common()) or "none"
    hint = ""
    if dropped.get("missing image"):
        hint = (
            " Relative image paths start from `image_root` (default: the data file's folder; for a hub dataset, "
            "its unpacked image archives): check that it holds the images."
        )
    if kept == 0:
        raise DatasetError(f"dataset {source!r}: no usable rows out of {total} (dropped by reason: {reasons}).{hint}")
    if kept / total < min_fraction:
        raise DatasetError(
            f"dataset {source!r}: kept only {kept} of {total} rows ({kept / total:.1%} < min_kept_fraction "
            f"{min_fraction:g}); dropped by reason: {reasons}.{hint}"
        )


def load_raw(config: RapidRLConfig) -> tuple[datasets.Dataset, Path | None]:
    """The raw table and the folder its relative image paths start from."""
    name, split = config.dataset_name, config.dataset_split
    if name == WORLD:
        from rapid_agent.world import build_world

        world = build_world(
            config.world_train_size,
            config.world_test_size,
            seed=config.world_seed,
            levels=config.world_levels,
            max_objects=config.world_max_objects,
        )
        return world[split], None
    path = Path(name).expanduser()
    if path.is_file():
        return _load_files([path]), path.parent
    if path.is_dir():
        if any((path / marker).exists() for marker in _SAVED):
            saved = datasets.load_from_disk(str(path))
            return (saved[split] if isinstance(saved, datasets.DatasetDict) else saved), path
        files = sorted(f for f in path.rglob("*") if f.suffix in _FORMATS and f.is_file())
        if not files:
            raise ValueError(f"dataset_name: no {'/'.join(_FORMATS)} files under {str(path)!r}")
        return _load_files(files), path
    from rapid_agent.rl.hub import fetch_hub_dataset, looks_like_hub_id, table_files

    if not looks_like_hub_id(name):
        raise ValueError(f"dataset_name: {name!r} is neither 'world', an existing file or folder, nor a hub id")
    try:
        snapshot, unpacked = fetch_hub_dataset(name, revision=config.dataset_revision)
    except Exception as exc:
        raise ValueError(
            f"dataset_name: could not fetch the hub dataset {name!r} ({type(exc).__name__}: {exc}). Offline, "
            "download it where there is network (it is then cached) or pass a local folder."
        ) from exc
    files = table_files(snapshot, split)
    if not files:
        raise ValueError(f"dataset_name: the hub dataset {name!r} holds no {'/'.join(_FORMATS)} table")
    return _load_files(files), unpacked or snapshot


def _load_files(files: list[Path]) -> datasets.Dataset:
    formats = {_FORMATS.get(f.suffix) for f in files}
    if len(formats) != 1 or None in formats:
        raise ValueError(f"dataset_name: files must share one of {sorted(_FORMATS)}, got {[f.name for f in files]}")
    return datasets.load_dataset(formats.pop(), data_files=[str(f) for f in files], split="train")


def prepare_dataset(
    raw: datasets.Dataset,
    *,
    mode: str,
    question_column: str = "question",
    image_column: str = "image",
    answer_column: str = "answer",
    choices_column: str = "choices",
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    templates: Prompts = DEFAULT_PROMPTS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, Counter]:
    """Map `raw` to prompt/image/question/answer/choices rows; returns them and the drop counts by reason.
    `max_pixels` is the pixel budget images are decoded with (the inference default unless the recipe sets one)."""
    missing = [c for c in (question_column, image_column, answer_column) if c not in raw.column_names]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing}; it has {raw.column_names} (set *_column to name them)")
    raw = _undecoded(raw, image_column)
    root = Path(image_root) if image_root is not None else None
    has_choices = choices_column in raw.column_names

    def convert(row: dict) -> dict:
        question = _PLACEHOLDER.sub("", str(row[question_column] or "")).strip()
        image, problem = _image(row[image_column], root, max_pixels)
        answer = _gold(row[answer_column])
        if problem is None and not question:
            problem = "empty question"
        if problem is None and answer is None:
            problem = "unparseable answer"
        if problem is not None:
            return {"prompt": [], "image": None, "question": "", "answer": "", "choices": [], "_drop": problem}
        text = captioner_prompt(mode, question, templates)
        content = [{"type": "image", "text": None}, {"type": "text", "text": text}]
        choices = row[choices_column] if has_choices else None
        return {
            "prompt": [{"role": "user", "content": content}],
            "image": image,
            "question": question,
            "answer": answer,
            "choices": [str(c) for c in choices] if isinstance(choices, (list, tuple)) else [],
            "_drop": "",
        }

    # never from datasets' cache: its fingerprint sees the code and arguments, not the image files, so a run after
    # the images were unpacked (or removed) would reuse the earlier run's verdicts on them (a fresh fingerprint keeps
    # the steps after this one from reusing theirs too)
    mapped = raw.map(
        convert,
        remove_columns=raw.column_names,
        features=_ROW_FEATURES,
        desc="preparing rows",
        load_from_cache_file=False,
        new_fingerprint=uuid.uuid4().hex,
        num_proc=num_proc,
    )
    dropped = Counter(r for r in mapped["_drop"] if r)
    kept = mapped.filter(lambda r: not r, input_columns="_drop").remove_columns("_drop")
    if max_samples is not None:
        kept = kept.select(range(min(max_samples, len(kept))))
    return kept.cast_column("image", datasets.Image()), dropped


def _undecoded(raw: datasets.Dataset, column: str) -> datasets.Dataset:
    """Hand images over as raw bytes/paths so that a corrupt one is a dropped row, not a crash."""
    feature = raw.features[column]
    if isinstance(feature, datasets.Image):
        return raw.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image):
        return raw.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return raw


def _image(value: Any, root: Path | None, max_pixels: int) -> tuple[dict | None, str | None]:
    """({"bytes", "path"}, None) for a usable image, or (None, why not). The image is what `load_image` makes of
    it: the original file when decoding changes nothing, else the decoded pixels as PNG."""
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            return None, "several images"
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None or value == "":
        return None, "missing image"
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        value = buffer.getvalue()
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_absolute() and root is not None:
            path = root / path
        if not path.is_file():
            return None, "missing image"
        value = str(path)
    try:
        image = load_image(value, max_pixels=max_pixels)
    except ImageError:
        return None, "unreadable image"
    if _header(value) == ("RGB", image.size):
        # a plain RGB image within budget decodes to itself: keep the file (or bytes) rather than a re-encoded copy
        return (
            {"bytes": None, "path": value} if isinstance(value, str) else {"bytes": bytes(value), "path": None}
        ), None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}, None


def _header(value: str | bytes) -> tuple[str, tuple[int, int]] | None:
    """An encoded image's mode and size, read from its header without decoding the pixels."""
    try:
        with Image.open(value if isinstance(value, str) else io.BytesIO(value)) as image:
            return image.mode, image.size
    except Exception:  # unreadable: load_image has said why already
        return None


def _gold(value: Any) -> str | None:
    """The gold answer without its `\\boxed{}`; None when there is none or its box does not close."""
    if value is None:
        return None
    text = str(value).strip()
    if "\\boxed" in text or "\\fbox" in text:
        text = last_boxed(text) or ""
    return text or None
