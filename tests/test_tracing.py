"""Tracing wraps the graph and the engines: GenAI-convention spans per engine call, hung under the node that asked,
our attributes on graph and node spans, errors as exception events, content only on request, nothing doubled."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from rapid_agent import Completion, RapidContext, solve_batch
from rapid_agent.backends import batching
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import get_graph
from rapid_agent.tracing import (
    InstrumentedEngine,
    OTelCallbackHandler,
    disable_tracing,
    enable_tracing,
    flush_tracing,
    read_metrics,
    read_trace,
    setup_tracing,
    span_record,
)
from tests.http_server import FakeChatServer, Reply, SeenRequest, chat_reply, error_reply
from tests.test_graph_batch import comparable

CAPTION = "<caption>two red dots on white</caption><solution>\\boxed{2}</solution>"
QUESTION = "How many red dots are there?"


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "trace.jsonl"
    assert setup_tracing(str(path)) is not None
    yield path
    disable_tracing()


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "dots.png"
    Image.new("RGB", (64, 48), "white").save(path)
    return path


class StoppingEngine(FunctionEngine):
    """A stand-in whose outputs ended on their own, as a real engine reports it."""

    def generate(self, requests, gen):
        out = super().generate(requests, gen)
        for result in out:
            if isinstance(result, Completion):
                result.finish_reason = "stop"
        return out


def engines(reason=lambda r: "\\boxed{2}"):
    captioner = StoppingEngine(lambda r: CAPTION, spec="fn:captioner")
    reasoner = StoppingEngine(reason, spec="openai:qwen3-8b@http://10.0.0.7:8000/v1")
    return captioner, reasoner


def by_name(spans: list[dict], name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name]


def test_engine_calls_follow_the_genai_conventions_under_the_node_that_asked(trace_file, picture):
    captioner, reasoner = engines()
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    get_graph().invoke({"image": str(picture), "question": QUESTION, "answer": "2", "id": "s1"}, context=context)
    spans = read_trace(trace_file)
    ids = {s["span_id"]: s for s in spans}
    chat = by_name(spans, "chat qwen3-8b")
    assert len(chat) == 1
    attrs = chat[0]["attributes"]
    assert chat[0]["kind"] == "CLIENT" and ids[chat[0]["parent_id"]]["name"] == "rapid.reason"
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "qwen3-8b" and attrs["server.address"] == "10.0.0.7"
    assert attrs["gen_ai.request.temperature"] == 0.6 and attrs["gen_ai.request.top_p"] == 0.95
    assert attrs["gen_ai.request.max_tokens"] == 4096
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    (cap,) = by_name(spans, "chat captioner")
    assert cap["kind"] == "INTERNAL" and ids[cap["parent_id"]]["name"] == "rapid.perceive"
    assert cap["attributes"]["rapid.engine.images"] == 1

    (root,) = by_name(spans, "invoke_workflow rapid")
    assert root["attributes"]["gen_ai.workflow.name"] == "rapid" and root["parent_id"] is None
    for node in ("rapid.perceive", "rapid.reason", "rapid.score"):
        (span,) = by_name(spans, node)
        assert span["parent_id"] == root["span_id"] and span["trace_id"] == root["trace_id"]
    sha = hashlib.sha256(picture.read_bytes()).hexdigest()
    for span in (root, by_name(spans, "rapid.perceive")[0]):
        a = span["attributes"]
        assert a["rapid.image.sha256"] == [sha] and a["rapid.image.width"] == [64] and a["rapid.image.height"] == [48]
    a = root["attributes"]
    assert a["rapid.mode"] == "qcap+sol" and a["rapid.prediction"] == "2" and a["rapid.correct"] is True
    assert a["rapid.id"] == "s1" and a["rapid.reasoner"].startswith("openai:qwen3-8b")
    assert by_name(spans, "rapid.score")[0]["attributes"]["rapid.correct"] is True
    # no content without opting in: neither the question nor the caption nor the prompt appear anywhere
    text = trace_file.read_text()
    assert QUESTION not in text and "two red dots" not in text and "gen_ai.input.messages" not in text


def test_failures_are_exception_events_with_their_message(trace_file, picture):
    def reason(request):
        raise TimeoutError("reasoner timed out after 600 s, token sk-abcdefghijklmnopqrstuvwxyz")

    captioner, reasoner = engines(reason)
    context = RapidContext(captioner=captioner, reasoner=reasoner)
    state = get_graph().invoke({"image": str(picture), "question": QUESTION, "answer": "2"}, context=context)
    assert state["errors"]
    spans = read_trace(trace_file)
    (chat,) = by_name(spans, "chat qwen3-8b")
    assert chat["status"] == "ERROR" and "timed out" in chat["status_message"]
    (event,) = chat["events"]
    assert event["name"] == "exception" and "timed out after 600 s" in event["attributes"]["exception.message"]
    assert event["attributes"]["exception.stacktrace"]
    assert chat["attributes"]["error.type"] and chat["attributes"]["gen_ai.response.finish_reasons"] == ["error"]
    (node,) = by_name(spans, "rapid.reason")
    assert node["status"] == "ERROR" and node["events"][0]["name"] == "exception"
    assert "timed out" in node["events"][0]["attributes"]["exception.message"]
    (root,) = by_name(spans, "invoke_workflow rapid")
    assert root["status"] == "ERROR" and "timed out" in root["status_message"]
    assert "sk-abcdefghijklmnop" not in trace_file.read_text()  # keys are masked everywhere


def test_an_exception_that_escapes_a_node_is_recorded_with_its_type(trace_file, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    captioner, reasoner = engines()
    with pytest.raises(ValueError, match="cannot decode image"):
        get_graph().invoke({"image": str(bad), "question": QUESTION}, context=RapidContext(captioner, reasoner))
    (node,) = by_name(read_trace(trace_file), "rapid.perceive")
    assert node["status"] == "ERROR" and node["attributes"]["error.type"] == "ValidationError"
    assert "cannot decode image" in node["events"][0]["attributes"]["exception.message"]


def test_prompt_and_completion_text_only_when_asked_for(tmp_path, picture):
    path = tmp_path / "content.jsonl"
    setup_tracing(str(path), capture_content=True)
    try:
        captioner, reasoner = engines()
        get_graph().invoke({"image": str(picture), "question": QUESTION}, context=RapidContext(captioner, reasoner))
    finally:
        disable_tracing()
    spans = read_trace(path)
    (cap,) = by_name(spans, "chat captioner")
    messages = json.loads(cap["attributes"]["gen_ai.input.messages"])
    image_part, text_part = messages[0]["parts"]
    assert image_part == {
        "type": "image",
        "width": 64,
        "height": 48,
        "sha256": hashlib.sha256(Image.open(picture).convert("RGB").tobytes()).hexdigest(),
    }
    assert QUESTION in text_part["content"]
    output = json.loads(cap["attributes"]["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == CAPTION and output[0]["finish_reason"] == "stop"
    assert by_name(spans, "invoke_workflow rapid")[0]["attributes"]["rapid.question"] == QUESTION
    assert "base64" not in path.read_text()  # never the pixels


def test_setting_up_twice_and_passing_the_handler_by_hand_exports_each_span_once(trace_file, picture):
    assert setup_tracing(str(trace_file)).targets == (f"file:{trace_file.resolve()}",)
    captioner, reasoner = engines()
    get_graph().invoke(
        {"image": str(picture), "question": QUESTION},
        context=RapidContext(captioner, reasoner),
        config={"callbacks": [OTelCallbackHandler()]},
    )
    names = [s["name"] for s in read_trace(trace_file)]
    for name in ("invoke_workflow rapid", "rapid.perceive", "rapid.reason", "chat captioner", "chat qwen3-8b"):
        assert names.count(name) == 1, names
    assert batching.engine_wrappers.count(InstrumentedEngine) == 1


def test_a_batched_engine_call_hangs_under_one_run_and_links_the_others(trace_file, picture):
    captioner, reasoner = engines()
    samples = [{"image": str(picture), "question": f"{QUESTION} ({i})", "id": f"s{i}"} for i in range(3)]
    solve_batch(samples, context=RapidContext(captioner, reasoner))
    spans = read_trace(trace_file)
    ids = {s["span_id"]: s for s in spans}
    (call,) = by_name(spans, "chat captioner")  # one engine call for the three runs (a cohort)
    assert call["attributes"]["rapid.engine.batch_size"] == 3
    perceive = {s["span_id"] for s in by_name(spans, "rapid.perceive")}
    assert call["parent_id"] in perceive and len(call["links"]) == 2
    assert {call["parent_id"], *call["links"]} == perceive
    assert len({ids[p]["trace_id"] for p in perceive}) == 3  # three runs, three traces


def test_streamed_calls_are_spans_too(trace_file, picture):
    captioner, reasoner = engines()
    context = RapidContext(captioner, reasoner, stream=True)
    chunks = list(
        get_graph().stream({"image": str(picture), "question": QUESTION}, context=context, stream_mode="custom")
    )
    assert chunks
    spans = read_trace(trace_file)
    ids = {s["span_id"]: s for s in spans}
    (chat,) = by_name(spans, "chat qwen3-8b")
    assert chat["attributes"]["gen_ai.request.stream"] is True
    assert chat["attributes"]["gen_ai.response.time_to_first_chunk"] >= 0
    assert ids[chat["parent_id"]]["name"] == "rapid.reason"


def test_engine_metrics_follow_the_conventions(trace_file, picture):
    captioner, reasoner = engines()
    get_graph().invoke({"image": str(picture), "question": QUESTION}, context=RapidContext(captioner, reasoner))
    flush_tracing()
    points = read_metrics(trace_file)
    usage = [p for p in points if p["metric"] == "gen_ai.client.token.usage"]
    types = {(p["attributes"]["gen_ai.request.model"], p["attributes"]["gen_ai.token.type"]) for p in usage}
    assert {("captioner", "input"), ("captioner", "output"), ("qwen3-8b", "input")} <= types
    assert all(p["unit"] == "{token}" and p["count"] >= 1 for p in usage)
    durations = [p for p in points if p["metric"] == "gen_ai.client.operation.duration"]
    assert durations and all(p["unit"] == "s" for p in durations)


def test_tracing_off_installs_nothing(tmp_path):
    """In a fresh process with no OTEL_* settings: no provider, no engine wrapper, no callback on any run."""
    script = """
