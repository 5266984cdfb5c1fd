"""Tests for graphs/batch.py: the nodes driven directly give the compiled graph's final states, sample for sample,
failures included, and solve_batch uses them unless a run needs LangGraph itself (a callback handler, streaming)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from rapid_agent import RapidContext, solve_batch
from rapid_agent.answers import Verdict, acheck_answer
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import batch, get_graph

PERCEPTION = "<caption>three dots</caption><solution>\\boxed{3}</solution>"


def reasoner_reply(request) -> str:
    if "engine error" in request.prompt:
        raise RuntimeError("the server fell over")
    if "undecided" in request.prompt:
        return "undecided \\boxed{3}"
    if "prose" in request.prompt:
        return "It is three, so 3."
    return "So the answer is \\boxed{3}."


def samples(tmp_path: Path) -> list:
    image, bad = tmp_path / "x.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8), "white").save(image)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return [
        {"id": "a", "question": "How many dots?", "image": str(image), "answer": "3"},
        {"id": "b", "question": "How many dots? wrong gold", "images": [str(image)], "answer": "4"},
        {"question": "How many? no gold", "image": str(image)},
        {"question": "Which? prose", "image": str(image), "answer": "B", "choices": ["2", "3"]},
        {"question": "How many? bad image", "image": str(bad), "answer": "3"},
        {"question": "How many? engine error", "image": str(image), "answer": "3"},
        {"question": "How many? undecided", "image": str(image), "answer": "3"},
        {"question": "Perceived already", "captioner_output": PERCEPTION, "answer": "3", "extra": "dropped"},
        {"question": "", "image": str(image), "answer": "3"},
        {"question": "No image at all", "answer": "3"},
        "not a dict",
    ]


def comparable(result: dict) -> dict:
    """A final state without what differs between any two runs (latencies)."""
    metrics = {k: v for k, v in (result.get("metrics") or {}).items() if not k.endswith("latency_s")}
    return {**result, "metrics": metrics} if "metrics" in result else result


@pytest.mark.parametrize("mode", ["none", "qcap+sol", "direct", "perception-only"])
def test_both_granularities_give_the_same_final_states(mode: str, tmp_path: Path, monkeypatch) -> None:
    async def sometimes_undecided(output, gold, **kwargs):  # a check no worker process could run
        if output is not None and output.startswith("undecided"):
            return Verdict(None, "3", "verification error: the worker pool is broken")
        return await acheck_answer(output, gold, **kwargs)

    monkeypatch.setattr("rapid_agent.graphs.nodes.acheck_answer", sometimes_undecided)
    items = samples(tmp_path)
    runs = []
    for direct in (True, False):
        captioner = FunctionEngine(lambda r: "undecided" if "undecided" in r.prompt else PERCEPTION, spec="cap")
        reasoner = FunctionEngine(reasoner_reply, spec="rea")
        context = RapidContext(
            captioner=captioner,
            reasoner=None if mode == "perception-only" else reasoner,
            mode="qcap+sol" if mode == "perception-only" else mode,
        )
        monkeypatch.setattr("rapid_agent.api.direct_handlers", lambda context, direct=direct: [] if direct else None)
        runs.append((solve_batch(items, context=context), captioner.num_calls, reasoner.num_calls))
    (direct_out, *direct_calls), (graph_out, *graph_calls) = runs
    assert [comparable(r) for r in direct_out] == [comparable(r) for r in graph_out]
    assert [list(r) for r in direct_out] == [list(r) for r in graph_out]  # the same keys in the same order
    # the perceived sample may reach the reasoner before the others' images are decoded: under either granularity
    # the cohort then sends it alone, a debounce race, so only the captioner's single call is certain here
    assert direct_calls[0] == graph_calls[0] == (0 if mode == "none" else 1)
    by_question = {r.get("question"): r for r in direct_out if isinstance(r, dict)}
    if mode != "none":  # mode none never looks at an image
        assert by_question["How many? bad image"]["errors"][0].startswith("input: images: cannot decode")
    if mode in ("none", "qcap+sol"):
        assert by_question["How many? engine error"]["errors"][0].startswith("reasoner: ")
        assert by_question["How many? undecided"]["correct"] is None
        assert by_question["How many dots?"]["correct"] is True


def test_a_batch_makes_one_engine_call_per_role(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    captioner, reasoner = FunctionEngine(lambda r: PERCEPTION), FunctionEngine(reasoner_reply)
    items = [{"question": f"How many dots? {i}", "image": str(image), "answer": "3"} for i in range(24)]
    out = solve_batch(items, context=RapidContext(captioner, reasoner, mode="qcap+sol"))
    assert all(r["correct"] is True for r in out)
    assert captioner.num_calls == 1 and reasoner.num_calls == 1 and reasoner.num_requests == 24


def test_one_sample_gives_what_the_graph_gives(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    context = RapidContext(FunctionEngine(lambda r: PERCEPTION), FunctionEngine(reasoner_reply), mode="qcap+sol")
    sample = {"question": "How many dots?", "image": str(image), "answer": "3", "mode": "ignored"}
    direct = asyncio.run(batch.arun(sample, context))
    graph = asyncio.run(get_graph().ainvoke(sample, context=context))
    assert comparable(direct) == comparable(graph) and list(direct) == list(graph)
    assert direct["correct"] is True and direct["mode"] == "qcap+sol"


def test_a_run_that_needs_langgraph_runs_the_graph() -> None:
    from contextvars import ContextVar

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.context import register_configure_hook

    context = RapidContext(reasoner=FunctionEngine(reasoner_reply), mode="none")
    assert batch.direct_run_possible(context)
    assert not batch.direct_run_possible(context.replace(stream=True))
    handler: ContextVar = ContextVar("test_handler", default=None)
    register_configure_hook(handler, inheritable=True)
    tracer = BaseCallbackHandler()
    token = handler.set(tracer)
    try:
        assert not batch.direct_run_possible(context)  # a handler that does not declare direct_runs needs the graph
        tracer.enabled = False  # tracing switched off again (disable_tracing)
        assert batch.direct_run_possible(context)
    finally:
        handler.reset(token)
    assert batch.direct_run_possible(context)
