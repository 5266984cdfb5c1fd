"""Tests for rapid_agent.eval.summary, tables and store: the table is a count over the records (one per key, the
latest), laid out like the paper's, each score with its 95% interval and n in every format; errors are counted apart
from the metric and shown beside it; runs compare side by side; the store survives a half-written line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from rapid_agent.eval.store import JsonlWriter, read_lines, read_results
from rapid_agent.eval.summary import summarize
from rapid_agent.eval.tables import compare, to_markdown, write_all


def rec(
    benchmark: str, sample: str, correct: bool | None, *, reasoner: str = "r1", status: str = "scored", **extra
) -> dict:
    return {
        "benchmark": benchmark,
        "adapter": benchmark,
        "sample_id": sample,
        "mode": "qcap+sol",
        "captioner": "cap",
        "reasoner": reasoner,
        "settings": "s1",
        "status": status,
        "correct": correct,
        "fields": extra.pop("fields", {}),
        **extra,
    }


def records() -> list[dict]:
    out = [rec("mathvista", str(i), i < 3) for i in range(4)]  # 3 / 4
    out += [rec("mathvista", "bad", None, status="skipped", skip_reason="no image")]
    out += [rec("mmmu", str(i), i == 0) for i in range(2)]  # 1 / 2
    out += [rec("mmmu", "x", None, status="error", errors=["reasoner: timeout"])]  # no verdict: still 1 / 2
    out += [rec("mathvista", str(i), True, reasoner="r2") for i in range(4)]
    return out


def test_summary_counts_the_records() -> None:
    summary = summarize(records())
    assert [c for c, _ in summary.columns] == ["mathvista", "mmmu"]  # the paper's column order
    first, second = summary.rows
    assert (first.cells["mathvista"].scored, first.cells["mathvista"].correct, first.cells["mathvista"].skipped) == (
        4,
        3,
        1,
    )
    assert first.cells["mathvista"].skip_reasons == {"no image": 1}
    mmmu = first.cells["mmmu"]
    assert (mmmu.scored, mmmu.correct, mmmu.errored, mmmu.score) == (2, 1, 1, 0.5)  # the error left the denominator
    assert first.avg == pytest.approx((0.75 + 0.5) / 2) and first.errored == 1
    assert second.reasoner == "r2" and "mmmu" not in second.cells and second.avg == 1.0


def test_markdown_and_csv_look_like_the_paper(tmp_path: Path) -> None:
    summary = summarize(records())
    text = to_markdown(summary)
    header = text.splitlines()[0]
    assert header == "| Captioner | Reasoner | Mode | MathVista | MMMU | AVG |"
    # each score with its Wilson interval (3/4: [30.1, 95.4], 1/2: [9.5, 90.5]); a partial score says so
    # AVG: 62.5 - sqrt(0.449^2 + 0.405^2) / 2, 62.5 + sqrt(0.204^2 + 0.405^2) / 2; one cell: that cell's interval
    assert "| cap | r1 | qcap+sol | 75.0 [30.1, 95.4] | 50.0 [9.5, 90.5] (1 err) | 62.5 [32.2, 85.2] (1 err) |" in text
    assert "| cap | r2 | qcap+sol | 100.0 [51.0, 100.0] |  | 100.0 [51.0, 100.0] |" in text
    assert "[low, high]: 95% intervals: Wilson" in text and "AVG: the benchmarks' intervals combined by MOVER" in text
    assert "(N err): 1 sample(s) whose run failed" in text and "--retry-errors" in text
    assert "| 4 / 0 / 1 | 2 / 1 / 0 |" in text  # scored / errored / skipped
    paths = write_all(summary, tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert rows[0]["mathvista"] == "0.7500" and rows[0]["mathvista_skipped"] == "1" and rows[1]["mmmu"] == ""
    assert rows[0]["mmmu"] == "0.5000" and rows[0]["mmmu_errored"] == "1" and rows[0]["mathvista_errored"] == "0"
    assert (rows[0]["mathvista_low"], rows[0]["mathvista_high"], rows[0]["mathvista_n"]) == ("0.3006", "0.9544", "4")
    assert (rows[0]["avg"], rows[0]["avg_low"], rows[0]["avg_high"]) == ("0.6250", "0.3224", "0.8520")
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["benchmarks"]["mmmu"]["errored"] == 1 and data["rows"][1]["benchmarks"].keys() == {
        "mathvista"
    }
    mathvista = data["rows"][0]["benchmarks"]["mathvista"]
    assert mathvista["interval"] == {"low": pytest.approx(0.3006, abs=1e-4), "high": pytest.approx(0.9544, abs=1e-4),
                                     "method": "wilson"}  # fmt: skip
    assert (mathvista["n"], mathvista["unit"], mathvista["skipped"]) == (4, "samples", 1)
    assert data["rows"][0]["avg_interval"]["method"] == "mover" and "Wilson" in data["intervals"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_score_that_is_not_an_accuracy_has_a_bootstrap_interval_over_its_items() -> None:
    # We-Math: problem 1 mastered (1), problem 2 right on its parts but not whole (0.5), problem 3 wrong (0)
    def problem(pid: str, subs: list[bool], whole: bool) -> list[dict]:
        keys = [f"2steps_{i + 1}" for i in range(len(subs))] + ["2steps_multi"]
        return [
            rec("wemath", f"{pid}/{k}", c, fields={"problem": pid, "key": k}) for k, c in zip(keys, [*subs, whole])
        ]

    records = problem("1", [True, True], True) + problem("2", [True, True], False) + problem("3", [False, True], False)
    cell = summarize(records).rows[0].cells["wemath"]
    assert cell.score == pytest.approx(0.5) and (cell.n, cell.unit, cell.scored) == (3, "problems", 9)
    assert cell.interval.method == "bootstrap" and 0 <= cell.interval.low < 0.5 < cell.interval.high <= 1
    assert summarize(records).rows[0].cells["wemath"].interval == cell.interval  # seeded: the same every time
    assert "(n=3 problems)" in to_markdown(summarize(records))


def test_a_table_without_errors_shows_no_error_marks() -> None:
    summary = summarize([r for r in records() if r["status"] != "error"])
    text = to_markdown(summary)
    assert " err)" not in text and "(N err)" not in text
    assert "| cap | r1 | qcap+sol | 75.0 | 50.0 | 62.5 |" in to_markdown(summary, intervals=False)


def test_a_cell_with_only_errors_has_no_score_but_says_why() -> None:
    summary = summarize([rec("mmmu", "1", None, status="error", errors=["reasoner: down"])])
    cell = summary.rows[0].cells["mmmu"]
    assert (cell.scored, cell.errored) == (0, 1) and cell.score != cell.score  # NaN: no verdict at all
    assert "| cap | r1 | qcap+sol | (1 err) | (1 err) |" in to_markdown(summary)
    assert math.isnan(cell.interval.low) and cell.interval.to_dict()["low"] is None


def test_the_chart_marks_bars_with_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    from rapid_agent.eval.tables import write_chart

    texts: list[str] = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(
        matplotlib.axes.Axes, "text", lambda ax, x, y, s, *a, **k: texts.append(s) or original(ax, x, y, s, *a, **k)
    )
    bars: list[dict] = []
    original_bar = matplotlib.axes.Axes.bar
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", lambda ax, *a, **k: bars.append(k) or original_bar(ax, *a, **k))
    write_chart(summarize(records()), tmp_path / "chart.png")
    assert texts == ["1 err", "1 err"]  # r1's MMMU bar and its AVG bar
    below, above = bars[0]["yerr"]  # r1: MathVista 75.0 [30.1, 95.4], MMMU 50.0 [9.5, 90.5], AVG
    assert below[:2] == pytest.approx([75.0 - 30.06, 50.0 - 9.45], abs=0.01)
    assert above[:2] == pytest.approx([95.44 - 75.0, 90.55 - 50.0], abs=0.01)
    assert bars[1]["yerr"][0][1] == 0  # r2 has no MMMU cell: no bar to draw


def test_settings_show_only_when_ambiguous() -> None:
    rows = [rec("mathvista", "1", True), rec("mathvista", "1", False, settings="s2")]
    summary = summarize(rows)
    assert len(summary.rows) == 2 and all(r.label_settings for r in summary.rows)
    assert "qcap+sol [s2]" in to_markdown(summary)


def test_compare_runs_side_by_side() -> None:
    a = summarize(records())
    b = summarize([rec("wemath", "1", True, fields={"problem": "1", "key": "2steps_1"})])
    merged, names = compare([("run-a", a), ("run-b", b)])
    assert names == ["run-a", "run-a", "run-b"]
    text = to_markdown(merged, run_names=names, counts=False)
    assert text.splitlines()[0] == "| Run | Captioner | Reasoner | Mode | MathVista | MMMU | WeMath | AVG |"


def test_store_keeps_the_latest_record_and_survives_a_cut_line(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / "results.jsonl") as writer:
        writer.append([rec("mathvista", "1", False, time=1.0), rec("mathvista", "2", True, time=1.0)])
        writer.append([rec("mathvista", "1", True, time=2.0)])  # a retry replaces the earlier record
    with (tmp_path / "results.jsonl").open("ab") as f:
        f.write(b'{"benchmark": "math')  # a kill in the middle of a write
    results = read_results(tmp_path)
    assert sorted((r["sample_id"], r["correct"]) for r in results) == [("1", True), ("2", True)]
    with JsonlWriter(tmp_path / "results.jsonl") as writer:  # the next writer cuts the half line first
        writer.append([rec("mathvista", "3", True)])
    assert [r["sample_id"] for r in read_lines(tmp_path / "results.jsonl")] == ["1", "2", "1", "3"]
    (tmp_path / "results.jsonl").write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match="results.jsonl:2: corrupt record"):
        read_results(tmp_path)


def test_a_row_of_several_seeds_is_their_mean_with_its_spread(tmp_path: Path) -> None:
    from rapid_agent.eval.compare import paired_cell
    from rapid_agent.eval.tables import metrics_markdown

    # seed 0: all 4 right; seed 1: samples 0 and 1 right. r2 on one seed: 2 of 4
    records = [rec("mathvista", str(i), True, seed=0) for i in range(4)]
    records += [rec("mathvista", str(i), i < 2, seed=1) for i in range(4)]
    records += [rec("mathvista", str(i), i % 2 == 0, reasoner="r2", seed=0) for i in range(4)]
    summary = summarize(records)
    cell = summary.rows[0].cells["mathvista"]
    assert cell.seeds == {"0": 1.0, "1": 0.5} and cell.score == pytest.approx(0.75)
    assert cell.seed_std == pytest.approx(0.5**0.5 / 2) and cell.metrics["accuracy"] == pytest.approx(0.75)
    assert cell.items == {"0": 1.0, "1": 1.0, "2": 0.5, "3": 0.5} and (cell.n, cell.scored) == (4, 8)
    assert cell.interval.method == "bootstrap" and cell.interval.low < 0.75 < cell.interval.high
    single = summary.rows[1].cells["mathvista"]
    assert not single.seeds and math.isnan(single.seed_std) and single.interval.method == "wilson"
    text = to_markdown(summary)
    assert "| cap | r1 | qcap+sol | 75.0 ±35.4 [" in text and "| cap | r2 | qcap+sol | 50.0 [" in text
    assert "±: the standard deviation of a row's score over its sampling seeds (2)" in text
    paths = write_all(summary, tmp_path)
    first = list(csv.DictReader(paths["csv"].open()))[0]
    assert (first["mathvista_seeds"], first["mathvista_seed_std"]) == ("2", "0.3536")
    assert json.loads(paths["json"].read_text())["rows"][0]["benchmarks"]["mathvista"]["seeds"] == {"0": 1.0, "1": 0.5}
    # the pairing is over each item's mean over seeds: a paired bootstrap, not a right / wrong interval
    difference = paired_cell(cell, single)
    assert difference.estimate == pytest.approx(0.25) and difference.interval.method == "bootstrap"
    assert "| Captioner | Reasoner | Mode | accuracy |" in metrics_markdown(summary, "mathvista")


@pytest.mark.parametrize("n", [4, 48, 1024])
def test_a_row_all_right_or_all_wrong_charts_with_its_interval_at_the_bound(tmp_path: Path, n: int) -> None:
    """Wilson's formula left 100% a rounding error above its upper bound, and the chart refused a negative error bar."""
    from rapid_agent.eval.stats import wilson
    from rapid_agent.eval.tables import write_chart

    assert (wilson(n, n).high, wilson(0, n).low) == (1.0, 0.0)
    runs = [rec("mathvista", str(i), True) for i in range(n)] + [rec("mmmu", str(i), False) for i in range(n)]
    assert write_chart(summarize(runs), tmp_path / "chart.png").stat().st_size > 0
