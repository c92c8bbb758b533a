"""The demo's spans reach a real OTLP/HTTP receiver whole (protobuf over HTTP on 127.0.0.1)."""

from __future__ import annotations

import gzip
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from threadline.demo import main


class _Receiver(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
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


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/traces", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()


def test_demo_exports_one_whole_trace_over_otlp(
    receiver: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    url, received = receiver
    assert main(["--scripted", "--output", "", "--otlp", url], out=io.StringIO()) == 0
    spans = [
        span
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        if scope_spans.scope.name == "threadline"
        for span in scope_spans.spans
    ]
    assert sorted(span.name for span in spans) == [
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "execute_tool get_weather",
        "invoke_agent weather-assistant",
    ]
    assert len({span.trace_id for span in spans}) == 1
    root = next(span for span in spans if span.name.startswith("invoke_agent"))
    assert all(span.parent_span_id == root.span_id for span in spans if span is not root)
    chat = next(span for span in spans if span.name.startswith("chat"))
    attributes = {kv.key: kv.value for kv in chat.attributes}
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["session.id"].string_value == "demo-session"
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0
