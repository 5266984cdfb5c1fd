"""DynaMath (DynaMath/DynaMath_Sample: 501 seed questions, each generated in 10 variants, one split per variant:
`sample_variant1` ... `sample_variant10`, 5,010 questions).

Schema (dataset card): `id` (the seed question, shared by its variants), `question`, `image` (relative path),
`decoded_image`, `ground_truth`, `answer_type` (multiple choice | float | free form), `subject`, `knowledge_level`.
`--option dynamath.variants=1,2,3` evaluates some variants (default: all ten, or those a local copy holds). The question is sent as is (options are written in it).

Metric, after DynaMath's evaluation (VLMEvalKit `dataset/dynamath.py`): a float answer is right within 0.001 of the
gold, a multiple-choice answer by its letter, a free-form answer when it is contained in the gold (we also accept
math-verify's equality). Average-case accuracy is over every question; worst-case accuracy counts a seed question
right only when all its variants are right. The table cell is the worst case; the average sits beside it in the JSON.
Its items are the seed questions (right or wrong), so its interval is Wilson's over seeds and rows pair on seeds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, Options, accuracy, row_images
from rapid_agent.eval.scoring import LETTERS, Score, final_answer, graph_score, normalize_text, to_number

VARIANT = "__variant__"


@dataclass(frozen=True)
class DynaMathOptions(Options):
    variants: tuple[int, ...] | None = field(
        default=None, metadata={"help": "variant numbers (default: all ten, or every one a local copy holds)"}
    )

    def __post_init__(self) -> None:
        if self.variants is not None and (not self.variants or any(v < 1 for v in self.variants)):
            raise ValueError(f"variants: expected variant numbers >= 1, got {self.variants!r}")


class DynaMath(Adapter):
    name = "dynamath"
    title = "DynaMath"
    hub_id = "DynaMath/DynaMath_Sample"
    default_split = "sample_variant1"
    options_type = DynaMathOptions
    metric = "worst-case accuracy over the variants of each seed question (average in the JSON)"
    unit = "seeds"

    def read_rows(self) -> list[dict]:
        from rapid_agent.eval.sources import load_rows

        if self.options.split:  # one named split, e.g. a copy that holds every variant in one file
            rows = load_rows(self.source, split=self.options.split, config=self.options.config)
            return [{**r, VARIANT: int(r.get("variant") or r.get("varid") or 1)} for r in rows]
        from rapid_agent.eval.sources import SourceError

        rows = []
        for variant in self.options.variants or range(1, 11):
            split = f"sample_variant{variant}"
            try:
                found = load_rows(self.source, split=split, config=self.options.config)
            except SourceError:
                if self.options.variants:  # named by the user: it must exist
                    raise
                continue  # the default takes the variants a copy holds
            rows += [{**r, VARIANT: variant} for r in found]
        if not rows:
            raise SourceError(f"no DynaMath variant split (sample_variant1 ... sample_variant10) in {self.source!r}")
        return rows

    def row_id(self, row: dict, index: int) -> str:
        return f"{row.get('id', index)}@v{row.get(VARIANT, 1)}"

    def to_sample(self, row: dict, index: int) -> EvalSample:
        images = row_images(row, "decoded_image") or row_images(row, "image")
        if not images:
            raise BadRow("no image (decoded_image and image are empty)")
        gold = str(row.get("ground_truth") if row.get("ground_truth") is not None else row.get("answer") or "").strip()
        if not gold:
            raise BadRow("no gold answer (ground_truth is empty)")
        answer_type = str(row.get("answer_type") or "free form")
        if answer_type == "multiple choice":
            if gold.upper() not in LETTERS[:10]:
                raise BadRow(f"multiple-choice gold {gold!r} is not an option letter")
            gold = gold.upper()
        elif answer_type == "float" and to_number(gold) is None:
            raise BadRow(f"float gold {gold!r} is not a number")
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=str(row.get("question") or "").strip(),
            images=images,
            answer=gold,
            fields={
                "seed": str(row.get("id", index)),
                "variant": int(row.get(VARIANT, 1)),
                "answer_type": answer_type,
                "subject": row.get("subject"),
                "knowledge_level": row.get("knowledge_level"),
            },
        )

    def score(self, record: dict) -> Score:
        answer_type = (record.get("fields") or {}).get("answer_type")
        verdict = graph_score(record)
        if answer_type == "multiple choice" or verdict.correct:
            return verdict
        predicted = final_answer(record)
        if predicted is None:
            return verdict
        gold = str(record.get("answer"))
        if answer_type == "float":
            number, target = to_number(predicted), to_number(gold)
            if number is None or target is None:
                return verdict
            correct = abs(number - target) <= 1e-3
            return Score(correct, str(number), "within 0.001" if correct else f"|{number} - {target}| > 0.001")
        contained = bool(normalize_text(predicted)) and normalize_text(predicted) in normalize_text(gold)
        return Score(True, predicted, "contained in the gold") if contained else verdict

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        seeds = self.items(records)
        worst = sum(seeds.values()) / len(seeds) if seeds else float("nan")
        return {"score": worst, "worst_case": worst, "average": accuracy(records), "seeds": float(len(seeds))}

    def items(self, records: Sequence[dict]) -> dict[str, float]:
        """One item per seed question: 1.0 when every variant of it scored is right (the worst case is their mean)."""
        by_seed: dict[str, list[bool]] = defaultdict(list)
        for record in records:
            by_seed[str((record.get("fields") or {}).get("seed"))].append(bool(record.get("correct")))
        return {seed: float(all(verdicts)) for seed, verdicts in by_seed.items()}
