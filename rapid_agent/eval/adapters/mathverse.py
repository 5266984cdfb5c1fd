"""MathVerse (AI4Math/MathVerse, testmini: 788 problems, each in several problem versions).

Schema (dataset card): `sample_index`, `problem_index`, `problem_version`, `question`, `image`, `answer`,
`question_type` (multi-choice | free-form), `metadata` (split, source, subject, subfield), `query_wo`, `query_cot`,
`question_for_eval`. Config `testmini` holds the five versions with a diagram (Text Dominant, Text Lite, Vision
Intensive, Vision Dominant, Vision Only: 3,940 rows); config `testmini_text_only` holds Text Only (no image).
All five are evaluated by default; `--option mathverse.versions=vision_only,...` selects.

The question sent is the dataset's `query_cot` (MathVerse's chain-of-thought query; choices are written into it, or
into the diagram for vision-only versions). A multiple-choice gold is a letter. Metric: accuracy, multiple choice by
letter and free-form answers by math-verify; the official scorer instead asks an LLM judge with
`question_for_eval`, which `--judge` reproduces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options, accuracy, row_images

VERSIONS = ("text_dominant", "text_lite", "vision_intensive", "vision_dominant", "vision_only", "text_only")
DEFAULT_VERSIONS = VERSIONS[:5]
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[:.\s]|$)")


def version_key(name: str) -> str:
    """`Vision Only`, `vision-only` and `vision_only` all name the same version."""
    return re.sub(r"[\s-]+", "_", name.strip().lower())


@dataclass(frozen=True)
class MathVerseOptions(Options):
    versions: tuple[str, ...] = field(default=DEFAULT_VERSIONS, metadata={"help": f"problem versions, of {VERSIONS}"})

    def __post_init__(self) -> None:
        keys = tuple(version_key(v) for v in self.versions)
        unknown = [v for v, k in zip(self.versions, keys) if k not in VERSIONS]
        if unknown or not keys:
            raise ValueError(
                f"versions: unknown MathVerse version(s) {unknown or list(self.versions)!r}; known: {VERSIONS}"
            )
        object.__setattr__(self, "versions", keys)


class MathVerse(Adapter):
    name = "mathverse"
    title = "MathVerse"
    hub_id = "AI4Math/MathVerse"
    default_split = "testmini"
    options_type = MathVerseOptions
    metric = "accuracy over the selected problem versions"

    def read_rows(self) -> list[dict]:
        from rapid_agent.eval.sources import is_hub_id, load_rows

        split = self.options.split or self.default_split
        rows: list[dict] = []
        if any(v != "text_only" for v in self.options.versions):
            rows += load_rows(
                self.source, split=split, config=self.options.config or (split if is_hub_id(self.source) else None)
            )
        if "text_only" in self.options.versions:
            if is_hub_id(self.source):
                rows += load_rows(self.source, split=split, config=f"{split}_text_only")
            else:
                rows += load_rows(self.source, split=f"{split}_text_only")
        return [r for r in rows if version_key(str(r.get("problem_version") or "")) in self.options.versions]

    def row_id(self, row: dict, index: int) -> str:
        return str(row.get("sample_index") or index)

    def to_sample(self, row: dict, index: int) -> EvalSample:
        version = version_key(str(row.get("problem_version") or ""))
        images = row_images(row, "image")
        if not images and version != "text_only":
            raise BadRow(f"no image for a {version or 'unknown'} problem")
        gold = str(row.get("answer") or "").strip()
        if not gold:
            raise BadRow("no gold answer")
        question_type = row.get("question_type") or "free-form"
        if question_type == "multi-choice":
            letter = _LETTER.match(gold)
            if not letter:
                raise BadRow(f"multi-choice gold answer {gold!r} is not an option letter")
            gold = letter.group(1)
        question = row.get("query_cot") or row.get("question") or row.get("query_wo")
        if not question:
            raise BadRow("no question text (query_cot, question and query_wo are empty)")
        metadata = row.get("metadata") or {}
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=str(question),
            images=images,
            answer=gold,
            fields={
                "version": version,
                "problem_index": str(row.get("problem_index")),
                "question_type": question_type,
                "subject": metadata.get("subject"),
                "subfield": metadata.get("subfield"),
                "question_for_eval": row.get("question_for_eval"),
            },
        )

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = {"score": accuracy(records), "accuracy": accuracy(records)}
        for version in VERSIONS:
            mine = [r for r in records if (r.get("fields") or {}).get("version") == version]
            if mine:
                out[f"accuracy_{version}"] = accuracy(mine)
        return out
