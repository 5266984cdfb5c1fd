"""One way to switch tracing on, for every command: `setup_tracing(trace)`.

    trace=None        the standard OTEL_* environment variables decide: OTEL_TRACES_EXPORTER (otlp, console, none),
                      OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf,
                      grpc), headers, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER ...; nothing set: tracing stays off
    "console"         spans (and, at exit, metrics) printed to stderr
    "otlp"            OTLP with the endpoint and protocol the environment gives (default http://localhost:4318)
    "FILE.jsonl"      spans and metric points appended to the file as JSON lines (`read_trace`, `read_metrics`)

Once on, every LangChain/LangGraph run of the process is traced (a configure hook adds `OTelCallbackHandler`) and
every engine call is a GenAI span (the micro-batcher wraps engines in `InstrumentedEngine`). Calling it again with a
target already installed adds nothing, so no span is exported twice; a new target is added beside the others.
Tracing off installs nothing at all: no provider, no wrapper, no callback.
"""

from __future__ import annotations

import os
import sys
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import ProxyTracerProvider

from rapid_agent.backends import batching
from rapid_agent.telemetry import attributes as A
from rapid_agent.telemetry.callbacks import OTelCallbackHandler
from rapid_agent.telemetry.engines import InstrumentedEngine
from rapid_agent.telemetry.export import JsonLinesExporter, JsonLinesMetricExporter

SERVICE_NAME = "rapid-agent"
TRACE_HELP = (
    "trace with OpenTelemetry: 'console' (stderr), 'otlp', or a FILE.jsonl (spans and metrics as JSON lines); "
    "without it the OTEL_* environment variables decide (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL="
    "http/protobuf|grpc, ...)"
)
_PROTOCOLS = ("http/protobuf", "grpc")


class _SpanFanout(SpanProcessor):
    """The one processor installed on the provider: a list of processors that can grow and be emptied."""

    def __init__(self) -> None:
        self.processors: list[SpanProcessor] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        for p in self.processors:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: Any) -> None:
        for p in self.processors:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self.processors:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


class _MetricFanout(MetricExporter):
    """The exporter of the one periodic reader: metric readers cannot be added to a provider after it is made."""

    def __init__(self) -> None:
        super().__init__()
        self.exporters: list[MetricExporter] = []

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        results = [e.export(metrics_data, timeout_millis=timeout_millis) for e in list(self.exporters)]
        ok = all(r == MetricExportResult.SUCCESS for r in results)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return all(e.force_flush(timeout_millis) for e in list(self.exporters))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        for e in list(self.exporters):
            e.shutdown()


@dataclass(frozen=True)
class Tracing:
    """What `setup_tracing` installed: its targets, and a flush for commands that exit through `os._exit`."""

    targets: tuple[str, ...]

    def flush(self, timeout_millis: int = 30_000) -> bool:
        return flush_tracing(timeout_millis)


_lock = threading.RLock()
_spans = _SpanFanout()
_metric_exporters = _MetricFanout()
_targets: dict[str, tuple[SpanProcessor, MetricExporter | None]] = {}
_span_fanout_installed = False
_meter_provider: MeterProvider | None = None
_handler: OTelCallbackHandler | None = None


def setup_tracing(trace_target: str | None = None, *, capture_content: bool | None = None) -> Tracing | None:
    """Switch tracing on for this process as `trace_target` (or the environment) says; None when it stays off.
    Raises ValueError naming the setting when a target cannot be used (an unwritable file, an unknown exporter)."""
    targets = _targets_from_env() if trace_target is None else [_check_target(trace_target)]
    if capture_content is not None:
        A.set_capture_content(capture_content)
    targets = [t for t in targets if t != "none"]
    if not targets:
        return None
    with _lock:
        provider = _tracer_provider()
        if provider is None:
            return None
        for target in targets:
            key = _key(target)
            if key not in _targets:
                span_exporter, processor_cls, metric_exporter = _exporters(target)
                processor = processor_cls(span_exporter)
                _spans.processors.append(processor)
                if metric_exporter is not None and _metric_pipeline():
                    _metric_exporters.exporters.append(metric_exporter)
                _targets[key] = (processor, metric_exporter)
        _instrument(hook=True)
        return Tracing(tuple(_targets))


def enable_tracing(exporter: SpanExporter | None = None, *, path: str | Path | None = None) -> TracerProvider:
    """Export spans to `exporter` (or a JSON-lines file at `path`) and instrument every engine call from now on.
    Graph runs are traced where `OTelCallbackHandler()` is passed in their config (`setup_tracing` traces all)."""
    if exporter is None:
        if path is None:
            raise ValueError("enable_tracing needs an exporter or a path")
        exporter = JsonLinesExporter(path)
    with _lock:
        provider = _tracer_provider()
        if provider is None:
            raise RuntimeError(
                "a tracer provider that is not the OpenTelemetry SDK's is installed; add exporters to it"
            )
        _spans.processors.append(SimpleSpanProcessor(exporter))
        _instrument(hook=False)
        return provider


