"""Tests for rapid_agent.eval.sweep and `python -m rapid_agent.eval sweep`: reasoners run over one captioner's cached
perceptions make zero captioner calls (even when given other captioner options, which would have missed the cache),
samples without a cached perception are left unrun and counted, and the table pairs every reasoner with the baseline,
marking a difference beyond noise and not one within."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from rapid_agent.backends.base import GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.__main__ import main
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.eval.store import read_lines, read_results
from rapid_agent.eval.sweep import sweep
from tests import eval_fixtures


def knows(first: int, spec: str, also: tuple[int, ...] = ()) -> FunctionEngine:
    """A reasoner right on `What is i + 1?` for i < first (and i in `also`), wrong elsewhere."""

    def answer(request) -> str:
        i = int(re.search(r"What is (\d+) \+ 1", request.prompt).group(1))
        return f"\\boxed{{{i + 1 if i < first or i in also else -1}}}"

    return FunctionEngine(answer, spec=spec)


def counting_captioner() -> FunctionEngine:
    return FunctionEngine(lambda r: "<caption>a plus sign</caption><solution>add one</solution>", spec="cap")


def run(out: Path, data: Path, cap, reasoners, *, gen: GenerationConfig | None = None, **config):
    context = RapidContext(captioner=cap, **({"captioner_gen": gen} if gen else {}))
    config = EvalConfig(out=out, reasoners=tuple(reasoners), progress=False, **config)
    return run_eval([build_adapter(f"generic:arith={data}")], context=context, config=config)


@pytest.fixture
def cached(tmp_path: Path) -> tuple[Path, Path, FunctionEngine]:
    """60 questions perceived once by a counting captioner, the baseline (right on half) run over them."""
    data = eval_fixtures.arithmetic(tmp_path / "arith", 60)
    cap = counting_captioner()
    run(tmp_path / "out", data, cap, [knows(30, "small")])
    assert cap.num_requests == 60
    return tmp_path / "out", data, cap


def test_a_sweep_makes_zero_captioner_calls_and_pairs_every_reasoner_with_the_baseline(cached) -> None:
    out, data, cap = cached
    other_options = GenerationConfig(max_new_tokens=7)  # part of the cache key: a normal run would perceive again
    reasoners = [knows(50, "big"), knows(29, "close", also=(40, 41, 42))]
    run(out, data, cap, reasoners, gen=other_options, perceive=False)
    assert cap.num_requests == 60  # not one captioner call
    assert len(list(read_lines(out / "perceptions.jsonl"))) == 60
    records = read_results(out)
    assert len(records) == 3 * 60 and all(r["status"] == "scored" for r in records)
    assert {r["caption"] for r in records} == {"a plus sign"}  # every reasoner read the cached captions

    result = sweep(records, baseline="small")
    assert (result.captioner, result.mode) == ("cap", "qcap+sol")
    assert [r.reasoner for r in result.summary.rows] == ["small", "big", "close"]  # the baseline first
    big, close = (c.cells["arith"] for c in result.comparisons)
    assert big.n == 60 and big.estimate == pytest.approx(20 / 60) and big.beyond_noise  # 20 wins, no loss
    assert close.n == 60 and close.estimate == pytest.approx(2 / 60) and not close.beyond_noise  # 3 wins, 1 loss
    text = result.markdown()
    assert "| Reasoner | arith | AVG |" in text and "| small | 50.0 [37.7, 62.3] |" in text
    assert "| big | small | +33.3 [+20.2, +44.3] * (n=60) |" in text
    assert "| close | small | +3.3 [-3.8, +10.2] (n=60) |" in text

    # the guard is what kept the count at 60: the same run allowed to perceive misses the cache and calls it
    run(out, data, cap, [knows(50, "big")], gen=other_options)
    assert cap.num_requests == 120


def test_samples_without_a_cached_perception_are_left_unrun_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = eval_fixtures.arithmetic(tmp_path / "arith", 30)
    cap = counting_captioner()
    run(tmp_path / "out", data, cap, [knows(10, "small")], limit=12)
    with caplog.at_level(logging.WARNING, logger="rapid_agent.eval.runner"):
        run(tmp_path / "out", data, cap, [knows(20, "big")], perceive=False)
    assert cap.num_requests == 12
    assert sorted(r["sample_id"] for r in read_results(tmp_path / "out") if r["reasoner"] == "big") == sorted(
        f"q{i}" for i in range(12)
    )
    assert "18 sample(s) have no cached perception of captioner 'cap'" in caplog.text


def test_a_sweep_names_what_it_cannot_choose(cached) -> None:
    out, _, _ = cached
    records = read_results(out)
    with pytest.raises(ValueError, match="row selector 'nobody' matches no row; the rows: 1: cap, small, qcap\\+sol"):
        sweep(records, baseline="nobody")
    with pytest.raises(ValueError, match=r"--captioner 'other' matches none of the records' captioners \['cap'\]"):
        sweep(records, baseline="small", captioner="other")
    with pytest.raises(ValueError, match="no record with a captioner's perception"):
        sweep([{**r, "mode": "none", "captioner": "-"} for r in records], baseline="small")


def test_the_sweep_command_reads_the_out_folder_and_writes_its_tables(cached, capsys) -> None:
    out, data, cap = cached
    run(out, data, cap, [knows(50, "big")], perceive=False)
    assert main(["sweep", "--out", str(out), "--baseline", "small"]) == 0
    text = capsys.readouterr().out
    assert "Reasoner sweep over the perceptions of cap (mode qcap+sol); baseline small" in text
    assert "| big | small | +33.3 [+20.2, +44.3] * (n=60) |" in text
    data_out = json.loads((out / "sweep.json").read_text())
    assert data_out["baseline"] == "small" and data_out["differences"][0]["benchmarks"]["arith"]["beyond_noise"]
    lines = (out / "sweep.csv").read_text().splitlines()
    assert (
        lines[0].startswith("row_captioner,row_reasoner,")
        and ",arith,60,0.3333,0.2020,0.4432,agresti-min,1" in lines[1]
    )
    assert main(["sweep", "--out", str(out), "--baseline", "small", "--benchmark", f"generic:arith={data}"]) == 2
    assert "name the --reasoner(s) to run on it" in capsys.readouterr().err


def test_the_sweep_command_runs_a_reasoner_without_the_captioner(cached, tiny_reasoner_dir: Path, capsys) -> None:
    """The cached captioner `cap` is no loadable engine at all: the sweep runs a real reasoner over its captions."""
    out, data, _ = cached
    reasoner = f"hf:{tiny_reasoner_dir}"
    args = ["sweep", "--out", str(out), "--baseline", "small", "--benchmark", f"generic:arith={data}"]
    args += ["--reasoner", reasoner, "--reasoner-max-new-tokens", "4", "--limit", "6", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    # a random tiny model's verdicts are its own; the line pairs its 6 samples with the baseline's
    assert re.search(
        rf"\| {re.escape(reasoner)} \| small \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]( \*)? \(n=6\) \|", text
    )
    assert len(list(read_lines(out / "perceptions.jsonl"))) == 60  # nothing perceived anew
    assert sum(r["reasoner"] == reasoner for r in read_results(out)) == 6


def test_a_sweep_over_a_cache_of_several_captioner_settings_asks_which(tmp_path: Path) -> None:
    data = eval_fixtures.arithmetic(tmp_path / "arith", 4)
    cap = counting_captioner()
    for tokens in (5, 6):
        run(tmp_path / "out", data, cap, [knows(2, "small")], gen=GenerationConfig(max_new_tokens=tokens))
    with pytest.raises(ValueError, match="holds 2 settings for captioner 'cap'.*give the captioner options"):
        run(tmp_path / "out", data, cap, [knows(3, "big")], perceive=False)
    run(tmp_path / "out", data, cap, [knows(3, "big")], gen=GenerationConfig(max_new_tokens=6), perceive=False)
    assert cap.num_requests == 8 and sum(r["reasoner"] == "big" for r in read_results(tmp_path / "out")) == 4
