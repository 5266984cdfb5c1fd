"""Tests for `python -m rapid_agent.eval`: a run over local copies of two benchmarks with tiny real backends and
two reasoners, a third reasoner added later re-using every caption, `merge` and `--compare` (paired differences:
tests/test_eval_compare.py; the sweep: tests/test_eval_sweep.py), bad input, and engines that cannot load."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.__main__ import main
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.eval.store import read_lines, read_results
from tests import eval_fixtures


@pytest.fixture(scope="module")
def second_reasoner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rapid_agent.models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "reasoner_qwen3", arch="qwen3", seed=1)


def test_two_benchmarks_two_reasoners_then_a_third(
    tmp_path: Path, tiny_captioner_dir: Path, tiny_reasoner_dir: Path, second_reasoner_dir: Path, capsys
) -> None:
    mathvista = eval_fixtures.mathvista(tmp_path / "MathVista")
    logicvista = eval_fixtures.logicvista(tmp_path / "LogicVista")
    out = tmp_path / "out"
    common = [
        "--benchmark", f"mathvista={mathvista}", "--benchmark", f"logicvista={logicvista}",
        "--captioner", f"hf:{tiny_captioner_dir}", "--mode", "qcap+sol", "--limit", "3", "--out", str(out),
        "--captioner-max-new-tokens", "8", "--reasoner-max-new-tokens", "8", "--no-progress",
    ]  # fmt: skip
    assert main([*common, "--reasoner", f"hf:{tiny_reasoner_dir}", "--reasoner", f"hf:{second_reasoner_dir}"]) == 0
    table = capsys.readouterr().out
    assert "| Captioner | Reasoner | Mode | MathVista | LogicVista | AVG |" in table
    results = read_results(out)
    assert len(results) == 2 * 2 * 3  # benchmarks x reasoners x samples
    assert {r["reasoner"] for r in results} == {f"hf:{tiny_reasoner_dir}", f"hf:{second_reasoner_dir}"}
    scored = [r for r in results if r["status"] == "scored"]
    assert scored and all(r["reasoner_output"] is not None and r["tokens"]["reasoner_completion"] for r in scored)
    perceptions = list(read_lines(out / "perceptions.jsonl"))
    assert len(perceptions) == 6  # one per sample and mode, shared by both reasoners

    # a third reasoner (the first one again, under another spec string) re-uses every caption
    third = f"hf:{Path(tiny_reasoner_dir)}/"
    assert main([*common, "--reasoner", third]) == 0
    assert len(list(read_lines(out / "perceptions.jsonl"))) == 6  # no new perception
    results = read_results(out)
    assert len(results) == 3 * 2 * 3
    captions = {r["sample_id"]: r["caption"] for r in results if r["reasoner"] == third and r["status"] == "scored"}
    earlier = {r["sample_id"]: r["caption"] for r in results if r["reasoner"] == f"hf:{tiny_reasoner_dir}"}
    assert captions and all(captions[k] == earlier[k] for k in captions)
    scores = (out / "summary.md").read_text().split("\n\n")[0]
    assert len([line for line in scores.splitlines() if line.startswith("| hf:")]) == 3  # one row per reasoner


def stub_run(out: Path, root: Path, answer: str) -> None:
    captioner = FunctionEngine(lambda r: "<caption>c</caption><solution>s</solution>", spec="cap")
    reasoner = FunctionEngine(lambda r: f"\\boxed{{{answer}}}", spec=f"says-{answer}")
    run_eval(
        [build_adapter(f"wemath={root}")],
        context=RapidContext(captioner=captioner),
        config=EvalConfig(out=out, reasoners=(reasoner,), progress=False),
    )


def test_merge_and_compare(tmp_path: Path, capsys) -> None:
    root = eval_fixtures.wemath(tmp_path / "wm")
    stub_run(tmp_path / "a", root, "A")
    stub_run(tmp_path / "b", root, "B")
    assert main(["merge", "--out", str(tmp_path / "all"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "says-A" in text and "says-B" in text and "merged 14 new records" in text
    assert (tmp_path / "all" / "summary.csv").is_file()
    assert main(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "| # | Run | Captioner | Reasoner | Mode | WeMath | AVG |"
    assert "| 1 | a | cap | says-A |" in text and "| 2 | b | cap | says-B |" in text
    # b's row paired with a's only row on We-Math's two composite problems, both lost by both (the bootstrap over
    # items all alike has no width: documented in rapid_agent.eval.stats), so it cannot judge the difference: `?`
    assert "| 2: b, says-B | 1: a, says-A | +0.0 [+0.0, +0.0] ? (n=2) |" in text
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "differences.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--benchmark", "mathverse", "--option", "mathverse.versions=bogus"], "unknown MathVerse version"),
        (["--benchmark", "mathvista", "--option", "mmmu.subjects=Math"], "no --benchmark gives"),
        (["--benchmark", "nope"], "unknown benchmark 'nope'"),
        (["--benchmark", "mathvista", "--shard-index", "3", "--num-shards", "2"], "shard_index"),
        (["--benchmark", "mathvista=/no/such/folder"], "neither an existing file or folder nor a hub id"),
    ],
)
def test_bad_input_names_the_field(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main([*args, "--reasoner", "hf:x", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "engine, message",
    [
        (["--reasoner", "hf:/no/such/dir"], "reasoner 'hf:/no/such/dir' could not be loaded: model path"),
        (
            ["--reasoner", "hf:{tmp}", "--reasoner-option", "bogus=1"],
            "reasoner 'hf:{tmp}' could not be loaded: unknown 'hf' engine option(s) ['bogus']",
        ),
        (
            ["--reasoner", "hf:{tmp}", "--mode", "cap", "--captioner", "hf:/no/such/dir"],
            "captioner 'hf:/no/such/dir' could not be loaded: model path",
        ),
    ],
)
def test_an_engine_that_cannot_load_fails_at_once_with_one_line(
    engine: list[str], message: str, tmp_path: Path, capsys
) -> None:
    engine, message = [a.format(tmp=tmp_path) for a in engine], message.format(tmp=tmp_path)
    wemath = eval_fixtures.wemath(tmp_path / "wm")
    capsys.readouterr()  # what writing the fixture printed
    out = tmp_path / "out"
    args = ["--benchmark", f"wemath={wemath}", "--mode", "none", "--out", str(out), "--no-progress", *engine]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists()  # nothing written


def test_trace_records_each_evaluation_batch_with_its_graph_runs(tmp_path: Path, tiny_reasoner_dir: Path) -> None:
    from rapid_agent.tracing import disable_tracing, read_trace

    mathvista = eval_fixtures.mathvista(tmp_path / "MathVista")
    trace = tmp_path / "eval.jsonl"
    args = [
        "--benchmark", f"mathvista={mathvista}", "--mode", "none", "--limit", "3", "--out", str(tmp_path / "out"),
        "--reasoner", f"hf:{tiny_reasoner_dir}", "--reasoner-max-new-tokens", "4", "--no-progress",
        "--trace", str(trace),
    ]  # fmt: skip
    try:
        assert main(args) == 0
    finally:
        disable_tracing()
    spans = read_trace(trace)
    (batch,) = [s for s in spans if s["name"] == "rapid.eval.batch"]
    assert batch["attributes"]["rapid.benchmark"] == "mathvista" and batch["attributes"]["rapid.batch.size"] == 3
    runs = [s for s in spans if s["name"] == "invoke_workflow rapid"]
    assert len(runs) == 3 and all(r["parent_id"] == batch["span_id"] for r in runs)
