"""RAPID inside other LangGraph applications: as an agent's vision tool (called by a tool-calling model), and as a
node of a user's graph with its state keys mapped, under a checkpointer."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from PIL import Image, ImageDraw
from typing_extensions import TypedDict

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.tools import as_node, as_tool
from rapid_agent.tools.stand_in import VisionToolCaller
from rapid_agent.tracing import disable_tracing, read_trace, setup_tracing


def count_red(request) -> str:
    """A captioner stand-in that really looks: it counts red pixels' blobs along the picture's top row of cells."""
    red = sum(1 for x in (10, 30, 50) if request.image.getpixel((x, 10)) == (255, 0, 0))
    return f"<caption>{red} red squares.</caption><solution>\\boxed{{{red}}}</solution>"


def read_count(request) -> str:
    digits = [w for w in request.prompt.replace(".", " ").split() if w.isdigit()]
    return f"So there are {digits[0]}. \\boxed{{{digits[0]}}}"


@pytest.fixture
def context():
    return RapidContext(
        captioner=FunctionEngine(count_red, spec="fn:vl"), reasoner=FunctionEngine(read_count, spec="fn:llm")
    )


def squares(path, n: int):
    image = Image.new("RGB", (60, 60), "white")
    for x in (10, 30, 50)[:n]:
        ImageDraw.Draw(image).rectangle((x - 5, 5, x + 5, 15), fill=(255, 0, 0))
    image.save(path)
    return path


def test_an_agent_calls_rapid_as_its_vision_tool_and_remembers_the_thread(tmp_path, context):
    from examples.agent import build_agent

    model = VisionToolCaller()
    agent = build_agent(model, [as_tool(context)], checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    first = agent.invoke(
        {"messages": [("user", f"How many red squares in {squares(tmp_path / 'a.png', 2)}?")]}, thread
    )
    tool_reply = next(m for m in first["messages"] if isinstance(m, ToolMessage))
    reply = json.loads(tool_reply.content)
    assert reply["answer"] == "2" and reply["caption"] == "2 red squares." and "boxed" in reply["reasoner_output"]
    assert first["messages"][-1].content == "The answer is 2."
    second = agent.invoke({"messages": [("user", f"And in {squares(tmp_path / 'b.png', 3)}?")]}, thread)
    assert second["messages"][-1].content == "The answer is 3."
    assert len(second["messages"]) == 8 and model.calls == 2  # the checkpointer kept the first turn


def test_a_bad_image_goes_back_to_the_agent_as_a_message(tmp_path, context):
    from examples.agent import build_agent

    agent = build_agent(VisionToolCaller(), [as_tool(context)])
    state = agent.invoke({"messages": [("user", f"What is in {tmp_path / 'missing.png'}?")]})
    tool_reply = next(m for m in state["messages"] if isinstance(m, ToolMessage))
    assert tool_reply.status == "error" and "image file not found" in tool_reply.content
    assert state["messages"][-1].content.startswith("I could not look at the image")


def test_the_tool_runs_async_and_takes_choices(tmp_path, context):
    tool = as_tool(context, name="count_things")
    out = asyncio.run(
        tool.ainvoke({"image": str(squares(tmp_path / "c.png", 1)), "question": "How many?", "choices": ["1", "2"]})
    )
    reply = json.loads(out)
    assert tool.name == "count_things" and reply["answer"] == "A" and reply["option"] == "1"


def test_a_traced_agent_shows_the_rapid_run_under_the_tool_call(tmp_path, context):
    from examples.agent import build_agent

    path = tmp_path / "agent.jsonl"
    setup_tracing(str(path))
    try:
        agent = build_agent(VisionToolCaller(), [as_tool(context)])
        agent.invoke({"messages": [("user", f"How many red squares in {squares(tmp_path / 'a.png', 2)}?")]})
    finally:
        disable_tracing()
    spans = read_trace(path)
    ids = {s["span_id"]: s for s in spans}
    (tool,) = [s for s in spans if s["name"] == "execute_tool look_at_image"]
    assert tool["attributes"]["gen_ai.tool.name"] == "look_at_image" and tool["attributes"]["gen_ai.tool.call.id"]
    (rapid,) = [s for s in spans if s["name"] == "invoke_workflow rapid"]
    assert rapid["parent_id"] == tool["span_id"] and ids[tool["parent_id"]]["name"] == "vision-agent.tools"
    assert rapid["trace_id"] == tool["trace_id"] == ids[tool["parent_id"]]["trace_id"]


class Album(TypedDict, total=False):
    photo: str
    ask: str
    gold: str
    correct: bool
    vision_answer: str
    caption_seen: str
    summary: str


def album_graph(node, checkpointer=None):
    builder = StateGraph(Album)
    builder.add_node("vision", node)
    builder.add_node("summarize", lambda s: {"summary": f"{s['caption_seen']} -> {s['vision_answer']}"})
    builder.add_edge(START, "vision")
    builder.add_edge("vision", "summarize")
    builder.add_edge("summarize", END)
    return builder.compile(checkpointer=checkpointer)


def test_the_graph_is_a_node_of_a_users_graph_with_keys_mapped(tmp_path, context):
    node = as_node(
        context,
        inputs={"image": "photo", "question": "ask", "answer": "gold"},
        outputs={"prediction": "vision_answer", "caption": "caption_seen", "correct": "correct"},
    )
    graph = album_graph(node, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "album"}}
    photo = str(squares(tmp_path / "p.png", 3))
    sample = {"photo": photo, "ask": "How many squares?", "gold": "3"}
    chunks = list(graph.stream(sample, thread, stream_mode="updates", subgraphs=True))
    inner = [next(iter(update)) for namespace, update in chunks if namespace]
    assert inner == ["perceive", "reason", "score"]  # the RAPID nodes ran as a subgraph of "vision"
    state = graph.get_state(thread).values
    assert state["vision_answer"] == "3" and state["correct"] is True
    assert state["summary"] == "3 red squares. -> 3" and state["photo"] == photo


def test_the_node_runs_in_async_graphs_too(tmp_path, context):
    node = as_node(
        context,
        inputs={"image": "photo", "question": "ask"},
        outputs={"caption": "caption_seen", "prediction": "vision_answer"},
    )
    sample = {"photo": str(squares(tmp_path / "p.png", 1)), "ask": "How many?"}
    state = asyncio.run(album_graph(node).ainvoke(sample))
    assert state["summary"] == "1 red squares. -> 1"  # no gold answer: the answer is still read off the reasoner
