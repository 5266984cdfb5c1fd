"""MATH-Vision (MathLLMs/MathVision: split test, 3,040 problems, and its testmini subset of 304).

Schema (dataset card): `id`, `question`, `options` (list), `image` (relative path), `decoded_image`, `answer`,
`solution`, `level`, `subject`. `--option mathvision.split=testmini` evaluates the mini subset. A question with options
is sent as `question` then `Choices:` with `A. text` lines (lmms-eval's `mathvision_doc_to_text` layout); its gold is
the option letter. Some multiple-choice questions draw their options in the image and list none: their gold is a
letter all the same and is compared as one.

Metric, after MATH-Vision's `is_equal` (lmms-eval `mathvision/eval_utils.py`): exact match, else the two values
equal when rounded to two decimals; we read equality with math-verify first (the graph's verdict).
"""

from __future__ import annotations

from collections.abc import Sequence

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, accuracy, format_choices, row_images
from rapid_agent.eval.scoring import LETTERS, Score, final_answer, graph_score, to_number


class MathVision(Adapter):
    name = "mathvision"
    title = "MathVision"
    hub_id = "MathLLMs/MathVision"
    default_split = "test"
    metric = "accuracy (math-verify, or equal to two decimals)"

    def to_sample(self, row: dict, index: int) -> EvalSample:
        images = row_images(row, "decoded_image") or row_images(row, "image")
        if not images:
            raise BadRow("no image (decoded_image and image are empty)")
        gold = str(row.get("answer") or "").strip()
        if not gold:
            raise BadRow("no gold answer")
        options = tuple(str(o) for o in (row.get("options") or ()))
        question = str(row.get("question") or "").strip()
        if options:
            if gold.upper() not in LETTERS[: len(options)]:
                raise BadRow(f"gold answer {gold!r} is not one of the {len(options)} option letters")
            gold = gold.upper()
            question = f"{question}\n\nChoices:\n{format_choices(options, '{letter}. {text}')}"
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=question,
            images=images,
            answer=gold,
            choices=options,
            fields={"level": row.get("level"), "subject": row.get("subject")},
        )

    def score(self, record: dict) -> Score:
        verdict = graph_score(record)
        if verdict.correct or record.get("choices"):
            return verdict
        predicted = final_answer(record)
        pred_number, gold_number = to_number(predicted), to_number(str(record.get("answer")))
        if pred_number is not None and gold_number is not None and round(pred_number, 2) == round(gold_number, 2):
            return Score(True, predicted, "equal to two decimals")
        return verdict

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = {"score": accuracy(records), "accuracy": accuracy(records)}
        for level in sorted({(r.get("fields") or {}).get("level") for r in records} - {None}):
            out[f"accuracy_level_{level}"] = accuracy(
                [r for r in records if (r.get("fields") or {}).get("level") == level]
            )
        return out
