"""Tests for rapid_agent.demo: the cache never trusts a damaged captioner, the report has every file."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from rapid_agent.demo import DemoConfig, run_demo
from rapid_agent.demo.cache import MANIFEST, check_entry, ensure_entry
from rapid_agent.demo.captioner import ensure_captioner
from rapid_agent.demo.config import SCRATCH
from rapid_agent.demo.mixture import JUDGE_STYLES
from rapid_agent.demo.report import REPORT_FILES
from rapid_agent.world import DESCRIPTIVE, generate_items, parse_counts

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
    captioner_base=SCRATCH,
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


def test_vpo_scores_answers_as_the_table_does(tmp_path: Path) -> None:
    """The demo's reasoner rarely writes \\boxed{}: a strict VPO parse would reward nothing the table counts right."""
    from rapid_agent.config import RapidContext
    from rapid_agent.demo.vpo import _vpo_config

    vpo = _vpo_config(DemoConfig.preset(True), tmp_path / "captioner", tmp_path / "out", "hf:x", penalty=0.5)
    assert vpo.strict_answers == RapidContext().strict_answers is False
    assert (vpo.judge, vpo.caption_penalty) == ("policy", 0.5)
    assert _vpo_config(DemoConfig.preset(True), tmp_path, tmp_path, "hf:x", penalty=0.0).judge == "off"