import json
import langchain_core.tracers.context as hooks
from opentelemetry import trace
from PIL import Image
from rapid_agent import RapidContext
from rapid_agent.backends import batching
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.graphs import get_graph
from rapid_agent.tracing import OTelCallbackHandler, setup_tracing

calls = []
OTelCallbackHandler.on_chain_start = lambda self, *a, **k: calls.append(k.get("name"))
assert setup_tracing(None) is None
engine = FunctionEngine(lambda r: "<caption>x</caption><solution>\\boxed{1}</solution>")
state = get_graph().invoke({"image": Image.new("RGB", (32, 32)), "question": "q"}, context=RapidContext(engine, engine))
assert state["caption"] == "x", state
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    "wrappers": len(batching.engine_wrappers),
    "hooks": [var.name for var, *_ in hooks._configure_hooks],
    "calls": calls,
}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["provider"] == "ProxyTracerProvider" and seen["wrappers"] == 0 and seen["calls"] == []
    assert "rapid_agent_otel_handler" not in seen["hooks"]


def test_exporter_can_be_redirected_and_engines_used_before_tracing_are_traced(tmp_path):
    from rapid_agent import ChatRequest, GenerationConfig
    from rapid_agent.backends.batching import get_batcher
    from rapid_agent.tracing import JsonLinesExporter

    engine = FunctionEngine(lambda r: "ok", spec="fn:early")
    gen = GenerationConfig(temperature=0.0, max_new_tokens=4)
    get_batcher(engine).submit(ChatRequest("before tracing"), gen)  # its batcher exists before tracing starts
    exporter = JsonLinesExporter(None)
    enable_tracing(exporter)
    try:
        get_batcher(engine).submit(ChatRequest("dropped"), gen)  # no path: spans are dropped
        exporter.path = tmp_path / "run.jsonl"
        get_batcher(engine).submit(ChatRequest("kept"), gen)
        exporter.path = None
        get_batcher(engine).submit(ChatRequest("dropped again"), gen)
    finally:
        disable_tracing()
    spans = [s for s in read_trace(tmp_path / "run.jsonl") if s["attributes"].get("rapid.engine.spec") == "fn:early"]
    assert len(spans) == 1 and spans[0]["attributes"]["rapid.engine.batch_size"] == 1
    assert spans[0]["name"] == "chat early" and spans[0]["parent_id"] is None


