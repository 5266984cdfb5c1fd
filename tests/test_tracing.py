"""Tracing wraps the graph and the engines: one span per node and per engine call, with outputs as attributes."""

from PIL import Image

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import get_graph
from rapid_agent.tracing import OTelCallbackHandler, enable_tracing, read_trace


def test_graph_run_and_engine_calls_become_spans(tmp_path):
    path = tmp_path / "trace.jsonl"
    enable_tracing(path=path)
    captioner = FunctionEngine(lambda r: "<caption>2 dots</caption><solution>\\boxed{2}</solution>", spec="fn:cap")
    reasoner = FunctionEngine(lambda r: "\\boxed{2}", spec="fn:reason")
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    get_graph().invoke(
        {"image": Image.new("RGB", (56, 56)), "question": "How many dots?", "answer": "2", "id": "s1"},
        context=context,
        config={"callbacks": [OTelCallbackHandler()]},
    )
    spans = read_trace(path)
    names = [s["name"] for s in spans]
    for node in ("rapid.perceive", "rapid.reason", "rapid.score"):
        assert names.count(node) == 1, names
    by_id = {s["span_id"]: s for s in spans}
    root = next(s for s in spans if s["name"] == "rapid.rapid")
    assert root["attributes"]["rapid.correct"] is True and root["attributes"]["rapid.id"] == "s1"
    for node in ("rapid.perceive", "rapid.reason", "rapid.score"):
        span = next(s for s in spans if s["name"] == node)
        assert span["trace_id"] == root["trace_id"]
        parent = span
        while parent["parent_id"] in by_id:  # nodes hang under the graph run, possibly via LangGraph's own runs
            parent = by_id[parent["parent_id"]]
        assert parent is root
    engine_spans = [s for s in spans if s["name"] == "engine.generate"]
    assert {s["attributes"]["rapid.engine.spec"] for s in engine_spans} == {"fn:cap", "fn:reason"}
    assert all(s["attributes"]["rapid.engine.batch_size"] == 1 for s in engine_spans)
    reason = next(s for s in spans if s["name"] == "rapid.reason")
    assert reason["attributes"]["rapid.reasoner"] == "fn:reason"


def test_exporter_can_be_redirected_and_engines_used_before_tracing_are_traced(tmp_path):
    from rapid_agent import ChatRequest, GenerationConfig
    from rapid_agent.backends.batching import get_batcher
    from rapid_agent.tracing import JsonLinesExporter

    engine = FunctionEngine(lambda r: "ok", spec="fn:early")
    gen = GenerationConfig(temperature=0.0, max_new_tokens=4)
    get_batcher(engine).submit(ChatRequest("before tracing"), gen)  # its batcher exists before tracing starts
    exporter = JsonLinesExporter(None)
    enable_tracing(exporter)
    get_batcher(engine).submit(ChatRequest("dropped"), gen)  # no path: spans are dropped
    exporter.path = tmp_path / "run.jsonl"
    get_batcher(engine).submit(ChatRequest("kept"), gen)
    exporter.path = None
    get_batcher(engine).submit(ChatRequest("dropped again"), gen)
    spans = [s for s in read_trace(tmp_path / "run.jsonl") if s["attributes"].get("rapid.engine.spec") == "fn:early"]
    assert len(spans) == 1 and spans[0]["attributes"]["rapid.engine.batch_size"] == 1
