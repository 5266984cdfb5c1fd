"""The synthetic world (`rapid_agent.world`) as a benchmark: seeded splits of verifiable questions about coloured
shapes on a grid, scored by the graph's check, each question level's accuracy beside the score.

    --benchmark world --option world.seed=1 --option world.n=48     48 items of the test stream of world seed 1
    World.from_items(items)                                         items drawn already (the demo's held-out split)

Each split of each seed is its own item stream (`rapid_agent.world.split_items`): the same options give the same
items on any machine. The gold answers and choices go to the graph as the world states them; a record's `fields`
keep the item's level and question kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options, accuracy


@dataclass(frozen=True)
class WorldOptions(Options):
    seed: int = field(default=0, metadata={"help": "world seed: which item stream the split is drawn from"})
    n: int = field(default=48, metadata={"help": "items drawn"})
    levels: tuple[int, ...] = field(default=(1, 2), metadata={"help": "question levels, cycled in this order"})
    image_size: int = field(default=112, metadata={"help": "image side in pixels (a multiple of 28 * grid)"})
    grid: int = field(default=4, metadata={"help": "cells per image side"})
    max_objects: int = field(default=8, metadata={"help": "most objects in one scene"})

    def __post_init__(self) -> None:
        if self.split not in (None, "test", "train"):
            raise ValueError(f"split: the world has 'test' and 'train' streams, got {self.split!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n!r}")


class World(Adapter):
    name = "world"
    title = "World"
    hub_id = ""
    metric = "accuracy (level_N: accuracy on the questions of level N)"
    options_type = WorldOptions

    def __init__(
        self, source: str | None = None, *, label: str | None = None, items: Sequence[dict] | None = None, **options
    ) -> None:
        if source:
            raise ValueError(f"the world draws its items (options seed, n, ...), it reads no source; got {source!r}")
        super().__init__(None, label=label, **options)
        self.given = None if items is None else list(items)

    @classmethod
    def from_items(cls, items: Sequence[dict], *, label: str | None = None) -> World:
        """An adapter over world items already drawn (`rapid_agent.world` dicts)."""
        return cls(label=label, items=items)

    def read_rows(self) -> list[dict]:
        if self.given is not None:
            return self.given
        from rapid_agent.world import split_items

        opts = self.options
        return split_items(
            opts.n,
            seed=opts.seed,
            split=opts.split or "test",
            levels=opts.levels,
            image_size=opts.image_size,
            grid=opts.grid,
            max_objects=opts.max_objects,
        )

    def to_sample(self, row: dict, index: int) -> EvalSample:
        if row.get("answer") is None or not str(row["answer"]).strip():
            raise BadRow("no gold answer")
        return EvalSample(
            self.label,
            self.row_id(row, index),
            row["question"],
            (row["image"],),
            str(row["answer"]),
            tuple(row.get("choices") or ()),
            {"level": row.get("level"), "kind": row.get("kind")},
        )

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        acc = accuracy(records)
        by_level: dict[Any, list[dict]] = {}
        for record in records:
            by_level.setdefault((record.get("fields") or {}).get("level"), []).append(record)
        levels = {f"level_{lv}": accuracy(mine) for lv, mine in sorted(by_level.items()) if lv is not None}
        return {"score": acc, "accuracy": acc, **levels}
