"""The trace of one graph run, as OpenTelemetry spans in a JSON-lines file (through `rapid_agent.tracing`).

Tracing is switched on once per process with an exporter whose target file is set only while the traced run is
going, so the demo's other runs (and a second demo in the same process) never leak spans into a report. The run
uses fresh proxies of the engines: engine spans come from the micro-batcher's wrappers, which apply to batchers
created after tracing was enabled, and the proxies get new batchers while the models stay loaded once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig
from rapid_agent.config import RapidContext


class _Proxy(Engine):
    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.max_batch_size = inner.max_batch_size
        self.max_concurrent_calls = inner.max_concurrent_calls

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        return await self.inner.agenerate(requests, gen)


_lock = threading.Lock()
_exporter = None


def _switchable_exporter():
    """One exporter for the process; spans go to its `path` while one is set and are dropped otherwise."""
    global _exporter
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from rapid_agent.tracing import enable_tracing, span_record

    class Switchable(SpanExporter):
        path: Path | None = None

        def export(self, spans):
            with _lock:
                if self.path is not None:
                    with self.path.open("a") as f:
                        for span in spans:
                            f.write(json.dumps(span_record(span), default=str) + "\n")
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    if _exporter is None:
        _exporter = Switchable()
        enable_tracing(_exporter)
    return _exporter


def trace_one_run(sample: dict, context: RapidContext, path: Path) -> dict:
    """Run `sample` through the graph once with tracing to `path` (overwritten); returns the final state."""
    from rapid_agent.graphs import get_graph

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    proxied = {}
    for role in ("captioner", "reasoner"):
        engine = getattr(context, role)
        if isinstance(engine, Engine):
            proxied[role] = _Proxy(engine)
    context = context.replace(**proxied)
    try:
        from rapid_agent.tracing import OTelCallbackHandler
    except ImportError:  # tracing not installed: record the graph's node-by-node updates instead
        with path.open("w") as f:
            state: dict = {}
            for update in get_graph().stream(sample, context=context, stream_mode="updates"):
                for node, values in update.items():
                    f.write(json.dumps({"name": node, "attributes": values}, default=str) + "\n")
                    state.update(values or {})
        return state
    exporter = _switchable_exporter()
    with _lock:
        exporter.path = path
    try:
        return get_graph().invoke(sample, context=context, config={"callbacks": [OTelCallbackHandler()]})
    finally:
        with _lock:
            exporter.path = None
