"""Tests for rapid_agent.demo: the cache never trusts a damaged captioner, the report has every file."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from rapid_agent.demo import DemoConfig, add_arguments, run_demo
from rapid_agent.demo.cache import MANIFEST, check_entry, ensure_entry
from rapid_agent.demo.captioner import ensure_captioner
from rapid_agent.demo.report import REPORT_FILES, paired_effect
from rapid_agent.demo.vpo import WorldCaptionJudge
from rapid_agent.eval.evaluate import EvalResult
from rapid_agent.world import generate_items

# ---------------------------------------------------------------------------------------------------- the cache


def _build(calls: list[Path]):
    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(bytes(range(256)) * 4)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text('{"a": 1}')
        return {"note": "built"}

    return build


def test_cache_reuses_a_good_entry(tmp_path: Path) -> None:
    calls: list[Path] = []
    folder, manifest, built = ensure_entry(tmp_path, "k1", _build(calls))
    assert (
        built
        and manifest["info"] == {"note": "built"}
        and set(manifest["files"]) == {"weights.bin", "sub/config.json"}
    )
    again, _, built_again = ensure_entry(tmp_path, "k1", _build(calls))
    assert again == folder and not built_again and len(calls) == 1
    assert not list(tmp_path.glob(".k1.building-*"))  # no staging folder left behind


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "weights.bin").write_bytes((f / "weights.bin").read_bytes()[:100]), "bytes"),
        (lambda f: (f / "weights.bin").write_bytes(b"\0" * 1024), "SHA-256"),
        (lambda f: (f / "weights.bin").unlink(), "missing file weights.bin"),
        (lambda f: (f / MANIFEST).write_text("{not json"), "unreadable manifest"),
        (lambda f: (f / MANIFEST).unlink(), "no manifest"),
        (
            lambda f: (f / MANIFEST).write_text(json.dumps({**json.loads((f / MANIFEST).read_text()), "key": "x"})),
            "does not match",
        ),
    ],
    ids=["truncated", "altered", "missing", "bad-manifest", "incomplete", "key-mismatch"],
)
def test_cache_rebuilds_a_damaged_entry(tmp_path: Path, damage, reason: str) -> None:
    calls: list[Path] = []
    folder, _, _ = ensure_entry(tmp_path, "k1", _build(calls))
    damage(folder)
    assert reason in check_entry(folder, "k1")[1]
    reasons: list[str] = []
    folder, manifest, built = ensure_entry(tmp_path, "k1", _build(calls), on_rebuild=reasons.append)
    assert built and len(calls) == 2 and reason in reasons[0]
    assert check_entry(folder, "k1") == (manifest, None)


def test_a_failed_build_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    def broken(folder: Path) -> dict:
        (folder / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed"):
        ensure_entry(tmp_path, "k1", broken)
    assert not (tmp_path / "k1").exists() and not list(tmp_path.glob(".k1.building-*"))


# ---------------------------------------------------------------------------------------------- the captioner

TINY = DemoConfig(
    n_train=12,
    n_test=2,
    text_hidden=32,
    layers=1,
    vision_hidden=16,
    vision_depth=1,
    sft_steps=2,
    sft_batch_size=4,
    captioner_max_new_tokens=8,
)


def test_corrupted_cached_captioner_is_detected_and_rebuilt(tmp_path: Path) -> None:
    items = generate_items(14, seed=5)
    train, held_out = items[:12], items[12:]
    path, manifest, built = ensure_captioner(TINY, train, held_out, cache_root=tmp_path, progress=False)
    assert built and (path / "config.json").is_file()
    assert manifest["info"]["sft_steps"] == 2 and manifest["info"]["descriptions"]["n"] == 2
    weights = sorted(path.glob("*.safetensors"))
    assert weights
    _, _, built_again = ensure_captioner(TINY, train, held_out, cache_root=tmp_path, progress=False)
    assert not built_again  # an intact cache is reused

    raw = bytearray(weights[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the tensors: same size, still "loads", wrong weights
    weights[0].write_bytes(bytes(raw))
    reasons: list[str] = []
    path2, _, rebuilt = ensure_captioner(
        TINY, train, held_out, cache_root=tmp_path, progress=False, on_rebuild=reasons.append
    )
    assert rebuilt and path2 == path
    assert reasons and weights[0].name in reasons[0] and "SHA-256" in reasons[0]
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(path2)  # the rebuilt captioner loads

    # a different captioner configuration is a different entry, not a reuse
    _, _, built_other = ensure_captioner(
        TINY.preset(False, **{**_fields(TINY), "sft_steps": 3}), train, held_out, cache_root=tmp_path, progress=False
    )
    assert built_other


def _fields(config: DemoConfig) -> dict:
    return {k: v for k, v in config.as_dict().items() if k != "prompts"}


# ------------------------------------------------------------------------------------------------- small parts


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="sft_steps must be >= 1, got 0"):
        DemoConfig(sft_steps=0)
    with pytest.raises(ValueError, match="modes holds unknown"):
        DemoConfig(modes=("cap", "nope"))
    assert DemoConfig.preset(True).n_train < DemoConfig.preset(False).n_train
    assert DemoConfig(vpo_steps=5).captioner_key_fields() == DemoConfig().captioner_key_fields()
    assert DemoConfig(sft_lr=1e-3).captioner_key_fields() != DemoConfig().captioner_key_fields()


def test_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", "x", "--seeds", "3", "--cache-dir", "c", "--vpo-steps", "0"])
    assert (args.quick, args.out, args.seeds, args.cache_dir, args.vpo_steps) == (True, "x", 3, "c", 0)


def test_world_caption_judge() -> None:
    judge = WorldCaptionJudge()
    captions = [
        "2 red circles, 1 blue square.",
        "There are 3 red shapes and 2 circles.",
        "No shapes.",
        "There are 3 red shapes. \\boxed{3}",  # a count, but it also answers in the caption slot
        "The answer is 6.",
        "",
        None,
    ]
    assert judge(captions) == [True, True, True, False, False, False, False]


def test_sft_targets_stop_at_the_counts_where_arithmetic_is_not_taught() -> None:
    from rapid_agent.demo.sft import task_target

    level1, level2 = generate_items(2, seed=0, levels=(1, 2))
    for item in (level1, level2):
        assert task_target("sol", item, None) == item["solution"].rstrip() and "\\boxed" in item["solution"]
        assert task_target("qcap", item, (1,)) == item["query_caption"] != task_target("cap", item, (1,))
    assert task_target("sol", level1, (1,)) == task_target("direct", level1, (1,)) == level1["solution"]
    # level 2 is not taught to the end: the tentative solution states the two counts and no answer
    taught = task_target("qcap+sol", level2, (1,))
    assert taught == f"<caption>{level2['query_caption']}</caption>\n<solution>{level2['query_caption']}</solution>"
    assert "\\boxed" not in taught and level2["answer"] not in taught
    with pytest.raises(ValueError, match="sft_solution_levels"):
        DemoConfig(levels=(1, 2), sft_solution_levels=(3,))


def test_paired_effect() -> None:
    def result(row: str, correct: list[bool]) -> EvalResult:
        records = [{"row": row, "seed": 0, "id": str(i), "correct": c, "errors": []} for i, c in enumerate(correct)]
        return EvalResult(records, [])

    a = result("cap", [True, True, True, False])
    b = result("end-to-end", [False, True, False, False])
    effect = paired_effect(a, "cap", b, "end-to-end")
    assert effect.delta == pytest.approx(0.5) and effect.n == 4
    assert effect.se == pytest.approx(((1 / 3) ** 0.5) / 2)  # diffs 1, 0, 1, 0: sample std sqrt(1/3), / sqrt(4)
    assert paired_effect(a, "cap", b, "missing") is None


# ------------------------------------------------------------------------------------------------- the demo


@pytest.mark.slow
def test_quick_demo_writes_every_report_file(tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = run_demo(out, quick=True, cache_dir=tmp_path / "cache", progress=False)
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with (out / "accuracy.csv").open() as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    assert "sft:end-to-end" in rows and "sft:qcap+sol" in rows and "vpo:qcap+sol" in rows
    assert all(0 <= float(r["accuracy"]) <= 1 for r in rows.values())
    page = (out / "examples.html").read_text()
    assert page.count("data:image/png;base64,") == DemoConfig.preset(True).n_examples
    assert (out / "vpo_curves.png").read_bytes()[:4] == b"\x89PNG"
    spans = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert {"rapid.perceive", "rapid.reason"} <= {s["name"] for s in spans}
    readme = (out / "README.md").read_text()
    assert "noise" in readme and "| captioner alone (end to end) |" in readme
    assert summary["captioner_built"] and summary["timings"]["total"] > 0
    # a second run reuses the cached captioner
    again = run_demo(tmp_path / "report2", quick=True, cache_dir=tmp_path / "cache", progress=False, vpo_steps=0)
    assert not again["captioner_built"]
    assert (tmp_path / "report2" / "vpo_curves.png").is_file()


def test_length_bucketed_batches_cover_an_epoch_with_less_padding() -> None:
    import random

    from rapid_agent.demo.sft import length_bucketed_batches

    rng = random.Random(0)
    lengths = [rng.randint(20, 200) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))  # every example once
    assert all(len(b) <= 32 for b in batches)

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    shuffled = list(range(1000))
    random.Random(1).shuffle(shuffled)
    plain = [shuffled[i : i + 32] for i in range(0, 1000, 32)]
    assert padded(batches) < 0.8 * padded(plain)
    assert batches != length_bucketed_batches(lengths, 32, random.Random(2))  # the order is random per epoch


def test_level_table_splits_rows_by_level() -> None:
    from rapid_agent.demo.report import level_table
    from rapid_agent.eval.evaluate import summarize

    def records(row: str, correct: list[tuple[int, bool | None]]) -> list[dict]:
        return [
            {"row": row, "seed": 0, "id": str(i), "level": lv, "correct": c, "errors": [] if c is not None else ["x"]}
            for i, (lv, c) in enumerate(correct)
        ]

    found = records("end-to-end", [(1, True), (1, True), (2, False), (2, False)])
    found += records("qcap", [(1, True), (1, False), (2, True), (2, True)])
    table = level_table({"sft": EvalResult(found, summarize(found))})
    assert "| sft | captioner alone (end to end) | 100.0 | 0.0 |" in table
    assert "| sft | decoupled: qcap | 50.0 | 100.0 |" in table