def _echo_the_request(seen: SeenRequest) -> Reply:
    """An upstream server that quotes the whole request in its 400: the captioner's image data URL included."""
    if seen.image_urls:
        return error_reply(400, "invalid max_tokens; you sent: " + json.dumps(seen.body))
    return chat_reply("\\boxed{2}")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_upstream_error_echoing_the_image_leaves_no_image_bytes_in_errors_or_spans(tmp_path, stream):
    """The sample's `errors` (what eval's results.jsonl and serve's error carry) and every span's attributes,
    events and status keep the server's words and the image's size, never its base64."""
    picture = tmp_path / "noise.png"
    Image.frombytes("RGB", (64, 48), os.urandom(64 * 48 * 3)).save(picture)
    exporter = InMemorySpanExporter()
    enable_tracing(exporter)
    try:
        with FakeChatServer(_echo_the_request) as server:
            context = RapidContext(
                captioner=f"openai:vl@{server.base_url}",
                reasoner=engines()[1],
                captioner_options={"max_retries": 0},
                stream=stream,
            )
            state = get_graph().invoke(
                {"image": str(picture), "question": QUESTION, "answer": "2"},
                context=context,
                config={"callbacks": [OTelCallbackHandler()]},
            )
    finally:
        disable_tracing()
    payload = next(s for s in server.seen if s.image_urls).image_urls[0].partition(",")[2]
    assert len(payload) > 10_000  # what could leak is large
    pieces = [payload[i : i + 16] for i in range(0, len(payload) - 16, 8)]
    (error,) = state["errors"]
    assert error.startswith("captioner: ") and "HTTP 400: invalid max_tokens; you sent: " in error
    assert "data:image/png;base64,[REDACTED " in error and not [p for p in pieces if p in error], error
    spans = [span_record(s) for s in exporter.get_finished_spans()]
    assert {"invoke_workflow rapid", "rapid.perceive", "chat vl"} <= {s["name"] for s in spans}
    failed = [s for s in spans if s["status"] == "ERROR"]
    assert len(failed) == 3 and all("[REDACTED " in s["status_message"] for s in failed)
    for span in spans:
        text = json.dumps(span)
        assert not [p for p in pieces if p in text], (span["name"], text[:2000])


