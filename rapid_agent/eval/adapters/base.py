"""The one shape every benchmark is mapped to, and the small interface an adapter implements.

An adapter reads its benchmark's published schema (`to_sample`: one row -> one `EvalSample`), says how its metric
scores one record (`score`), how records add up to its table cell (`aggregate`) and which independent items that cell
is the mean of (`items`: what its interval resamples and what two rows are paired on). The runner knows no benchmark
by name; it only calls these. A row that cannot be used (no image, a gold answer that cannot be read) becomes a
skipped sample with its reason, never an exception out of `load`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rapid_agent.eval.scoring import LETTERS, Score, graph_score
from rapid_agent.eval.sources import BASE_DIRS, image_value, load_rows


class BadRow(ValueError):
    """A dataset row that cannot become a sample; the message is the reason recorded with the skip."""


@dataclass(frozen=True)
class EvalSample:
    """One benchmark question in the form the graph takes, plus what its metric needs.

    `answer` is the gold in the form the graph's generic check reads (an option letter for multiple choice);
    `fields` holds the benchmark's own metric inputs (answer type, precision, variant, ...), kept in every record.
    `skip` is the reason a row is unusable; such a sample is recorded as skipped and never run."""

    benchmark: str
    id: str
    question: str = ""
    images: tuple[Any, ...] = ()
    answer: str | None = None
    choices: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)
    skip: str | None = None


@dataclass(frozen=True)
class Options:
    """Options every adapter takes (`--option NAME.split=test`)."""

    split: str | None = field(default=None, metadata={"help": "dataset split (default: the benchmark's own)"})
    config: str | None = field(default=None, metadata={"help": "dataset config / subset name on the hub"})


def letter_of(answer: str, choices: Sequence[str]) -> str:
    """The option letter of a gold given as an option's text (MathVista), or as a letter already."""
    stripped = str(answer).strip()
    if len(stripped) == 1 and stripped.upper() in LETTERS[: len(choices)]:
        return stripped.upper()
    for i, choice in enumerate(choices):
        if str(choice).strip() == stripped:
            return LETTERS[i]
    raise BadRow(f"gold answer {answer!r} is none of the choices {list(choices)!r}")


def format_choices(choices: Sequence[str], style: str = "({letter}) {text}") -> str:
    return "\n".join(style.format(letter=LETTERS[i], text=c) for i, c in enumerate(choices))


def row_images(row: dict, *columns: str) -> tuple[Any, ...]:
    """The non-empty images of `columns`, in order, each made ready for the graph (see `image_value`)."""
    images = []
    for column in columns:
        value = row.get(column)
        values = value if isinstance(value, list) else [value]
        for item in values:
            ready = image_value(item, row.get(BASE_DIRS, ()))
            if ready is not None:
                images.append(ready)
    return tuple(images)


def accuracy(records: Sequence[dict]) -> float:
    return sum(bool(r.get("correct")) for r in records) / len(records) if records else float("nan")


class Adapter(ABC):
    """A benchmark: its hub id and default split, how a row maps to a sample, how its metric scores and adds up."""

    #: registry key used on the command line (`--benchmark mathvista=...`)
    name: ClassVar[str]
    #: column header in the tables
    title: ClassVar[str]
    #: the published dataset on the hub
    hub_id: ClassVar[str]
    default_split: ClassVar[str] = "test"
    #: what the table cell means, shown in the JSON summary
    metric: ClassVar[str] = "accuracy"
    #: True when each of `items` is right or wrong (1.0 / 0.0), so the cell is a proportion of items: a Wilson
    #: interval, and an Agresti-Min interval for a paired difference; False: a bootstrap over the items for both
    binary_items: ClassVar[bool] = True
    #: what one of `items` is, in the tables' counts
    unit: ClassVar[str] = "samples"
    options_type: ClassVar[type] = Options

    def __init__(self, source: str | None = None, *, label: str | None = None, **options: Any) -> None:
        self.source = source or self.hub_id
        self.label = label or self.name
        self.options = self.options_type(**coerce_options(self.options_type, options))

    @property
    def column(self) -> str:
        """The table column: the benchmark's title, or the label a user gave (`generic:charts=...`)."""
        return self.title if self.label == self.name else self.label

    def load(self) -> list[EvalSample]:
        """Every sample in dataset order; unusable rows come back as skipped samples. Ids are made unique."""
        samples = []
        for index, row in enumerate(self.read_rows()):
            try:
                sample = self.to_sample(row, index)
            except BadRow as exc:
                sample = EvalSample(self.label, self.row_id(row, index), skip=str(exc))
            samples.append(dataclasses.replace(sample, benchmark=self.label))
        return unique_ids(samples)

    def read_rows(self) -> list[dict]:
        split = self.options.split or self.default_split
        # a split the user named must exist; the default one may be absent from a copy that holds one split only
        return load_rows(self.source, split=split, config=self.options.config, strict=self.options.split is not None)

    def row_id(self, row: dict, index: int) -> str:
        for key in ("id", "pid", "sample_index", "ID", "index"):
            if row.get(key) is not None:
                return str(row[key])
        return str(index)

    @abstractmethod
    def to_sample(self, row: dict, index: int) -> EvalSample:
        """Map one row of the benchmark's schema; raise `BadRow` with the reason for a row that cannot be used."""

    def score(self, record: dict) -> Score:
        """This benchmark's verdict on one record (default: the graph's generic check); `correct` None when it cannot
        be decided (the generic check could not run and the benchmark's own rules do not settle it)."""
        return graph_score(record)

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        """Metrics over one table row's scored records; `score` is the table cell."""
        acc = accuracy(records)
        return {"score": acc, "accuracy": acc}

    def items(self, records: Sequence[dict]) -> dict[str, float]:
        """The cell as a mean over independent items: item id -> value, whose mean is `aggregate(records)["score"]`.
        Its interval resamples these, and two rows are paired on the ids they share. Default: each scored sample,
        1.0 right and 0.0 wrong, by sample id."""
        return {str(r.get("sample_id")): float(bool(r.get("correct"))) for r in records}


def unique_ids(samples: list[EvalSample]) -> list[EvalSample]:
    """Repeated ids get `#2`, `#3`, ... in dataset order, so every sample has its own record key."""
    counts = Counter(s.id for s in samples)
    seen: Counter[str] = Counter()
    out = []
    for sample in samples:
        if counts[sample.id] > 1:
            seen[sample.id] += 1
            if seen[sample.id] > 1:
                sample = dataclasses.replace(sample, id=f"{sample.id}#{seen[sample.id]}")
        out.append(sample)
    return out


def coerce_options(options_type: type, raw: dict[str, Any]) -> dict[str, Any]:
    """Turn command-line strings into the option dataclass's field types; unknown names raise with the known ones."""
    hints = typing.get_type_hints(options_type)
    known = {f.name for f in dataclasses.fields(options_type)}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in known:
            raise ValueError(f"unknown option {name!r}; this benchmark takes {sorted(known)}")
        out[name] = _coerce(value, hints[name], name) if isinstance(value, str) else value
    return out


def _coerce(value: str, hint: Any, name: str) -> Any:
    target = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # `X | None`: coerce to X
        target = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(target)
    if origin in (tuple, list):
        items = [v.strip() for v in value.split(",") if v.strip()]
        inner = (typing.get_args(target) or (str,))[0]
        return tuple(_coerce(v, inner, name) for v in items)
    if target is bool:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"option {name}: expected true/false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    if target in (int, float):
        try:
            return target(value)
        except ValueError:
            raise ValueError(f"option {name}: expected {target.__name__}, got {value!r}") from None
    return value
