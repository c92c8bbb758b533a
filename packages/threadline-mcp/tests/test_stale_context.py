"""A server started inside a span (traced startup code, ``with tracer.start_as_current_span(...):
server.run()``): its transport's tasks keep that span current for as long as they run, and mcp
2.x runs each message's handler in the context of the task that read it. That stale span is no
request's parent or link: a request with trace context continues it, one without starts a trace
of its own, as on a server started outside any span."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import MAJOR, http_server
from test_hostile_meta import VALID_TRACEPARENT, RawServer
from test_http_context import HEADER_PARENT, RawHttpClient

from threadline.testing import SpanRecord, read_spans_jsonl

_, META_TRACE, META_SPAN, _ = VALID_TRACEPARENT.split("-")
_, HEADER_TRACE, HEADER_SPAN, _ = HEADER_PARENT.split("-")
CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}

FLAVOURS = [{}, {"SERVER_LOWLEVEL": "1"}] if MAJOR >= 2 else [{}]


def _calls(spans: list[SpanRecord]) -> list[SpanRecord]:
    return [s for s in spans if s.name == "tools/call get_weather"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stdio_server_started_inside_a_span(tmp_path: Path, flavour: dict[str, str]) -> None:
    raw = RawServer(tmp_path, SERVER_BOOT_SPAN="1", **flavour)
    try:
        raw.handshake()
        raw.request("tools/call", {**CALL, "_meta": {"traceparent": VALID_TRACEPARENT}})
        raw.request("tools/call", CALL)
        raw.request("tools/call", {**CALL, "_meta": {"progressToken": 1}})
    finally:
        raw.close()
    spans = read_spans_jsonl(raw.spans)
    boot = next(s for s in spans if s.name == "boot")  # ended when the server stopped
    with_context, *without = _calls(spans)
    assert (with_context.trace_id, with_context.parent_span_id) == (META_TRACE, META_SPAN)
    assert with_context.links == ()
    assert len(without) == 2
    for call in without:
        assert call.parent_span_id is None  # a trace of its own
        assert call.links == ()
        assert call.trace_id != boot.trace_id
    assert len({call.trace_id for call in without}) == 2
    # Nothing the client sent joined the startup span's trace (notifications/initialized
    # carries no context: no span at all).
    assert [s.name for s in spans if s.trace_id == boot.trace_id] == ["boot"]
    assert not [s for s in spans if s.name == "notifications/initialized"]


def _http_calls(tmp_path: Path, transport_env: dict[str, str]) -> list[SpanRecord]:
    spans_file = tmp_path / "spans.jsonl"
    with http_server(tmp_path, spans_file, SERVER_BOOT_SPAN="1", **transport_env) as url:
        client = RawHttpClient(url)
        client.handshake()
        client.request("tools/call", {**CALL, "_meta": {"traceparent": VALID_TRACEPARENT}})
        client.request("tools/call", CALL)
        client.request("tools/call", CALL, {"traceparent": HEADER_PARENT})
    return read_spans_jsonl(spans_file)


def test_http_server_started_inside_a_span(tmp_path: Path) -> None:
    """Over HTTP the request tasks inherit the startup span too (the server's listener was
    opened in it); with no HTTP server span of an ASGI instrumentation above the request, the
    span is no parent either, and the request's headers are used."""
    spans = _http_calls(tmp_path, {})
    with_meta, without, with_header = _calls(spans)
    assert (with_meta.trace_id, with_meta.parent_span_id) == (META_TRACE, META_SPAN)
    assert (with_header.trace_id, with_header.parent_span_id) == (HEADER_TRACE, HEADER_SPAN)
    assert without.parent_span_id is None
    for call in (with_meta, without, with_header):
        assert call.links == ()
    assert not [s for s in spans if s.name == "notifications/initialized"]


@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x handlers never see their HTTP request's span")
def test_http_server_span_still_parents_under_a_startup_span(tmp_path: Path) -> None:
    """An ASGI instrumentation's HTTP server span is the request's own: still the parent of a
    request without ``_meta`` context, and a link of one with it."""
    spans = _http_calls(tmp_path, {"SERVER_HTTP_SPAN": "1"})
    with_meta, without, with_header = _calls(spans)
    http = {s.span_id: s for s in spans if s.name == "POST /mcp"}
    assert (with_meta.trace_id, with_meta.parent_span_id) == (META_TRACE, META_SPAN)
    assert [link[1] in http for link in with_meta.links] == [True]
    assert without.parent_span_id in http
    assert with_header.parent_span_id in http
    assert http[with_header.parent_span_id].trace_id == HEADER_TRACE
