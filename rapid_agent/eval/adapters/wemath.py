"""We-Math (We-Math/We-Math, split testmini: 1,740 questions forming 525 multi-step problems).

Schema (dataset card): `ID`, `split`, `knowledge concept`, `question`, `option`, `answer`, `image_path` (the image),
`key`, `question number`, `knowledge concept description`. Every question is multiple choice; `option` is one
string (`A. 3; B. 4; ...`). A composite problem (`ID`) is asked whole (`key` = `2steps_multi` / `3steps_multi`) and as
its one-step sub-problems (`2steps_1`, `2steps_2`, ...). The question sent is `question` then `option`, as lmms-eval's
`wemath_doc_to_text_cot` builds it.

Metric, after We-Math's four-dimensional evaluation (`four_dimensional_metrics.py`, as VLMEvalKit's
`utils/wemath.py` and lmms-eval's `wemath_utils.py` carry it), per composite problem with all its parts answered:
Insufficient Knowledge (a sub-problem wrong and the whole wrong), Inadequate Generalization (every sub-problem right,
the whole wrong), Complete Mastery and Rote Memorization (the whole right with every / not every sub-problem right;
"loose" relaxes both), and

    score = (N - 0.5 IG - RM - IK) / N       (strict; loose with the loose RM)

The table cell is the strict score; loose, the four dimensions and one-/two-/three-step accuracies are in the JSON.
Its items (`items`) are the composite problems, worth 1 (CM), 0.5 (IG) or 0 (RM, IK): its interval is a bootstrap over
them, and two rows are paired on them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, accuracy, row_images
from rapid_agent.eval.scoring import LETTERS

_OPTION = re.compile(r"(?:^|[;\n]|\s)\s*([A-H])[.:]\s*(.*?)\s*(?=(?:[;\n]|\s)\s*[A-H][.:]\s|$)", re.DOTALL)


def parse_options(option: str) -> tuple[str, ...]:
    """`A. 3; B. 4; C. 5` -> ("3", "4", "5"); empty when the string does not list consecutive letters from A."""
    found = _OPTION.findall(option.strip())
    if not found or [letter for letter, _ in found] != list(LETTERS[: len(found)]):
        return ()
    return tuple(text.strip().rstrip(";").strip() for _, text in found)


class WeMath(Adapter):
    name = "wemath"
    title = "WeMath"
    hub_id = "We-Math/We-Math"
    default_split = "testmini"
    metric = "We-Math score (strict): (N - 0.5 IG - RM - IK) / N over composite problems"
    binary_items = False
    unit = "problems"

    def row_id(self, row: dict, index: int) -> str:
        if row.get("ID") is not None and row.get("key"):
            return f"{row['ID']}/{row['key']}"
        return str(index)

    def to_sample(self, row: dict, index: int) -> EvalSample:
        images = row_images(row, "image_path", "image")
        if not images:
            raise BadRow("no image (image_path is empty)")
        gold = str(row.get("answer") or "").strip().upper()
        if len(gold) != 1 or gold not in LETTERS:
            raise BadRow(f"gold answer {row.get('answer')!r} is not an option letter")
        key = str(row.get("key") or "")
        if not re.fullmatch(r"[23]steps_(?:\d|multi)", key) or row.get("ID") is None:
            raise BadRow(f"key {key!r} / ID {row.get('ID')!r} do not place the question in a composite problem")
        option = str(row.get("option") or "").strip()
        question = str(row.get("question") or "").strip()
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=f"{question}\n{option}" if option else question,
            images=images,
            answer=gold,
            choices=parse_options(option),
            fields={
                "problem": str(row["ID"]),
                "key": key,
                "knowledge_concept": row.get("knowledge concept"),
                "question_number": row.get("question number"),
            },
        )

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        counts = {"IK": 0, "IG": 0, "CM_strict": 0, "CM_loose": 0, "RM_strict": 0, "RM_loose": 0}
        whole: dict[int, list[bool]] = {2: [], 3: []}
        steps: list[bool] = []
        problems = complete_problems(records)
        for subs, multi in problems.values():
            whole[len(subs)].append(multi)
            steps.extend(subs)
            if multi:
                counts["CM_strict" if all(subs) else "RM_strict"] += 1
                counts["RM_loose" if not any(subs) else "CM_loose"] += 1
            else:
                counts["IG" if all(subs) else "IK"] += 1
        out = {"accuracy": accuracy(records), "problems": float(len(problems))}
        if problems:
            n = len(problems)
            out["score"] = (n - 0.5 * counts["IG"] - counts["RM_strict"] - counts["IK"]) / n
            out["score_loose"] = (n - 0.5 * counts["IG"] - counts["RM_loose"] - counts["IK"]) / n
            for name, value in counts.items():
                out[name] = float(value)
            for name in ("IK", "IG", "CM_strict", "CM_loose"):
                out[f"{name}_rate"] = counts[name] / n
            for mode in ("strict", "loose"):
                mastered = counts[f"CM_{mode}"] + counts[f"RM_{mode}"]
                out[f"RM_{mode}_rate"] = counts[f"RM_{mode}"] / mastered if mastered else float("nan")
            out["accuracy_one_step"] = accuracy([{"correct": c} for c in steps])
            for steps_count in (2, 3):
                if whole[steps_count]:
                    out[f"accuracy_{steps_count}_step"] = sum(whole[steps_count]) / len(whole[steps_count])
        else:
            out["score"] = float("nan")
        return out

    def items(self, records: Sequence[dict]) -> dict[str, float]:
        """One item per composite problem: the strict score is their mean, with Complete Mastery 1, Inadequate
        Generalization 0.5, Rote Memorization and Insufficient Knowledge 0 ((N - 0.5 IG - RM - IK) / N)."""
        return {
            f"{problem}/{len(subs)}steps": 1.0 if multi and all(subs) else 0.5 if all(subs) else 0.0
            for (problem, _), (subs, multi) in complete_problems(records).items()
        }


def complete_problems(records: Sequence[dict]) -> dict[tuple, tuple[list[bool], bool]]:
    """(problem ID, steps digit) -> (its sub-problems' verdicts in order, the whole's verdict), for every composite
    problem with all its parts among `records`; an incomplete one (a part skipped, errored or cut by --limit) cannot
    be placed. The official scripts pair 2-step and 3-step parts separately, by ID within each."""
    parts: dict[tuple, dict[str, bool]] = defaultdict(dict)
    for record in records:
        fields = record.get("fields") or {}
        key = str(fields.get("key", ""))
        parts[(fields.get("problem"), key[:1])][key] = bool(record.get("correct"))
    out = {}
    for (problem, steps_digit), keys in parts.items():
        n = 3 if steps_digit == "3" else 2
        needed = [f"{n}steps_{i}" for i in range(1, n + 1)]
        if f"{n}steps_multi" in keys and all(k in keys for k in needed):
            out[(problem, steps_digit)] = ([keys[k] for k in needed], keys[f"{n}steps_multi"])
    return out
