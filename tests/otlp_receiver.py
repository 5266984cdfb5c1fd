"""OTLP receivers on loopback, for tests of what an OpenTelemetry collector would get: HTTP (`POST /v1/traces`,
`/v1/metrics`, protobuf bodies) and gRPC (the TraceService and MetricsService), decoded with the `opentelemetry-proto`
messages the exporters themselves use.

    with OtlpHttpReceiver() as receiver:           # OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
        ...
        spans = receiver.spans                     # [{"name", "kind", "span_id", "parent_id", "status", "attributes",
                                                   #   "events", "resource"}]
"""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attributes(key_values: Any) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict] = []
        self.metrics: list[str] = []
        self.requests = 0

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "status": span.status.code,
                                "status_message": span.status.message,
                                "attributes": _attributes(span.attributes),
                                "events": [
                                    {"name": e.name, "attributes": _attributes(e.attributes)} for e in span.events
                                ],
                                "resource": resource,
                            }
                        )

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.lock:
            for resource_metrics in request.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    self.metrics.extend(m.name for m in scope.metrics)


class OtlpHttpReceiver(_Store):
    """OTLP/HTTP with protobuf bodies (what `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` sends)."""

    def __enter__(self) -> OtlpHttpReceiver:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    store.add_traces(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    store.add_metrics(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
                    reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class OtlpGrpcReceiver(_Store):
    """OTLP/gRPC (what `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` sends), without TLS."""

    def __enter__(self) -> OtlpGrpcReceiver:
        import grpc

        store = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC's naming
                store.add_traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                store.add_metrics(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
