"""Streamable HTTP specifics, with hand-made HTTP requests to a server subprocess: trace context
from HTTP headers when ``_meta`` has none, and ``_meta`` winning over an HTTP server span (which
becomes a link)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from harness import MAJOR, http_server

from threadline.testing import SpanRecord, find, read_spans_jsonl

HEADER_TRACE = "11111111111111111111111111111111"
HEADER_PARENT = "00-11111111111111111111111111111111-2222222222222222-01"
META_TRACE = "33333333333333333333333333333333"
META_PARENT = "00-33333333333333333333333333333333-4444444444444444-01"


class RawHttpClient:
    """Just enough legacy streamable HTTP to send one tools/call with chosen headers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_id: str | None = None
        self.next_id = 0

    def post(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(message).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-11-25",
                **({"Mcp-Session-Id": self.session_id} if self.session_id else {}),
                **(headers or {}),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            self.session_id = response.headers.get("mcp-session-id") or self.session_id
            body = response.read().decode()
        if "id" not in message:
            return None
        for line in body.splitlines():  # SSE or plain JSON
            line = line.removeprefix("data:").strip()
            if line.startswith("{"):
                answer = json.loads(line)
                if answer.get("id") == message["id"]:
                    return answer
        raise AssertionError(f"no answer in {body!r}")

    def request(
        self, method: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Any:
        self.next_id += 1
        return self.post(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}, headers
        )

    def handshake(self) -> None:
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})


def _call(
    tmp_path: Path, headers: dict[str, str], meta: dict[str, Any] | None, **env: str
) -> tuple[Any, list[SpanRecord]]:
    spans_file = tmp_path / "spans.jsonl"
    with http_server(tmp_path, spans_file, **env) as url:
        client = RawHttpClient(url)
        client.handshake()
        params: dict[str, Any] = {"name": "get_weather", "arguments": {"city": "Rome"}}
        if meta is not None:
            params["_meta"] = meta
        answer = client.request("tools/call", params, headers)
    return json.loads(answer["result"]["content"][0]["text"]), read_spans_jsonl(spans_file)


def test_headers_when_meta_has_no_context(tmp_path: Path) -> None:
    seen, spans = _call(
        tmp_path,
        {"traceparent": HEADER_PARENT, "baggage": "session.id=from-header"},
        {"progressToken": 1},
    )
    server = find(spans, "tools/call get_weather")
    assert server.trace_id == HEADER_TRACE
    assert server.parent_span_id == "2222222222222222"
    assert server.attributes["session.id"] == "from-header"
    assert seen["session"] == {"session.id": "from-header"}


def test_meta_wins_over_http_span_which_becomes_a_link(tmp_path: Path) -> None:
    seen, spans = _call(
        tmp_path,
        {"traceparent": HEADER_PARENT},
        {"traceparent": META_PARENT, "baggage": "session.id=from-meta"},
        SERVER_HTTP_SPAN="1",
    )
    server = find(spans, "tools/call get_weather")
    http = [s for s in spans if s.name == "POST /mcp" and s.trace_id == HEADER_TRACE]
    assert server.trace_id == META_TRACE
    assert server.parent_span_id == "4444444444444444"
    if MAJOR >= 2:
        http_span = next(s for s in http if s.span_id in {link[1] for link in server.links})
        assert [link[:2] for link in server.links] == [(HEADER_TRACE, http_span.span_id)]
    else:
        # mcp 1.x does not run handlers in their HTTP request's context: no span to link.
        assert server.links == ()
    assert seen["session"] == {"session.id": "from-meta"}
    tool = find(spans, "lookup_forecast")
    assert tool.parent_span_id == server.span_id


def test_http_span_is_the_parent_without_meta_context(tmp_path: Path) -> None:
    _, spans = _call(tmp_path, {"traceparent": HEADER_PARENT}, None, SERVER_HTTP_SPAN="1")
    server = find(spans, "tools/call get_weather")
    assert server.trace_id == HEADER_TRACE
    assert server.links == ()
    if MAJOR >= 2:
        parent = next(s for s in spans if s.span_id == server.parent_span_id)
        assert parent.name == "POST /mcp"
        assert parent.trace_id == HEADER_TRACE
    else:
        # mcp 1.x handlers never see their request's HTTP span (see above): the header is used.
        assert server.parent_span_id == "2222222222222222"


def test_header_parent_with_meta_baggage(tmp_path: Path) -> None:
    """_meta with baggage but no (valid) traceparent: the header gives the parent, _meta's
    baggage wins over the header's."""
    seen, spans = _call(
        tmp_path,
        {"traceparent": HEADER_PARENT, "baggage": "session.id=from-header"},
        {"traceparent": "garbage", "baggage": "session.id=from-meta"},
    )
    server = find(spans, "tools/call get_weather")
    assert server.trace_id == HEADER_TRACE
    assert server.parent_span_id == "2222222222222222"
    assert seen["session"] == {"session.id": "from-meta"}


def test_hostile_headers_and_meta_over_http(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    cases: list[tuple[dict[str, str], Any]] = [
        ({"traceparent": "x" * 8000}, {"baggage": 1}),
        ({"traceparent": HEADER_PARENT[:-2] + "zz", "baggage": "session.id=" + "y" * 6000}, None),
        ({"baggage": ",".join(f"k{i}=v" for i in range(1000))}, {"traceparent": ["x"] * 50}),
        ({"tracestate": "a=b," * 1500, "traceparent": HEADER_PARENT}, {"tracestate": 7}),
    ]
    with http_server(tmp_path, spans_file) as url:
        client = RawHttpClient(url)
        client.handshake()
        for headers, meta in cases:
            params: dict[str, Any] = {"name": "get_weather", "arguments": {"city": "Rome"}}
            if meta is not None:
                params["_meta"] = meta
            answer = client.request("tools/call", params, headers)
            assert answer["result"]["isError"] is False
        seen = client.request(
            "tools/call",
            {
                "name": "get_weather",
                "arguments": {"city": "Rome"},
                "_meta": {"traceparent": META_PARENT},
            },
        )
        assert "result" in seen
    spans = [s for s in read_spans_jsonl(spans_file) if s.name == "tools/call get_weather"]
    assert len(spans) == len(cases) + 1
    assert spans[-1].trace_id == META_TRACE
    # The valid header traceparent with an oversized tracestate still parents the span.
    assert spans[3].trace_id == HEADER_TRACE
    assert "session.id" not in spans[1].attributes


def test_stateless_server_records_no_session_from_the_client(tmp_path: Path) -> None:
    """A stateless server issues no session id: an ``Mcp-Session-Id`` header the client makes
    up is not recorded as the session (mcp 2.x asks the connection, 1.x the transport)."""
    spans_file = tmp_path / "spans.jsonl"
    with http_server(tmp_path, spans_file, SERVER_STATELESS="1") as url:
        client = RawHttpClient(url)
        client.handshake()
        assert client.session_id is None  # the server issued none
        client.session_id = "made-up-by-the-client"
        answer = client.request(
            "tools/call", {"name": "get_weather", "arguments": {"city": "Rome"}}
        )
    assert "result" in answer
    server = find(read_spans_jsonl(spans_file), "tools/call get_weather")
    assert "mcp.session.id" not in server.attributes
    assert server.attributes["network.transport"] == "tcp"
