"""Where finished spans and metric points go when no collector is at hand: one JSON object per line in a file.

`JsonLinesExporter` writes spans (name, kind, ids, parent, links, status, attributes and events such as the exception
of a failed call); `JsonLinesMetricExporter` writes metric points to the same kind of file. `read_trace` and
`read_metrics` read them back. A span exporter's `path` may be changed between runs (or set to None, which drops
spans), so one process-wide exporter can write each traced run to a file of its own.

A file that refuses a write (a full disk, a directory removed) costs one warning naming it and the error, not a
traceback per span: what is then traced to it is dropped and counted, and shutdown says how much was lost.

Why not the SDK's `ConsoleSpanExporter(out=..., formatter=...)`, with `span_record` as its formatter: it writes to
one stream opened once, so the file could not change between runs nor be dropped (None); it writes span by span
and lets a write's `OSError` escape, which the span processor logs as a traceback per batch, and it reports
SUCCESS whatever happened. What it would add is the loop over spans; the file handling above is the rest.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
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

logger = logging.getLogger("rapid_agent.telemetry")


class _Failures:
    """The files a write failed on, shared by every exporter, so that the span and the metric exporter of one
    `--trace` file warn once between them. A failed file stays failed (each further write would fail as well, and
    could leave half a line) until an exporter is pointed at it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[Path, str] = {}
        self._dropped: dict[Path, Counter[str]] = {}

    def drop(self, path: Path, noun: str, count: int) -> bool:
        """Count `count` records as dropped if `path` has failed; whether it has."""
        with self._lock:
            if path not in self._errors:
                return False
            self._dropped[path][noun] += count
            return True

    def fail(self, path: Path, error: OSError, noun: str, count: int) -> None:
        """A write to `path` failed: warn the first time, count the records it carried."""
        with self._lock:
            first = path not in self._errors
            if first:
                self._errors[path] = str(error)
                self._dropped[path] = Counter()
            self._dropped[path][noun] += count
        if first:
            logger.warning("cannot write the trace to %s (%s); dropping what is traced to it from now on", path, error)

    def report(self, path: Path) -> None:
        """Say how much was dropped on `path` since the last report, if anything."""
        with self._lock:
            dropped = self._dropped.get(path)
            counts = ", ".join(f"{n} {noun}(s)" for noun, n in dropped.items() if n) if dropped else ""
            if dropped:
                dropped.clear()
            error = self._errors.get(path)
        if counts:
            logger.warning("%s not written to %s (%s)", counts, path, error)

    def forget(self, path: Path) -> None:
        """Give `path` a fresh try (after reporting what it dropped)."""
        self.report(path)
        with self._lock:
            self._errors.pop(path, None)
            self._dropped.pop(path, None)


_failures = _Failures()


class _JsonLinesFile:
    """Appends lines to a file whose path may change; None drops what is written. A write that fails is logged
    once and what follows is dropped and counted (`_Failures`); setting the path gives the file a fresh try."""

    #: what one record is called in the note on dropped records
    noun = "record"

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
                _failures.forget(self._path)
                self._path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: list[dict]) -> bool:
        """Append `records`; False when they were dropped because the file cannot be written."""
        with self._lock:
            path = self._path
            if path is None or not records:
                return True
            if _failures.drop(path, self.noun, len(records)):
                return False
            try:
                self._append(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
            except OSError as exc:  # ENOSPC, EIO, a directory removed: one warning, not a traceback per span
                _failures.fail(path, exc, self.noun, len(records))
                return False
            return True

    @staticmethod
    def _append(path: Path, text: str) -> None:
        with path.open("a") as f:
            f.write(text)

    def _report(self) -> None:
        if self._path is not None:
            _failures.report(self._path)


class JsonLinesExporter(_JsonLinesFile, SpanExporter):
    """Appends each finished span to a JSON-lines file."""

    noun = "span"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.write([span_record(s) for s in spans])
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._report()


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

    noun = "metric point"

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
        return MetricExportResult.SUCCESS if self.write(records) else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._report()


def _read(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_trace(path: str | Path) -> list[dict]:
    """The spans of a JSON-lines trace file (metric lines in the same file are left out)."""
    return [r for r in _read(path) if "span_id" in r]


def read_metrics(path: str | Path) -> list[dict]:
    """The metric points of a JSON-lines trace file."""
    return [r for r in _read(path) if "metric" in r]
