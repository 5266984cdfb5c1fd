"""The synthetic world as a benchmark through the one runner: the world adapter, the captioner answering alone
(mode `direct`) scored by the graph's score node, sampling seeds, per-level accuracy, and replaying cached captions
for another reasoner with no captioner call. Scripted captioners and the world's oracle as the reasoner."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.config import RapidContext
from rapid_agent.eval.adapters import build_adapter
from rapid_agent.eval.adapters.world import World
from rapid_agent.eval.runner import NO_REASONER, EvalConfig, run_eval
from rapid_agent.eval.store import read_results
from rapid_agent.eval.sweep import CachedCaptioner
from rapid_agent.prompts import DEFAULT_PROMPTS
from rapid_agent.world import answer_from_description, generate_items

# Prompts whose reasoner side is trivially parseable by the oracle reasoner below.
PROMPTS = DEFAULT_PROMPTS.replace(
    system=None,
    reason="[C]{caption_block}[Q]{question}[S]{solution_block}[I]{instruction}",
    caption_block="{caption}",
    solution_block="{solution}",
    reason_instruction="",
)
WRONG = "9 red circles, 9 blue squares, 9 green triangles, 9 yellow circles."


def _items(n: int = 8) -> list[dict]:
    # levels 1 and 2 only: every answer there is a count, so the WRONG description is wrong for every question
    return generate_items(n, seed=3, levels=(1, 2))


def _captioner(items: Sequence[dict], good: set[int]) -> FunctionEngine:
    """Gives item i its true description/solution when i is in `good`, a wrong one otherwise."""
    by_image = {item["image"].tobytes(): i for i, item in enumerate(items)}

    def describe(request: ChatRequest) -> str:
        i = by_image[request.image.tobytes()]
        caption = items[i]["description"] if i in good else WRONG
        solution = items[i]["solution"] if i in good else "\\boxed{-1}"
        prompt = request.prompt
        if prompt == PROMPTS.direct_answer.format(question=items[i]["question"]):
            return solution  # asked to answer alone
        if "<caption>" in prompt:
            return f"<caption>{caption}</caption>\n<solution>{solution}</solution>"
        return solution if "solve the following problem" in prompt else caption

    return FunctionEngine(describe, spec="scripted-captioner")


def _oracle(request: ChatRequest) -> str:
    """A perfect reasoner: answers from the caption when there is one, else copies the tentative solution."""
    caption, question, solution = re.match(r"\[C\](.*)\[Q\](.*)\[S\](.*)\[I\]", request.prompt, re.DOTALL).groups()
    if caption:
        return f"\\boxed{{{answer_from_description(caption, question)}}}"
    return solution


def _run(out: Path, items: Sequence[dict], captioner, reasoners, **config) -> object:
    gen = config.pop("captioner_gen", None)
    context = RapidContext(captioner=captioner, prompts=PROMPTS, **({"captioner_gen": gen} if gen else {}))
    settings = EvalConfig(out=out, reasoners=tuple(reasoners), progress=False, tables=False, **config)
    return run_eval([World.from_items(items)], context=context, config=settings)


def _row(summary, mode: str, reasoner: str | None = None):
    return next(r for r in summary.rows if r.mode == mode and (reasoner is None or r.reasoner == reasoner))


def test_every_mode_and_the_captioner_alone_through_one_runner(tmp_path: Path) -> None:
    items = _items(8)
    reasoner = FunctionEngine(_oracle, spec="oracle")
    summary = _run(
        tmp_path, items, _captioner(items, {0, 1, 2, 3, 4}), [reasoner], modes=("direct", "cap", "sol", "qcap+sol")
    )
    assert {(r.reasoner, r.mode) for r in summary.rows} == {
        (NO_REASONER, "direct"),
        ("oracle", "cap"),
        ("oracle", "sol"),
        ("oracle", "qcap+sol"),
    }
    for row in summary.rows:
        cell = row.cells["world"]
        assert cell.score == pytest.approx(5 / 8), row.mode
        assert (cell.scored, cell.errored, cell.skipped, cell.n) == (8, 0, 0, 8)
        # per level: items cycle levels 1, 2, 1, 2, ...; good items 0-4 hold three of level 1 and two of level 2
        assert cell.metrics["level_1"] == pytest.approx(3 / 4) and cell.metrics["level_2"] == pytest.approx(2 / 4)
    records = read_results(tmp_path)
    wrong = {r["sample_id"] for r in records if r["mode"] == "cap" and not r["correct"]}
    assert wrong == {items[i]["id"] for i in (5, 6, 7)}
    direct = [r for r in records if r["mode"] == "direct"]
    # the captioner's own answer was scored by the graph's score node; no reasoner ever saw these samples
    assert all(r["reasoner_output"] is None and r["captioner_output"] for r in direct)
    assert {r["prediction"] for r in direct if r["correct"]} == {items[i]["answer"] for i in range(5)}
    assert reasoner.num_requests == 3 * 8


def test_failed_and_unusable_samples_are_counted_apart(tmp_path: Path) -> None:
    items = _items(4)
    failing = {items[1]["question"]}

    def flaky_reasoner(request: ChatRequest) -> str:
        if any(q in request.prompt for q in failing):
            raise RuntimeError("reasoner exploded")
        return _oracle(request)

    rows = [dict(item) for item in items]
    rows[2]["image"] = "/no/such/image.png"  # bad data: the graph refuses it
    rows[3]["answer"] = None  # nothing to score against: the adapter refuses it
    summary = _run(tmp_path, rows, _captioner(items, {0, 1, 2, 3}), [FunctionEngine(flaky_reasoner)], modes=("cap",))
    records = {r["sample_id"]: r for r in read_results(tmp_path)}
    assert records[items[0]["id"]]["status"] == "scored" and records[items[0]["id"]]["correct"] is True
    # a failed run is no verdict: recorded with its errors, `correct` None, and left out of the accuracy
    assert records[items[1]["id"]]["status"] == "error" and "exploded" in " ".join(records[items[1]["id"]]["errors"])
    assert records[items[2]["id"]]["status"] == "skipped" and "image" in records[items[2]["id"]]["skip_reason"]
    assert records[items[3]["id"]]["skip_reason"] == "no gold answer"
    cell = summary.rows[0].cells["world"]
    assert (cell.scored, cell.errored, cell.skipped, cell.score) == (1, 1, 2, 1.0)


def test_a_whole_batch_failing_loses_no_sample(tmp_path: Path) -> None:
    class Broken(Engine):
        spec = "broken"

        def generate(self, requests, gen):
            raise RuntimeError("engine down")

    summary = _run(tmp_path, _items(5), Broken(), [Broken()], modes=("direct", "cap"))
    records = read_results(tmp_path)
    assert len(records) == 10 and all(r["status"] == "error" and r["correct"] is None for r in records)
    for row in summary.rows:  # both rows: five errors, no verdict at all, not 0 %
        cell = row.cells["world"]
        assert (cell.scored, cell.errored) == (0, 5) and math.isnan(cell.score)


def test_an_answer_check_that_cannot_run_is_an_error_for_the_captioner_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rapid_agent.answers import Verdict
    from rapid_agent.graphs import nodes

    async def undecided(*args, **kwargs):
        return Verdict(None, "2", "answer check could not run: the worker processes died")  # type: ignore[arg-type]

    monkeypatch.setattr(nodes, "acheck_answer", undecided)
    items = _items(3)
    summary = _run(tmp_path, items, _captioner(items, {0, 1, 2}), [], modes=("direct",))
    records = read_results(tmp_path)
    assert all(r["status"] == "error" and r["correct"] is None for r in records)
    assert all("answer check: answer check could not run" in " ".join(r["errors"]) for r in records)
    cell = summary.rows[0].cells["world"]
    assert (cell.scored, cell.errored) == (0, 3) and math.isnan(cell.score)


class SeededReasoner(Engine):
    """Right for even seeds, wrong for odd ones: the seed reaches the reasoner's GenerationConfig."""

    spec = "seeded"

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        self.seeds.append(gen.seed)
        return [Completion(_oracle(r) if gen.seed % 2 == 0 else "\\boxed{-7}") for r in requests]


