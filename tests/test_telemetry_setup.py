"""`setup_tracing` and `--trace`: the standard OTEL_* settings reach a real OTLP receiver (HTTP and gRPC) from the
command line, a JSON-lines file gets the GenAI spans and error events, bad settings are clear errors."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from rapid_agent.cli import main
from rapid_agent.tracing import (
    disable_tracing,
    flush_tracing,
    read_metrics,
    read_trace,
    setup_tracing,
)
from tests.http_server import FakeChatServer, SeenRequest, chat_reply, error_reply
from tests.otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "<caption>two red dots</caption><solution>\\boxed{2}</solution>"


def answer(seen: SeenRequest):
    """Captioner requests carry an image; the reasoner's fail when the test asks for it."""
    if seen.image_urls:
        return chat_reply(CAPTION, prompt_tokens=30, completion_tokens=9)
    if seen.body.get("model") == "broken":
        return error_reply(400, "the reasoner refused: context too long")
    return chat_reply("Two dots. \\boxed{2}", prompt_tokens=40, completion_tokens=5)


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "dots.png"
    Image.new("RGB", (40, 30), "white").save(path)
    return path


def run_args(picture: Path, server: FakeChatServer, reasoner: str = "qwen") -> list[str]:
    return [
        "run",
        "--image",
        str(picture),
        "--question",
        "How many dots?",
        "--answer",
        "2",
        "--captioner",
        f"openai:qwen-vl@{server.base_url}",
        "--reasoner",
        f"openai:{reasoner}@{server.base_url}",
        "--quiet",
    ]


def run_cli_with_env(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "rapid_agent", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "HF_HUB_OFFLINE": "1", **env},
        timeout=300,
    )


def test_run_with_a_trace_file_writes_genai_spans_and_error_events(picture, tmp_path):
    path = tmp_path / "run.jsonl"
    with FakeChatServer(answer) as server:
        try:
            assert main([*run_args(picture, server), "--trace", str(path)]) == 0
            assert main([*run_args(picture, server, reasoner="broken"), "--trace", str(path)]) == 1
        finally:
            disable_tracing()
    spans = read_trace(path)
    ok, failed = [s for s in spans if s["name"] == "invoke_workflow rapid"]
    assert ok["status"] == "UNSET" and ok["attributes"]["rapid.correct"] is True
    assert failed["status"] == "ERROR" and "the reasoner refused" in failed["status_message"]
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert {s["attributes"]["gen_ai.request.model"] for s in calls} == {"qwen-vl", "qwen", "broken"}
    vision = next(s for s in calls if s["attributes"]["gen_ai.request.model"] == "qwen-vl")
    assert vision["attributes"]["gen_ai.usage.input_tokens"] == 30
    assert vision["attributes"]["gen_ai.usage.output_tokens"] == 9
    assert vision["attributes"]["gen_ai.provider.name"] == "openai" and vision["kind"] == "CLIENT"
    broken = next(s for s in calls if s["attributes"]["gen_ai.request.model"] == "broken")
    assert broken["status"] == "ERROR" and broken["events"][0]["name"] == "exception"
    assert "the reasoner refused" in broken["events"][0]["attributes"]["exception.message"]
    assert any(p["metric"] == "gen_ai.client.token.usage" for p in read_metrics(path))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otel_environment_variables_send_the_run_to_an_otlp_receiver(picture, protocol):
    receiver_cls = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
    with FakeChatServer(answer) as server, receiver_cls() as receiver:
        out = run_cli_with_env(
            run_args(picture, server, reasoner="broken"),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_INSECURE="true",
            OTEL_SERVICE_NAME="vision-agent",
        )
        assert out.returncode == 1, out.stderr  # the reasoner failed: exit 1, the error is in the trace
        deadline = time.monotonic() + 10  # the exporter flushes at exit; the receiver may still be decoding
        while time.monotonic() < deadline and not any(s["name"] == "invoke_workflow rapid" for s in receiver.spans):
            time.sleep(0.05)
        spans = list(receiver.spans)
        metrics = set(receiver.metrics)
    names = [s["name"] for s in spans]
    for name in ("invoke_workflow rapid", "rapid.perceive", "rapid.reason", "chat qwen-vl", "chat broken"):
        assert names.count(name) == 1, names
    assert all(s["resource"]["service.name"] == "vision-agent" for s in spans)
    vision = next(s for s in spans if s["name"] == "chat qwen-vl")
    assert vision["attributes"]["gen_ai.request.model"] == "qwen-vl"
    assert vision["attributes"]["gen_ai.usage.output_tokens"] == 9
    assert len(vision["attributes"]["gen_ai.response.finish_reasons"]) == 1  # one per request of the call
    perceive = next(s for s in spans if s["name"] == "rapid.perceive")
    assert vision["parent_id"] == perceive["span_id"] and vision["trace_id"] == perceive["trace_id"]
    broken = next(s for s in spans if s["name"] == "chat broken")
    event = broken["events"][0]
    assert event["name"] == "exception" and "the reasoner refused" in event["attributes"]["exception.message"]
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= metrics


