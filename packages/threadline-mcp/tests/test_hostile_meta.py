"""Hostile ``params._meta`` against a running, traced server subprocess.

Raw JSON-RPC lines go straight to the server's stdin, so nothing on the client side cleans them
up first. Whatever ``_meta`` holds, the server must answer every request as it would untraced
(a result, or the SDK's own -32602 when ``_meta`` is not an object), quickly, and stay alive.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import MAJOR, SERVER, server_env
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from threadline.testing import read_spans_jsonl

VALID_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MEGABYTE = "x" * 1_000_000


class RawServer:
    """``mcp_server.py stdio`` driven with hand-written JSON-RPC lines."""

    def __init__(self, tmp_path: Path) -> None:
        self.spans = tmp_path / "spans.jsonl"
        self.metrics = tmp_path / "metrics.json"
        self.log = tmp_path / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "stdio", str(self.spans)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            env=server_env(SERVER_DEBUG_LOG="1", METRICS_FILE=str(self.metrics)),
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to request {self.next_id}")
            message = json.loads(self.lines.get(timeout=remaining))
            if message.get("id") == self.next_id:
                return message  # type: ignore[no-any-return]

    def handshake(self) -> None:
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_weather(self, meta: Any) -> dict[str, Any]:
        return self.request(
            "tools/call", {"name": "get_weather", "arguments": {"city": "Oslo"}, "_meta": meta}
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RawServer]:
    raw = RawServer(tmp_path)
    raw.handshake()
    try:
        yield raw
    finally:
        raw.close()


text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
hexes = st.text(alphabet="0123456789abcdefABCDEF-", min_size=0, max_size=70)
baggage_member = st.builds(
    lambda k, v: f"{k}={v}",
    st.sampled_from(["session.id", "user.id", "gen_ai.conversation.id", "secret", "", " "]) | text,
    text,
)
trace_values = st.one_of(
    json_values,
    hexes,
    st.builds(lambda s: VALID_TRACEPARENT[: len(s)] + s, hexes),
    st.lists(baggage_member, max_size=8).map(",".join),
    st.sampled_from(
        [
            MEGABYTE,
            "session.id=" + MEGABYTE,
            ",".join(f"k{i}=v" for i in range(5000)),
            "session.id=a," * 20_000,
            [VALID_TRACEPARENT],
            [VALID_TRACEPARENT, VALID_TRACEPARENT],
            {"traceparent": VALID_TRACEPARENT},
            VALID_TRACEPARENT + "-" + "f" * 10_000,
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ]
    ),
)
trace_meta = st.fixed_dictionaries(
    {},
    optional={"traceparent": trace_values, "tracestate": trace_values, "baggage": trace_values},
)
many_entries = st.builds(
    lambda n, extra: {**{f"k{i}": i for i in range(n)}, **extra},
    st.integers(1000, 5000),
    trace_meta,
)
hostile_meta = st.one_of(trace_meta, many_entries, json_values)


def test_hostile_meta_fuzz(server: RawServer) -> None:
    slowest = [0.0]

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(meta=hostile_meta)
    @example(meta=float("inf"))
    @example(meta=1.5)
    def served(meta: Any) -> None:
        start = time.monotonic()
        answer = server.call_weather(meta)
        slowest[0] = max(slowest[0], time.monotonic() - start)
        # mcp 1.x validates a request from its JSON-mode dump, which writes an infinite float
        # as null: to the SDK, `_meta: Infinity` is no `_meta` at all.
        read_as_null = MAJOR == 1 and isinstance(meta, float) and math.isinf(meta)
        if meta is None or isinstance(meta, dict) or read_as_null:
            assert "result" in answer, answer
            assert answer["result"]["isError"] is False
        else:
            # Not an object: the SDK's own params validation answers, traced or not.
            assert answer.get("error", {}).get("code") == -32602, answer

    served()
    # Still alive and still tracing: a well-formed call joins the caller's trace.
    answer = server.call_weather({"traceparent": VALID_TRACEPARENT, "baggage": "session.id=s-1"})
    assert json.loads(answer["result"]["content"][0]["text"])["session"] == {"session.id": "s-1"}
    assert server.proc.poll() is None
    assert slowest[0] < 5, f"slowest answer took {slowest[0]:.2f}s"
    server_span, tool_span = [
        s for s in read_spans_jsonl(server.spans) if s.trace_id == VALID_TRACEPARENT.split("-")[1]
    ][-2:][::-1]
    assert server_span.name == "tools/call get_weather"
    assert server_span.parent_span_id == VALID_TRACEPARENT.split("-")[2]
    assert tool_span.parent_span_id == server_span.span_id
    # Hostile input is dropped with a debug log; nothing inside threadline failed.
    log = server.log.read_text()
    assert "dropping" in log
    assert "internal error" not in log


def test_hostile_values_dropped_not_attached(server: RawServer) -> None:
    answers = [
        server.call_weather({"baggage": 1, "traceparent": VALID_TRACEPARENT}),
        server.call_weather(
            {"traceparent": "garbage", "baggage": "session.id=ok,user.id=" + "y" * 1000}
        ),
        server.call_weather({"baggage": "secret.token=hunter2,session.id=s-2"}),
    ]
    seen = [json.loads(a["result"]["content"][0]["text"]) for a in answers]
    assert [s["session"] for s in seen] == [{}, {"session.id": "ok"}, {"session.id": "s-2"}]
    assert [s["baggage"] for s in seen] == [{}, {"session.id": "ok"}, {"session.id": "s-2"}]
    spans = [s for s in read_spans_jsonl(server.spans) if s.name == "tools/call get_weather"]
    # A valid traceparent next to bad baggage still parents the span; garbage starts a new trace.
    assert spans[0].trace_id == VALID_TRACEPARENT.split("-")[1]
    assert spans[0].parent_span_id == VALID_TRACEPARENT.split("-")[2]
    assert spans[1].parent_span_id is None
    assert "secret.token" not in json.dumps([s.attributes for s in spans])


def test_trace_keys_in_any_casing(server: RawServer) -> None:
    """Extraction reads the trace keys in any casing (as HTTP header names): a context in
    ``_meta`` is joined whatever the casing, with or without other trace keys beside it."""
    answers = [
        server.call_weather({"Traceparent": VALID_TRACEPARENT}),
        server.call_weather({"Traceparent": VALID_TRACEPARENT, "baggage": "session.id=s-1"}),
        server.call_weather({"progressToken": 1, "BAGGAGE": "session.id=s-2"}),
    ]
    seen = [json.loads(a["result"]["content"][0]["text"]) for a in answers]
    assert [s["session"] for s in seen] == [{}, {"session.id": "s-1"}, {"session.id": "s-2"}]
    spans = [s for s in read_spans_jsonl(server.spans) if s.name == "tools/call get_weather"]
    _, trace_id, span_id, _ = VALID_TRACEPARENT.split("-")
    assert [(s.trace_id, s.parent_span_id) for s in spans[:2]] == [(trace_id, span_id)] * 2
    assert spans[2].attributes["session.id"] == "s-2"


def test_hostile_request_id_and_version(tmp_path: Path) -> None:
    raw = RawServer(tmp_path)
    try:
        answer = raw.request(
            "initialize",
            {
                "protocolVersion": "9" * 100_000,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        negotiated = answer["result"]["protocolVersion"]
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        long_id = "i" * 100_000
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": long_id,
                "method": "tools/call",
                "params": {"name": "get_weather", "arguments": {"city": "Oslo"}},
            }
        )
        answer = json.loads(raw.lines.get(timeout=10))
        assert answer["id"] == long_id
        assert "result" in answer
    finally:
        raw.close()
    spans = read_spans_jsonl(raw.spans)
    call = next(s for s in spans if s.name == "tools/call get_weather")
    assert "jsonrpc.request.id" not in call.attributes
    assert all(len(str(v)) < 1000 for s in spans for v in s.attributes.values())
    # The version the server answered with, not the one the client asked for: a client must
    # not choose the value of a metric attribute.
    assert call.attributes["mcp.protocol.version"] == negotiated
    points = json.loads(raw.metrics.read_text())
    versions = {p["attributes"].get("mcp.protocol.version") for p in points}
    assert versions == {negotiated}, versions


@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x rejects unknown methods before any hook runs")
def test_unknown_method_names_stay_bounded(server: RawServer) -> None:
    """A method name comes from the peer, and the server's middleware sees it before the SDK
    rejects it: the span keeps it truncated, the span name and the metrics get ``_OTHER``."""
    for i in range(3):
        answer = server.request(f"{i}" * 100_000, {})
        assert answer["error"]["code"] == -32601
    server.close()
    spans = [s for s in read_spans_jsonl(server.spans) if s.name == "_OTHER"]
    assert [s.attributes["mcp.method.name"] for s in spans] == [f"{i}" * 128 for i in range(3)]
    for span in spans:
        assert span.kind == "SERVER"
        assert span.attributes["rpc.response.status_code"] == "-32601"
        assert span.status_code != "ERROR"  # the peer's mistake, not the server's
    points = json.loads(server.metrics.read_text())
    unknown = [
        p
        for p in points
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"]["mcp.method.name"] not in ("initialize", "notifications/initialized")
    ]
    assert [(p["attributes"], p["count"]) for p in unknown] == [
        (
            {
                "mcp.method.name": "_OTHER",
                "mcp.protocol.version": "2025-11-25",
                "network.transport": "pipe",
                "rpc.response.status_code": "-32601",
            },
            3,
        )
    ]


def test_names_the_server_does_not_serve_stay_off_the_metric(server: RawServer) -> None:
    """Tool and prompt names come from the peer: a failed call keeps its name on the operation
    metric only when the server listed it or served it before, so a client asking for names
    that do not exist cannot create series at will. The spans keep every name asked for."""
    server.request("tools/call", {"name": "broken", "arguments": {"city": "Oslo"}})
    server.request("tools/list", {})
    server.request("tools/call", {"name": "broken", "arguments": {"city": "Oslo"}})
    for i in range(3):
        answer = server.request("tools/call", {"name": f"made-up-{i}", "arguments": {}})
        assert answer["result"]["isError"] is True  # how the SDK answers an unknown tool
        server.request("prompts/get", {"name": f"made-up-{i}"})
    server.close()
    points = json.loads(server.metrics.read_text())
    failed = sorted(
        (
            p["attributes"]["mcp.method.name"],
            p["attributes"].get("gen_ai.tool.name", "-"),
            p["count"],
        )
        for p in points
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"]["mcp.method.name"] in ("tools/call", "prompts/get")
    )
    assert failed == [
        ("prompts/get", "-", 3),
        ("tools/call", "-", 4),  # broken before it was listed, and the three made up
        ("tools/call", "broken", 1),
    ]
    assert all("gen_ai.prompt.name" not in p["attributes"] for p in points)
    names = [s.name for s in read_spans_jsonl(server.spans)]
    assert [f"tools/call made-up-{i}" in names for i in range(3)] == [True] * 3