def test_a_tool_call_given_an_image_data_url_records_its_size_not_its_bytes(tmp_path):
    from langchain_core.tools import tool

    from rapid_agent.telemetry import attributes

    @tool
    def look(image: str, question: str) -> str:
        """Answer a question about an image."""
        return f"two dots, seen in {image}"

    buffer = io.BytesIO()
    Image.frombytes("RGB", (48, 48), os.urandom(48 * 48 * 3)).save(buffer, format="PNG")
    payload = base64.b64encode(buffer.getvalue()).decode()
    exporter = InMemorySpanExporter()
    enable_tracing(exporter)
    attributes.set_capture_content(True)
    try:
        look.invoke(
            {"image": f"data:image/png;base64,{payload}", "question": QUESTION},
            config={"callbacks": [OTelCallbackHandler()]},
        )
    finally:
        disable_tracing()
    (span,) = [span_record(s) for s in exporter.get_finished_spans()]
    arguments = span["attributes"]["gen_ai.tool.call.arguments"]
    assert QUESTION in arguments and "data:image/png;base64,[REDACTED " in arguments
    assert span["attributes"]["gen_ai.tool.call.result"].startswith("two dots, seen in data:image/png;base64,[REDAC")
    assert payload[:16] not in json.dumps(span) and payload[-40:-24] not in json.dumps(span)


