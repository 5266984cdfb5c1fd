"""Tests for rapid_agent.eval.compare and `python -m rapid_agent.eval --compare`: runs (out folders) and rows of one
run paired on their samples, each benchmark's difference printed with its interval and marked `*` only when beyond
noise; row selectors by number, field and substring, and selectors that match no row or several say which rows
there are."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.__main__ import main
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.compare import default_pairs, select_row
from rapid_agent.eval.runner import EvalConfig, run_eval
from rapid_agent.eval.store import read_results
from rapid_agent.eval.summary import summarize
from rapid_agent.eval.tables import compare
from tests import eval_fixtures


def knows(first: int, spec: str, also: tuple[int, ...] = ()) -> FunctionEngine:
    """A reasoner right on `What is i + 1?` for i < first (and i in `also`), wrong elsewhere."""

    def answer(request) -> str:
        i = int(re.search(r"What is (\d+) \+ 1", request.prompt).group(1))
        return f"\\boxed{{{i + 1 if i < first or i in also else -1}}}"

    return FunctionEngine(answer, spec=spec)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders a (right on 30 of 60), b (on 50: beyond noise), c (29 of a's 30 and three more: +2 of 60, within
    noise), and all (the three reasoners as rows of one run)."""
    root = tmp_path_factory.mktemp("runs")
    data = eval_fixtures.arithmetic(root / "arith", 60)
    reasoners = {"a": knows(30, "small"), "b": knows(50, "big"), "c": knows(29, "close", also=(40, 41, 42))}
    captioner = FunctionEngine(lambda r: "<caption>c</caption><solution>s</solution>", spec="cap")
    for name, reasoner in [*reasoners.items(), ("all", None)]:
        run_eval(
            [build_adapter(f"generic:arith={data}")],
            context=RapidContext(captioner=captioner),
            config=EvalConfig(
                out=root / name, reasoners=(reasoner,) if reasoner else tuple(reasoners.values()), progress=False
            ),
        )
    return root


def test_compare_runs_marks_a_difference_beyond_noise_and_not_one_within(runs: Path, tmp_path: Path, capsys) -> None:
    args = ["--compare", str(runs / "a"), str(runs / "b"), str(runs / "c"), "--out", str(tmp_path / "cmp")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "| # | Run | Captioner | Reasoner | Mode | arith | AVG |"
    assert "| 1 | a | cap | small | qcap+sol | 50.0 [37.7, 62.3] | 50.0 " in text
    # b and c each against a's only row, paired on the 60 samples: +20 of 60 is beyond noise, one win and one loss not
    assert "| 2: b, big | 1: a, small | +33.3 [+20.2, +44.3] * (n=60) | +33.3 " in text
    assert "| 3: c, close | 1: a, small | +3.3 [-3.8, +10.2] (n=60) | +3.3 " in text  # 3 wins, 1 loss: noise
    assert "* beyond noise (the interval excludes 0)" in text
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    (to_b, to_c) = data["differences"]
    assert to_b["row"]["run"] == "b" and to_b["baseline"]["reasoner"] == "small"
    assert to_b["benchmarks"]["arith"]["beyond_noise"] and not to_c["benchmarks"]["arith"]["beyond_noise"]
    assert to_b["benchmarks"]["arith"]["interval"]["method"] == "agresti-min" and to_b["avg"]["n"] == 60
    lines = list(csv.DictReader((tmp_path / "cmp" / "differences.csv").open()))
    assert [(r["row_run"], r["benchmark"], r["beyond_noise"]) for r in lines] == [
        ("b", "arith", "1"),
        ("b", "AVG", "1"),
        ("c", "arith", "0"),
        ("c", "AVG", "0"),
    ]
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "compare.md").read_text() == text[:-1]


def test_compare_rows_of_one_run(runs: Path, capsys) -> None:
    assert main(["--compare", str(runs / "all"), "--rows", "reasoner=small", "2", "close"]) == 0
    text = capsys.readouterr().out
    assert "| 2: big | 1: small | +33.3 [+20.2, +44.3] * (n=60) |" in text
    assert "| 3: close | 1: small | +3.3 [-3.8, +10.2] (n=60) |" in text
    # the reverse pairing, by substring: the sign turns, the noise verdict does not
    assert main(["--compare", str(runs / "all"), "--rows", "big", "reasoner=smal"]) == 0
    assert "| 1: small | 2: big | -33.3 [-44.3, -20.2] * (n=60) |" in capsys.readouterr().out
    assert main(["--compare", str(runs / "all")]) == 0  # one folder and no --rows: the table, and how to pair
    assert "No rows paired: name them with --rows BASELINE ROW" in capsys.readouterr().out


def test_compare_pairs_rows_across_runs_and_with_one(runs: Path, capsys) -> None:
    # the first run has three rows: each row of the second is paired with its namesake
    assert main(["--compare", str(runs / "all"), str(runs / "b")]) == 0
    text = capsys.readouterr().out
    # the same reasoner on the same captions: no change, and noise of +-3.2 points (no discordant pair of 60)
    assert "| 4: b | 2: all | +0.0 [-3.2, +3.2] (n=60) | +0.0 [-3.2, +3.2] (n=60) |" in text
    # and across runs by selector: b's row against the third row of all
    assert main(["--compare", str(runs / "all"), str(runs / "b"), "--rows", "run=all,reasoner=close", "run=b"]) == 0
    assert "| 4: b, big | 3: all, close | +30.0 [+17.3, +40.8] * (n=60) |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "rows, message",
    [
        (["small"], "--rows: name the baseline row and at least one row"),
        (["nobody", "big"], "row selector 'nobody' matches no row; the rows: 1: all, cap, small, qcap+sol; 2: "),
        (["small", "cap"], "row selector 'cap' matches no row"),  # a bare value is the reasoner
        (["small", "captioner=cap"], "row selector 'captioner=cap' matches several rows; the rows: 1: "),
        (["0", "1"], "row 0 does not exist: the table has rows 1 to 3"),
    ],
)
def test_row_selectors_that_do_not_name_one_row_say_which_rows_there_are(
    runs: Path, rows: list[str], message: str, capsys
) -> None:
    assert main(["--compare", str(runs / "all"), "--rows", *rows]) == 2
    assert message in capsys.readouterr().err


def test_select_row_prefers_an_exact_match_and_default_pairs_need_a_counterpart(runs: Path) -> None:
    records = read_results(runs / "all")
    extra = [{**r, "reasoner": "small-v2"} for r in records if r["reasoner"] == "small"]
    rows = summarize(records + extra).rows
    assert [r.reasoner for r in rows] == ["small", "small-v2", "big", "close"]  # in record time order
    assert select_row("small", rows) == 0  # exact, though small-v2 contains it too
    with pytest.raises(ValueError, match="matches several rows"):
        select_row("smal", rows)
    merged, names = compare([("x", summarize(records)), ("y", summarize(records))])
    assert default_pairs(merged.rows, names) == [(3, 0), (4, 1), (5, 2)]  # each row with its namesake
    assert default_pairs(rows, ["x", "x", "y", "y"]) == []  # no namesake, and no only row to fall back on
    assert default_pairs(rows, ["x", "y", "x", "y"]) == []  # the first run's rows are those named like the first
    assert default_pairs(rows, ["x", "y", "y", "y"]) == [(1, 0), (2, 0), (3, 0)]  # the first run's only row
