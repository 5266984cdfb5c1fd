"""The trace of one graph run, as OpenTelemetry spans in a JSON-lines file (through `rapid_agent.tracing`).

Tracing is switched on once per process with an exporter whose target file is set only while the traced run is
going, so the demo's other runs (and a second demo in the same process) never leak spans into a report.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rapid_agent.config import RapidContext
from rapid_agent.tracing import JsonLinesExporter, OTelCallbackHandler, enable_tracing

_lock = threading.Lock()
_exporter: JsonLinesExporter | None = None


def trace_one_run(sample: dict, context: RapidContext, path: Path) -> dict:
    """Run `sample` through the graph once with tracing to `path` (overwritten); returns the final state."""
    global _exporter
    from rapid_agent.graphs import get_graph

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    with _lock:
        if _exporter is None:
            _exporter = JsonLinesExporter(None)
            enable_tracing(_exporter)
        _exporter.path = path
        try:
            return get_graph().invoke(sample, context=context, config={"callbacks": [OTelCallbackHandler()]})
        finally:
            _exporter.path = None
