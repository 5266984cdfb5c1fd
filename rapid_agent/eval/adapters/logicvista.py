"""LogicVista (448 logical-reasoning questions; the hub copy lmms-eval reads is `lscpku/LogicVista`, split test;
the authors' own release is `data/dataset.json` + `data/images/` in github.com/Yijia-Xiao/LogicVista).

Schema: `question`, the image (`image` on the hub, `imagename` relative to `images/` in the release), `answer`,
`reasoning`, `skill` (inductive, deductive, numerical, spatial, mechanical), `capability`; the release keys each
row by its id (`v1_0`, ...). The options are written in the question or drawn in the image, so the question is sent
as is. A gold may name several options (`A, C`) or a number (`3`).

Metric, after VLMEvalKit's `utils/logicvista.py`: the set of options the answer names must equal the gold's set
(the official script has an LLM read that set out of free text; we read it from the final `\\boxed{}` answer, and
`--judge` reproduces the LLM reading). Accuracy per skill goes to the JSON summary.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapid_agent.eval.adapters.base import Adapter, BadRow, EvalSample, accuracy, row_images
from rapid_agent.eval.scoring import LETTERS, Score, final_answer, graph_score, letter_set

SKILLS = ("inductive", "deductive", "numerical", "spatial", "mechanical")
_ALLOWED = LETTERS + "0123456789"


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]  # type: ignore[union-attr]


class LogicVista(Adapter):
    name = "logicvista"
    title = "LogicVista"
    hub_id = "lscpku/LogicVista"
    default_split = "test"
    metric = "accuracy (the set of options named must equal the gold's)"

    def to_sample(self, row: dict, index: int) -> EvalSample:
        images = row_images(row, "image", "imagename")
        if not images:
            raise BadRow("no image (image and imagename are empty)")
        gold = letter_set(str(row.get("answer") or ""), allowed=_ALLOWED)
        if not gold:
            raise BadRow(f"gold answer {row.get('answer')!r} names no option")
        question = str(row.get("question") or "").strip()
        return EvalSample(
            benchmark=self.name,
            id=self.row_id(row, index),
            question=question,
            images=images,
            answer=", ".join(sorted(gold)),
            fields={
                "gold_options": sorted(gold),
                "skill": _as_list(row.get("skill")),
                "capability": _as_list(row.get("capability")),
            },
        )

    def score(self, record: dict) -> Score:
        gold = set((record.get("fields") or {}).get("gold_options") or [])
        predicted = final_answer(record)
        named = letter_set(predicted, allowed=_ALLOWED)
        if not named:
            return graph_score(record) if len(gold) == 1 else Score(False, predicted, "the answer names no option")
        correct = named == gold
        shown = ", ".join(sorted(named))
        return Score(correct, shown, "match" if correct else f"{shown} != {', '.join(sorted(gold))}")

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = {"score": accuracy(records), "accuracy": accuracy(records)}
        for skill in SKILLS:
            mine = [r for r in records if skill in ((r.get("fields") or {}).get("skill") or [])]
            if mine:
                out[f"accuracy_{skill}"] = accuracy(mine)
        return out
