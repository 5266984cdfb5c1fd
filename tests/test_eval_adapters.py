"""Tests for rapid_agent.eval.adapters: each benchmark's real schema (local copies written by tests/eval_fixtures.py)
maps to samples field by field; bad rows become skipped samples with their reason; each cell is the mean of the items
its interval resamples."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapid_agent.eval.adapters import ADAPTERS, build_adapter, parse_benchmark, parse_option
from rapid_agent.inputs import load_image
from tests import eval_fixtures


def by_id(samples):
    return {s.id: s for s in samples}


def decodes(sample) -> bool:
    return all(load_image(image).size[0] > 0 for image in sample.images)


def test_mathvista_maps_every_field(tmp_path: Path) -> None:
    samples = by_id(build_adapter(f"mathvista={eval_fixtures.mathvista(tmp_path / 'mv')}").load())
    assert list(samples) == ["1", "2", "3", "4", "5", "6"]
    mc = samples["1"]
    assert mc.benchmark == "mathvista" and decodes(mc) and len(mc.images) == 1
    assert mc.question.startswith("Hint: Please answer") and "(B) square" in mc.question  # the dataset's own query
    assert mc.answer == "B" and mc.choices == ("circle", "square")  # the gold's text becomes its letter
    assert mc.fields == {
        "question_type": "multi_choice",
        "answer_type": "text",
        "precision": 0,
        "unit": None,
        "gold_text": "square",
        "category": "math-targeted-vqa",
        "task": "geometry problem solving",
    }
    assert (
        samples["3"].answer == "1.5" and samples["3"].fields["unit"] == "cm" and samples["3"].fields["precision"] == 1
    )
    assert samples["4"].fields["answer_type"] == "list"
    # a missing image file is kept as its path: perceiving it fails later and records the skip with the path
    assert samples["5"].skip is None and samples["5"].images == ("images/missing.png",)
    assert "none of the choices" in samples["6"].skip


def test_mathverse_versions_default_and_selected(tmp_path: Path) -> None:
    root = eval_fixtures.mathverse(tmp_path / "mverse")
    samples = by_id(build_adapter(f"mathverse={root}").load())
    assert sorted(samples) == ["1", "2", "3", "4", "5"]  # the five diagram versions; text only is opt-in
    first = samples["1"]
    assert first.question.startswith("Please first conduct reasoning") and "A:1" in first.question  # query_cot
    assert first.answer == "B" and decodes(first)
    assert first.fields["version"] == "text_dominant" and first.fields["question_for_eval"] == "Full problem 1"
    assert first.fields["subfield"] == "Length" and first.fields["problem_index"] == "1"
    assert samples["3"].answer == "\\frac{5}{2}" and samples["3"].fields["question_type"] == "free-form"
    assert samples["5"].skip == "no gold answer"
    chosen = build_adapter(f"mathverse={root}", {"mathverse": {"versions": "Vision Only,text-only"}}).load()
    assert [(s.id, s.fields.get("version")) for s in chosen] == [("2", "vision_only"), ("6", "text_only")]
    assert chosen[1].images == () and chosen[1].skip is None  # text only carries no image
    with pytest.raises(ValueError, match="unknown MathVerse version"):
        build_adapter(f"mathverse={root}", {"mathverse": {"versions": "vision_maybe"}})


def test_mathvision_test_and_testmini(tmp_path: Path) -> None:
    root = eval_fixtures.mathvision(tmp_path / "mvis")
    samples = by_id(build_adapter(f"mathvision={root}").load())
    assert list(samples) == ["1", "2", "3"]
    assert samples["1"].answer == "C" and samples["1"].choices == ("A", "B", "C", "D", "E")
    assert "Choices:\nA. A\nB. B" in samples["1"].question
    assert samples["1"].fields == {"level": 2, "subject": "logic"}
    assert samples["2"].answer == "2.5" and samples["2"].choices == ()
    assert samples["3"].answer == "B"  # options drawn in the image: the gold letter is kept
    mini = build_adapter(f"mathvision={root}", {"mathvision": {"split": "testmini"}}).load()
    assert [s.id for s in mini] == ["1"]


def test_wemath_options_and_problem_keys(tmp_path: Path) -> None:
    samples = build_adapter(f"wemath={eval_fixtures.wemath(tmp_path / 'wm')}").load()
    assert len(samples) == 7
    first = samples[0]
    assert first.id == "1/2steps_1" and first.answer == "A" and decodes(first)
    assert first.choices == ("30°", "45°", "60°", "90°", "No correct answer")
    assert first.question.endswith("A. 30°; B. 45°; C. 60°; D. 90°; E. No correct answer")
    assert first.fields == {"problem": "1", "key": "2steps_1", "knowledge_concept": "Angles", "question_number": 1}


def test_logicvista_release_layout(tmp_path: Path) -> None:
    samples = by_id(build_adapter(f"logicvista={eval_fixtures.logicvista(tmp_path / 'lv')}").load())
    assert list(samples) == ["v1_0", "v1_1", "v1_2", "v1_3"]
    assert samples["v1_0"].answer == "C" and decodes(samples["v1_0"])  # imagename resolved under data/images/
    assert samples["v1_1"].answer == "A, C" and samples["v1_1"].fields["gold_options"] == ["A", "C"]
    assert samples["v1_2"].fields["skill"] == ["numerical"]
    assert samples["v1_3"].skip is None  # a corrupt image is found when perceived, not when listed


def test_dynamath_variants_are_splits(tmp_path: Path) -> None:
    root = eval_fixtures.dynamath(tmp_path / "dm")
    samples = build_adapter(f"dynamath={root}", {"dynamath": {"variants": "1,10"}}).load()
    assert [s.id for s in samples] == ["1@v1", "2@v1", "1@v10", "2@v10"]  # variant 1 never reads variant 10
    assert samples[0].fields == {
        "seed": "1",
        "variant": 1,
        "answer_type": "multiple choice",
        "subject": "AL",
        "knowledge_level": "high school",
    }
    assert samples[0].answer == "B" and samples[1].answer == "2.100" and samples[3].answer == "3.000"
    with pytest.raises(ValueError, match="no .* data files for split 'sample_variant7'"):
        build_adapter(f"dynamath={root}", {"dynamath": {"variants": "7"}}).load()


def test_mmmu_several_images_in_order(tmp_path: Path) -> None:
    samples = by_id(build_adapter(f"mmmu={eval_fixtures.mmmu(tmp_path / 'mmmu')}").load())
    assert sorted(samples) == ["validation_Art_1", "validation_Math_1", "validation_Math_2", "validation_Math_3"]
    two = samples["validation_Math_1"]
    assert len(two.images) == 2 and load_image(two.images[1]).getpixel((40, 35)) == (255, 255, 0)  # image 2: yellow
    assert two.answer == "B" and two.choices == ("the first", "the second", "equal")
    assert two.question.endswith("A. the first\nB. the second\nC. equal")
    assert two.fields["subject"] == "Math" and two.fields["images"] == 2
    open_q = samples["validation_Math_2"]
    assert open_q.answer == "4" and open_q.fields["golds"] == ["4", "4.0"] and open_q.choices == ()
    assert "only 1 of them" in samples["validation_Math_3"].skip
    art_only = build_adapter(f"mmmu={tmp_path / 'mmmu'}", {"mmmu": {"subjects": "Art"}}).load()
    assert [s.id for s in art_only] == ["validation_Art_1"]  # the dev split beside it is not read


def test_generic_named_columns(tmp_path: Path) -> None:
    path = eval_fixtures.generic(tmp_path / "g")
    options = {"charts": {"question": "problem", "image": "picture", "answer": "solution", "id": "uid"}}
    adapter = build_adapter(f"generic:charts={path}", options)
    samples = adapter.load()
    assert adapter.column == "charts" and [s.id for s in samples] == ["g0", "g1", "g2"]
    assert samples[1].question == "What is 1 + 1?" and samples[1].answer == "2" and decodes(samples[1])
    bad = build_adapter(f"generic:charts={path}").load()  # default column names: no 'question' column
    assert all("no 'question' column" in s.skip for s in bad)


def test_benchmark_and_option_syntax() -> None:
    assert parse_benchmark("mathvista") == ("mathvista", "mathvista", None)
    assert parse_benchmark("mmmu=MMMU/MMMU") == ("mmmu", "mmmu", "MMMU/MMMU")
    assert parse_benchmark("generic:charts=/d") == ("generic", "charts", "/d")
    assert parse_option("mathverse.versions=vision_only") == ("mathverse", "versions", "vision_only")
    for bad, message in [
        ("nope", "unknown benchmark"),
        ("generic=/d", "needs a label"),
        ("mathvista:x=/d", "only the generic"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_benchmark(bad)
    with pytest.raises(ValueError, match="unknown option 'versoins'"):
        build_adapter("mathverse", {"mathverse": {"versoins": "x"}})
    assert all(ADAPTERS[name].hub_id for name in ADAPTERS if name not in ("generic", "world"))  # those read no hub


def _record(sample_id: str, correct: bool, **fields) -> dict:
    return {"sample_id": sample_id, "correct": correct, "fields": fields}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_each_cell_is_the_mean_of_its_items(name: str) -> None:
    """The items an interval resamples and two rows are paired on average to the table cell, for every adapter."""
    records = [
        # We-Math: problem 1 mastered (1), 2 right on its parts only (0.5), 3 lost (0); problem 4 incomplete
        *[_record(f"1/{k}", True, problem="1", key=k) for k in ("2steps_1", "2steps_2", "2steps_multi")],
        *[_record(f"2/{k}", k != "2steps_multi", problem="2", key=k) for k in ("2steps_1", "2steps_2", "2steps_multi")],
        *[_record(f"3/{k}", k == "3steps_2", problem="3", key=k) for k in ("3steps_1", "3steps_2", "3steps_3", "3steps_multi")],
        _record("4/2steps_1", True, problem="4", key="2steps_1"),
    ]  # fmt: skip
    for i, record in enumerate(records):  # DynaMath: seeds of three variants each, seed 0 right throughout
        record["fields"]["seed"] = str(i // 3)
    adapter = ADAPTERS[name](None)
    items = adapter.items(records)
    assert sum(items.values()) / len(items) == pytest.approx(adapter.aggregate(records)["score"])
    expected = {"wemath": (3, "problems", False), "dynamath": (4, "seeds", True)}.get(name, (11, "samples", True))
    assert (len(items), adapter.unit, adapter.binary_items) == expected
    if name == "wemath":
        assert items == {"1/2steps": 1.0, "2/2steps": 0.5, "3/3steps": 0.0}
