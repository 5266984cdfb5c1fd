"""An optional LLM answer extractor or judge, as the benchmarks' official scripts use one (off by default).

    extract   the LLM reads the final answer out of the reasoner's output (MathVista's and LogicVista's scripts do
              this with GPT); the benchmark's own rules then score that answer
    judge     the LLM says whether the output's final answer matches the gold (MathVerse's and MathVision's
              scripts do this); its 1/0 is the verdict

Any engine spec serves (`openai:gpt-4o-mini@https://...`, `hf:...`); it runs greedily through the backends'
micro-batcher. The judge's spec, mode and raw output are written into every record it touched, beside the verdict
the rules alone gave. An extracted answer whose check could not run (`Verdict.correct is None`) makes the record an
error to retry (`status="error"`), never a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rapid_agent.backends import ChatRequest, GenerationConfig, load_engine
from rapid_agent.backends.batching import get_batcher
from rapid_agent.eval.scoring import Score, safe_score, strip_output, undecided

#: how much of an output's end the judge sees; final answers sit at the end and long thinking only costs tokens
TAIL_CHARS = 4000

EXTRACT_PROMPT = (
    "Below are a question and a model's response to it. Extract the final answer the response gives.\n"
    "Reply with the answer alone: an option letter (or letters, comma-separated) for a multiple-choice question, "
    "otherwise the final value, expression or short phrase. If the response gives no final answer, reply NONE.\n\n"
    "Question:\n{question}\n\nResponse:\n{response}\n\nExtracted answer:"
)

JUDGE_PROMPT = (
    "Decide whether a model's response to a question reaches the correct final answer.\n"
    "Compare only the response's final answer with the gold answer; equivalent forms count as equal "
    "(1/2 and 0.5, an option letter and that option's text). Reply with 1 if they match and 0 if they do not.\n\n"
    "Question:\n{question}\n\nGold answer: {gold}\n\nResponse:\n{response}\n\nJudgement (1 or 0):"
)


@dataclass(frozen=True)
class Judge:
    """An LLM that extracts answers or judges them; `engine` is a spec string or an `Engine`."""

    engine: Any = field(metadata={"help": "engine spec or Engine answering the judge prompts"})
    mode: Literal["extract", "judge"] = field(default="extract", metadata={"help": "extract answers, or judge them"})
    gen: GenerationConfig = field(
        default=GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=256), metadata={"help": "judge sampling"}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("extract", "judge"):
            raise ValueError(f"judge mode must be 'extract' or 'judge', got {self.mode!r}")
        if self.engine is None or self.engine == "":
            raise ValueError("judge: an engine spec is required")

    @property
    def spec(self) -> str:
        return (
            self.engine if isinstance(self.engine, str) else getattr(self.engine, "spec", type(self.engine).__name__)
        )

    def apply(self, records: Sequence[dict], rescore: Callable[[dict], Score]) -> None:
        """Judge every scored record in place: `correct`, `prediction`, `verdict` become the judge's (or, in extract
        mode, the rules' on the extracted answer); `rule_correct` keeps what the rules alone said."""
        todo = [r for r in records if r.get("status") == "scored" and r.get("reasoner_output")]
        if not todo:
            return
        engine = load_engine(self.engine, "reasoner")
        outputs = get_batcher(engine).submit_many([ChatRequest(self._prompt(r)) for r in todo], self.gen)
        for record, out in zip(todo, outputs, strict=True):
            record.update(judge=self.spec, judge_mode=self.mode, rule_correct=record.get("correct"))
            if isinstance(out, Exception):
                record.update(judge_output=None, scored_by="rules", judge_error=str(out))
                continue
            text = strip_output(out.text).strip()
            record["judge_output"] = text
            if self.mode == "judge":
                verdict = re.search(r"[01]", text)
                correct = bool(verdict) and verdict.group(0) == "1"
                record.update(correct=correct, verdict=f"judge: {text[:80]!r}", scored_by="judge")
            else:
                extracted = text.splitlines()[0].strip() if text else ""
                if not extracted or extracted.upper() == "NONE":
                    record.update(
                        correct=False, prediction=None, verdict="judge found no answer", scored_by="judge-extract"
                    )
                    continue
                score = safe_score(_rules_on(extracted, rescore), record)
                record.update(
                    correct=score.correct, prediction=score.prediction, verdict=score.reason, scored_by="judge-extract"
                )
                if score.correct is None:  # the check of the extracted answer could not run: an error, no verdict
                    undecided(record)

    def _prompt(self, record: dict) -> str:
        fields = record.get("fields") or {}
        question = fields.get("question_for_eval") or record.get("question") or ""
        response = strip_output(record.get("reasoner_output"))[-TAIL_CHARS:]
        if self.mode == "judge":
            gold = ", ".join(fields.get("golds") or []) or fields.get("gold_text") or record.get("answer")
            return JUDGE_PROMPT.format(question=question, gold=gold, response=response)
        return EXTRACT_PROMPT.format(question=question, response=response)


def _rules_on(extracted: str, rescore: Callable[[dict], Score]) -> Callable[[dict], Score]:
    """The benchmark's rules applied to `extracted` in place of the reasoner's output."""

    def score(record: dict) -> Score:
        return rescore({**record, "reasoner_output": f"\\boxed{{{extracted}}}", **_graph_of(record, extracted)})

    return score


def _graph_of(record: dict, extracted: str) -> dict:
    """The generic check on the extracted answer, so rules that start from the graph's verdict see this answer
    (`graph_correct` None when the check could not run)."""
    from rapid_agent.answers import check_answer

    verdict = check_answer(f"\\boxed{{{extracted}}}", str(record.get("answer")), choices=record.get("choices") or ())
    return {"graph_correct": verdict.correct, "graph_prediction": verdict.prediction, "graph_verdict": verdict.reason}
