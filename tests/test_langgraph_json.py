"""`langgraph.json` opens the graph the way `langgraph dev` / LangGraph Studio do: the file passes the CLI's own
validation, each graph is loaded from its `./file.py:variable` path, and the loaded graph runs with a checkpointer
attached and its context given as JSON, as the server passes an assistant's context."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph_cli.config import validate_config_file
from PIL import Image

from rapid_agent.graphs import RapidInput
from tests.http_server import FakeChatServer, SeenRequest, chat_reply

ROOT = Path(__file__).resolve().parents[1]


def load_graph(config_path: Path, graph_id: str) -> Pregel:
    """Load a graph from its spec the way LangGraph's API server does: a file path relative to the config's folder,
    imported as a module of its own, then the named variable."""
    spec = json.loads(config_path.read_text())["graphs"][graph_id]
    path, _, variable = spec.rpartition(":")
    module_spec = importlib.util.spec_from_file_location(f"langgraph_graph_{graph_id}", config_path.parent / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, variable)


def answer(seen: SeenRequest):
    if seen.image_urls:
        return chat_reply("<caption>a white square</caption><solution>\\boxed{0}</solution>")
    budget = seen.body.get("max_tokens", seen.body.get("max_completion_tokens"))
    assert seen.body["temperature"] == 0.0 and budget == 32  # the JSON context's settings reached the server
    return chat_reply("Nothing there. \\boxed{0}")


def test_langgraph_json_opens_the_graph_like_the_cli(tmp_path):
    config = validate_config_file(ROOT / "langgraph.json")  # the CLI's own check (paths, dependencies, keys)
    assert set(config["graphs"]) == {"rapid"}
    graph = load_graph(ROOT / "langgraph.json", "rapid")
    assert isinstance(graph, Pregel) and set(graph.nodes) >= {"perceive", "reason", "score"}
    # the JSON schemas Studio draws its input form and state view from
    assert set(graph.get_input_jsonschema()["properties"]) == set(RapidInput.__annotations__)
    assert graph.get_output_jsonschema()["properties"]["errors"]["type"] == "array"
    served = graph.copy(update={"checkpointer": InMemorySaver()})  # what the server does with a compiled graph
    image = tmp_path / "blank.png"
    Image.new("RGB", (32, 32), "white").save(image)
    with FakeChatServer(answer) as server:
        context = {  # an assistant's context as Studio sends it: JSON only
            "captioner": f"openai:vl@{server.base_url}",
            "reasoner": f"openai:llm@{server.base_url}",
            "mode": "cap+sol",
            "reasoner_gen": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 32},
        }
        thread = {"configurable": {"thread_id": "studio"}}
        state = served.invoke(
            {"image": str(image), "question": "How many dots?", "answer": "0"}, thread, context=context
        )
    assert state["correct"] is True and state["mode"] == "cap+sol"
    assert served.get_state(thread).values["prediction"] == "0"
