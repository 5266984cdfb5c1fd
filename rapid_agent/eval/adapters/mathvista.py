"""MathVista (AI4Math/MathVista, split testmini: 1,000 questions; test has no public answers).

Schema (dataset card): `pid`, `question`, `image` (relative path), `decoded_image`, `choices`, `unit`, `precision`,
`answer`, `question_type` (multi_choice | free_form), `answer_type` (text | integer | float | list), `metadata`,
`query`. The question sent is the dataset's own `query` (question, unit, `Choices: (A) ...` and the answer-type
hint the MathVista authors wrote); a multiple-choice gold is the option's text and becomes its letter.

Metric, after MathVista's official evaluator (as lmms-eval's `mathvista_evals.py` carries it): the extracted answer
is normalised by answer type before an exact comparison: an integer answer compares as `int(float(x))`, a float
answer rounded to the question's `precision`, a list element by element; a multiple-choice answer is its option.
When no single number can be read, the graph's math-verify verdict stands.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, accuracy, format_choices, letter_of, row_images
from rapid_agent.eval.scoring import Score, final_answer, graph_score, literal, normalize_text, to_number

_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def build_query(question: str, *, unit: str | None, choices: Sequence[str], answer_type: str, precision: int) -> str:
    """MathVista's query layout for rows that lack one: hint, question (with unit), choices."""
    if choices:
        hint = _HINTS["multi_choice"]
    elif answer_type == "float":
        hint = _HINTS["float1" if precision == 1 else "float2"]
    else:
        hint = _HINTS.get(answer_type, "")
    text = f"Question: {question}" + (f" (Unit: {unit})" if unit else "")
    if choices:
        text += "\nChoices:\n" + format_choices(choices)
    return f"{hint}\n{text}" if hint else text


class MathVista(Adapter):
    name = "mathvista"
    title = "MathVista"
    hub_id = "AI4Math/MathVista"
    default_split = "testmini"
    metric = "accuracy (answers normalised by answer type, unit and precision)"

    def row_id(self, row: dict, index: int) -> str:
        return str(row.get("pid") or index)

    def to_sample(self, row: dict, index: int) -> EvalSample:
        images = row_images(row, "decoded_image") or row_images(row, "image")
        if not images:
            raise BadRow("no image (decoded_image and image are empty)")
        question_type = row.get("question_type") or ("multi_choice" if row.get("choices") else "free_form")
        answer_type = row.get("answer_type") or ("text" if question_type == "multi_choice" else "float")
        gold = row.get("answer")
        if gold is None or not str(gold).strip():
            raise BadRow("no gold answer (MathVista's test split keeps its answers private)")
        choices = tuple(str(c) for c in (row.get("choices") or ()))
        precision = int(row["precision"]) if row.get("precision") is not None else 0
        if question_type == "multi_choice":
            if not choices:
                raise BadRow("multi_choice question without choices")
            answer = letter_of(str(gold), choices)
        else:
            answer = str(gold).strip()
            if answer_type in ("integer", "float") and to_number(answer) is None:
                raise BadRow(f"{answer_type} gold answer {gold!r} is not a number")
        query = row.get("query") or build_query(
            str(row.get("question") or ""),
            unit=row.get("unit"),
            choices=choices,
            answer_type=answer_type,
            precision=precision,
        )
        metadata = row.get("metadata") or {}
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=query,
            images=images,
            answer=answer,
            choices=choices,
            fields={
                "question_type": question_type,
                "answer_type": answer_type,
                "precision": precision,
                "unit": row.get("unit") or None,
                "gold_text": str(gold),
                "category": metadata.get("category"),
                "task": metadata.get("task"),
            },
        )

    def score(self, record: dict) -> Score:
        fields = record.get("fields") or {}
        answer_type = fields.get("answer_type")
        if fields.get("question_type") == "multi_choice" or answer_type not in ("integer", "float", "list"):
            return graph_score(record)
        predicted = final_answer(record)
        if predicted is None:
            return Score(False, None, "no final answer in the output")
        gold = str(fields.get("gold_text", record.get("answer")))
        if answer_type == "list":
            return self._score_list(predicted, gold, record)
        number = to_number(predicted, unit=fields.get("unit"))
        if number is None:
            return graph_score(record)  # an expression, not a plain number: math-verify's verdict stands
        gold_number = float(gold)
        if answer_type == "integer":
            normalised, target = int(number), int(gold_number)
        else:
            precision = int(fields.get("precision") or 0)
            normalised, target = round(number, precision), round(gold_number, precision)
        correct = normalised == target
        return Score(correct, str(normalised), "match" if correct else f"{normalised} != {target}")

    def _score_list(self, predicted: str, gold: str, record: dict) -> Score:
        pred_list, gold_list = literal(predicted.strip()), literal(gold.strip())
        if isinstance(pred_list, (list, tuple)) and isinstance(gold_list, (list, tuple)):
            pred_numbers = [to_number(str(x)) for x in pred_list]
            gold_numbers = [to_number(str(x)) for x in gold_list]
            if None not in pred_numbers and None not in gold_numbers:
                correct = pred_numbers == gold_numbers
            else:
                correct = [normalize_text(str(x)) for x in pred_list] == [normalize_text(str(x)) for x in gold_list]
            return Score(correct, str(list(pred_list)), "match" if correct else "list mismatch")
        if normalize_text(predicted).replace(" ", "") == normalize_text(gold).replace(" ", ""):
            return Score(True, predicted, "match")
        verdict = graph_score(record)  # math-verify's equality, or no verdict when its check could not run
        return verdict if verdict.correct is not False else Score(False, predicted, "list mismatch")

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = {"score": accuracy(records), "accuracy": accuracy(records)}
        for kind in ("multi_choice", "free_form"):
            mine = [r for r in records if (r.get("fields") or {}).get("question_type") == kind]
            if mine:
                out[f"accuracy_{kind}"] = accuracy(mine)
        return out
