"""Items of the synthetic world and their export to a `datasets.DatasetDict` with a held-out test split.

Each item is a dict with the columns of `FEATURES`; `question`, `image` and `answer` are what the trainer and the
evaluator take, `description`, `objects` (every object on its own), `query_caption` and `solution` are the texts the captioner's
supervised targets are made of (see `styles.py`), and `signature` (the scene's objects and cells plus the question
text) is what makes the test split held out.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import datasets

from rapid_agent.world.questions import TEMPLATES, ask, describe, list_objects, query_caption, solution
from rapid_agent.world.scenes import check_geometry, render, sample_scene

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "description": datasets.Value("string"),
        "objects": datasets.Value("string"),
        "solution": datasets.Value("string"),
        "query_caption": datasets.Value("string"),
        "level": datasets.Value("int32"),
        "kind": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "signature": datasets.Value("string"),
    }
)


def _iter_items(
    rng: random.Random, *, prefix: str, levels: Sequence[int], image_size: int, grid: int, max_objects: int
) -> Iterator[dict[str, Any]]:
    levels = tuple(levels)
    if not levels or any(level not in TEMPLATES for level in levels):
        raise ValueError(f"levels must be a non-empty subset of {sorted(TEMPLATES)}, got {levels!r}")
    check_geometry(image_size, grid)
    max_objects = min(max_objects, grid * grid)
    # Two objects at least, so that every level-2 and level-3 template can usually be posed.
    min_objects = min(2, max_objects)
    index = 0
    while True:
        level = levels[index % len(levels)]  # cycled, so levels come in equal shares
        # The template is drawn first and scenes are redrawn until it is well defined, so templates that are often
        # ill defined (a difference of equal counts, a tie for "most") still get an equal share within their level.
        kind = rng.choice(sorted(TEMPLATES[level]))
        for _ in range(1000):
            scene = sample_scene(rng, grid=grid, min_objects=min_objects, max_objects=max_objects)
            question = ask(scene, level, rng, kind=kind)
            if question is not None:
                break
        else:
            raise ValueError(
                f"template {kind!r} is never well defined with grid={grid!r}, max_objects={max_objects!r}"
            )
        yield {
            "id": f"{prefix}{index:06d}",
            "image": render(scene, image_size),
            "question": question.text,
            "answer": question.answer,
            "description": describe(scene),
            "objects": list_objects(scene),
            "solution": solution(scene, question),
            "query_caption": query_caption(scene, question),
            "level": question.level,
            "kind": question.kind,
            "choices": list(question.choices),
            "signature": f"{scene.signature()}|{question.text}",
        }
        index += 1


def generate_items(
    n: int,
    *,
    seed: int,
    levels: Sequence[int] = (1, 2, 3),
    image_size: int = 112,
    grid: int = 4,
    max_objects: int = 6,
) -> list[dict[str, Any]]:
    """`n` items, deterministic per `seed`; levels are cycled in the given order."""
    rng = random.Random(seed)
    stream = _iter_items(
        rng, prefix=f"s{seed}-", levels=levels, image_size=image_size, grid=grid, max_objects=max_objects
    )
    return [next(stream) for _ in range(n)]


def split_items(
    n: int,
    *,
    seed: int,
    split: str,
    exclude: Collection[str] = (),
    levels: Sequence[int] = (1, 2, 3),
    image_size: int = 112,
    grid: int = 4,
    max_objects: int = 6,
) -> list[dict[str, Any]]:
    """The first `n` items of the world's `split` stream ("train" or "test") for `seed` whose (scene, question)
    signature is not in `exclude`. Each split of each seed is its own stream, stable across processes."""
    # String seeds hash through SHA-512 in `random`, so the streams are stable across processes.
    kwargs = {"levels": levels, "image_size": image_size, "grid": grid, "max_objects": max_objects}
    stream = _iter_items(random.Random(f"rapid-world:{seed}:{split}"), prefix=f"{split}-{seed}-", **kwargs)
    items: list[dict[str, Any]] = []
    budget = 20 * n + 1000
    for item in stream:
        if len(items) == n:
            break
        budget -= 1
        if budget < 0:
            raise ValueError(
                f"could not draw {n} {split} items outside the {len(exclude)} excluded with grid={grid!r}, "
                f"max_objects={max_objects!r}: the world is too small; use a larger grid or fewer items"
            )
        if item["signature"] not in exclude:
            items.append(item)
    return items


def build_world(
    n_train: int,
    n_test: int,
    *,
    seed: int = 0,
    levels: Sequence[int] = (1, 2, 3),
    image_size: int = 112,
    grid: int = 4,
    max_objects: int = 6,
) -> datasets.DatasetDict:
    """A "train"/"test" DatasetDict; no (scene, question) signature of test appears in train.

    The splits come from separate seed streams; train items that collide with test are skipped (the test split
    depends only on `seed` and `n_test`, so it stays fixed when `n_train` changes).
    """
    kwargs = {"levels": levels, "image_size": image_size, "grid": grid, "max_objects": max_objects}
    test = split_items(n_test, seed=seed, split="test", **kwargs)
    train = split_items(n_train, seed=seed, split="train", exclude={item["signature"] for item in test}, **kwargs)
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(train, features=FEATURES),
            "test": datasets.Dataset.from_list(test, features=FEATURES),
        }
    )
