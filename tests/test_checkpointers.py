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
from pathlib import Path

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