def test_console_prints_spans_to_stderr(picture):
    with FakeChatServer(answer) as server:
        out = run_cli_with_env([*run_args(picture, server), "--json", "--trace", "console"])
    assert out.returncode == 0, out.stderr
    assert '"name": "chat qwen-vl"' in out.stderr and '"gen_ai.request.model": "qwen"' in out.stderr
    assert out.stdout.lstrip().startswith("{")  # stdout stays the answer alone


def test_bad_settings_are_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER: 'zipkin'"):
        setup_tracing(None)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json'"):
        setup_tracing(None)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--trace: cannot write a trace"):
        setup_tracing(str(blocker / "sub" / "t.jsonl"))
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert setup_tracing(None) is None


def test_trace_options_are_taken_out_of_foreign_command_lines():
    from rapid_agent.rl.__main__ import split_trace

    trace, rest = split_trace(["--config", "r.yaml", "--trace", "t.jsonl", "--trace-content", "--lr", "1"])
    assert (trace.trace, trace.trace_content, rest) == ("t.jsonl", True, ["--config", "r.yaml", "--lr", "1"])
    trace, rest = split_trace(["--trace_steps", "3"])
    assert (trace.trace, trace.trace_content, rest) == (None, None, ["--trace_steps", "3"])


def test_every_command_takes_the_trace_options(tmp_path):
    from rapid_agent.cli import build_parser
    from rapid_agent.rl.__main__ import cli as rl_cli

    required = {"run": ["--image", "x", "--question", "q"], "demo": ["--quick"], "serve": []}
    for command, argv in required.items():
        args = build_parser().parse_args([command, *argv, "--trace", "t.jsonl", "--trace-content"])
        assert (args.trace, args.trace_content) == ("t.jsonl", True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--trace: cannot write a trace"):  # taken out and checked before TRL parses
        rl_cli(["vpo", "--config", "never-read.yaml", "--trace", str(blocker / "t.jsonl")])


# -- a trace file that cannot be written -----------------------------------------------------------------------

#: a device every write to fails with ENOSPC, as on a full disk (Linux)
DEV_FULL = Path("/dev/full")


@pytest.fixture
def full_disk(tmp_path, monkeypatch) -> Path:
    """A trace path whose writes fail with ENOSPC: /dev/full where there is one, else a file whose writer raises."""
    if DEV_FULL.exists():
        return DEV_FULL
    from rapid_agent.telemetry.export import _JsonLinesFile

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(_JsonLinesFile, "_append", staticmethod(full))
    return tmp_path / "trace.jsonl"


def test_a_full_disk_costs_one_warning_then_spans_are_dropped_and_counted(full_disk, caplog, capsys):
    from opentelemetry import trace

    caplog.set_level(logging.INFO)
    assert setup_tracing(str(full_disk)) is not None
    try:
        tracer = trace.get_tracer("test")
        for i in range(200):
            tracer.start_span(f"span {i}").end()
        flush_tracing()  # the metric points go the same way
        during = [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        disable_tracing()
    assert len(during) == 1, [r.getMessage() for r in during]
    (warning,) = during
    assert warning.name == "rapid_agent.telemetry"
    assert str(full_disk) in warning.getMessage() and "No space left on device" in warning.getMessage()
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING][1:]
    # said at shutdown: the spans (and metric points, when this process's meter provider is ours) that were lost
    assert len(notes) == 1 and notes[0].startswith("200 span(s)"), notes
    assert f"not written to {full_disk}" in notes[0], notes
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_run_with_a_trace_on_a_full_disk_prints_one_warning_and_no_traceback(picture):
    with FakeChatServer(answer) as server:
        out = run_cli_with_env([*run_args(picture, server), "--trace", str(DEV_FULL)])
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Exception while exporting" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if str(DEV_FULL) in line]
    assert len(lines) == 2, out.stderr  # the warning when the first span fails, and the count at exit
    assert "cannot write the trace to /dev/full" in lines[0] and "No space left on device" in lines[0]
    assert "span(s)" in lines[1] and "not written to /dev/full" in lines[1]
