"""The demo's rows through the one runner, its effects with the eval intervals, and its report tables, with
stand-in engines: every row is the runner's, the captioner alone is scored through the graph, the replayed vote
makes no captioner call, an effect without spread is never called beyond noise."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.demo import DemoConfig
from rapid_agent.demo import rows as demo_rows
from rapid_agent.demo.effects import effects, row_effect
from rapid_agent.demo.report import accuracy_table, style_accuracy_table
from rapid_agent.eval.adapters.world import World
from rapid_agent.eval.store import read_results
from rapid_agent.eval.summary import summarize
from rapid_agent.world import generate_items

PROMPTS = DemoConfig().prompts


class WorldCaptioner(Engine):
    """Answers each item's prompt from the world's own texts, and records how it was asked to decode."""

    spec = "captioner"

    def __init__(self, items: Sequence[dict]) -> None:
        self.items = {item["question"]: item for item in items}
        self.calls: list[tuple[float, int | None, int]] = []  # temperature, seed, requests

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        self.calls.append((gen.temperature, gen.seed, len(requests)))
        out: list[Completion | Exception] = []
        for request in requests:
            item = next(it for q, it in self.items.items() if q in request.prompt)
            if request.prompt == PROMPTS.direct_answer.format(question=item["question"]):
                text = item["solution"] if item["level"] == 1 else "I cannot tell."  # answers level 1 only
            elif "<caption>" in request.prompt:
                text = f"<caption>{item['query_caption']}</caption>\n<solution>Compute it.</solution>"
            else:
                text = item["query_caption"]
            out.append(Completion(text))
        return out


def _reader(request: ChatRequest) -> str:
    """A reasoner that copies a count when the caption states one (level 1) and gives up on two (level 2)."""
    found = re.findall(r"There (?:is|are) (\d+)", request.prompt)
    return f"\\boxed{{{found[0]}}}" if len(found) == 1 else "I cannot add."


def test_the_demo_rows_are_runner_rows(tmp_path: Path) -> None:
    items = generate_items(4, seed=7, levels=(1, 2), max_objects=8)
    config = DemoConfig.preset(True, seeds=2, majority_k=2, reasoner_batch_size=8)
    captioner, reasoner = WorldCaptioner(items), FunctionEngine(_reader, spec="reader")
    adapter = World.from_items(items)
    demo_rows.evaluate_stage(tmp_path, config, adapter, "sft", captioner, reasoner, alone=True, progress=False)
    perceived = sum(n for *_, n in captioner.calls)
    demo_rows.majority_row(tmp_path, config, adapter, "sft", reasoner, progress=False)
    assert sum(n for *_, n in captioner.calls) == perceived  # the vote read the cached captions: no captioner call
    # greedy: one call per mode (direct, qcap, qcap+sol) whatever the seeds; sampled: one per seed, seeded
    assert sorted(captioner.calls) == [(0.0, None, 4)] * 3 + [(1.0, 0, 4), (1.0, 1, 4)]
    table = summarize(read_results(tmp_path))
    assert {(r.captioner, r.reasoner, r.mode) for r in table.rows} == {
        ("sft", "-", "direct"),
        ("sft", "reader", "qcap"),
        ("sft", "reader", "qcap+sol"),
        ("sft T=1", "reader", "qcap+sol"),
        ("sft T=1", "world-solver", "qcap+sol"),
        ("sft T=1", "reader (majority of 2)", "qcap+sol"),
    }
    score = {(r.captioner, r.reasoner, r.mode): r.cells["world"] for r in table.rows}
    levels = [item["level"] for item in items]
    # the captioner alone answers level 1 only, as the reader reads level 1 only; the solver does both levels
    assert score[("sft", "-", "direct")].score == pytest.approx(levels.count(1) / 4)
    assert (
        score[("sft", "reader", "qcap")].metrics["level_1"]
        == 1.0
        == 1 - score[("sft", "reader", "qcap")].metrics["level_2"]
    )
    assert score[("sft T=1", "world-solver", "qcap+sol")].score == 1.0
    assert (
        len(score[("sft", "reader", "qcap")].seeds) == 2
        and not score[("sft T=1", "reader (majority of 2)", "qcap+sol")].seeds
    )


def _records(rows: dict[tuple[str, str, str], list[bool]], seeds: Sequence[int] = (0, 1)) -> list[dict]:
    return [
        {
            "benchmark": "world",
            "adapter": "world",
            "sample_id": str(i),
            "captioner": captioner,
            "reasoner": reasoner,
            "mode": mode,
            "settings": "s",
            "seed": seed,
            "status": "scored",
            "correct": correct,
            "fields": {"level": 1 + i % 2},
        }
        for (captioner, reasoner, mode), marks in rows.items()
        for seed in seeds
        for i, correct in enumerate(marks)
    ]


def test_effects_name_each_claim() -> None:
    r = "r"
    table = summarize(
        _records(
            {
                ("sft", "-", "direct"): [False] * 8,
                ("sft", r, "qcap"): [True] * 4 + [False] * 4,
                ("sft", r, "qcap+sol"): [True] * 2 + [False] * 6,
                ("sft T=1", r, "qcap+sol"): [True, False] * 4,
                ("sft T=1", "world-solver", "qcap+sol"): [True] * 8,
                ("vpo", r, "qcap+sol"): [True] * 6 + [False] * 2,
                ("vpo T=1", r, "qcap+sol"): [True] * 6 + [False] * 2,
            }
        )
    )
    styles = {
        "sft": {"styles": {"per_item_usable": {str(i): 0.25 + 0.05 * (i % 2) for i in range(8)}}},
        "vpo": {"styles": {"per_item_usable": {str(i): 0.75 + 0.1 * (i % 3) for i in range(8)}}},
    }
    found = effects(table, styles, DemoConfig(modes=("qcap",)), r)
    assert [(e.a, e.b) for e in found["decoupling"]] == [
        ("sft:qcap", "sft:direct"),
        ("sft:qcap+sol", "sft:direct"),
        ("sft T=1:qcap+sol", "sft:direct"),
    ]
    assert found["decoupling"][0].delta == pytest.approx(0.5)
    # the paper's claim, as deployed: greedy qcap+sol before (-25 points) and after VPO (+25 points) against qcap
    assert [(e.a, e.b, e.delta) for e in found["deployed"]] == [
        ("sft:qcap+sol", "sft:qcap", pytest.approx(-0.25)),
        ("vpo:qcap+sol", "sft:qcap", pytest.approx(0.25)),
    ]
    assert [(e.a, e.delta) for e in found["vpo"]] == [
        ("vpo T=1:qcap+sol", pytest.approx(0.25)),
        ("vpo:qcap+sol", pytest.approx(0.5)),
        ("vpo:usable", pytest.approx(0.5 + 0.1 * 7 / 8 - 0.025)),
    ]
    assert found["vpo"][2].beyond_noise  # shares up by 45-60 points on every item
    assert [(e.a, e.b) for e in found["stronger"]] == [("sft T=1:qcap+sol (world-solver)", "sft T=1:qcap+sol")]
    assert found["stronger"][0].seeds == 2 and found["stronger"][0].seed_std == 0.0
    assert "penalty" not in found  # no run without the penalty


def test_an_effect_without_spread_is_never_beyond_noise() -> None:
    """The report used to call any non-zero difference with standard error 0 beyond noise: one item, or every
    item moving alike. Now the paired interval decides, and an interval of no width cannot judge."""
    one = summarize(_records({("a", "r", "cap"): [True], ("b", "r", "cap"): [False]}))
    effect = row_effect(one, ("a", "r", "cap"), ("b", "r", "cap"), "r")
    assert effect.delta == 1.0 and not effect.beyond_noise and "cannot be judged" in effect.text()
    # eight items, each right in every seed on one side and wrong on the other: a bootstrap over identical
    # differences has no width
    alike = summarize(_records({("a", "r", "cap"): [True] * 8, ("b", "r", "cap"): [False] * 8}))
    effect = row_effect(alike, ("a", "r", "cap"), ("b", "r", "cap"), "r")
    assert effect.delta == 1.0 and not effect.difference.judged and not effect.beyond_noise
    # one seed of right / wrong items: Agresti-Min's interval, which has width even for 8 wins and no loss
    binary = summarize(_records({("a", "r", "cap"): [True] * 8, ("b", "r", "cap"): [False] * 8}, seeds=(0,)))
    effect = row_effect(binary, ("a", "r", "cap"), ("b", "r", "cap"), "r")
    assert effect.difference.interval.method == "agresti-min" and effect.beyond_noise
    assert re.fullmatch(r"\+100\.0 points \[\+\d+\.\d, \+\d+\.\d\] over 8 items; beyond noise", effect.text())
    few = summarize(_records({("a", "r", "cap"): [True, True], ("b", "r", "cap"): [False, False]}, seeds=(0,)))
    assert not row_effect(few, ("a", "r", "cap"), ("b", "r", "cap"), "r").beyond_noise  # 2 wins: within noise


def test_the_accuracy_table_is_the_eval_table_with_levels() -> None:
    table = summarize(_records({("sft", "-", "direct"): [True, True, False, False], ("sft", "r", "qcap"): [True] * 4}))
    text = accuracy_table(table, DemoConfig())
    assert text.splitlines()[0] == "| Captioner | Reasoner | Mode | World |"
    assert "| sft | - | direct | 50.0 ±0.0 [" in text and "| sft | r | qcap | 100.0 ±0.0 [" in text
    # items 0, 2 are level 1 and 1, 3 level 2: the captioner alone got items 0 and 1 right
    assert "| Captioner | Reasoner | Mode | level 1 | level 2 |" in text
    assert "| sft | - | direct | 50.0 | 50.0 |" in text and "| sft | r | qcap | 100.0 | 100.0 |" in text


def test_style_accuracy_table_reads_each_samples_style() -> None:
    config = DemoConfig()

    def record(level: int, caption: str | None, correct: bool | None, captioner: str = "vpo T=1", **extra) -> dict:
        return {
            "captioner": captioner,
            "reasoner": "r",
            "mode": "qcap+sol",
            "status": "scored" if correct is not None else "error",
            "fields": {"level": level},
            "caption": caption,
            "correct": correct,
            **extra,
        }

    found = [
        record(1, "3.", True),
        record(1, "3.", False),
        record(1, "There are 3 red circles.", True),
        record(2, "Some red shapes.", False),
        record(2, "garbled", True),
        record(2, "There are 2 red shapes. 6.", True),  # a description run together with the answer: mixed
        record(2, "Some red shapes.", None),  # a failed run: not counted
        record(1, "3.", False, captioner="vpo"),  # greedy, not the policy's samples: not counted
        record(1, "3.", False, reasoner="world-solver"),  # another reasoner: not counted
    ]
    table = style_accuracy_table(found, config, "r")
    assert "| after VPO | 1 | 100 (n=1) |  |  |  | 50 (n=2) |  |  |" in table
    assert "| after VPO | 2 |  |  |  | 0 (n=1) |  | 100 (n=1) | 100 (n=1) |" in table
