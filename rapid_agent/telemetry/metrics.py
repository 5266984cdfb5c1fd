"""Metrics and spans for the work around the graph: evaluation batches and training steps.

    record_metrics({"rapid.eval.accuracy": 0.5}, {"rapid.mode": "cap"})   # any names; rates are gauges

    with eval_batch(len(samples), {"rapid.benchmark": "mathvista", "rapid.mode": mode}) as batch:
        results = solve_batch(samples, context=context)   # the graph runs become children of the batch span
        batch.results(results)                            # accuracy, errors, valid captions, latencies

Names in `METRICS` have a fixed kind and unit (latencies are histograms in seconds, the rest gauges); other names
become gauges. Nothing here costs anything while tracing is off: OpenTelemetry's API is a no-op without a provider.
Training steps are traced by `rapid_agent.telemetry.training.OTelTrainerCallback`, which uses `record_metrics`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from rapid_agent.backends.base import redact
from rapid_agent.telemetry.attributes import record_exception

TRACER_NAME = "rapid_agent"

#: name -> (kind, unit, description)
METRICS: dict[str, tuple[str, str, str]] = {
    "rapid.eval.accuracy": ("gauge", "1", "share of an evaluation batch's scored samples answered correctly"),
    "rapid.eval.samples_per_second": ("gauge", "{sample}/s", "evaluation throughput of one batch"),
    "rapid.eval.errors": ("gauge", "{sample}", "samples of a batch whose run failed"),
    "rapid.eval.valid_caption_ratio": (
        "gauge",
        "1",
        "share of a batch whose captioner wrote every part its mode asks",
    ),
    "rapid.train.reward.mean": ("gauge", "1", "mean reward of a training step's completions"),
    "rapid.train.reward.std": ("gauge", "1", "standard deviation of a training step's rewards"),
    "rapid.train.accuracy": ("gauge", "1", "accuracy reward of a training step (GRPO stage)"),
    "rapid.train.reasoner_accuracy": ("gauge", "1", "the frozen reasoner's accuracy on a step's captions (VPO)"),
    "rapid.train.valid_caption_ratio": ("gauge", "1", "share of a step's sampled captions judged genuine"),
    "rapid.train.valid_caption_ratio.correct": (
        "gauge",
        "1",
        "share of a step's correct outputs judged genuine captions",
    ),
    "rapid.train.samples_per_second": ("gauge", "{completion}/s", "completions trained on per second"),
    "rapid.reasoner.latency": ("histogram", "s", "time the reasoner took to answer (one graph run or one batch)"),
    "rapid.captioner.latency": ("histogram", "s", "time the captioner took to describe (one graph run)"),
}

_instruments: dict[str, Any] = {}
_lock = threading.Lock()


def _instrument(name: str) -> Any:
    instrument = _instruments.get(name)
    if instrument is None:
        with _lock:
            instrument = _instruments.get(name)
            if instrument is None:
                kind, unit, description = METRICS.get(name, ("gauge", "", ""))
                meter = metrics.get_meter(TRACER_NAME)
                create = meter.create_histogram if kind == "histogram" else meter.create_gauge
                instrument = _instruments[name] = create(name, unit=unit, description=description)
    return instrument


def metric_name(key: str, prefix: str = "") -> str:
    """A metric name from a logged key: `vpo/reasoner_latency_s` -> `<prefix>vpo.reasoner_latency_s`."""
    return prefix + key.replace("/", ".").replace(" ", "_")


def record_metrics(values: Mapping[str, float | None], attributes: Mapping[str, Any] | None = None) -> None:
    """Record each value under its name (None and NaN are skipped)."""
    attrs = dict(attributes or {})
    for name, value in values.items():
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        instrument = _instrument(name)
        if hasattr(instrument, "record"):
            instrument.record(value, attrs)
        else:
            instrument.set(value, attrs)


class BatchRecorder:
    """Collects what one evaluation batch measured; `eval_batch` records it on exit."""

    def __init__(self, span: Any, size: int) -> None:
        self.span = span
        self.size = size
        self.values: dict[str, float] = {}
        self._latencies: dict[str, list[float]] = {"reasoner": [], "captioner": []}

    def set(self, **values: float) -> None:
        """Extra values, recorded as `rapid.eval.<name>` metrics and span attributes."""
        self.values.update({f"rapid.eval.{k}": v for k, v in values.items()})

    def results(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Derive the batch's figures from graph results (`solve_batch` outputs)."""
        scored = [r for r in results if r.get("answer") is not None]
        if scored:
            self.values["rapid.eval.accuracy"] = sum(bool(r.get("correct")) for r in scored) / len(scored)
        self.values["rapid.eval.errors"] = sum(bool(r.get("errors")) for r in results)
        perceived = [r for r in results if r.get("perception_missing") is not None]
        if perceived:
            valid = sum(not r["perception_missing"] for r in perceived)
            self.values["rapid.eval.valid_caption_ratio"] = valid / len(perceived)
        for r in results:
            for role, values in self._latencies.items():
                value = (r.get("metrics") or {}).get(f"{role}_latency_s")
                if isinstance(value, (int, float)):
                    values.append(value)

    def _finish(self, elapsed: float, attributes: dict) -> None:
        if elapsed > 0:
            self.values["rapid.eval.samples_per_second"] = self.size / elapsed
        record_metrics(self.values, attributes)
        for role, values in self._latencies.items():
            for value in values:
                _instrument(f"rapid.{role}.latency").record(value, {**attributes, "rapid.stage": "eval"})
        self.span.set_attributes({k: v for k, v in self.values.items() if isinstance(v, (int, float))})


@contextmanager
def eval_batch(
    size: int, attributes: Mapping[str, Any] | None = None, *, name: str = "rapid.eval.batch"
) -> Iterator[BatchRecorder]:
    """A span around one evaluation batch (current while the block runs, so graph runs inside hang under it) and its
    metrics on exit: throughput, plus what `BatchRecorder.results`/`set` gave. An exception is recorded and
    re-raised."""
    attrs = dict(attributes or {})
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, attributes={**attrs, "rapid.batch.size": size}, record_exception=False, set_status_on_exception=False
    ) as span:
        recorder = BatchRecorder(span, size)
        started = time.perf_counter()
        try:
            yield recorder
        except BaseException as exc:
            record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))
            raise
        recorder._finish(time.perf_counter() - started, attrs)