def flush_tracing(timeout_millis: int = 30_000) -> bool:
    """Export what is buffered now (the SDK also does it at exit)."""
    ok = _spans.force_flush(timeout_millis)
    if _meter_provider is not None:
        ok = _meter_provider.force_flush(timeout_millis) and ok
    return ok


def disable_tracing() -> None:
    """Undo `setup_tracing` and `enable_tracing` (for tests): flush and drop every exporter, unwrap the engines,
    silence the callback. The provider stays (OpenTelemetry allows one per process) but exports nothing."""
    with _lock:
        flush_tracing()
        processors, _spans.processors = _spans.processors, []
        for p in processors:
            p.shutdown()
        _metric_exporters.exporters.clear()
        _targets.clear()
        while InstrumentedEngine in batching.engine_wrappers:
            batching.engine_wrappers.remove(InstrumentedEngine)
        if _handler is not None:
            _handler.enabled = False
        A.set_capture_content(None)


# -- internals ---------------------------------------------------------------------------------------------------
def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _targets_from_env() -> list[str]:
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return []
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    if not names:
        endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    for name in names:
        if name not in ("otlp", "console", "none"):
            raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not supported here; use otlp, console or none")
    return names


def _check_target(target: str) -> str:
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"--trace: expected 'console', 'otlp' or a file path, got {target!r}")
    if target in ("console", "otlp", "none"):
        return target
    path = Path(target).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as exc:
        raise ValueError(f"--trace: cannot write a trace to {str(path)!r}: {exc.strerror or exc}") from None
    return str(path.resolve())


def _protocol() -> str:
    protocol = (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")).lower()
    protocol = protocol or "http/protobuf"
    if protocol not in _PROTOCOLS:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported here; use one of {_PROTOCOLS}")
    return protocol


def _key(target: str) -> str:
    if target == "otlp":
        endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
        return f"otlp:{_protocol()}:{endpoint or 'default'}"
    return target if target == "console" else f"file:{target}"


def _exporters(target: str) -> tuple[SpanExporter, type, MetricExporter | None]:
    """(span exporter, its processor class, metric exporter or None) for one target."""
    if target == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr), SimpleSpanProcessor, ConsoleMetricExporter(out=sys.stderr)
    if target == "otlp":
        if _protocol() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        wants_metrics = _env("OTEL_METRICS_EXPORTER").lower() != "none"
        return OTLPSpanExporter(), BatchSpanProcessor, OTLPMetricExporter() if wants_metrics else None
    return JsonLinesExporter(target), SimpleSpanProcessor, JsonLinesMetricExporter(target)


def _resource() -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; ours is only the fallback name
    attributes = {} if _env("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    return Resource.create(attributes)


def _tracer_provider() -> TracerProvider | None:
    """The SDK provider spans go through: the application's own if it installed one, else ours."""
    global _span_fanout_installed
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        if not isinstance(provider, ProxyTracerProvider):
            return None  # someone installed a provider that takes no processors (e.g. a no-op one)
        trace.set_tracer_provider(TracerProvider(resource=_resource()))
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            return None
    if not _span_fanout_installed:
        provider.add_span_processor(_spans)
        _span_fanout_installed = True
    return provider


def _metric_pipeline() -> bool:
    """Install our meter provider (one periodic reader over the fan-out) unless the application has its own, whose
    readers then receive our metrics. Whether our exporters are used."""
    global _meter_provider
    if _meter_provider is not None:
        return True
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        return False
    reader = PeriodicExportingMetricReader(_metric_exporters)
    provider = MeterProvider(resource=_resource(), metric_readers=[reader])
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is provider:
        _meter_provider = provider
        return True
    provider.shutdown()
    return False


def _instrument(*, hook: bool) -> None:
    """Wrap every engine call; with `hook`, also trace every LangChain/LangGraph run (once per process)."""
    global _handler
    if InstrumentedEngine not in batching.engine_wrappers:
        batching.engine_wrappers.append(InstrumentedEngine)
    if not hook:
        return
    if _handler is None:
        from langchain_core.tracers.context import register_configure_hook

        _handler = OTelCallbackHandler()
        # a context variable whose default is the handler: seen from every thread and task, set once
        register_configure_hook(
            ContextVar("rapid_agent_otel_handler", default=_handler),
            inheritable=True,
            handle_class=OTelCallbackHandler,
        )
    _handler.enabled = True
