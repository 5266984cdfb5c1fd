"""Prometheus metrics of one app (its own registry, so several apps in one process never collide): requests by
model and status, latency, requests running and queued, and the engines' batch sizes per role.

Batch sizes are read from the engines' micro-batchers when scraped, so they count every batched engine call
(whoever made it) without a hook inside the batcher; streamed answers bypass the batcher and are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from rapid_agent.backends.batching import get_batcher
from rapid_agent.serve.limits import Gate
from rapid_agent.serve.pipeline import Pipeline

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _BatchSizes(Collector):
    def __init__(self, pipelines: Iterable[Pipeline]) -> None:
        self.engines = {}  # one entry per engine object: pipelines may share one
        for pipeline in pipelines:
            for role, engine in pipeline.engines.items():
                self.engines[id(engine)] = (role, engine)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "rapid_engine_batch_size", "requests per batched engine call", labels=["role", "engine"]
        )
        for role, engine in self.engines.values():
            counts = dict(get_batcher(engine).size_counts)  # ever-growing counts: the histogram stays cumulative
            calls = sum(counts.values())
            buckets = [(str(b), sum(n for s, n in counts.items() if s <= b)) for b in BATCH_BUCKETS]
            family.add_metric([role, engine.spec], [*buckets, ("+Inf", calls)], sum(s * n for s, n in counts.items()))
        yield family


class Metrics:
    def __init__(self, gate: Gate, pipelines: Iterable[Pipeline]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rapid_requests",
            "chat-completion requests by model and status",
            ["model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rapid_request_duration_seconds",
            "time from arrival to the last byte of answered requests",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streamed = Counter(
            "rapid_streamed_answers",
            "answers streamed piece by piece (outside the batcher)",
            ["model"],
            registry=self.registry,
        )
        self.stream_errors = Counter(
            "rapid_stream_errors", "streams that ended with an error event", ["model"], registry=self.registry
        )
        active = Gauge("rapid_requests_active", "requests running through the pipeline", registry=self.registry)
        active.set_function(lambda: gate.active)
        queued = Gauge("rapid_queue_depth", "requests waiting for a slot", registry=self.registry)
        queued.set_function(lambda: gate.waiting)
        self.registry.register(_BatchSizes(pipelines))

    def render(self) -> bytes:
        return generate_latest(self.registry)
