"""The caption judges: empty captions, engine options, verdict parsing (the policy judge is in test_rl_train)."""

from __future__ import annotations

import pytest

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.rl.caption_judge import EngineJudge, build_judge, judge_request, parse_verdict


def test_empty_caption_is_not_genuine_without_asking_the_judge() -> None:
    engine = FunctionEngine(lambda r: "yes")
    judge = EngineJudge(engine)
    assert judge(["", None, "  ", "two red circles"]) == [False, False, False, True]
    assert engine.num_requests == 1


def test_engine_judge_loads_its_engine_with_the_options_and_asks_it(monkeypatch) -> None:
    """The judge built from a spec asks the engine loaded with its options, and its verdict is that engine's."""
    engine = FunctionEngine(lambda r: "no")

    def fake_load_engine(spec, role, **options):
        assert (spec, role, options) == ("hf:/models/judge-72b", "reasoner", {"device_map": "auto"})
        return engine

    monkeypatch.setattr("rapid_agent.rl.caption_judge.load_engine", fake_load_engine)
    judge = build_judge("hf:/models/judge-72b", options={"device_map": "auto"})
    assert isinstance(judge, EngineJudge)
    assert judge(["There are 2 red circles."]) == [False]
    assert [r.prompt for r in engine.calls[0]] == [judge_request("There are 2 red circles.").prompt]


def test_engine_judge_options_reach_the_real_engine_loader() -> None:
    """No stand-in: an option the hf engine does not take fails at load, named (so the options are passed on)."""
    with pytest.raises(ValueError, match="no_such_option"):
        build_judge("hf:/models/judge-72b", options={"no_such_option": 1})


def test_parse_verdict() -> None:
    assert parse_verdict(" Yes.") is True
    assert parse_verdict("no, it only answers") is False
    assert parse_verdict("maybe") is None
    assert build_judge("off") is None
