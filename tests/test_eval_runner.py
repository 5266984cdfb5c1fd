"""Tests for rapid_agent.eval.runner: the whole evaluation through the real graph with stand-in engines that count
their calls. Perception is cached and shared by reasoners, several images reach the captioner, bad rows are recorded
as skipped while any other failure is an error to retry, engines that cannot load stop the run before any work,
shards merge to the unsharded table, and a run killed with SIGKILL resumes to the same totals."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.eval.store import RESULT_KEY, merge, read_lines, read_results, record_key
from rapid_agent.eval.summary import summarize
from rapid_agent.prompts import DEFAULT_PROMPTS
from tests import eval_fixtures

REPO = Path(__file__).resolve().parents[1]


def captioner() -> FunctionEngine:
    return FunctionEngine(
        lambda r: f"<caption>{len(r.images)} image(s)</caption><solution>so \\boxed{{B}}</solution>", spec="cap-stub"
    )


def reasoner(answer: str = "B", spec: str = "reasoner-b") -> FunctionEngine:
    return FunctionEngine(lambda r: f"The answer is \\boxed{{{answer}}}.", spec=spec)


def evaluate(out: Path, benchmarks: list[str], cap, reasoners, **config) -> object:
    adapters = [build_adapter(b, config.pop("options", None)) for b in benchmarks]
    context = RapidContext(captioner=cap, mode=config.pop("mode", "qcap+sol"), **config.pop("context", {}))
    return run_eval(
        adapters, context=context, config=EvalConfig(out=out, reasoners=tuple(reasoners), progress=False, **config)
    )


def lines(path: Path) -> list[dict]:
    return list(read_lines(path))


def test_several_images_reach_the_captioner_in_order(tmp_path: Path) -> None:
    root = eval_fixtures.mmmu(tmp_path / "mmmu")
    cap = captioner()
    evaluate(tmp_path / "out", [f"mmmu={root}"], cap, [reasoner()])
    seen = {len(r.images): r for call in cap.calls for r in call}
    assert sorted(seen) == [1, 2]  # Math_1 carries two images; Math_3 (one of its two missing) is never sent
    two = seen[2].images
    assert two[1].getpixel((40, 35)) == (255, 255, 0) and two[0].getpixel((40, 35)) == (255, 255, 255)
    records = {r["sample_id"]: r for r in read_results(tmp_path / "out")}
    assert records["validation_Math_1"]["caption"] == "2 image(s)" and records["validation_Math_1"]["images"] == 2


def test_a_second_reasoner_makes_no_captioner_call(tmp_path: Path) -> None:
    bench = [
        f"mathvista={eval_fixtures.mathvista(tmp_path / 'mv')}",
        f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}",
    ]
    cap, first, second = captioner(), reasoner("B", "first"), reasoner("A", "second")
    evaluate(tmp_path / "out", bench, cap, [first], batch_size=4)
    captioned, first_calls = cap.num_requests, first.num_requests
    assert captioned == 11  # 4 runnable MathVista rows (pid 5 lacks its image file, pid 6 a usable gold) + 7 WeMath
    summary = evaluate(tmp_path / "out", bench, cap, [first, second], batch_size=4)
    assert cap.num_requests == captioned  # every caption came from the cache
    assert first.num_requests == first_calls  # the first reasoner's records were already written
    assert second.num_requests == first_calls
    assert {row.reasoner for row in summary.rows} == {"first", "second"}
    second_records = [
        r for r in read_results(tmp_path / "out") if r["reasoner"] == "second" and r["status"] == "scored"
    ]
    assert second_records and all(r["caption"] == "1 image(s)" for r in second_records)


def test_records_carry_the_sample_and_the_summary_counts_them(tmp_path: Path) -> None:
    bench = [
        f"mathvista={eval_fixtures.mathvista(tmp_path / 'mv')}",
        f"logicvista={eval_fixtures.logicvista(tmp_path / 'lv')}",
    ]
    summary = evaluate(tmp_path / "out", bench, captioner(), [reasoner("C")])
    raw = lines(tmp_path / "out" / "results.jsonl")
    record = next(r for r in raw if r["benchmark"] == "logicvista" and r["sample_id"] == "v1_0")
    for key in ("benchmark", "sample_id", "mode", "captioner", "reasoner", "caption", "solution", "reasoner_output",
                "prediction", "verdict", "correct", "latency_s", "tokens"):  # fmt: skip
        assert key in record, key
    assert record["correct"] is True and record["prediction"] == "C" and record["captioner"] == "cap-stub"
    for label in ("mathvista", "logicvista"):
        mine = [r for r in raw if r["benchmark"] == label]
        cell = summary.rows[0].cells[label]
        assert cell.correct == sum(r["status"] != "skipped" and bool(r["correct"]) for r in mine)
        assert cell.scored == sum(r["status"] != "skipped" for r in mine)
        assert cell.skipped == sum(r["status"] == "skipped" for r in mine)
    table = (tmp_path / "out" / "summary.md").read_text()
    expected = 100 * summary.rows[0].cells["logicvista"].score
    assert f"{expected:.1f}" in table and "AVG" in table
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {
        "summary.md",
        "summary.csv",
        "summary.json",
        "summary.png",
    }


def test_bad_rows_are_counted_as_skipped(tmp_path: Path) -> None:
    bench = [
        f"mathvista={eval_fixtures.mathvista(tmp_path / 'mv')}",
        f"logicvista={eval_fixtures.logicvista(tmp_path / 'lv')}",
    ]
    summary = evaluate(tmp_path / "out", bench, captioner(), [reasoner()])
    cells = summary.rows[0].cells
    assert (cells["mathvista"].scored, cells["mathvista"].skipped) == (4, 2)
    assert (cells["logicvista"].scored, cells["logicvista"].skipped) == (3, 1)
    reasons = " ".join(cells["mathvista"].skip_reasons) + " ".join(cells["logicvista"].skip_reasons)
    assert "image file not found" in reasons and "none of the choices" in reasons and "cannot decode" in reasons


def test_shards_merge_to_the_unsharded_totals(tmp_path: Path) -> None:
    bench = [
        f"dynamath={eval_fixtures.dynamath(tmp_path / 'dm', seeds=5)}",
        f"mathvista={eval_fixtures.mathvista(tmp_path / 'mv')}",
    ]
    whole = evaluate(tmp_path / "whole", bench, captioner(), [reasoner()])
    for index in range(3):
        evaluate(tmp_path / f"shard{index}", bench, captioner(), [reasoner()], num_shards=3, shard_index=index)
    sizes = [len(lines(tmp_path / f"shard{i}" / f"results.shard-00{i}-of-003.jsonl")) for i in range(3)]
    assert sum(sizes) == len(lines(tmp_path / "whole" / "results.jsonl")) and min(sizes) > 0
    merge(tmp_path / "merged", [tmp_path / f"shard{i}" for i in range(3)])
    merged = summarize(read_results(tmp_path / "merged"))
    assert merged.to_dict() == whole.to_dict()
    # shards writing into one shared folder need no merge step: any run (or `merge` alone) counts them all
    for index in range(3):
        evaluate(tmp_path / "shared", bench, captioner(), [reasoner()], num_shards=3, shard_index=index)
    assert summarize(read_results(tmp_path / "shared")).to_dict() == whole.to_dict()
    assert merge(tmp_path / "merged", [tmp_path / f"shard{i}" for i in range(3)]) == 0  # merging twice adds nothing


def test_text_only_mode_needs_no_captioner(tmp_path: Path) -> None:
    cap = captioner()
    summary = evaluate(
        tmp_path / "out", [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"], cap, [reasoner()], modes=("none",)
    )
    assert cap.num_calls == 0
    assert summary.rows[0].captioner == "-" and summary.rows[0].cells["wemath"].scored == 7


def test_engine_errors_are_counted_apart_and_can_be_retried(tmp_path: Path) -> None:
    failing = {"on": True}

    def flaky(request) -> str:
        if failing["on"]:
            raise RuntimeError("server down")
        return "\\boxed{A}"

    bench = [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"]
    broken = FunctionEngine(flaky, spec="flaky")
    summary = evaluate(tmp_path / "out", bench, captioner(), [broken])
    cell = summary.rows[0].cells["wemath"]
    assert (cell.scored, cell.errored, cell.correct) == (0, 7, 0)  # no verdict: not 0 %, no score at all
    assert math.isnan(cell.score) and "(7 err)" in (tmp_path / "out" / "summary.md").read_text()
    assert all(r["correct"] is None for r in read_results(tmp_path / "out"))
    failing["on"] = False
    again = evaluate(tmp_path / "out", bench, captioner(), [broken])
    assert again.rows[0].cells["wemath"].errored == 7  # finished records are kept unless asked to retry
    retried = evaluate(tmp_path / "out", bench, captioner(), [broken], retry_errors=True)
    assert retried.rows[0].cells["wemath"].errored == 0 and retried.rows[0].cells["wemath"].correct == 2


@pytest.mark.parametrize("prompt", ["reason", "caption_and_solution"])
def test_a_failure_that_is_not_bad_data_is_an_error_and_retried(tmp_path: Path, prompt: str) -> None:
    # a template naming a field nobody fills (a wrong setting, a bug): every sample fails, none of them for its data
    broken = {"prompts": DEFAULT_PROMPTS.replace(**{prompt: "{questoin}"})}
    bench = [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"]
    cell = evaluate(tmp_path / "out", bench, captioner(), [reasoner()], context=broken).rows[0].cells["wemath"]
    assert (cell.scored, cell.errored, cell.skipped) == (0, 7, 0)  # not skipped: the benchmark is not smaller
    records = read_results(tmp_path / "out")
    assert all(r["status"] == "error" and r["errors"] == ["error: KeyError: 'questoin'"] for r in records)
    assert all(r["correct"] is None for r in records)
    written = len(lines(tmp_path / "out" / "results.jsonl"))
    evaluate(tmp_path / "out", bench, captioner(), [reasoner()], context=broken)
    assert len(lines(tmp_path / "out" / "results.jsonl")) == written  # finished, unless asked to retry
    evaluate(tmp_path / "out", bench, captioner(), [reasoner()], context=broken, retry_errors=True)
    assert len(lines(tmp_path / "out" / "results.jsonl")) == written + 7  # errors are not finished work


@pytest.mark.parametrize(
    "role, spec, options, message",
    [
        ("reasoner", "hf:/no/such/dir", {}, "reasoner 'hf:/no/such/dir' could not be loaded: model path"),
        (
            "reasoner",
            "hf:{tmp}",
            {"bogus": "1"},
            "reasoner 'hf:{tmp}' could not be loaded: unknown 'hf' engine option",
        ),
        ("captioner", "hf:/no/such/dir", {}, "captioner 'hf:/no/such/dir' could not be loaded: model path"),
        ("captioner", "hf:{tmp}", {"bogus": "1"}, "captioner 'hf:{tmp}' could not be loaded: unknown 'hf' engine"),
    ],
)
def test_an_engine_that_cannot_load_stops_the_run_before_any_work(
    tmp_path: Path, role: str, spec: str, options: dict, message: str
) -> None:
    spec, message = spec.format(tmp=tmp_path), message.format(tmp=tmp_path)
    cap, rea = captioner(), reasoner()
    engines = {"captioner": cap, "reasoner": rea, role: spec}
    bench = [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"]
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=re.escape(message)):
        evaluate(out, bench, engines["captioner"], [engines["reasoner"]], context={f"{role}_options": options})
    assert cap.num_calls == 0 and rea.num_calls == 0 and not out.exists()  # no work done, no record written


def test_only_the_engines_with_work_are_loaded(tmp_path: Path) -> None:
    bench = [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"]
    # the first run's captioner carries the spec of a model that is gone by the second run
    evaluate(tmp_path / "out", bench, FunctionEngine(captioner().fn, spec="hf:/gone"), [reasoner()])
    summary = evaluate(tmp_path / "out", bench, "hf:/gone", [reasoner(), reasoner("A", "second")])
    assert summary.rows[1].reasoner == "second" and summary.rows[1].cells["wemath"].scored == 7  # captions cached
    text_only = evaluate(tmp_path / "text", bench, "hf:/gone", [reasoner()], modes=("none",))
    assert text_only.rows[0].cells["wemath"].scored == 7  # mode `none` needs no captioner


def test_an_answer_check_that_cannot_run_is_an_error_to_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rapid_agent.eval.adapters import ADAPTERS
    from rapid_agent.eval.scoring import Score

    wemath = ADAPTERS["wemath"]
    checker = {"broken": True}
    original = wemath.score

    def score(self, record: dict) -> Score:
        if not checker["broken"]:
            return original(self, record)
        if record["sample_id"].endswith("1"):
            raise RuntimeError("answer extraction could not run: no worker process")  # what extract_answer raises
        return Score(None, None, "answer check could not run: the worker pool is stopped")

    monkeypatch.setattr(wemath, "score", score)
    bench = [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"]
    cell = evaluate(tmp_path / "out", bench, captioner(), [reasoner()]).rows[0].cells["wemath"]
    assert (cell.scored, cell.errored) == (0, 7)  # undecided, not wrong
    records = read_results(tmp_path / "out")
    assert all(r["status"] == "error" and r["correct"] is None for r in records)
    reasons = {r["errors"][-1] for r in records}
    assert "answer check: answer check could not run: the worker pool is stopped" in reasons
    assert "answer check: RuntimeError: answer extraction could not run: no worker process" in reasons
    checker["broken"] = False
    cell = evaluate(tmp_path / "out", bench, captioner(), [reasoner()], retry_errors=True).rows[0].cells["wemath"]
    assert (cell.scored, cell.errored) == (7, 0)


def killable_run(out: str, root: str, delay: float) -> None:
    """The run the kill test starts in a subprocess (and once in-process, uninterrupted, for the reference)."""
    cap = FunctionEngine(lambda r: "<caption>c</caption><solution>\\boxed{B}</solution>", spec="cap", delay_s=delay)
    rea = FunctionEngine(lambda r: "\\boxed{%s}" % ("B" if len(r.prompt) % 2 else "2.100"), spec="rea", delay_s=delay)
    config = EvalConfig(out=out, reasoners=(rea,), batch_size=2, concurrency=1, progress=False, tables=False)
    run_eval([build_adapter(f"dynamath={root}")], context=RapidContext(captioner=cap), config=config)


KILLABLE = textwrap.dedent(
    """
    import sys
    from tests.test_eval_runner import killable_run

    killable_run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
    """
)


def test_a_killed_run_resumes_to_the_same_totals(tmp_path: Path) -> None:
    root = eval_fixtures.dynamath(tmp_path / "dm", seeds=4)  # 12 samples, 6 batches of 2
    script = tmp_path / "run.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killable_run(str(tmp_path / "whole"), str(root), 0.0)
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(script), str(out), str(root), "0.4"], env=env)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or len(results.read_bytes().splitlines()) < 4):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(lines(results))
    assert 4 <= written < 12, written  # killed part-way
    with results.open("ab") as f:  # what a kill in the middle of a write leaves behind
        f.write(b'{"benchmark": "dynamath", "sample_id": "cut')
    subprocess.run([sys.executable, str(script), str(out), str(root), "0"], check=True, env=env)
    raw = lines(results)
    keys = Counter(record_key(r, RESULT_KEY) for r in raw)
    assert len(raw) == 12 and set(keys.values()) == {1}  # each sample exactly once
    assert summarize(read_results(out)).to_dict() == summarize(read_results(tmp_path / "whole")).to_dict()


def test_a_second_writer_on_the_same_shard_is_refused(tmp_path: Path) -> None:
    from rapid_agent.eval.store import JsonlWriter

    with JsonlWriter(tmp_path / "results.jsonl"):
        with pytest.raises(RuntimeError, match="another process is writing"):
            JsonlWriter(tmp_path / "results.jsonl")


def test_config_checks_name_the_field(tmp_path: Path) -> None:
    for bad, message in [
        ({"reasoners": ()}, "reasoners"),
        ({"reasoners": ("x",), "shard_index": 2, "num_shards": 2}, "shard_index"),
        ({"reasoners": ("x",), "limit": 0}, "limit"),
        ({"reasoners": ("x",), "modes": ("cap+ocr",)}, "perception mode"),
    ]:
        with pytest.raises(ValueError, match=message):
            EvalConfig(out=tmp_path, **bad)


def test_summary_json_is_plain_json(tmp_path: Path) -> None:
    evaluate(tmp_path / "out", [f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}"], captioner(), [reasoner()])
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    cell = data["rows"][0]["benchmarks"]["wemath"]
    assert cell["scored"] == 7 and "score_loose" in cell["metrics"] and data["columns"][0]["title"] == "WeMath"
