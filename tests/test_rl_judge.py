"""The caption judges: empty captions, engine options, verdict parsing (the policy judge is in test_rl_train)."""

from __future__ import annotations

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.judge import EngineJudge, build_judge, parse_verdict


def test_empty_caption_is_not_genuine_without_asking_the_judge() -> None:
    engine = FunctionEngine(lambda r: "yes")
    judge = EngineJudge(engine)
    assert judge(["", None, "  ", "two red circles"]) == [False, False, False, True]
    assert engine.num_requests == 1


def test_engine_judge_takes_engine_options(monkeypatch) -> None:
    seen = {}

    def fake_load_engine(spec, role, **options):
        seen.update(spec=spec, role=role, **options)
        return FunctionEngine(lambda r: "yes")

    monkeypatch.setattr("rapid_agent.rl.judge.load_engine", fake_load_engine)
    judge = build_judge("hf:/models/judge-72b", options={"device_map": "auto"})
    assert isinstance(judge, EngineJudge)
    assert seen == {"spec": "hf:/models/judge-72b", "role": "reasoner", "device_map": "auto"}


def test_parse_verdict() -> None:
    assert parse_verdict(" Yes.") is True
    assert parse_verdict("no, it only answers") is False
    assert parse_verdict("maybe") is None
    assert build_judge("off") is None