def _shape(spans: list[dict]) -> list[tuple]:
    """Each span as what tracing promises of it: name, its parent's name, attributes (timings aside, lists as
    sets), status, event names, how many links; sorted, so that two runs of the same samples compare equal."""
    names = {s["span_id"]: s["name"] for s in spans}

    def attributes(span: dict) -> tuple:
        kept = {k: v for k, v in span["attributes"].items() if not k.endswith(("_s", "latency", "duration"))}
        # a batched call's per-request values follow the order its requests arrived in, which neither run fixes
        kept = {k: sorted(v) if isinstance(v, list) else v for k, v in kept.items()}
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in kept.items()))

    return sorted(
        (
            s["name"],
            names.get(s["parent_id"]),
            attributes(s),
            s["status"],
            tuple(e["name"] for e in s["events"]),
            len(s["links"]),
        )
        for s in spans
    )


def test_solve_batch_without_langgraph_traces_what_the_compiled_graph_traces(tmp_path, picture, monkeypatch):
    """Traced, `solve_batch` walks the nodes itself and drives the tracing handler with a LangGraph run's events:
    the same spans (names, parents, attributes, statuses, exception events, links) as through the compiled graph,
    for answers right and wrong, an engine failure and an exception that escapes a node."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    def reason(request):
        if "(fails)" in request.prompt:
            raise TimeoutError("reasoner timed out after 600 s")
        return "\\boxed{2}" if "(right)" in request.prompt else "\\boxed{3}"

    samples = [
        {"image": str(picture), "question": f"{QUESTION} (right)", "answer": "2", "id": "a"},
        {"image": str(picture), "question": f"{QUESTION} (wrong)", "answer": "2", "id": "b"},
        {"image": str(picture), "question": f"{QUESTION} (fails)", "answer": "2", "id": "c"},
        {"image": str(bad), "question": QUESTION, "answer": "2", "id": "d"},
    ]
    from rapid_agent.graphs import batch

    driven = []
    drive = batch._traced_node
    monkeypatch.setattr(batch, "_traced_node", lambda node, *args: driven.append(node) or drive(node, *args))
    shapes, outputs = [], []
    for direct in (True, False):
        path = tmp_path / f"trace-{direct}.jsonl"
        setup_tracing(str(path))
        try:
            if not direct:
                monkeypatch.setattr("rapid_agent.api.direct_handlers", lambda context: None)
            captioner, reasoner = engines(reason)
            outputs.append(solve_batch(samples, context=RapidContext(captioner, reasoner)))
        finally:
            disable_tracing()
        shapes.append(_shape(read_trace(path)))
    # the first run went without LangGraph (each sample's perceive, then reason and score where it got that far),
    # the second through it
    assert driven.count("perceive") == 4 and driven.count("score") == 2
    assert [comparable(r) for r in outputs[0]] == [comparable(r) for r in outputs[1]]
    assert shapes[0] == shapes[1]
    names = [shape[0] for shape in shapes[0]]
    assert names.count("invoke_workflow rapid") == 4 and names.count("rapid.perceive") == 4
    assert ("rapid.perceive", "invoke_workflow rapid") in {shape[:2] for shape in shapes[0]}
    assert ("chat qwen3-8b", "rapid.reason") in {shape[:2] for shape in shapes[0]}
    assert any(shape[3] == "ERROR" and shape[0] == "rapid.perceive" for shape in shapes[0])  # the bad image
