"""OpenTelemetry for RAPID: traces that observability stacks understand, wrapped around the library, never inside it.

    from rapid_agent.telemetry import setup_tracing
    setup_tracing("trace.jsonl")      # or "console", "otlp", or None: the OTEL_* environment variables decide

Modules: `setup` (the one switch, `--trace` for command lines), `attributes` (GenAI semantic-convention names and
ours), `engines` (each engine call as a GenAI client span), `callbacks` (graph runs, nodes and tool calls as spans),
`metrics` (evaluation batches, `record_metrics`), `training` (a TrainerCallback; imports transformers),
`export` (JSON-lines span and metric files).
"""

from rapid_agent.telemetry.callbacks import OTelCallbackHandler, current_span
from rapid_agent.telemetry.engines import InstrumentedEngine
from rapid_agent.telemetry.export import (
    JsonLinesExporter,
    JsonLinesMetricExporter,
    read_metrics,
    read_trace,
    span_record,
)
from rapid_agent.telemetry.metrics import METRICS, eval_batch, record_metrics
from rapid_agent.telemetry.setup import (
    Tracing,
    disable_tracing,
    enable_tracing,
    flush_tracing,
    setup_tracing,
)

__all__ = [
    "METRICS",
    "InstrumentedEngine",
    "JsonLinesExporter",
    "JsonLinesMetricExporter",
    "OTelCallbackHandler",
    "Tracing",
    "current_span",
    "disable_tracing",
    "enable_tracing",
    "eval_batch",
    "flush_tracing",
    "read_metrics",
    "read_trace",
    "record_metrics",
    "setup_tracing",
    "span_record",
]
