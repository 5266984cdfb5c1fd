"""The graph under the checkpointers agents attach: SQLite on disk (sync and async), a thread paused after
perception and resumed by a fresh process, images kept as given (path, bytes, data URL), never decoded into state."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from PIL import Image

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import build_graph

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "<caption>3 dots</caption><solution>\\boxed{3}</solution>"


def context() -> RapidContext:
    return RapidContext(FunctionEngine(lambda r: CAPTION), FunctionEngine(lambda r: "Three. \\boxed{3}"))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "white").save(buffer, format="PNG")
    return buffer.getvalue()


RESUME = """
import json, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import build_graph

reasoner = FunctionEngine(lambda r: "Three. \\\\boxed{3}")
captioner = FunctionEngine(lambda r: "never called")
with SqliteSaver.from_conn_string(sys.argv[1]) as saver:
    graph = build_graph().compile(checkpointer=saver)
    state = graph.invoke(None, {"configurable": {"thread_id": "t1"}}, context=RapidContext(captioner, reasoner))
print(json.dumps({"correct": state["correct"], "caption": state["caption"], "captioner_calls": captioner.num_calls}))
"""


def test_a_thread_paused_on_sqlite_resumes_in_another_process(tmp_path):
    db = str(tmp_path / "threads.sqlite")
    image = tmp_path / "dots.png"
    Image.new("RGB", (40, 40), "white").save(image)
    with SqliteSaver.from_conn_string(db) as saver:
        graph = build_graph().compile(checkpointer=saver, interrupt_after=["perceive"])
        thread = {"configurable": {"thread_id": "t1"}}
        paused = graph.invoke(
            {"image": str(image), "question": "How many dots?", "answer": "3"}, thread, context=context()
        )
        assert paused["caption"] == "3 dots" and "reasoner_output" not in paused
        assert graph.get_state(thread).next == ("reason",)
    out = subprocess.run(
        [sys.executable, "-c", RESUME, db], capture_output=True, text=True, cwd=ROOT, timeout=120, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"correct": True, "caption": "3 dots", "captioner_calls": 0}


def test_async_sqlite_keeps_every_image_form_as_given(tmp_path):
    raw = png_bytes()
    data_url = "data:image/png;base64," + base64.b64encode(raw).decode()

    async def run() -> list[dict]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
            graph = build_graph().compile(checkpointer=saver)
            states = []
            for i, image in enumerate((raw, data_url)):
                thread = {"configurable": {"thread_id": f"form{i}"}}
                await graph.ainvoke(
                    {"image": image, "question": "How many?", "answer": "3"}, thread, context=context()
                )
                states.append((await graph.aget_state(thread)).values)
            return states

    as_bytes, as_url = asyncio.run(run())
    assert as_bytes["image"] == raw and as_bytes["correct"] is True
    assert as_url["image"] == data_url and as_url["correct"] is True
    for state in (as_bytes, as_url):
        assert not any(isinstance(v, Image.Image) for v in state.values())  # nothing decoded was stored


COLOURS = {(220, 30, 30): "red", (30, 30, 220): "blue", (30, 160, 30): "green"}


def looking_captioner() -> FunctionEngine:
    """Names the colour of the image it is shown (so a caption says which turn's image it saw)."""
    return FunctionEngine(lambda r: f"<caption>a {COLOURS[r.image.getpixel((0, 0))]} square</caption>")


def describing_reasoner(prompts: list[str]) -> FunctionEngine:
    """Answers with the colour the description names; times out on questions that say so."""

    def reply(request) -> str:
        prompts.append(request.prompt)
        if "(times out)" in request.prompt:
            raise TimeoutError("reasoner timed out")
        return f"\\boxed{{{request.prompt.split('Description:')[1].split()[1]}}}"

    return FunctionEngine(reply)


@contextmanager
def saver(kind: str, path: Path):
    if kind == "memory":
        yield InMemorySaver()
    else:
        with SqliteSaver.from_conn_string(str(path / "threads.sqlite")) as sqlite:
            yield sqlite


def squares(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for rgb, colour in COLOURS.items():
        paths[colour] = str(tmp_path / f"{colour}.png")
        Image.new("RGB", (40, 40), rgb).save(paths[colour])
    return paths


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_each_turn_on_a_thread_is_one_sample(kind, tmp_path):
    image = squares(tmp_path)
    prompts: list[str] = []
    captioner = looking_captioner()
    context = RapidContext(captioner, describing_reasoner(prompts), mode="cap")
    thread = {"configurable": {"thread_id": "chat"}}
    with saver(kind, tmp_path) as checkpointer:
        graph = build_graph().compile(checkpointer=checkpointer)
        first = graph.invoke({"image": image["red"], "question": "Q1?", "answer": "red"}, thread, context=context)
        assert first["caption"] == "a red square" and first["correct"] is True and first["errors"] == []
        # turn 2: another image (as `images`), no gold answer, a reasoner that fails
        second = graph.invoke({"images": [image["blue"]], "question": "Q2 (times out)?"}, thread, context=context)
        assert captioner.num_calls == 2 and second["caption"] == "a blue square"
        assert "Q2 (times out)?" in prompts[-1] and "a blue square" in prompts[-1]
        assert second["images"] == [image["blue"]] and "image" not in second  # not beside the old image
        assert second["answer"] is None and second["choices"] == []
        for key in ("correct", "verdict", "prediction", "reasoner_output"):  # turn 1's, not recomputed: gone
            assert key not in second, key
        assert len(second["errors"]) == 1 and "reasoner timed out" in second["errors"][0]
        assert set(second["metrics"]) == {
            "captioner_latency_s",
            "captioner_prompt_tokens",
            "captioner_completion_tokens",
        }
        assert second["engines"] == {"captioner": "function", "reasoner": "function"}
        # turn 3: a multiple-choice question; turn 2's error and images are gone
        third = graph.invoke(
            {"image": image["green"], "question": "Q3?", "answer": "B", "choices": ["red", "green"]},
            thread,
            context=context,
        )
        assert captioner.num_calls == 3 and third["caption"] == "a green square"
        assert third["prediction"] == "B" and third["correct"] is True and third["errors"] == []
        assert "images" not in third and "reasoner_latency_s" in third["metrics"]
        assert graph.get_state(thread).values == third
        ends = [s.values for s in graph.get_state_history(thread) if not s.next]  # each turn's final state
        assert [e["caption"] for e in ends] == ["a green square", "a blue square", "a red square"]
        assert ends[2]["correct"] is True and ends[1]["errors"] and ends[0]["prediction"] == "B"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_given_perception_serves_its_own_turn_only(kind, tmp_path):
    image = squares(tmp_path)
    captioner = looking_captioner()
    context = RapidContext(captioner, describing_reasoner([]), mode="cap")
    thread = {"configurable": {"thread_id": "cached"}}
    given = "<caption>a purple square</caption>"
    with saver(kind, tmp_path) as checkpointer:
        graph = build_graph().compile(checkpointer=checkpointer)
        first = graph.invoke(
            {"image": image["red"], "question": "Q1?", "answer": "purple", "captioner_output": given},
            thread,
            context=context,
        )
        assert captioner.num_calls == 0 and first["correct"] is True and "captioner" not in first["engines"]
        second = graph.invoke({"image": image["blue"], "question": "Q2?", "answer": "blue"}, thread, context=context)
        assert captioner.num_calls == 1 and second["caption"] == "a blue square" and second["correct"] is True
        third = graph.invoke(
            {"image": image["green"], "question": "Q3?", "captioner_output": given}, thread, context=context
        )
        assert captioner.num_calls == 1 and third["caption"] == "a purple square" and third["prediction"] == "purple"
        assert "correct" not in third and third["answer"] is None and "captioner_latency_s" not in third["metrics"]
    if kind == "sqlite":  # a fresh connection reads each turn back as it ended, and the next turn still starts clean
        with saver(kind, tmp_path) as checkpointer:
            graph = build_graph().compile(checkpointer=checkpointer)
            assert graph.get_state(thread).values == third
            fourth = graph.invoke({"image": image["red"], "question": "Q4?"}, thread, context=context)
            assert captioner.num_calls == 2 and fourth["caption"] == "a red square" and "captioner_output" in fourth
            assert fourth["captioner_output"] == "<caption>a red square</caption>"


def test_a_paused_turn_resumes_with_its_state_and_the_next_turn_starts_clean(tmp_path):
    image = squares(tmp_path)
    captioner = looking_captioner()
    context = RapidContext(captioner, describing_reasoner([]), mode="cap")
    graph = build_graph().compile(checkpointer=InMemorySaver(), interrupt_after=["perceive"])
    thread = {"configurable": {"thread_id": "paused"}}
    graph.invoke({"image": image["red"], "question": "Q1?", "answer": "red"}, thread, context=context)
    resumed = graph.invoke(None, thread, context=context)  # the same turn goes on: nothing is cleared
    assert resumed["correct"] is True and resumed["image"] == image["red"]
    paused = graph.invoke({"image": image["blue"], "question": "Q2?"}, thread, context=context)
    assert paused["caption"] == "a blue square" and "correct" not in paused and "reasoner_output" not in paused
    graph.update_state(thread, {"caption": "a green square"})  # an edit in the middle of a turn (as Studio makes)
    second = graph.invoke(None, thread, context=context)
    assert second["caption"] == "a green square" and second["prediction"] == "green" and "correct" not in second
    assert second["image"] == image["blue"] and captioner.num_calls == 2
    graph.update_state(thread, {"question": "Q3?"})  # after a finished turn, any write starts the next one
    assert graph.get_state(thread).values == {"question": "Q3?", "engines": {}, "metrics": {}, "errors": []}
