"""Any dataset with named question / image / answer / choices columns.

    --benchmark generic:charts=/data/charts.jsonl --option charts.question=problem --option charts.image=img

The label after `generic:` names the table column. Images may be one column or several (`image=front,back`), each a
path relative to the data file, embedded bytes, or a list of either. A gold given as the text of one of the choices
becomes its letter. Metric: the graph's check (math-verify gold-first; option letters for multiple choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options, format_choices, letter_of, row_images
from rapid_agent.eval.scoring import literal


@dataclass(frozen=True)
class GenericOptions(Options):
    question: str = field(default="question", metadata={"help": "question column"})
    image: str = field(default="image", metadata={"help": "image column(s), comma-separated, in order"})
    answer: str = field(default="answer", metadata={"help": "gold answer column"})
    choices: str = field(default="choices", metadata={"help": "multiple-choice options column (list); may be absent"})
    id: str = field(default="id", metadata={"help": "sample id column; the row number when absent"})

    def __post_init__(self) -> None:
        for name in ("question", "image", "answer"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}: a column name is required, got {getattr(self, name)!r}")


class Generic(Adapter):
    name = "generic"
    title = "generic"
    hub_id = ""
    default_split = None  # type: ignore[assignment]  # a local copy's every file unless a split is named
    options_type = GenericOptions

    def read_rows(self) -> list[dict]:
        if not self.source:
            raise ValueError("the generic adapter needs a source: --benchmark generic:NAME=PATH_OR_HUB_ID")
        return super().read_rows()

    def row_id(self, row: dict, index: int) -> str:
        value = row.get(self.options.id)
        return str(value) if value is not None else str(index)

    def to_sample(self, row: dict, index: int) -> EvalSample:
        opts = self.options
        if opts.question not in row:
            raise BadRow(f"no {opts.question!r} column (columns: {sorted(k for k in row if not k.startswith('__'))})")
        question = str(row.get(opts.question) or "").strip()
        if not question:
            raise BadRow("empty question")
        images = row_images(row, *[c.strip() for c in opts.image.split(",") if c.strip()])
        if not images:
            raise BadRow(f"no image in column(s) {opts.image!r}")
        gold = row.get(opts.answer)
        if gold is None or not str(gold).strip():
            raise BadRow(f"no gold answer in column {opts.answer!r}")
        choices = literal(row.get(opts.choices)) or ()
        if not isinstance(choices, (list, tuple)):
            raise BadRow(f"choices {row.get(opts.choices)!r} are not a list")
        choices = tuple(str(c) for c in choices)
        answer = letter_of(str(gold), choices) if choices else str(gold).strip()
        if choices:
            question = f"{question}\n\nChoices:\n{format_choices(choices)}"
        return EvalSample(self.label, self.row_id(row, index), question, images, answer, choices, {})