def test_seeds_give_the_mean_and_spread_and_a_greedy_captioner_runs_once(tmp_path: Path) -> None:
    items = _items(4)
    captioner, reasoner = _captioner(items, {0, 1, 2, 3}), SeededReasoner()
    summary = _run(tmp_path, items, captioner, [reasoner], modes=("direct", "cap"), seeds=(0, 1, 2))
    cap = _row(summary, "cap").cells["world"]
    assert cap.seeds == {"0": 1.0, "1": 0.0, "2": 1.0} and cap.score == pytest.approx(2 / 3)
    assert cap.seed_std == pytest.approx(0.57735, abs=1e-4) and set(reasoner.seeds) == {0, 1, 2}
    # an item's value is its mean over seeds: each item right 2 times of 3, so every item is 2/3
    assert cap.items == {item["id"]: pytest.approx(2 / 3) for item in items} and cap.n == 4 and not cap.binary
    direct = _row(summary, "direct").cells["world"]
    assert (len(direct.seeds), direct.score, direct.seed_std) == (3, 1.0, 0.0)
    # the greedy captioner perceived once per sample and mode, whatever the seeds: 4 for direct, 4 for cap
    assert captioner.num_requests == 8
    assert len(read_results(tmp_path)) == 2 * 3 * 4


class SampledCaptioner(Engine):
    """Writes the count of the seed it was called with as its caption: each seed a different draw."""

    spec = "sampler"

    def __init__(self) -> None:
        self.seeds: list[int | None] = []
        self.num_requests = 0

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        self.seeds.append(gen.seed)
        self.num_requests += len(requests)
        return [Completion(f"There are {gen.seed} red shapes.") for _ in requests]


