"""Tests for rapid_agent.api's failed samples: only a sample's own bad data is `input: ...`; an engine that cannot
load, a wrong setting or a bug is `error: <Type>: ...`; either way `correct` is None (no verdict) and the text is
redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapid_agent import RapidContext, solve_batch
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.prompts import DEFAULT_PROMPTS

PERCEIVED = "<caption>two dots</caption><solution>\\boxed{2}</solution>"


def perceived(**extra) -> dict:
    """A sample whose perception is given, so that no captioner is needed."""
    return {"question": "How many dots?", "captioner_output": PERCEIVED, "answer": "2", **extra}


def test_bad_data_is_input_and_no_verdict(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    captioner = FunctionEngine(lambda r: PERCEIVED, spec="cap")
    reasoner = FunctionEngine(lambda r: "\\boxed{2}", spec="rea")
    samples = [
        {"image": str(corrupt), "question": "How many?", "answer": "2"},
        {"image": str(corrupt), "question": "", "answer": "2"},
        {"image": str(corrupt), "question": "How many?", "choices": "ab"},
        "not a dict",
    ]
    out = solve_batch(samples, captioner=captioner, reasoner=reasoner)
    assert out[0]["errors"][0].startswith("input: images: cannot decode image")
    assert out[1]["errors"][0].startswith("input: question: question is empty; images: cannot decode")
    assert out[2]["errors"][0].startswith("input: ") and "choices must be a list" in out[2]["errors"][0]
    assert out[3]["errors"] == ["input: a sample is a dict with at least a 'question', got str"]
    assert all(o["correct"] is None for o in out)  # a gold answer does not make a failure a wrong answer
    assert captioner.num_calls == 0 and reasoner.num_calls == 0


@pytest.mark.parametrize(
    "reasoner, options, expected",
    [
        ("hf:/no/such/dir", {}, "error: BackendUnavailableError: model path '/no/such/dir' does not exist"),
        ("hf:{tmp}", {"bogus": "1"}, "error: ValueError: unknown 'hf' engine option(s) ['bogus']"),
    ],
)
def test_an_engine_that_cannot_load_is_an_error_not_bad_input(
    reasoner: str, options: dict, expected: str, tmp_path: Path
) -> None:
    context = RapidContext(reasoner=reasoner.format(tmp=tmp_path), reasoner_options=options)
    (out,) = solve_batch([perceived()], context=context)
    assert out["errors"][0].startswith(expected) and out["correct"] is None


def test_a_wrong_setting_is_an_error_and_its_text_is_redacted(tmp_path: Path) -> None:
    prompts = DEFAULT_PROMPTS.replace(reason="{question} {sk-abcdef1234567890}")  # a template naming no field
    reasoner = FunctionEngine(lambda r: "\\boxed{2}", spec="rea")
    missing = tmp_path / "token=abcd1234secret.png"
    samples = [perceived(), {"image": str(missing), "question": "q", "answer": "1"}]
    out = solve_batch(samples, context=RapidContext(captioner=reasoner, reasoner=reasoner, prompts=prompts))
    assert out[0]["errors"] == ["error: KeyError: 'sk-[REDACTED]'"] and out[0]["correct"] is None
    assert "abcd1234secret" not in out[1]["errors"][0] and "token=[REDACTED]" in out[1]["errors"][0]
    assert out[1]["errors"][0].startswith("input: images: image file not found") and out[1]["correct"] is None