def test_command_line_options_reach_the_demo_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `python -m rapid_agent demo ...` parses is what the run is configured with."""
    from rapid_agent.demo import command, run

    seen: dict = {}

    def fake_run(out: Path, config: DemoConfig, *, quick: bool, cache_dir, progress: bool) -> dict:
        seen.update(out=out, config=config, quick=quick, cache_dir=cache_dir, progress=progress)
        return {}

    monkeypatch.setattr(run, "_run", fake_run)
    argv = ["--out", "x", "--seeds", "3", "--cache-dir", "c", "--vpo-steps", "0", "--captioner-seed", "2"]
    assert command.main([*argv, "--test-seed", "0", "--reasoner", "hf:r", "--no-progress"]) == 0
    assert (seen["out"], seen["cache_dir"], seen["quick"], seen["progress"]) == (Path("x"), "c", False, False)
    expected = DemoConfig(seeds=3, vpo_steps=0, sft_seed=2, test_seed=0, reasoner="hf:r")
    assert seen["config"] == expected
    command.main(["--quick"])
    assert seen["config"] == DemoConfig.preset(True) and seen["quick"] and seen["config"].test_seed == 1
    assert seen["config"].test_seed != seen["config"].world_seed  # by default, a split no tuning run measured


def test_the_mixture_teaches_styles_by_weight_and_answers_only_where_taught() -> None:
    from rapid_agent.demo.mixture import NO, STYLED_MODE, YES, plan, task_target

    items = generate_items(400, seed=3, levels=(1, 2), max_objects=8)
    weights = {"counts": 0.4, "objects": 0.2, "vague": 0.2, "answer": 0.2}
    examples = plan(
        items,
        prompts=DemoConfig().prompts,
        style_weights=weights,
        style_examples=2,
        judge_examples=0.5,
        solution_levels=(1,),
        seed=0,
    )
    by_task = Counter(e.task for e in examples)
    assert by_task["cap"] == by_task["qcap"] == by_task["direct"] == 400 and by_task[STYLED_MODE] == 800
    assert 160 < by_task["judge"] < 240  # about every other item
    styled = [e for e in examples if e.task == STYLED_MODE]
    level = {i: item["level"] for i, item in enumerate(items)}
    drawn = {lv: Counter(e.style for e in styled if level[e.image_index] == lv) for lv in (1, 2)}
    assert drawn[2]["answer"] == 0  # not taught the arithmetic: no bare answer on level 2
    assert 0.12 < drawn[1]["answer"] / 400 < 0.28 and 0.3 < drawn[1]["counts"] / 400 < 0.5
    for e in styled:
        item = items[e.image_index]
        assert e.target.startswith("<caption>") and e.target == task_target(STYLED_MODE, item, e.style)
    # alone, the captioner answers only where taught; elsewhere it states the counts and no expression that
    # math-verify would evaluate to the answer ("Compute 2 * 3." is scored right against 6)
    direct = {items[e.image_index]["id"]: e.target for e in examples if e.task == "direct"}
    for item in items:
        if item["level"] == 1:
            assert direct[item["id"]] == item["solution"] and "\\boxed" in item["solution"]
        else:
            assert direct[item["id"]] == item["query_caption"] and not re.search(r"[*+]", direct[item["id"]])
    assert task_target("direct", items[1], taught=True) == items[1]["solution"] and items[1]["level"] == 2
    judged = [e for e in examples if e.task == "judge"]
    assert all(e.image_index is None and e.target == (NO if e.style == "answer" else YES) for e in judged)
    assert {e.target for e in judged} == {YES, NO} and all("Describes the image:" in e.prompt for e in judged)
    # the descriptions judged are mostly counts: the short ones ("There are 2 circles.") are the closest to an answer
    described = Counter(e.style for e in judged if e.target == YES)
    assert 0.45 < described["counts"] / sum(described.values()) < 0.75 and set(described) == set(JUDGE_STYLES)
    with pytest.raises(ValueError, match="unknown styles"):
        plan(
            items[:2],
            prompts=DemoConfig().prompts,
            style_weights={"poem": 1.0},
            style_examples=1,
            judge_examples=0,
            solution_levels=None,
            seed=0,
        )


def test_text_only_examples_are_encoded_as_the_engine_formats_them(tmp_path: Path) -> None:
    from rapid_agent.backends.hf import load_processor
    from rapid_agent.demo.sft import Encoder, build_examples, collate
    from rapid_agent.models import build_tiny_qwen2_5_vl
    from rapid_agent.rl.caption_judge import judge_request

    processor = load_processor(build_tiny_qwen2_5_vl(tmp_path / "m", min_pixels=112 * 112, max_pixels=112 * 112))
    encoder = Encoder(processor)
    request = judge_request("2 red circles.")
    encoded = encoder.encode(request.prompt, "yes")
    served = processor.apply_chat_template(request.messages(), add_generation_prompt=True, tokenize=False)
    assert (
        encoded.input_ids[: encoded.target_start] == processor.tokenizer(served, add_special_tokens=False)["input_ids"]
    )
    assert encoded.image_index is None and encoded.input_ids[-1] == encoder.eos

    from rapid_agent.demo.mixture import Example

    items = generate_items(2, seed=0)
    examples, pixels, grids = build_examples(
        items, [Example("judge", request.prompt, "yes", None), Example("cap", "Describe.", "x", 1)], encoder
    )
    batch = collate(examples, pixels, grids, pad_id=0)
    assert batch["image_grid_thw"].shape[0] == 1  # only the image example brings patches
    assert "pixel_values" not in collate(examples[:1], pixels, grids, pad_id=0)


def test_count_labels_and_the_digit_weighted_loss() -> None:
    import torch

    from rapid_agent.demo.sft import count_labels, weighted_loss

    item = next(it for it in generate_items(50, seed=4, max_objects=8) if "2 " in it["description"])
    counts = count_labels(item, 4)
    kinds = parse_counts(item["description"])
    assert len(counts) == 12 + 4 + 3 and sum(counts[:12]) == sum(counts[12:16]) == sum(counts[16:]) == sum(
        kinds.values()
    )

    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 1] = logits[0, 1, 2] = 5.0  # right about token 1, wrong about token 3
    labels = torch.tensor([[-100, 1, 3, -100]])
    heavy = torch.tensor([False, False, False, True, False])
    plain = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, 1:3])
    assert weighted_loss(logits, labels, heavy, 1.0) == pytest.approx(plain.item())
    ce = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, 1:3], reduction="none")
    assert weighted_loss(logits, labels, heavy, 3.0) == pytest.approx(((ce[0] + 3 * ce[1]) / 4).item())


def test_world_solver_and_majority_vote() -> None:
    from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
    from rapid_agent.demo.solver import MajorityVote, WorldSolver
    from rapid_agent.perception import Perception, reasoner_prompt

    prompts = DemoConfig().prompts
    question = "What is the sum of the number of red shapes and the number of circles?"
    prompt = reasoner_prompt(
        question, Perception("There are 3 red shapes. There are 2 circles.", "x"), "qcap+sol", prompts
    )
    vague = reasoner_prompt(question, Perception("Some red shapes.", "Count them."), "qcap+sol", prompts)
    gen = GenerationConfig(temperature=0.2, max_new_tokens=8)
    solved = WorldSolver().generate([ChatRequest(prompt), ChatRequest(vague), ChatRequest("no question")], gen)
    assert solved[0].text == "\\boxed{5}" and "not say" in solved[1].text and isinstance(solved[2], ValueError)

    class BySeed(Engine):
        """Answers by sampling seed: 7, 7, 4, ... and fails the second request at seed 7."""

        def __init__(self) -> None:
            self.seeds: list[int | None] = []

        def generate(self, requests, gen):
            self.seeds.append(gen.seed)
            text = f"so it is {7 if gen.seed in (6, 7) else 4}."
            return [ValueError("down") if i == 1 and gen.seed == 7 else Completion(text) for i in range(len(requests))]

    inner = BySeed()
    out = MajorityVote(inner, 3).generate([ChatRequest("a"), ChatRequest("b")], dataclasses.replace(gen, seed=2))
    assert inner.seeds == [6, 7, 8]  # seed 2 of a 3-vote: samples 6, 7, 8
    assert out[0].text == "\\boxed{7}" and out[0].meta["votes"] == ["7", "7", "4"]
    assert out[1].meta["votes"] == ["7", "4"]  # a failed sample has no vote; a tie goes to the first seen
    assert out[1].text == "\\boxed{7}"
    with pytest.raises(ValueError, match="k must be"):
        MajorityVote(inner, 0)


def test_style_shares_and_judge_agreement_from_a_scripted_captioner() -> None:
    from rapid_agent.backends.stand_in import FunctionEngine
    from rapid_agent.demo import measure
    from rapid_agent.world import style_text

    items = generate_items(6, seed=2, levels=(1, 2), max_objects=8)
    by_question = {item["question"]: item for item in items}

    def captioner(request) -> str:
        if "Describes the image:" in request.prompt:  # the judge: says yes to everything
            return "yes"
        item = next(it for q, it in by_question.items() if q in request.prompt)
        style = "counts" if item["level"] == 1 else "answer"
        return "<caption>{}</caption>\n<solution>{}</solution>".format(*style_text(item, style))

    engine = FunctionEngine(captioner)
    config = DemoConfig()
    found = measure.styles(engine, items, config, samples=2, temperature=1.0)
    levels = [item["level"] for item in items]
    assert found["samples"] == 12 and found["exact_in_style"] == 1.0
    assert found["shares"]["counts"] == pytest.approx(levels.count(1) / 6)
    assert found["valid"] == pytest.approx(levels.count(1) / 6)  # the bare answers of level 2 describe nothing
    assert found["by_level"][2]["answer"] == 1.0
    assert found["per_item_usable"] == {it["id"]: float(it["level"] == 1) for it in items}
    judged = measure.judge(engine, items * 4, config)
    assert judged["by_style"]["answer"] == 0.0 and judged["unparsed"] == 0.0
    assert all(v == 1.0 for s, v in judged["by_style"].items() if s != "answer")


# ------------------------------------------------------------------------------------------------- the demo


@pytest.mark.slow
def test_quick_demo_writes_every_report_file(tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = run_demo(out, quick=True, cache_dir=tmp_path / "cache", progress=False)
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with (out / "accuracy.csv").open() as f:
        table = {(r["captioner"], r["reasoner"], r["mode"]): r for r in csv.DictReader(f)}
    smol = "hf:smollm2-135m-instruct"
    assert set(table) == {
        ("sft", "-", "direct"),  # the captioner alone, scored by the graph's score node
        ("sft", smol, "qcap"),
        ("sft", smol, "qcap+sol"),  # qcap+sol decoded as deployed, before VPO ...
        ("vpo", smol, "qcap+sol"),  # ... and after
        ("sft T=1", smol, "qcap+sol"),
        ("vpo T=1", smol, "qcap+sol"),
        ("sft T=1", "world-solver", "qcap+sol"),
        ("vpo T=1", "world-solver", "qcap+sol"),
        ("vpo T=1", f"{smol} (majority of 2)", "qcap+sol"),
    }
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for key, row in table.items():  # each row's accuracy is what its records say
        scored = [r for r in records if (r["captioner"], r["reasoner"], r["mode"]) == key and r["status"] == "scored"]
        assert int(row["world_scored"]) == len(scored) > 0, key
        assert float(row["world"]) == pytest.approx(sum(r["correct"] for r in scored) / len(scored), abs=5e-5), key
        assert {r["sample_id"] for r in scored} <= {f"test-1-{i:06d}" for i in range(6)}  # the held-out split
    direct = [r for r in records if r["mode"] == "direct"]
    assert direct and all(r["captioner_output"] and r["reasoner_output"] is None for r in direct)
    # the vote answers from the recorded captions: its captioner refuses calls, and no perception was added for it
    assert all(r["status"] == "scored" for r in records if "majority" in r["reasoner"])
    perceived = [json.loads(line)["captioner"] for line in (out / "perceptions.jsonl").read_text().splitlines()]
    assert Counter(perceived) == {"sft": 3 * 6, "sft T=1": 6, "vpo": 6, "vpo T=1": 6}  # greedy: 3 modes
    page = (out / "examples.html").read_text()
    assert page.count("data:image/png;base64,") == DemoConfig.preset(True).n_examples
    assert (out / "vpo_curves.png").read_bytes()[:4] == b"\x89PNG"
    spans = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert {"rapid.perceive", "rapid.reason"} <= {s["name"] for s in spans}
    readme = (out / "README.md").read_text()
    assert "noise" in readme and "| sft | - | direct |" in readme and "(world seed 1)" in readme
    assert "**`qcap+sol` decoded as deployed (greedy captioner) minus `qcap`" in readme
    assert "The reasoner's accuracy % from each caption style" in readme and "| SFT captioner | 1 |" in readme
    assert "`hf:smollm2-135m-instruct`" in readme and str(Path.home()) not in readme and str(tmp_path) not in readme
    sft = summary["checks"]["sft"]
    # the report states this run's own perception and judge figures
    assert f"held-out descriptions exactly right: **{100 * sft['descriptions']['exact']:.0f}%**" in readme
    assert f"agrees with the ground truth on **{100 * sft['judge']['agreement']:.0f}%**" in readme
    assert sft["judge"]["n"] == DemoConfig.preset(True).n_test * (len(DESCRIPTIVE) + 1)  # each style, a bare answer
    # the quick demo too starts from the shipped base, and says so with the base's own pretraining figures
    base_exact = sft["base_pretraining"]["descriptions"]["exact"]
    assert "started from the pretrained base `bundled`" in readme and f"{100 * base_exact:.0f}% of held-out" in readme
    assert summary["captioner_built"] and summary["timings"]["wall_s"]["total"] > 0
    assert len(summary["vpo"]["vpo"]["style_curve"]) == DemoConfig.preset(True).vpo_steps + 1
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
