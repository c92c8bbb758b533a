"""A real OTLP/HTTP trace receiver on 127.0.0.1, for tests that export through the real
exporter (protobuf over HTTP, gzip or not) and check what arrived."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpReceiver:
    """What :func:`otlp_receiver` yields: the endpoint URL and every export request received
    (``ExportTraceServiceRequest`` messages, in arrival order)."""

    def __init__(self, url: str, requests: list[Any]) -> None:
        self.url = url
        self.requests = requests

    def spans(self, scope: str | None = None) -> list[tuple[dict[str, Any], Any]]:
        """``(resource attributes, span)`` pairs of every received span, optionally only those
        of one instrumentation scope."""
        out: list[tuple[dict[str, Any], Any]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {
                    kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
                    for kv in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    if scope is None or scope_spans.scope.name == scope:
                        out.extend((resource, span) for span in scope_spans.spans)
        return out


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append(request)  # type: ignore[attr-defined]
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Serve ``POST /v1/traces`` on an ephemeral 127.0.0.1 port for the block (needs
    ``opentelemetry-proto``, which comes with the ``otlp`` extra)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OtlpReceiver(
            f"http://127.0.0.1:{server.server_port}/v1/traces",
            server.received,  # type: ignore[attr-defined]
        )
    finally:
        server.shutdown()
        server.server_close()
