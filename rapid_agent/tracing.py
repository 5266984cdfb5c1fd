"""OpenTelemetry tracing that wraps the library instead of living inside it.

- Nodes: `OTelCallbackHandler` is a LangChain callback; pass it in the run config and every graph node becomes a
  span (parented on the graph run's span) with the node's key outputs as attributes.
- Engines: `enable_tracing()` registers a wrapper with the micro-batcher, so every engine call becomes a span with
  the spec, batch size, token counts and failures.
- Export: `JsonLinesExporter` writes one JSON object per span (what the demo saves as "the trace of one run");
  any OpenTelemetry exporter (console, OTLP) works the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig, batching

TRACER_NAME = "rapid_agent"
#: state keys copied onto node spans (short scalars only; images and long texts stay out of traces)
SPAN_KEYS = ("id", "mode", "prediction", "correct", "verdict")


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a JSON-lines file. `path` may be changed (or set to None, which drops spans)
    between runs, so one process-wide exporter can write each traced run to a file of its own."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self.path = path

    @property
    def path(self) -> Path | None:
        return self._path

    @path.setter
    def path(self, value: str | Path | None) -> None:
        with self._lock:
            self._path = Path(value) if value is not None else None
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._path is None:
                return SpanExportResult.SUCCESS
            with self._path.open("a") as f:
                for span in spans:
                    f.write(json.dumps(span_record(span), default=str) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def span_record(span: ReadableSpan) -> dict:
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "start_ns": span.start_time,
        "duration_ms": (span.end_time - span.start_time) / 1e6 if span.end_time else None,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


class InstrumentedEngine(Engine):
    """Wraps an engine so that each call is a span; results pass through untouched."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.max_batch_size = inner.max_batch_size
        self.max_concurrent_calls = inner.max_concurrent_calls
        self.streams = inner.streams

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        tracer = trace.get_tracer(TRACER_NAME)
        with tracer.start_as_current_span("engine.generate") as span:
            span.set_attributes(
                {
                    "rapid.engine.spec": self.spec,
                    "rapid.engine.batch_size": len(requests),
                    "rapid.engine.images": sum(len(r.images) for r in requests),
                    "rapid.gen.temperature": gen.temperature,
                    "rapid.gen.max_new_tokens": gen.max_new_tokens,
                }
            )
            results = await self.inner.agenerate(requests, gen)
            done = [r for r in results if isinstance(r, Completion)]
            span.set_attributes(
                {
                    "rapid.engine.prompt_tokens": sum(c.prompt_tokens for c in done),
                    "rapid.engine.completion_tokens": sum(c.completion_tokens for c in done),
                    "rapid.engine.failures": len(results) - len(done),
                }
            )
            if len(done) < len(results):
                span.set_status(Status(StatusCode.ERROR, f"{len(results) - len(done)} request(s) failed"))
            return results

    async def astream(self, request: ChatRequest, gen: GenerationConfig):
        tracer = trace.get_tracer(TRACER_NAME)
        with tracer.start_as_current_span("engine.stream") as span:
            span.set_attributes({"rapid.engine.spec": self.spec, "rapid.engine.batch_size": 1})
            async for piece in self.inner.astream(request, gen):
                if isinstance(piece, Completion):
                    span.set_attributes(
                        {
                            "rapid.engine.prompt_tokens": piece.prompt_tokens,
                            "rapid.engine.completion_tokens": piece.completion_tokens,
                        }
                    )
                yield piece

    def close(self) -> None:
        self.inner.close()


class _Alias:
    """A run that reuses its parent's span: ending it ends nothing."""

    def __init__(self, span: Any) -> None:
        self.span = span
        self.name = span.name


class OTelCallbackHandler(BaseCallbackHandler):
    """Turns LangChain/LangGraph chain callbacks (the graph run and each node) into OpenTelemetry spans."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._spans: dict[UUID, Any] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        name = name or (serialized or {}).get("name") or "chain"
        with self._lock:
            parent = self._spans.get(parent_run_id) if parent_run_id else None
            if isinstance(parent, _Alias):
                parent = parent.span
            # LangGraph's hidden bookkeeping runs, and a node's runnable nested in the node's own run, share
            # their parent's span instead of opening one of their own
            hidden = "langsmith:hidden" in (kwargs.get("tags") or [])
            if parent is not None and (hidden or parent.name == f"rapid.{name}"):
                self._spans[run_id] = _Alias(parent)
                return
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(f"rapid.{name}", context=ctx, start_time=time.time_ns())
        if isinstance(inputs, dict) and "question" in inputs:
            span.set_attribute("rapid.question", str(inputs["question"])[:200])
        with self._lock:
            self._spans[run_id] = span

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            span = self._spans.pop(run_id, None)
        if span is None or isinstance(span, _Alias):
            return
        if isinstance(outputs, dict):
            for key in SPAN_KEYS:
                if outputs.get(key) is not None:
                    span.set_attribute(f"rapid.{key}", outputs[key])
            for key, value in (outputs.get("metrics") or {}).items():
                span.set_attribute(f"rapid.{key}", value)
            for key, value in (outputs.get("engines") or {}).items():
                span.set_attribute(f"rapid.{key}", value)
            if outputs.get("errors"):
                span.set_status(Status(StatusCode.ERROR, "; ".join(outputs["errors"])[:500]))
        span.end()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            span = self._spans.pop(run_id, None)
        if span is not None and not isinstance(span, _Alias):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
            span.end()


_enabled = False


def enable_tracing(exporter: SpanExporter | None = None, *, path: str | Path | None = None) -> TracerProvider:
    """Install a tracer provider exporting to `exporter` (or a JSON-lines file at `path`) and instrument every
    engine call from now on."""
    global _enabled
    if exporter is None:
        if path is None:
            raise ValueError("enable_tracing needs an exporter or a path")
        exporter = JsonLinesExporter(path)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if not _enabled:
        batching.engine_wrappers.append(InstrumentedEngine)
        _enabled = True
    return provider


def read_trace(path: str | Path) -> list[dict]:
    """The spans of a JSON-lines trace file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