def test_a_sampling_captioner_draws_per_seed_and_replays_with_no_captioner_call(tmp_path: Path) -> None:
    items = _items(4)
    captioner = SampledCaptioner()
    sampling = GenerationConfig(temperature=1.0, top_p=1.0, max_new_tokens=32)
    first = FunctionEngine(_oracle, spec="first")
    _run(tmp_path, items, captioner, [first], modes=("cap",), seeds=(0, 1), captioner_gen=sampling)
    assert sorted(captioner.seeds) == [0, 1] and captioner.num_requests == 2 * 4
    # another reasoner over the cached perceptions: the captioner stand-in refuses every call
    second = FunctionEngine(_oracle, spec="second")
    _run(
        tmp_path,
        items,
        CachedCaptioner("sampler"),
        [second],
        modes=("cap",),
        seeds=(0, 1),
        captioner_gen=sampling,
        perceive=False,
    )
    assert second.num_requests == 2 * 4 and captioner.num_requests == 2 * 4
    captions = {(r["reasoner"], r["seed"], r["sample_id"]): r["caption"] for r in read_results(tmp_path)}
    assert all(
        captions[("second", seed, item["id"])] == f"There are {seed} red shapes." for seed in (0, 1) for item in items
    )
    assert {k[1:]: v for k, v in captions.items() if k[0] == "first"} == {
        k[1:]: v for k, v in captions.items() if k[0] == "second"
    }


def test_the_world_adapter_draws_its_items_from_options() -> None:
    adapter = build_adapter("world", {"world": {"seed": "1", "n": "4", "levels": "2"}})
    samples = adapter.load()
    assert [s.id for s in samples] == [f"test-1-{i:06d}" for i in range(4)]
    assert all(s.fields["level"] == 2 and s.images and s.answer for s in samples)
    assert [s.id for s in build_adapter("world", {"world": {"seed": "1", "n": "4", "levels": "2"}}).load()] == [
        s.id for s in samples
    ]  # the same options, the same items
    with pytest.raises(ValueError, match="reads no source"):
        build_adapter("world=/data/x")
    with pytest.raises(ValueError, match="split"):
        build_adapter("world", {"world": {"split": "dev"}})
