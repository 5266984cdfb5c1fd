"""MMMU (MMMU/MMMU: one hub config per subject, 30 subjects; split validation: 900 questions).

Schema (dataset card): `id` (`validation_<Subject>_<n>`), `question`, `options` (a Python list written as a string),
`explanation`, `image_1` ... `image_7`, `img_type`, `answer`, `topic_difficulty`, `question_type` (multiple-choice |
open), `subfield`. A question refers to its images as `<image 1>`, `<image 2>`, ...: every image it (or an option)
refers to is sent, in that order, so one question may carry several images. Options are listed as `A. text`
(lmms-eval's `mmmu/utils.py` layout); `--option mmmu.subjects=Math,Physics` selects subjects.

Metric, after MMMU's `eval_utils.py` (as lmms-eval carries it): a multiple-choice answer is right when its letter is the
gold's; an open answer when it equals a gold number, or a gold string is contained in it (we also accept math-verify's
equality). Accuracy is over every question (instance level), as MMMU's overall score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options, accuracy, format_choices, row_images
from rapid_agent.eval.scoring import LETTERS, Score, final_answer, graph_score, literal, normalize_text, to_number

SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine",
    "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage",
    "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)  # fmt: skip
_IMAGE_REF = re.compile(r"<image (\d+)>")


def subject_of(sample_id: str) -> str:
    """`validation_Art_Theory_12` -> `Art_Theory`."""
    match = re.match(r"^[a-z]+_(.+)_\d+$", sample_id)
    return match.group(1) if match else ""


@dataclass(frozen=True)
class MMMUOptions(Options):
    subjects: tuple[str, ...] = field(default=SUBJECTS, metadata={"help": "subjects (hub configs) to evaluate"})

    def __post_init__(self) -> None:
        unknown = [s for s in self.subjects if s not in SUBJECTS]
        if unknown or not self.subjects:
            raise ValueError(
                f"subjects: unknown MMMU subject(s) {unknown or list(self.subjects)!r}; known: {SUBJECTS}"
            )


class MMMU(Adapter):
    name = "mmmu"
    title = "MMMU"
    hub_id = "MMMU/MMMU"
    default_split = "validation"
    options_type = MMMUOptions

    def read_rows(self) -> list[dict]:
        from rapid_agent.eval.sources import is_hub_id, load_rows

        split = self.options.split or self.default_split
        if is_hub_id(self.source) and not self.options.config:
            return [
                row for subject in self.options.subjects for row in load_rows(self.source, split=split, config=subject)
            ]
        rows = load_rows(self.source, split=split, config=self.options.config, strict=self.options.split is not None)
        return [r for r in rows if subject_of(str(r.get("id", ""))) in self.options.subjects or not r.get("id")]

    def to_sample(self, row: dict, index: int) -> EvalSample:
        options = literal(row.get("options") or "[]")
        if not isinstance(options, (list, tuple)):
            raise BadRow(f"options {row.get('options')!r} are not a list")
        options = tuple(str(o) for o in options)
        question = str(row.get("question") or "").strip()
        referenced = sorted({int(n) for n in _IMAGE_REF.findall(question + " ".join(options))})
        columns = [f"image_{n}" for n in referenced] or [f"image_{n}" for n in range(1, 8)]
        images = row_images(row, *columns)
        if not images:
            raise BadRow(f"no image (questions refers to {columns}, all empty)")
        if len(images) < len(referenced):
            raise BadRow(f"the question refers to {columns} but only {len(images)} of them hold an image")
        golds = literal(row.get("answer"))
        golds = [str(g).strip() for g in (golds if isinstance(golds, (list, tuple)) else [golds]) if g is not None]
        golds = [g for g in golds if g]
        if not golds:
            raise BadRow("no gold answer")
        question_type = row.get("question_type") or ("multiple-choice" if options else "open")
        if question_type == "multiple-choice":
            if not options or any(g.upper() not in LETTERS[: len(options)] for g in golds):
                raise BadRow(f"gold {golds!r} is not among the {len(options)} option letters")
            golds = [g.upper() for g in golds]
            question = f"{question}\n{format_choices(options, '{letter}. {text}')}"
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=question,
            images=images,
            answer=golds[0],
            choices=options if question_type == "multiple-choice" else (),
            fields={
                "question_type": question_type,
                "golds": golds,
                "subject": subject_of(str(row.get("id", ""))),
                "subfield": row.get("subfield"),
                "images": len(images),
            },
        )

    def score(self, record: dict) -> Score:
        fields = record.get("fields") or {}
        golds = fields.get("golds") or [record.get("answer")]
        verdict = graph_score(record)
        if verdict.correct:
            return verdict
        if fields.get("question_type") == "multiple-choice":
            if len(golds) > 1 and verdict.prediction in golds:
                return Score(True, verdict.prediction, "one of the gold options")
            return verdict
        predicted = final_answer(record)
        if predicted is None:
            return verdict
        number, text = to_number(predicted), normalize_text(predicted)
        for gold in golds:
            gold_number = to_number(gold)
            if number is not None and gold_number is not None and abs(number - gold_number) < 1e-9:
                return Score(True, predicted, f"equals gold {gold!r}")
            if gold_number is None and normalize_text(gold) and normalize_text(gold) in text:
                return Score(True, predicted, f"contains gold {gold!r}")
        return verdict

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = {"score": accuracy(records), "accuracy": accuracy(records)}
        for subject in sorted({(r.get("fields") or {}).get("subject") for r in records} - {None, ""}):
            out[f"accuracy_{subject}"] = accuracy(
                [r for r in records if (r.get("fields") or {}).get("subject") == subject]
            )
        return out
