"""Where finished spans and metric points go when no collector is at hand: one JSON object per line in a file.

`JsonLinesExporter` writes spans (name, kind, ids, parent, links, status, attributes and events such as the exception
of a failed call); `JsonLinesMetricExporter` writes metric points to the same kind of file. `read_trace` and
`read_metrics` read them back. A span exporter's `path` may be changed between runs (or set to None, which drops
spans), so one process-wide exporter can write each traced run to a file of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class _JsonLinesFile:
    """Appends lines to a file whose path may change; None drops what is written."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self.path = path

    @property
    def path(self) -> Path | None:
        return self._path

    @path.setter
    def path(self, value: str | Path | None) -> None:
        with self._lock:
            self._path = Path(value).expanduser() if value is not None else None
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: list[dict]) -> None:
        with self._lock:
            if self._path is None or not records:
                return
            with self._path.open("a") as f:
                f.write("".join(json.dumps(r, default=str) + "\n" for r in records))


class JsonLinesExporter(_JsonLinesFile, SpanExporter):
    """Appends each finished span to a JSON-lines file."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.write([span_record(s) for s in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def span_record(span: ReadableSpan) -> dict:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "start_ns": span.start_time,
        "duration_ms": (span.end_time - span.start_time) / 1e6 if span.end_time else None,
        "status": span.status.status_code.name,
        "status_message": span.status.description,
        "attributes": _plain(span.attributes),
        "events": [{"name": e.name, "attributes": _plain(e.attributes)} for e in span.events],
    }


def _plain(attributes: Any) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(attributes or {}).items()}


class JsonLinesMetricExporter(_JsonLinesFile, MetricExporter):
    """Appends each exported metric point as one line: name, unit, attributes and the value (gauges, sums) or the
    count, sum, min and max (histograms). With the SDK's default (cumulative) temporality the last line of a
    metric and attribute set holds the run's total."""

    def __init__(self, path: str | Path | None) -> None:
        MetricExporter.__init__(self)
        _JsonLinesFile.__init__(self, path)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        records = []
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        record = {"metric": metric.name, "unit": metric.unit, "attributes": _plain(point.attributes)}
                        if isinstance(point, HistogramDataPoint):
                            record |= {"count": point.count, "sum": point.sum, "min": point.min, "max": point.max}
                        elif isinstance(point, NumberDataPoint):
                            record["value"] = point.value
                        records.append(record | {"time_ns": point.time_unix_nano})
        self.write(records)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _read(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_trace(path: str | Path) -> list[dict]:
    """The spans of a JSON-lines trace file (metric lines in the same file are left out)."""
    return [r for r in _read(path) if "span_id" in r]


def read_metrics(path: str | Path) -> list[dict]:
    """The metric points of a JSON-lines trace file."""
    return [r for r in _read(path) if "metric" in r]
