"""The graph never blocks its event loop. `langgraph dev` (what LangGraph Studio talks to) serves every run from one
loop with the `blockbuster` detector on, which fails a run on any blocking call made there (a file read, an import's
`os.getcwd`, a sleep, a lock wait). These runs go through the graph's async API under blockbuster with every
detector it has (`langgraph dev` turns a few off), with stand-in engines and with the hf engine loaded for the first
time. The server itself is tested end to end in test_langgraph_dev.py."""

from __future__ import annotations

import asyncio
import shutil

from blockbuster import blockbuster_ctx
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from rapid_agent import RapidContext
from rapid_agent.api import asolve_batch
from rapid_agent.backends import GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import build_graph


def on_a_watched_loop(run):
    """Run the coroutine function `run` on an event loop where any blocking call raises `BlockingError`."""

    async def watched():
        with blockbuster_ctx():
            return await run()

    return asyncio.run(watched())


def test_runs_with_stand_in_engines_make_no_blocking_call(tmp_path):
    image = tmp_path / "dots.png"
    Image.new("RGB", (40, 40), "white").save(image)
    captioner = FunctionEngine(lambda r: "<caption>3 dots</caption><solution>\\boxed{0.5}</solution>")
    reasoner = FunctionEngine(lambda r: "Half of it. \\boxed{0.5}")
    context = RapidContext(captioner, reasoner)
    graph = build_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    raw = image.read_bytes()

    async def run():
        # a file read and decoded, an answer math-verify must check (1/2 = 0.5), a checkpointer
        checked = await graph.ainvoke(
            {"image": str(image), "question": "How much?", "answer": "1/2"}, thread, context=context
        )
        streamed = [  # each engine asked alone, its text streamed; no gold answer: the answer only read
            chunk
            async for chunk in graph.astream(
                {"image": raw, "question": "How much?"},
                thread,
                context=context.replace(stream=True),
                stream_mode="custom",
            )
        ]
        batch = await asolve_batch(
            [
                {"image": str(image), "question": "How much?", "answer": "0.5"},
                {"image": b"not a png", "question": "q"},
            ],
            context=context,
        )
        return checked, streamed, batch

    checked, streamed, batch = on_a_watched_loop(run)
    assert checked["correct"] is True and checked["errors"] == []
    assert {c["role"] for c in streamed} == {"captioner", "reasoner"}
    assert graph.get_state(thread).values["prediction"] == "0.5"
    assert batch[0]["correct"] is True and "cannot decode image" in batch[1]["errors"][0]


def test_hf_engines_load_for_the_first_time_without_blocking_the_loop(tiny_captioner_dir, tiny_reasoner_dir, tmp_path):
    # fresh copies: specs no earlier test loaded, so the engines are built (import, weights, processor) in this run
    captioner_dir = shutil.copytree(tiny_captioner_dir, tmp_path / "captioner")
    reasoner_dir = shutil.copytree(tiny_reasoner_dir, tmp_path / "reasoner")
    image = tmp_path / "blank.png"
    Image.new("RGB", (56, 56), "white").save(image)
    short = GenerationConfig(temperature=0.0, top_p=1.0, max_new_tokens=8)
    context = RapidContext(
        f"hf:{captioner_dir}", f"hf:{reasoner_dir}", captioner_gen=short, reasoner_gen=short, mode="cap"
    )
    graph = build_graph().compile(checkpointer=InMemorySaver())

    async def run():
        sample = {"image": str(image), "question": "How many dots?", "answer": "0"}
        return await graph.ainvoke(sample, {"configurable": {"thread_id": "hf"}}, context=context)

    out = on_a_watched_loop(run)
    assert out["errors"] == [] and out["correct"] in (True, False)
    assert out["engines"] == {"captioner": f"hf:{captioner_dir}", "reasoner": f"hf:{reasoner_dir}"}
    assert 0 < out["metrics"]["reasoner_completion_tokens"] <= 8
