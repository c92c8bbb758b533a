"""One trace across two processes: this test process is the MCP client (instrumented with
``threadline.mcp.instrument()``), ``mcp_server.py`` runs in a subprocess and writes its spans to a
JSON-lines file. The two halves are merged and checked as one tree.

In-process clients copy contextvars into the server and would pass without any propagation, so
every server here is a real subprocess, over stdio, or streamable HTTP, the legacy SSE transport
or (mcp 1.x) a websocket on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import MAJOR, connect, http_server, is_error, stdio_params, tool_text
from opentelemetry import baggage
from opentelemetry import context as otel_context

import threadline
import threadline.mcp
from threadline.testing import SpanRecord, find, read_spans_jsonl, render_tree

pytestmark = pytest.mark.usefixtures("instrumented")

# (transport, client mode, server flavour). mcp 1.x has one client mode and one server kind.
if MAJOR >= 2:
    CASES = [
        ("stdio", "legacy", "mcpserver"),
        ("stdio", "auto", "mcpserver"),
        ("http", "legacy", "mcpserver"),
        ("http", "auto", "mcpserver"),
        ("stdio", "legacy", "lowlevel"),
        ("http", "auto", "lowlevel"),
        ("stdio", "legacy", "instrumented"),
        ("http", "legacy", "instrumented"),
        ("sse", "legacy", "mcpserver"),
        ("sse", "auto", "instrumented"),
    ]
else:
    CASES = [
        ("stdio", "legacy", "fastmcp"),
        ("http", "legacy", "fastmcp"),
        ("sse", "legacy", "fastmcp"),
    ]

# How mcp_server.py builds each server flavour ("instrumented": instrument() alone, no middleware).
FLAVOUR_ENV = {
    "lowlevel": {"SERVER_LOWLEVEL": "1"},
    "instrumented": {"SERVER_INSTRUMENT_ONLY": "1"},
}
# mcp 1.x's websocket transport (deprecated there; mcp 2.x has none).
WEBSOCKET = pytest.param(
    "websocket",
    marks=[
        pytest.mark.skipif(MAJOR >= 2, reason="mcp 2.x has no websocket transport"),
        pytest.mark.filterwarnings("ignore:The WebSocket:DeprecationWarning"),
    ],
)
SESSION = {"session.id": "sess-42", "user.id": "u-1", "gen_ai.conversation.id": "conv-7"}


async def _agent_turn(target: Any, mode: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """An agent turn inside a threadline session, with a third-party baggage entry that must
    never leave this process."""
    results = []
    async with connect(target, mode=mode) as session:
        with threadline.session("sess-42", user_id="u-1", conversation_id="conv-7"):
            token = otel_context.attach(baggage.set_baggage("secret.token", "hunter2"))
            try:
                with threadline.invoke_agent("weather_agent"):
                    for name, arguments in calls:
                        results.append(await session.call_tool(name, arguments))
            finally:
                otel_context.detach(token)
    return results


def _run(
    tmp_path: Path, transport: str, mode: str, flavour: str, calls: list[tuple[str, dict[str, Any]]]
) -> tuple[list[Any], list[SpanRecord]]:
    spans_file = tmp_path / "server-spans.jsonl"
    env = FLAVOUR_ENV.get(flavour, {})
    if transport == "stdio":
        results = anyio.run(_agent_turn, stdio_params(spans_file, **env), mode, calls)
    else:
        with http_server(tmp_path, spans_file, transport=transport, **env) as url:
            results = anyio.run(_agent_turn, url, mode, calls)
    return results, read_spans_jsonl(spans_file)


def _agent_trace(client: list[SpanRecord], server: list[SpanRecord]) -> list[SpanRecord]:
    agent = find(client, "invoke_agent weather_agent")
    return [s for s in [*client, *server] if s.trace_id == agent.trace_id]


def _assert_one_agent_trace(client_spans: Any, server_spans: Any) -> tuple[Any, Any]:
    """The agent's tool call as one trace across the two processes, the session on every span;
    returns the client's and the server's ``tools/call`` spans."""
    merged = _agent_trace(client_spans, server_spans)
    # The client lists tools after a call to validate structured output: a second request.
    assert (
        render_tree(merged, attributes=("session.id",))
        == """\
invoke_agent weather_agent [INTERNAL] session.id=sess-42
  tools/call get_weather [CLIENT] session.id=sess-42
    tools/call get_weather [SERVER] session.id=sess-42
      lookup_forecast [INTERNAL] session.id=sess-42
  tools/list [CLIENT] session.id=sess-42
    tools/list [SERVER] session.id=sess-42"""
    )
    client_call = find(client_spans, "tools/call get_weather")
    server_call = find(server_spans, "tools/call get_weather")
    assert server_call.trace_id == client_call.trace_id
    assert server_call.parent_span_id == client_call.span_id
    assert find(server_spans, "lookup_forecast").parent_span_id == server_call.span_id
    assert server_call.resource["service.name"] == "mcp-server"
    return client_call, server_call


@pytest.mark.parametrize(("transport", "mode", "flavour"), CASES)
def test_one_trace_across_processes(
    telemetry: Any, tmp_path: Path, transport: str, mode: str, flavour: str
) -> None:
    (result,), server_spans = _run(
        tmp_path, transport, mode, flavour, [("get_weather", {"city": "Paris"})]
    )
    client_spans = telemetry.spans()
    client_call, server_call = _assert_one_agent_trace(client_spans, server_spans)

    modern = MAJOR >= 2 and mode == "auto"
    expected = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.operation.name": "execute_tool",
        "jsonrpc.request.id": client_call.attributes["jsonrpc.request.id"],
        "network.transport": "pipe" if transport == "stdio" else "tcp",
        "mcp.protocol.version": "2026-07-28" if modern else "2025-11-25",
        **SESSION,
    }
    assert {k: server_call.attributes.get(k) for k in expected} == expected
    assert client_call.kind == "CLIENT"
    assert client_call.attributes["mcp.method.name"] == "tools/call"
    assert client_call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert client_call.attributes["mcp.protocol.version"] == expected["mcp.protocol.version"]
    # The 2.x Client knows its transport (given the SSE transport itself, from its streams as a
    # 1.x session does); a 1.x session, the transport its streams came from.
    assert client_call.attributes["network.transport"] == expected["network.transport"]
    if transport != "stdio":
        port = int((tmp_path / "port").read_text())  # what the server listened on
        assert client_call.attributes["network.protocol.name"] == "http"
        assert client_call.attributes["server.address"] == "127.0.0.1"
        assert client_call.attributes["server.port"] == port
    else:
        assert "server.address" not in client_call.attributes
    # An MCP session id exists only in the handshake era, on streamable HTTP (Mcp-Session-Id)
    # and SSE (the session_id of the endpoint the server announces).
    has_session = transport != "stdio" and not modern
    assert ("mcp.session.id" in server_call.attributes) is has_session
    # The client side of the same session, initialize included.
    session_ids = [
        (s.name, s.attributes.get("mcp.session.id")) for s in client_spans if s.kind == "CLIENT"
    ]
    expected_id = server_call.attributes.get("mcp.session.id")
    assert {session_id for _, session_id in session_ids} == {expected_id}, session_ids
    if transport == "sse" and not modern:  # the id the SDK's SSE server makes (a UUID's hex)
        assert re.fullmatch("[0-9a-f]{32}", expected_id), expected_id
    if transport != "stdio":  # the HTTP request (SSE: the POST) the message came in
        assert server_call.attributes["network.protocol.name"] == "http"
        assert server_call.attributes["client.address"] == "127.0.0.1"
        assert isinstance(server_call.attributes["client.port"], int)

    # The handshake (handshake era only) is traced on both sides too.
    if not modern:
        client_init = find(client_spans, "initialize")
        server_init = find(server_spans, "initialize")
        assert server_init.parent_span_id == client_init.span_id
        assert server_init.attributes["mcp.protocol.version"] == "2025-11-25"
        if transport != "stdio":  # the session it opens (SSE: its POST names it)
            assert server_init.attributes.get("mcp.session.id") == expected_id

    # Exactly one SERVER span per request (the SDK's built-in middleware was replaced) and no
    # SDK "MCP send" client spans.
    assert [s.scope for s in server_spans if s.kind == "SERVER"] == ["threadline"] * len(
        [s for s in server_spans if s.kind == "SERVER"]
    )
    assert not [s for s in client_spans if s.name.startswith("MCP send")]

    # What the tool saw: the session baggage, readable inside the tool; the third-party key
    # never went over the wire.
    seen = json.loads(tool_text(result))
    assert seen["session"] == SESSION
    assert seen["baggage"] == SESSION
    assert "secret" not in (seen["wire_baggage"] or "")
    assert "hunter2" not in (seen["wire_baggage"] or "")


@pytest.mark.skipif(MAJOR >= 2, reason="mcp 2.x has no websocket transport")
@pytest.mark.filterwarnings("ignore:The WebSocket:DeprecationWarning")
def test_one_trace_over_websocket(telemetry: Any, tmp_path: Path) -> None:
    """mcp 1.x's websocket transport: a Starlette ``WebSocketRoute`` running
    ``websocket_server`` under uvicorn, and ``websocket_client``. Its messages carry no HTTP
    request: both ends know the connection from the wrapped transports alone."""
    (result,), server_spans = _run(
        tmp_path, "websocket", "legacy", "fastmcp", [("get_weather", {"city": "Paris"})]
    )
    client_spans = telemetry.spans()
    client_call, server_call = _assert_one_agent_trace(client_spans, server_spans)

    port = int((tmp_path / "port").read_text())  # what the server listened on
    expected = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.operation.name": "execute_tool",
        "jsonrpc.request.id": client_call.attributes["jsonrpc.request.id"],
        "mcp.protocol.version": "2025-11-25",
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
        "client.address": "127.0.0.1",
        **SESSION,
    }
    assert {k: server_call.attributes.get(k) for k in expected} == expected
    assert isinstance(server_call.attributes["client.port"], int)
    assert server_call.attributes["client.port"] != port  # the client's end of the socket
    assert "server.address" not in server_call.attributes
    # Every message of the connection, the handshake included, on both sides: one client
    # end (the server's address) and one server end (the client's), no MCP session id.
    connection = {
        "mcp.protocol.version": "2025-11-25",
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
        "server.address": "127.0.0.1",
        "server.port": port,
        "mcp.session.id": None,
    }
    client_ends = [s for s in client_spans if s.kind == "CLIENT"]
    assert {s.name for s in client_ends} == {"initialize", "tools/call get_weather", "tools/list"}
    for span in client_ends:
        assert {k: span.attributes.get(k) for k in connection} == connection, span.name
    server_ends = [s for s in server_spans if s.kind == "SERVER"]
    assert {s.name for s in server_ends} >= {"initialize", "tools/call get_weather", "tools/list"}
    for span in server_ends:
        assert {
            k: span.attributes.get(k)
            for k in ("network.transport", "network.protocol.name", "client.address", "client.port")
        } == {
            "network.transport": "tcp",
            "network.protocol.name": "websocket",
            "client.address": "127.0.0.1",
            "client.port": server_call.attributes["client.port"],
        }, span.name
        assert "mcp.session.id" not in span.attributes, span.name
    assert [s.scope for s in server_ends] == ["threadline"] * len(server_ends)
    assert (
        find(server_spans, "initialize").parent_span_id == find(client_spans, "initialize").span_id
    )

    # The session baggage reached the tool; the third-party key never went over the wire.
    seen = json.loads(tool_text(result))
    assert seen["session"] == SESSION
    assert seen["baggage"] == SESSION
    assert "hunter2" not in (seen["wire_baggage"] or "")


@pytest.mark.parametrize("transport", ["sse", "http"])
def test_session_group_knows_its_server(telemetry: Any, tmp_path: Path, transport: str) -> None:
    """``ClientSessionGroup`` opens its SSE and streamable HTTP transports by the names it
    imported: its sessions' CLIENT spans know their server all the same."""
    from mcp.client.session_group import (
        ClientSessionGroup,
        SseServerParameters,
        StreamableHttpParameters,
    )

    spans_file = tmp_path / "spans.jsonl"

    async def turn(url: str) -> None:
        kind: Any = SseServerParameters if transport == "sse" else StreamableHttpParameters
        params = kind(url=url)
        async with ClientSessionGroup() as group:
            session = await group.connect_to_server(params)
            with threadline.invoke_agent("weather_agent"):
                await session.call_tool("get_weather", {"city": "Paris"})

    with http_server(tmp_path, spans_file, transport=transport) as url:
        anyio.run(turn, url)
    port = int((tmp_path / "port").read_text())
    client_call = find(telemetry.spans(), "tools/call get_weather")
    server_call = find(read_spans_jsonl(spans_file), "tools/call get_weather")
    assert client_call.kind == "CLIENT"
    assert server_call.parent_span_id == client_call.span_id
    session_id = server_call.attributes.get("mcp.session.id")
    assert session_id is not None
    assert client_call.attributes.get("mcp.session.id") == session_id
    network = ("network.transport", "network.protocol.name", "server.address", "server.port")
    assert {k: client_call.attributes.get(k) for k in network} == {
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "server.address": "127.0.0.1",
        "server.port": port,
    }


@pytest.mark.parametrize(("transport", "mode", "flavour"), CASES[:1] + CASES[-1:])
def test_tool_error(
    telemetry: Any, tmp_path: Path, transport: str, mode: str, flavour: str
) -> None:
    (result,), server_spans = _run(
        tmp_path, transport, mode, flavour, [("broken", {"city": "Paris"})]
    )
    assert is_error(result)
    merged = _agent_trace(telemetry.spans(), server_spans)
    tree = render_tree([s for s in merged if s.name != "tools/list"])
    assert (
        tree
        == """\
invoke_agent weather_agent [INTERNAL]
  tools/call broken [CLIENT] !ERROR error.type=tool_error
    tools/call broken [SERVER] !ERROR error.type=tool_error"""
    )


def _server_metrics_of_a_turn(
    tmp_path: Path,
    mode: str,
    transport: str = "stdio",
    server_url: list[str] | None = None,
    **server_env: str,
) -> list[dict[str, Any]]:
    """The metric points a server records over one agent turn with one tool call (over HTTP,
    the server's URL is appended to ``server_url``)."""
    metrics_file = tmp_path / "metrics.json"
    spans_file = tmp_path / "spans.jsonl"
    calls = [("get_weather", {"city": "Paris"})]
    if transport == "stdio":
        params = stdio_params(spans_file, METRICS_FILE=str(metrics_file))
        anyio.run(_agent_turn, params, mode, calls)
    else:
        with http_server(
            tmp_path, spans_file, transport=transport, METRICS_FILE=str(metrics_file), **server_env
        ) as url:
            if server_url is not None:
                server_url.append(url)
            anyio.run(_agent_turn, url, mode, calls)
    for _ in range(200):  # the server writes its metrics as it exits
        if metrics_file.exists():
            break
        anyio.run(anyio.sleep, 0.05)
    return json.loads(metrics_file.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["stdio", "http", "sse", WEBSOCKET])
def test_server_metrics(telemetry: Any, tmp_path: Path, transport: str) -> None:
    """Operation and session duration on the server; operation duration on the client."""
    server_url: list[str] = []
    points = _server_metrics_of_a_turn(tmp_path, "legacy", transport, server_url)
    http = transport != "stdio"  # streamable HTTP, SSE or a websocket
    protocol = "websocket" if transport == "websocket" else "http"
    calls = [
        p
        for p in points
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"].get("gen_ai.tool.name") == "get_weather"
    ]
    assert len(calls) == 1
    assert calls[0]["attributes"]["mcp.method.name"] == "tools/call"
    assert calls[0]["attributes"]["network.transport"] == ("tcp" if http else "pipe")
    assert "error.type" not in calls[0]["attributes"]
    sessions = [p for p in points if p["name"] == "mcp.server.session.duration"]
    assert [p["count"] for p in sessions] == [1]
    over_http = {"network.protocol.name": protocol} if http else {}
    assert sessions[0]["attributes"] == {"mcp.protocol.version": "2025-11-25", **over_http}

    client = [
        p
        for p in telemetry.metric_points("mcp.client.operation.duration")
        if p["attributes"].get("gen_ai.tool.name") == "get_weather"
    ]
    assert [p["count"] for p in client] == [1]
    (client_session,) = telemetry.metric_points("mcp.client.session.duration")
    assert client_session["count"] == 1
    assert client[0]["attributes"]["network.transport"] == ("tcp" if http else "pipe")
    if http:
        port = int(server_url[0].rsplit(":", 1)[1].split("/")[0])
        assert client[0]["attributes"]["server.address"] == "127.0.0.1"
        assert client[0]["attributes"]["server.port"] == port
        assert client[0]["attributes"]["network.protocol.name"] == protocol
        over_http = {**over_http, "server.address": "127.0.0.1", "server.port": port}
    assert client_session["attributes"] == {"mcp.protocol.version": "2025-11-25", **over_http}


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_client_spans_carry_the_negotiated_version(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """Every CLIENT span and client metric point has the version the handshake negotiated, the
    ``initialize`` request's own included: it takes it from the server's answer (the session
    knows it only afterwards, and an mcp 1.x session not at all)."""
    _run(tmp_path, transport, "legacy", "default", [("get_weather", {"city": "Paris"})])
    spans = [s for s in telemetry.spans() if s.kind == "CLIENT"]
    assert {"initialize", "tools/call get_weather"} <= {s.name for s in spans}
    assert {s.name: s.attributes.get("mcp.protocol.version") for s in spans} == {
        s.name: "2025-11-25" for s in spans
    }
    operations = telemetry.metric_points("mcp.client.operation.duration")
    assert {
        p["attributes"]["mcp.method.name"]: p["attributes"].get("mcp.protocol.version")
        for p in operations
    } == {p["attributes"]["mcp.method.name"]: "2025-11-25" for p in operations}
    assert "initialize" in {p["attributes"]["mcp.method.name"] for p in operations}
    (session,) = telemetry.metric_points("mcp.client.session.duration")
    assert session["attributes"]["mcp.protocol.version"] == "2025-11-25"


def test_stateless_http_server_records_no_session(telemetry: Any, tmp_path: Path) -> None:
    """A stateless HTTP server handles each request in a session of its own: no sessions."""
    points = _server_metrics_of_a_turn(tmp_path, "legacy", "http", SERVER_STATELESS="1")
    assert any(
        p["name"] == "mcp.server.operation.duration"
        and p["attributes"].get("gen_ai.tool.name") == "get_weather"
        for p in points
    )
    assert [p for p in points if p["name"] == "mcp.server.session.duration"] == []


@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x does not speak 2026-07-28")
def test_no_session_duration_without_sessions(telemetry: Any, tmp_path: Path) -> None:
    """2026-07-28 connections have no session: neither side records a session duration."""
    points = _server_metrics_of_a_turn(tmp_path, "auto")
    operations = [p for p in points if p["name"] == "mcp.server.operation.duration"]
    assert {p["attributes"]["mcp.protocol.version"] for p in operations} == {"2026-07-28"}
    assert [p for p in points if p["name"] == "mcp.server.session.duration"] == []
    recorded = telemetry.metrics()
    assert "mcp.client.operation.duration" in recorded
    assert "mcp.client.session.duration" not in recorded


def test_prompt_arguments_are_its_variables_with_capture_on(
    telemetry: Any, tmp_path: Path, capture_content: Any
) -> None:
    """A ``prompts/get``'s arguments are the template's variables on both spans
    (``gen_ai.prompt.variable.<name>``), recorded as content: only with capture on."""
    spans_file = tmp_path / "spans.jsonl"

    async def ask(server: Any) -> None:
        async with connect(server) as session:
            with threadline.invoke_agent("weather_agent"):
                await session.client.get_prompt("city_brief", {"city": "Oslo", "style": "long"})

    # the server process captures content as its environment says: off, then on
    anyio.run(ask, stdio_params(spans_file))
    capture = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
    anyio.run(ask, stdio_params(spans_file, **capture))

    def prompt_attributes(spans: list[Any]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in s.attributes.items() if k.startswith("gen_ai.prompt.")}
            for s in spans
            if s.name == "prompts/get city_brief"
        ]

    variables = {"gen_ai.prompt.variable.city": "Oslo", "gen_ai.prompt.variable.style": "long"}
    named = {"gen_ai.prompt.name": "city_brief"}
    assert prompt_attributes(telemetry.spans()) == [{**named, **variables}] * 2
    assert prompt_attributes(read_spans_jsonl(spans_file)) == [named, {**named, **variables}]


def test_json_rpc_error(telemetry: Any, tmp_path: Path) -> None:
    """A JSON-RPC error answer: both spans fail with the code as ``error.type``; the SERVER
    span's status tells the handler's exception (mcp 2.x) or the response's message (mcp 1.x,
    whose hook sees only the error response)."""
    spans_file = tmp_path / "spans.jsonl"

    async def ask() -> None:
        async with connect(stdio_params(spans_file)) as session:
            with threadline.invoke_agent("weather_agent"):
                with pytest.raises(Exception, match="Unknown prompt") as raised:
                    await session.client.get_prompt("forecast_brief", {})
                assert raised.value.error.code == 0  # type: ignore[attr-defined]

    anyio.run(ask)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    assert render_tree(merged, attributes=("rpc.response.status_code",)) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  prompts/get forecast_brief [CLIENT] rpc.response.status_code=0 !ERROR error.type=0\n"
        "    prompts/get forecast_brief [SERVER] rpc.response.status_code=0 !ERROR error.type=0"
    )
    client = find(telemetry.spans(), "prompts/get forecast_brief")
    assert client.attributes["gen_ai.prompt.name"] == "forecast_brief"
    assert client.status_description == "Unknown prompt: forecast_brief"
    (server,) = [s for s in merged if s.kind == "SERVER" and s.name == client.name]
    raised = "ValueError: " if MAJOR >= 2 else ""
    assert server.status_description == f"{raised}Unknown prompt: forecast_brief"


async def _failing_turn(target: Any, mode: str, requests: list[tuple[str, str]]) -> None:
    """Requests whose handlers fail: ``("prompt", name)``, ``("resource", uri)`` or
    ``("tool", name)``; a JSON-RPC error answer is caught, a tool's ``isError`` result
    returned."""
    async with connect(target, mode=mode) as session:
        with threadline.invoke_agent("weather_agent"):
            for kind, name in requests:
                if kind == "tool":
                    assert is_error(await session.call_tool(name, {"city": "Paris"}))
                    continue
                if kind == "prompt":
                    request = session.client.get_prompt(name, {})
                else:
                    request = session.client.read_resource(name)
                with pytest.raises(Exception) as raised:  # noqa: PT011 - MCPError or McpError
                    await request
                assert isinstance(raised.value.error.code, int)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("transport", "mode", "flavour"), CASES)
def test_handler_exception_carries_the_code_the_sdk_answered_with(
    telemetry: Any, tmp_path: Path, transport: str, mode: str, flavour: str
) -> None:
    """A request handler raises an exception that is no MCP error: the SDK answers with a
    JSON-RPC error of its own choosing (mcp 2.x: 0 on a handshake-era connection, -32603 on a
    2026-07-28 one; mcp 1.x: 0). The SERVER span carries the code the CLIENT span received,
    as its status code and its ``error.type``, and the exception in its status description.
    A tool function that raises is answered with an isError result instead: no status code
    on either side."""
    spans_file = tmp_path / "spans.jsonl"
    lowlevel = flavour == "lowlevel"
    requests = [("prompt", "crash_prompt"), ("resource", "weather://crash"), ("tool", "broken")]
    env = FLAVOUR_ENV.get(flavour, {})

    async def turn(target: Any) -> None:
        await _failing_turn(target, mode, requests)
        if lowlevel:  # a low-level tools/call handler that raises gets a JSON-RPC error
            async with connect(target, mode=mode) as session:
                with threadline.invoke_agent("weather_agent"):
                    with pytest.raises(Exception) as raised:  # noqa: PT011
                        await session.call_tool("crash", {})
                    assert isinstance(raised.value.error.code, int)  # type: ignore[attr-defined]

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file, **env))
    else:
        with http_server(tmp_path, spans_file, **env) as url:
            anyio.run(turn, url)

    code = "-32603" if MAJOR >= 2 and mode == "auto" else "0"
    resource_code = "-32603" if MAJOR >= 2 and not lowlevel else code

    def pair(name: str, status: str | None, error: str) -> str:
        attr = f" rpc.response.status_code={status}" if status is not None else ""
        return (
            f"  {name} [CLIENT]{attr} !ERROR error.type={error}\n"
            f"    {name} [SERVER]{attr} !ERROR error.type={error}"
        )

    expected = [
        pair("prompts/get crash_prompt", code, code),
        pair("resources/read", resource_code, resource_code),
        pair("tools/call broken", None, "tool_error"),
    ]
    merged = [
        s for s in [*telemetry.spans(), *read_spans_jsonl(spans_file)] if s.name != "tools/list"
    ]
    trees = render_tree(merged, attributes=("rpc.response.status_code",)).split("\n---\n")
    turns = [tree for tree in trees if tree.startswith("invoke_agent")]
    assert turns[0] == "\n".join(["invoke_agent weather_agent [INTERNAL]", *expected])
    if lowlevel:
        assert turns[1] == "\n".join(
            [
                "invoke_agent weather_agent [INTERNAL]",
                pair("tools/call crash", code, code),
            ]
        )
    assert len(turns) == (2 if lowlevel else 1)
    # What the handler raised is in the SERVER span's status (the 1.x hook sees the error
    # response's message only; MCPServer re-raises a prompt's failure as ValueError, a
    # resource's as MCPError, whose message is the response's).
    if MAJOR < 2:
        prompt = "Error rendering prompt crash_prompt: prompt store down"
        resource = "Error reading resource weather://crash: resource store down"
    elif lowlevel:
        prompt, resource = "RuntimeError: prompt store down", "RuntimeError: resource store down"
    else:
        prompt = "ValueError: Error rendering prompt crash_prompt"
        resource = "Error reading resource weather://crash"
    served = {s.name: s.status_description for s in merged if s.kind == "SERVER"}
    assert served["prompts/get crash_prompt"] == prompt
    assert served["resources/read"] == resource
    if lowlevel:
        assert served["tools/call crash"] == "RuntimeError: tool store down"


@pytest.mark.parametrize("mode", ["legacy", "auto"] if MAJOR >= 2 else ["legacy"])
def test_handler_exception_metric(telemetry: Any, tmp_path: Path, mode: str) -> None:
    """The server's operation metric carries the code the SDK answered with, as its status
    code and its error.type, as the span does."""
    metrics_file = tmp_path / "metrics.json"
    spans_file = tmp_path / "spans.jsonl"
    params = stdio_params(spans_file, METRICS_FILE=str(metrics_file))
    anyio.run(_failing_turn, params, mode, [("prompt", "crash_prompt"), ("tool", "broken")])
    for _ in range(200):  # the server writes its metrics as it exits
        if metrics_file.exists():
            break
        anyio.run(anyio.sleep, 0.05)
    points = json.loads(metrics_file.read_text())
    outcomes = sorted(
        (
            p["attributes"]["mcp.method.name"],
            p["attributes"].get("rpc.response.status_code"),
            p["attributes"].get("error.type"),
        )
        for p in points
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"]["mcp.method.name"] in ("prompts/get", "tools/call")
    )
    code = "-32603" if mode == "auto" else "0"
    assert outcomes == [("prompts/get", code, code), ("tools/call", None, "tool_error")]
    served = [s for s in read_spans_jsonl(spans_file) if s.name == "prompts/get crash_prompt"]
    assert [s.attributes.get("error.type") for s in served] == [code]


@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x answers a failing client callback differently")
def test_failing_client_callback_carries_the_code_the_client_answered_with(
    telemetry: Any, tmp_path: Path
) -> None:
    """A server's request to the client (sampling) whose callback raises: the client's SDK
    answers with code 0, which the client's SERVER span carries (its status description
    tells the exception), and the server's CLIENT span received."""
    spans_file = tmp_path / "spans.jsonl"

    async def sampling_callback(context: Any, params: Any) -> Any:
        raise RuntimeError("model down")

    async def turn() -> None:
        async with connect(stdio_params(spans_file), sampling_callback=sampling_callback) as s:
            with threadline.invoke_agent("weather_agent"):
                with pytest.raises(Exception, match="model down"):
                    await s.call_tool("ask_model", {"question": "6*7?"})

    anyio.run(turn)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    tree = render_tree(
        [s for s in merged if s.name != "tools/list"], attributes=("rpc.response.status_code",)
    )
    assert tree == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call ask_model [CLIENT] rpc.response.status_code=0 !ERROR error.type=0\n"
        "    tools/call ask_model [SERVER] rpc.response.status_code=0 !ERROR error.type=0\n"
        "      sampling/createMessage [CLIENT] rpc.response.status_code=0 !ERROR error.type=0\n"
        "        sampling/createMessage [SERVER] rpc.response.status_code=0 !ERROR error.type=0"
    )
    (callback,) = [s for s in telemetry.spans() if s.name == "sampling/createMessage"]
    assert callback.kind == "SERVER"
    assert callback.status_description == "RuntimeError: model down"


@pytest.mark.parametrize("merge", [False, True])
def test_under_a_framework_tool_span(telemetry: Any, tmp_path: Path, merge: bool) -> None:
    """A framework already traces the tool (an ``execute_tool`` span): the CLIENT span goes
    under it, or with ``merge_tool_spans=True`` the call is recorded on that span itself."""
    threadline.mcp.uninstrument()  # options apply when instrumenting
    threadline.mcp.instrument(merge_tool_spans=merge)
    spans_file = tmp_path / "spans.jsonl"

    async def turn() -> None:
        async with connect(stdio_params(spans_file)) as session:
            with threadline.invoke_agent("weather_agent"):
                with threadline.execute_tool("get_weather"):
                    await session.call_tool("get_weather", {"city": "Paris"})
                with threadline.execute_tool("broken"):  # answers with isError
                    await session.call_tool("broken", {"city": "Paris"})

    try:
        anyio.run(turn)
    finally:
        threadline.mcp.uninstrument()
        threadline.mcp.instrument()
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    tree = render_tree(
        [s for s in merged if s.name != "tools/list" and "broken" not in s.name],
        attributes=("mcp.method.name",),
    )
    tools = {s.name: s for s in merged if s.name.startswith("execute_tool")}
    if merge:
        # the call's outcome and request id are on the tool span it was recorded on
        assert [
            (s.status_code, s.attributes.get("error.type"), "jsonrpc.request.id" in s.attributes)
            for s in (tools["execute_tool get_weather"], tools["execute_tool broken"])
        ] == [("UNSET", None, True), ("ERROR", "tool_error", True)]
        # ...with what the CLIENT span would have said about the request and its server
        weather = tools["execute_tool get_weather"].attributes
        assert weather["gen_ai.operation.name"] == "execute_tool"
        assert weather["mcp.protocol.version"] == "2025-11-25"
        if MAJOR >= 2:  # mcp 1.x clients do not keep how they reach the server
            assert weather["network.transport"] == "pipe"
        assert (
            tree
            == """\
invoke_agent weather_agent [INTERNAL]
  execute_tool get_weather [INTERNAL] mcp.method.name=tools/call
    tools/call get_weather [SERVER] mcp.method.name=tools/call
      lookup_forecast [INTERNAL]"""
        )
    else:
        assert (
            tree
            == """\
invoke_agent weather_agent [INTERNAL]
  execute_tool get_weather [INTERNAL]
    tools/call get_weather [CLIENT] mcp.method.name=tools/call
      tools/call get_weather [SERVER] mcp.method.name=tools/call
        lookup_forecast [INTERNAL]"""
        )
        assert all(s.status_code == "UNSET" for s in tools.values())  # the CLIENT spans fail
    # Merged or not, each call has its client operation duration point.
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p["attributes"] for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert sorted((a["gen_ai.tool.name"], a.get("error.type")) for a in calls) == [
        ("broken", "tool_error"),
        ("get_weather", None),
    ]
    assert [p["count"] for p in points if p["attributes"] in calls] == [1, 1]
    assert {a.get("mcp.protocol.version") for a in calls} == {"2025-11-25"}


@pytest.mark.parametrize("transport", ["stdio", "http", "sse", WEBSOCKET])
def test_server_to_client_request(telemetry: Any, tmp_path: Path, transport: str) -> None:
    """Sampling: the server asks the client's model from inside a tool. The request back to
    the client continues the same trace, and the client's callback runs in it with the
    session baggage."""
    from mcp import types

    spans_file = tmp_path / "spans.jsonl"
    seen: dict[str, Any] = {}

    async def sampling_callback(context: Any, params: Any) -> Any:
        with threadline.step("answer_locally"):
            seen["session"] = threadline.current_session()
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="42"), model="stub"
        )

    async def turn(target: Any) -> Any:
        async with connect(target, sampling_callback=sampling_callback) as session:
            with threadline.session("sess-42"), threadline.invoke_agent("weather_agent"):
                return await session.call_tool("ask_model", {"question": "6*7?"})

    if transport == "stdio":
        result = anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file, transport=transport) as url:
            result = anyio.run(turn, url)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert tool_text(result) == "42"
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    tree = render_tree([s for s in merged if s.name != "tools/list"], attributes=("session.id",))
    assert (
        tree
        == """\
invoke_agent weather_agent [INTERNAL] session.id=sess-42
  tools/call ask_model [CLIENT] session.id=sess-42
    tools/call ask_model [SERVER] session.id=sess-42
      sampling/createMessage [CLIENT] session.id=sess-42
        sampling/createMessage [SERVER] session.id=sess-42
          answer_locally [INTERNAL] session.id=sess-42"""
    )
    assert seen["session"] == {"session.id": "sess-42"}
    sampling_server = find(telemetry.spans(), "sampling/createMessage")
    assert sampling_server.kind == "SERVER"
    # The client answers on the connection it reached the server on: the SERVER span has what
    # the client's own CLIENT spans of that session have, the server (its requester) as its
    # client.address.
    client_call = find(telemetry.spans(), "tools/call ask_model")
    assert client_call.kind == "CLIENT"
    network_keys = (
        "mcp.protocol.version",
        "network.transport",
        "network.protocol.name",
        "mcp.session.id",
    )
    answered_on = {k: sampling_server.attributes.get(k) for k in network_keys}
    assert answered_on == {k: client_call.attributes.get(k) for k in network_keys}
    http = transport != "stdio"  # streamable HTTP, SSE or a websocket
    protocol = "websocket" if transport == "websocket" else "http"
    assert answered_on["mcp.protocol.version"] == "2025-11-25"
    assert answered_on["network.transport"] == ("tcp" if http else "pipe")
    assert answered_on["network.protocol.name"] == (protocol if http else None)
    requester = {k: sampling_server.attributes.get(k) for k in ("client.address", "client.port")}
    assert requester == {
        "client.address": client_call.attributes.get("server.address"),
        "client.port": client_call.attributes.get("server.port"),
    }
    assert requester["client.address"] == ("127.0.0.1" if http else None)
    assert requester["client.port"] == (port if http else None)
    assert "server.address" not in sampling_server.attributes
    # The server's request goes out on the connection its tools/call came in on: its CLIENT
    # span has that connection's version, transport and (HTTP, SSE) session.
    server_spans = read_spans_jsonl(spans_file)
    sampling_client = find(server_spans, "sampling/createMessage")
    tool_call = find(server_spans, "tools/call ask_model")
    assert sampling_client.kind == "CLIENT"
    keys = ("mcp.protocol.version", "network.transport", "mcp.session.id")
    connection = {k: tool_call.attributes.get(k) for k in keys}
    assert connection["mcp.protocol.version"] == "2025-11-25"
    assert connection["network.transport"] == ("pipe" if transport == "stdio" else "tcp")
    # a websocket connection has no MCP session id
    assert (connection["mcp.session.id"] is not None) is (http and transport != "websocket")
    assert {k: sampling_client.attributes.get(k) for k in keys} == connection
    # Both ends name the same session.
    assert answered_on["mcp.session.id"] == connection["mcp.session.id"]


def test_control_without_client_instrumentation(telemetry: Any, tmp_path: Path) -> None:
    """Control for the leak and parenting checks above: without ``instrument()`` the mcp 2.x SDK
    sends every baggage entry (the third-party one included) and parents the server on its own
    ``MCP send`` span; mcp 1.x sends no context at all."""
    threadline.mcp.uninstrument()
    try:
        (result,), server_spans = _run(
            tmp_path, "stdio", "legacy", "default", [("get_weather", {"city": "Paris"})]
        )
    finally:
        threadline.mcp.instrument()
    wire = json.loads(tool_text(result))["wire_baggage"]
    server_call = find(server_spans, "tools/call get_weather")
    if MAJOR >= 2:
        assert "secret.token=hunter2" in wire
        sdk_span = find(telemetry.spans(), "MCP send tools/call get_weather")
        assert sdk_span.scope == "mcp-python-sdk"
        assert server_call.parent_span_id == sdk_span.span_id
    else:
        assert wire is None
        assert server_call.parent_span_id is None


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_concurrent_calls_keep_their_own_context(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """Ten calls in flight at once on one connection, each in its own session: every server
    span, tool span and tool sees only its own caller's trace and session."""
    spans_file = tmp_path / "spans.jsonl"
    seen: dict[int, Any] = {}

    async def turn(target: Any) -> None:
        async with connect(target) as session:

            async def one(i: int) -> None:
                with threadline.session(f"s-{i}"), threadline.invoke_agent(f"agent-{i}"):
                    result = await session.call_tool("get_weather", {"city": f"c{i}"})
                seen[i] = json.loads(tool_text(result))

            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(one, i)

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
    client_spans = telemetry.spans()
    server_spans = read_spans_jsonl(spans_file)
    for i in range(10):
        assert seen[i]["city"] == f"c{i}"
        assert seen[i]["session"] == {"session.id": f"s-{i}"}
        agent = find(client_spans, f"invoke_agent agent-{i}")
        client_call = next(
            s for s in client_spans if s.parent_span_id == agent.span_id and s.kind == "CLIENT"
        )
        server_call = next(s for s in server_spans if s.parent_span_id == client_call.span_id)
        assert server_call.attributes["session.id"] == f"s-{i}"
        tool = next(s for s in server_spans if s.parent_span_id == server_call.span_id)
        assert tool.attributes["session.id"] == f"s-{i}"


@pytest.mark.parametrize(
    "mode",
    ["legacy", pytest.param("auto", marks=pytest.mark.skipif(MAJOR < 2, reason="mcp 2.x"))],
)
def test_a_span_current_when_a_stdio_server_starts_is_no_parent(
    telemetry: Any, tmp_path: Path, mode: str
) -> None:
    """A stdio server run from inside a span of its own process: its handlers run in the
    context of when the connection opened, which is neither a message's parent nor its link
    (a never-ending trace gathering every untraced message otherwise)."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(target: Any) -> None:
        async with connect(target, mode=mode) as session:
            with threadline.invoke_agent("weather_agent"):
                await session.call_tool("get_weather", {"city": "Paris"})

    anyio.run(turn, stdio_params(spans_file, SERVER_STARTUP_SPAN="1"))
    client_spans = telemetry.spans()
    server_spans = _wait_for(spans_file, "serve")
    serve = find(server_spans, "serve")
    received = [s for s in server_spans if s.kind == "SERVER"]
    # the handshake and the call, with their own parents; no notifications/initialized
    assert sorted(s.name for s in received) == sorted(
        [
            "initialize" if mode == "legacy" else "server/discover",
            "tools/call get_weather",
            "tools/list",
        ]
    )
    sent = {s.span_id: s.name for s in client_spans if s.kind == "CLIENT"}
    assert {s.name: sent.get(s.parent_span_id or "") for s in received} == {
        s.name: s.name for s in received
    }
    assert [s.links for s in received] == [()] * len(received)
    assert not [s for s in server_spans if s.trace_id == serve.trace_id and s is not serve]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_progress_callback_runs_in_its_requests_context(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """The SDK runs a progress callback in the task reading the connection: over stdio, in
    the context current when the connection opened (here a span long over). It runs in the
    context of its request instead, as over HTTP: under the CLIENT span, with the session."""
    from opentelemetry import trace

    spans_file = tmp_path / "spans.jsonl"
    seen: list[tuple[Any, Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((trace.get_current_span().get_span_context(), threadline.current_session()))

    async def turn(target: Any) -> None:
        with threadline.step("startup"):  # current when the connection opens
            async with connect(target) as session:
                with threadline.session("sess-42"), threadline.invoke_agent("weather_agent"):
                    await session.client.call_tool("progress", {}, progress_callback=on_progress)

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
    client_call = find(telemetry.spans(), "tools/call progress")
    assert len(seen) == 2
    for span_context, session in seen:
        assert format(span_context.span_id, "016x") == client_call.span_id
        assert session == {"session.id": "sess-42"}


def test_completion_of_a_prompt_argument_names_the_prompt(telemetry: Any, tmp_path: Path) -> None:
    """``completion/complete`` for a prompt's argument is about that prompt: both sides have
    ``gen_ai.prompt.name``; for a resource template's, nothing. The server gets any name the
    client makes up (the SDK does not check it), so there it stays off the span name and the
    metric; the client names the span after it, as ``prompts/get``."""
    from mcp import types

    spans_file = tmp_path / "spans.jsonl"
    metrics_file = tmp_path / "metrics.json"

    async def turn() -> None:
        params = stdio_params(spans_file, METRICS_FILE=str(metrics_file))
        async with connect(params) as session:
            with threadline.invoke_agent("weather_agent"):
                prompt = types.PromptReference(type="ref/prompt", name="crash_prompt")
                await session.client.complete(prompt, {"name": "city", "value": "Pa"})
                template = types.ResourceTemplateReference(
                    type="ref/resource", uri="weather://{city}"
                )
                await session.client.complete(template, {"name": "city", "value": "Pa"})

    anyio.run(turn)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    assert render_tree(merged, attributes=("gen_ai.prompt.name", "mcp.resource.uri")) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  completion/complete crash_prompt [CLIENT] gen_ai.prompt.name=crash_prompt\n"
        "    completion/complete [SERVER] gen_ai.prompt.name=crash_prompt\n"
        "  completion/complete [CLIENT]\n"
        "    completion/complete [SERVER]"
    )
    (point,) = [
        p
        for p in telemetry.metric_points("mcp.client.operation.duration")
        if p["attributes"].get("gen_ai.prompt.name") == "crash_prompt"
    ]
    assert point["attributes"]["mcp.method.name"] == "completion/complete"
    for _ in range(200):  # the server writes its metrics as it exits
        if metrics_file.exists():
            break
        time.sleep(0.05)
    server_points = [
        p
        for p in json.loads(metrics_file.read_text())
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"]["mcp.method.name"] == "completion/complete"
    ]
    assert [p["count"] for p in server_points] == [2]
    assert "gen_ai.prompt.name" not in server_points[0]["attributes"]


@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x clients send no notifications/cancelled")
def test_timed_out_call_and_its_cancellation_share_the_trace(
    telemetry: Any, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"

    async def turn() -> None:
        async with connect(stdio_params(spans_file)) as session:
            with threadline.invoke_agent("weather_agent"):
                with pytest.raises(Exception, match="timed out"):
                    await session.client.call_tool(
                        "slow", {"seconds": 30}, read_timeout_seconds=0.5
                    )

    anyio.run(turn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server notices the cancellation asynchronously
        server_spans = read_spans_jsonl(spans_file)
        if any(s.name == "notifications/cancelled" for s in server_spans):
            break
        time.sleep(0.05)
    merged = _agent_trace(telemetry.spans(), server_spans)
    client = next(s for s in merged if s.name == "tools/call slow" and s.kind == "CLIENT")
    # The SDK gave up waiting: no response, so no JSON-RPC status code.
    assert "rpc.response.status_code" not in client.attributes
    assert render_tree(merged) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call slow [CLIENT] !ERROR error.type=timeout\n"
        "    tools/call slow [SERVER] !ERROR error.type=cancelled\n"
        "    notifications/cancelled [CLIENT]\n"
        "      notifications/cancelled [SERVER]"
    )


@pytest.mark.skipif(MAJOR < 2, reason="the mcp 2.x Client")
def test_session_ids_stay_with_their_server(telemetry: Any, tmp_path: Path) -> None:
    """While a call to server A is open, a callback (here: on A's log message) notifies server
    B. The transport posts that notification in the callback's context, where A's call is the
    current span: B's session id must not land on it."""
    spans_a, spans_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    async def turn(url_a: str, url_b: str) -> None:
        from mcp import Client

        async with Client(url_b, mode="legacy") as b:

            async def on_log(params: Any) -> None:
                await b.session.send_roots_list_changed()

            async with Client(url_a, mode="legacy", logging_callback=on_log) as a:
                await a.call_tool("chatty", {})
            await b.list_tools()

    with (
        http_server(tmp_path / "a", spans_a) as url_a,
        http_server(tmp_path / "b", spans_b) as url_b,
    ):
        anyio.run(turn, url_a, url_b)
    server_sessions = {}
    for url, spans_file in ((url_a, spans_a), (url_b, spans_b)):
        ids = {s.attributes.get("mcp.session.id") for s in read_spans_jsonl(spans_file)}
        ids.discard(None)
        (server_sessions[int(url.rsplit(":", 1)[1].split("/")[0])],) = ids
    client_spans = [s for s in telemetry.spans() if s.kind == "CLIENT"]
    assert {s.name for s in client_spans} >= {"tools/call chatty", "tools/list", "initialize"}
    for span in client_spans:
        expected = server_sessions[span.attributes["server.port"]]
        assert span.attributes.get("mcp.session.id") == expected, span.name


@pytest.mark.skipif(MAJOR >= 2, reason="the mcp 1.x request path")
def test_v1_callers_own_meta_baggage_is_filtered_without_a_span() -> None:
    from mcp import types as mcp_types

    from threadline.mcp import _client

    request = mcp_types.ClientRequest.model_validate(
        {"method": "tools/call", "params": {"name": "x", "_meta": {"baggage": "secret=1"}}}
    )
    sent = _client.v1_with_context(request)
    assert sent is not request
    assert _client.v1_method_params(sent)[1] == {"name": "x", "_meta": {}}
    untouched = mcp_types.ClientRequest.model_validate(
        {"method": "tools/call", "params": {"name": "x"}}
    )
    assert _client.v1_with_context(untouched) is untouched


MODERN = pytest.param(
    "auto", marks=pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x does not speak 2026-07-28")
)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_notifications_from_the_server_join_the_call_they_are_about(
    telemetry: Any, tmp_path: Path, transport: str, mode: str
) -> None:
    """Progress and a log message the server sends while a tool call is open: a CLIENT span
    per notification in the server (the sender), a SERVER span per notification in the
    client (the receiver), under the sender's span through ``_meta``: one trace. The client's
    logging callback runs under its notification's span."""
    from opentelemetry import trace

    spans_file = tmp_path / "spans.jsonl"
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(trace.get_current_span().get_span_context())

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    async def turn(target: Any) -> None:
        with threadline.step("startup"):  # current when the connection opens
            async with connect(target, mode=mode, logging_callback=on_log) as session:
                with threadline.invoke_agent("weather_agent"):
                    await session.client.call_tool("progress", {}, progress_callback=on_progress)
                    await session.client.call_tool("chatty", {})

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
    client_spans = telemetry.spans()
    server_spans = read_spans_jsonl(spans_file)
    merged = _agent_trace(client_spans, server_spans)
    # 2026-07-28 has no logging (the server sends no log message there)
    logs = mode == "legacy"
    assert (
        """
  invoke_agent weather_agent [INTERNAL]
    tools/call progress [CLIENT]
      tools/call progress [SERVER]
        notifications/progress [CLIENT]
          notifications/progress [SERVER]
        notifications/progress [CLIENT]
          notifications/progress [SERVER]
    tools/list [CLIENT]
      tools/list [SERVER]
    tools/call chatty [CLIENT]
      tools/call chatty [SERVER]"""
        + (
            """
        notifications/message [CLIENT]
          notifications/message [SERVER]"""
            if logs
            else ""
        )
        in render_tree(merged)
    )
    network = "pipe" if transport == "stdio" else "tcp"
    for name in ("notifications/progress", "notifications/message")[: 2 if logs else 1]:
        sent = [s for s in server_spans if s.name == name and s.kind == "CLIENT"]
        received = [s for s in client_spans if s.name == name and s.kind == "SERVER"]
        assert sent
        assert len(received) == len(sent)
        assert {s.parent_span_id for s in received} == {s.span_id for s in sent}
        tool = "progress" if name == "notifications/progress" else "chatty"
        server_call = find(server_spans, f"tools/call {tool}")
        assert {s.parent_span_id for s in sent} == {server_call.span_id}
        assert server_call.parent_span_id == find(client_spans, f"tools/call {tool}").span_id
        for span in (*sent, *received):
            assert span.attributes["mcp.method.name"] == name
            assert "jsonrpc.request.id" not in span.attributes
            assert span.attributes.get("mcp.protocol.version")
        for span in received:
            assert span.attributes["network.transport"] == network
            if transport == "http" and logs:
                assert span.attributes["mcp.session.id"] == server_call.attributes["mcp.session.id"]
    if logs:
        (received_log,) = [s for s in client_spans if s.name == "notifications/message"]
        assert [format(c.span_id, "016x") for c in logged] == [received_log.span_id]
    points = [
        p
        for p in telemetry.metric_points("mcp.server.operation.duration")
        if p["attributes"]["mcp.method.name"] == "notifications/progress"
    ]
    assert points
    assert "error.type" not in points[0]["attributes"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_notification_without_context_gets_no_span(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """A notification carrying no trace context (here: ``_meta`` stripped, as from an
    uninstrumented server) gets no span, as on a server with ``notifications="traced"``: not
    one under the span the connection was opened in, ended long before. Its callback runs."""
    spans_file = tmp_path / "spans.jsonl"
    logged: list[Any] = []

    async def log(params: Any) -> None:
        logged.append(params)

    async def turn(target: Any) -> None:
        with threadline.invoke_agent("startup"):  # current when the connection opens
            session_cm = connect(target, logging_callback=log)
            session = await session_cm.__aenter__()
        try:
            with threadline.invoke_agent("weather_agent"):
                await session.client.call_tool("chatty", {})
        finally:
            await session_cm.__aexit__(None, None, None)

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file, SERVER_NO_META="1"))
    else:
        with http_server(tmp_path, spans_file, SERVER_NO_META="1") as url:
            anyio.run(turn, url)
    assert logged
    client_spans = telemetry.spans()
    assert not [span for span in client_spans if span.name.startswith("notifications/message")]
    agent = find(client_spans, "invoke_agent weather_agent")
    call = find(client_spans, "tools/call chatty")
    assert call.parent_span_id == agent.span_id


async def _ignore(*args: Any) -> None:
    pass


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_notification_from_the_client_joins_its_trace(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """A notification the client sends inside a trace: a SERVER span in the server (mcp 1.x
    as 2.x), under the client's CLIENT span through ``_meta``, around the server's handler,
    which sees the session baggage; its network and session are the connection's."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(target: Any) -> None:
        async with connect(target) as session:
            with threadline.session("sess-42"), threadline.invoke_agent("weather_agent"):
                await session.client.send_roots_list_changed()
                await session.call_tool("get_weather", {"city": "Paris"})

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
    server_spans = _wait_for(spans_file, "refresh_roots")
    merged = _agent_trace(telemetry.spans(), server_spans)
    tree = render_tree(
        [s for s in merged if not s.name.startswith(("tools/", "lookup"))],
        attributes=("session.id",),
    )
    assert (
        tree
        == """\
invoke_agent weather_agent [INTERNAL] session.id=sess-42
  notifications/roots/list_changed [CLIENT] session.id=sess-42
    notifications/roots/list_changed [SERVER] session.id=sess-42
      refresh_roots [INTERNAL] session.id=sess-42"""
    )
    received = find(server_spans, "notifications/roots/list_changed")
    tool_call = find(server_spans, "tools/call get_weather")
    assert received.attributes["mcp.method.name"] == "notifications/roots/list_changed"
    assert "jsonrpc.request.id" not in received.attributes
    keys = ("mcp.protocol.version", "network.transport", "mcp.session.id")
    assert {k: received.attributes.get(k) for k in keys} == {
        k: tool_call.attributes.get(k) for k in keys
    }
    assert received.attributes["network.transport"] == ("pipe" if transport == "stdio" else "tcp")
    assert (received.attributes.get("mcp.session.id") is not None) is (transport == "http")


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x clients send no notifications/cancelled")
def test_cancelled_call_sends_a_traced_cancellation(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """A client cancelling its call: ``notifications/cancelled`` gets a CLIENT span under the
    cancelled call's, and the server's span for it is that span's child."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(target: Any) -> None:
        async with connect(target) as session:
            with threadline.invoke_agent("weather_agent"):
                with anyio.move_on_after(0.5):
                    await session.client.call_tool("slow", {"seconds": 30})
            # over HTTP the cancellation is posted by a task of the session's
            await anyio.sleep(0.5)

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
            _wait_for(spans_file, "notifications/cancelled")
    server_spans = _wait_for(spans_file, "notifications/cancelled")
    client_spans = telemetry.spans()
    merged = _agent_trace(client_spans, server_spans)
    assert render_tree(merged) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call slow [CLIENT] !ERROR error.type=cancelled\n"
        "    tools/call slow [SERVER] !ERROR error.type=cancelled\n"
        "    notifications/cancelled [CLIENT]\n"
        "      notifications/cancelled [SERVER]"
    )
    sent = find(client_spans, "notifications/cancelled")
    assert sent.attributes["mcp.method.name"] == "notifications/cancelled"
    assert "jsonrpc.request.id" not in sent.attributes
    assert sent.attributes["network.transport"] == ("pipe" if transport == "stdio" else "tcp")
    if transport == "http":
        server_call = find(server_spans, "tools/call slow")
        assert sent.attributes["mcp.session.id"] == server_call.attributes["mcp.session.id"]
        assert sent.attributes["server.port"] > 0
    (point,) = [
        p
        for p in telemetry.metric_points("mcp.client.operation.duration")
        if p["attributes"]["mcp.method.name"] == "notifications/cancelled"
    ]
    assert "error.type" not in point["attributes"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.skipif(MAJOR < 2, reason="mcp 1.x clients send no notifications/cancelled")
def test_cancellation_is_traced_only_when_sent(
    telemetry: Any, tmp_path: Path, transport: str, mode: str
) -> None:
    """A timed-out and a cancelled call. On 2026-07-28 over streamable HTTP the client aborts
    the call's POST and sends no ``notifications/cancelled``: no CLIENT span or metric point
    for it (the server sees the aborted call only). Everywhere else it is sent and traced."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(target: Any) -> None:
        async with connect(target, mode=mode) as session:
            with threadline.invoke_agent("timeout_agent"):
                with pytest.raises(Exception, match="timed out"):
                    await session.client.call_tool(
                        "slow", {"seconds": 30}, read_timeout_seconds=0.5
                    )
            with threadline.invoke_agent("cancel_agent"):
                with anyio.move_on_after(0.5):
                    await session.client.call_tool("slow", {"seconds": 30})
            await anyio.sleep(0.3)  # over HTTP a cancellation is posted by a task of its own

    dropped = transport == "http" and mode == "auto"

    def server_spans() -> list[SpanRecord]:
        deadline = time.monotonic() + 10
        while True:  # the server ends its spans as it notices the cancellations
            spans = read_spans_jsonl(spans_file) if spans_file.exists() else []
            calls = sum(s.name == "tools/call slow" for s in spans)
            cancels = sum(s.name == "notifications/cancelled" for s in spans)
            if (calls == 2 and (dropped or cancels == 2)) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file))
        spans = server_spans()
    else:
        with http_server(tmp_path, spans_file) as url:
            anyio.run(turn, url)
            spans = server_spans()
    client_spans = telemetry.spans()
    sent = (
        ""
        if dropped
        else "\n    notifications/cancelled [CLIENT]\n      notifications/cancelled [SERVER]"
    )
    for agent, error in (("timeout_agent", "timeout"), ("cancel_agent", "cancelled")):
        trace_id = find(client_spans, f"invoke_agent {agent}").trace_id
        assert render_tree([s for s in client_spans + spans if s.trace_id == trace_id]) == (
            f"invoke_agent {agent} [INTERNAL]\n"
            f"  tools/call slow [CLIENT] !ERROR error.type={error}\n"
            "    tools/call slow [SERVER] !ERROR error.type=cancelled" + sent
        )
    points = [
        p
        for p in telemetry.metric_points("mcp.client.operation.duration")
        if p["attributes"]["mcp.method.name"] == "notifications/cancelled"
    ]
    assert sum(p["count"] for p in points) == (0 if dropped else 2)
    if not dropped:
        assert {p["attributes"]["mcp.protocol.version"] for p in points} == {
            "2026-07-28" if mode == "auto" else "2025-11-25"
        }


def _wait_for(spans_file: Path, name: str) -> list[SpanRecord]:
    """The server's spans once one named ``name`` is among them (it ends asynchronously)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = read_spans_jsonl(spans_file) if spans_file.exists() else []
        if any(s.name == name for s in spans):
            return spans
        time.sleep(0.05)
    return read_spans_jsonl(spans_file)


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_merged_tool_span_names_the_session(telemetry: Any, tmp_path: Path, transport: str) -> None:
    """With ``merge_tool_spans=True`` the tool span stands for the CLIENT span, so it names
    the MCP session the call went out on, as that span would have, on every transport that has
    one (mcp 1.x learns it from ``initialize``; SSE from the endpoint the server announced)."""
    threadline.mcp.uninstrument()  # options apply when instrumenting
    threadline.mcp.instrument(merge_tool_spans=True)
    spans_file = tmp_path / "spans.jsonl"

    async def turn(url: Any) -> None:
        async with connect(url) as session:
            with threadline.invoke_agent("weather_agent"):
                with threadline.execute_tool("get_weather"):
                    await session.call_tool("get_weather", {"city": "Paris"})

    try:
        with http_server(tmp_path, spans_file, transport=transport) as url:
            anyio.run(turn, url)
    finally:
        threadline.mcp.uninstrument()
        threadline.mcp.instrument()
    server_call = find(read_spans_jsonl(spans_file), "tools/call get_weather")
    tool = find(telemetry.spans(), "execute_tool get_weather")
    assert server_call.parent_span_id == tool.span_id
    assert server_call.attributes["mcp.session.id"]
    assert tool.attributes.get("mcp.session.id") == server_call.attributes["mcp.session.id"]


def test_resource_uri_only_where_the_conventions_define_it(telemetry: Any, tmp_path: Path) -> None:
    """``mcp.resource.uri`` is the URI of ``resources/read``, ``resources/(un)subscribe`` and
    ``notifications/resources/updated``: a ``uri`` a client puts on any other ``resources/*``
    request stays off both sides' spans."""
    from mcp import types
    from pydantic import BaseModel

    class UriParams(BaseModel):
        uri: str

    class RawRequest(types.Request[UriParams, str]):  # type: ignore[misc]
        """A request of any method, with a ``uri`` param."""

    spans_file = tmp_path / "spans.jsonl"

    async def main() -> None:
        async with connect(stdio_params(spans_file)) as session:
            client = getattr(session.client, "session", session.client)  # 2.x Client: its session
            uri = UriParams(uri="weather://paris")
            await client.send_request(
                RawRequest(method="resources/list", params=uri), types.ListResourcesResult
            )
            await client.send_request(
                RawRequest(method="resources/templates/list", params=uri),
                types.ListResourceTemplatesResult,
            )
            with pytest.raises(Exception, match="weather://crash"):
                await client.read_resource("weather://crash")

    anyio.run(main)
    spans = [*telemetry.spans(), *read_spans_jsonl(spans_file)]
    uris = sorted(
        (s.name, s.kind, s.attributes.get("mcp.resource.uri"))
        for s in spans
        if s.name.startswith("resources/")
    )
    assert uris == [
        ("resources/list", "CLIENT", None),
        ("resources/list", "SERVER", None),
        ("resources/read", "CLIENT", "weather://crash"),
        ("resources/read", "SERVER", "weather://crash"),
        ("resources/templates/list", "CLIENT", None),
        ("resources/templates/list", "SERVER", None),
    ]


def _sampling_answer(step: str) -> Any:
    """A sampling callback answering ``42``, inside a span of its own named ``step``."""

    async def sampling_callback(context: Any, params: Any) -> Any:
        from mcp import types

        with threadline.step(step):
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text="42"), model="stub"
            )

    return sampling_callback


@pytest.mark.skipif(MAJOR < 2, reason="InputRequiredResult is a 2026-07-28 answer (mcp 2.x)")
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_call_sent_again_with_input_is_one_client_span(
    telemetry: Any, tmp_path: Path, transport: str
) -> None:
    """On 2026-07-28 the server asks for input with an ``InputRequiredResult``, and the Client
    sends the call again with it (a new JSON-RPC id): one ``tools/call`` (one ``execute_tool``)
    with one CLIENT span and one metric point, the SERVER span of each request and the callback
    that gathered the input beneath it, as a handshake-era call asking mid-call has them."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(target: Any) -> Any:
        callback = _sampling_answer("answer_locally")
        async with connect(target, mode="auto", sampling_callback=callback) as session:
            with threadline.invoke_agent("weather_agent"):
                return await session.call_tool("ask_model_resolved", {"question": "6*7?"})

    if transport == "stdio":
        result = anyio.run(turn, stdio_params(spans_file))
    else:
        with http_server(tmp_path, spans_file) as url:
            result = anyio.run(turn, url)
    assert tool_text(result) == "42"
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    # The Client lists the tools after the call to validate its result: not beneath its span.
    assert render_tree(merged, attributes=("jsonrpc.request.id",)) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call ask_model_resolved [CLIENT] jsonrpc.request.id=3\n"
        "    tools/call ask_model_resolved [SERVER] jsonrpc.request.id=2\n"
        "    answer_locally [INTERNAL]\n"
        "    tools/call ask_model_resolved [SERVER] jsonrpc.request.id=3\n"
        "      use_answer [INTERNAL]\n"
        "  tools/list [CLIENT] jsonrpc.request.id=4\n"
        "    tools/list [SERVER] jsonrpc.request.id=4"
    )
    (call,) = [s for s in telemetry.spans() if s.name == "tools/call ask_model_resolved"]
    assert call.attributes["mcp.protocol.version"] == "2026-07-28"
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(p["attributes"].get("error.type"), p["count"]) for p in calls] == [(None, 1)]


@pytest.mark.skipif(MAJOR < 2, reason="InputRequiredResult is a 2026-07-28 answer (mcp 2.x)")
def test_a_call_whose_input_is_refused_fails_its_one_client_span(
    telemetry: Any, tmp_path: Path
) -> None:
    """The callback refuses the input the server asked for (an ``ErrorData``): the SDK raises
    it between the requests, so the held CLIENT span ends with its code, unanswered (no
    ``rpc.response.status_code``)."""
    from mcp import types

    spans_file = tmp_path / "spans.jsonl"

    async def refuse(context: Any, params: Any) -> Any:
        return types.ErrorData(code=-1, message="no model here")

    async def turn() -> None:
        async with connect(stdio_params(spans_file), mode="auto", sampling_callback=refuse) as s:
            with threadline.invoke_agent("weather_agent"):
                with pytest.raises(Exception, match="no model here"):
                    await s.call_tool("ask_model_resolved", {"question": "6*7?"})

    anyio.run(turn)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    assert render_tree(merged, attributes=("rpc.response.status_code",)) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call ask_model_resolved [CLIENT] !ERROR error.type=-1\n"
        "    tools/call ask_model_resolved [SERVER]"
    )
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(p["attributes"].get("error.type"), p["count"]) for p in calls] == [("-1", 1)]


@pytest.mark.skipif(MAJOR < 2, reason="InputRequiredResult is a 2026-07-28 answer (mcp 2.x)")
def test_a_merged_call_sent_again_with_input_has_one_metric_point(
    telemetry: Any, tmp_path: Path
) -> None:
    """``merge_tool_spans=True``: both requests of the call are recorded on the framework's
    tool span, and the call has one ``mcp.client.operation.duration`` point."""
    threadline.mcp.uninstrument()  # options apply when instrumenting
    threadline.mcp.instrument(merge_tool_spans=True)
    spans_file = tmp_path / "spans.jsonl"

    async def turn() -> None:
        callback = _sampling_answer("answer_locally")
        async with connect(stdio_params(spans_file), mode="auto", sampling_callback=callback) as s:
            with threadline.invoke_agent("weather_agent"):
                with threadline.execute_tool("ask_model_resolved"):
                    await s.call_tool("ask_model_resolved", {"question": "6*7?"})

    try:
        anyio.run(turn)
    finally:
        threadline.mcp.uninstrument()
        threadline.mcp.instrument()
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    assert render_tree([s for s in merged if s.name != "tools/list"]) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  execute_tool ask_model_resolved [INTERNAL]\n"
        "    tools/call ask_model_resolved [SERVER]\n"
        "    answer_locally [INTERNAL]\n"
        "    tools/call ask_model_resolved [SERVER]\n"
        "      use_answer [INTERNAL]"
    )
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(p["attributes"].get("error.type"), p["count"]) for p in calls] == [(None, 1)]


@pytest.mark.skipif(MAJOR < 2, reason="NoBackChannelError is mcp 2.x")
@pytest.mark.parametrize(("transport", "mode"), [("stdio", "auto"), ("http", "legacy")])
def test_a_request_the_server_cannot_send_fails_its_spans(
    telemetry: Any, tmp_path: Path, transport: str, mode: str
) -> None:
    """A tool asks its client (sampling) where the channel cannot carry requests: a 2026-07-28
    exchange, or a stateless HTTP server's. The SDK raises ``NoBackChannelError`` before
    sending anything and answers the call with -32600. That code names a bad request, but
    this failure is the server's: its SERVER span is an error, as is the CLIENT span of the
    request it could not send (no status code there: nothing was answered)."""
    spans_file = tmp_path / "spans.jsonl"
    metrics_file = tmp_path / "metrics.json"

    async def turn(target: Any) -> None:
        callback = _sampling_answer("never_called")
        async with connect(target, mode=mode, sampling_callback=callback) as session:
            with threadline.invoke_agent("weather_agent"):
                with pytest.raises(Exception, match="no back-channel"):
                    await session.call_tool("ask_model", {"question": "6*7?"})

    env = {"METRICS_FILE": str(metrics_file)}
    if transport == "stdio":
        anyio.run(turn, stdio_params(spans_file, **env))
    else:
        with http_server(tmp_path, spans_file, SERVER_STATELESS="1", **env) as url:
            anyio.run(turn, url)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    assert render_tree(merged, attributes=("rpc.response.status_code",)) == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call ask_model [CLIENT] rpc.response.status_code=-32600 !ERROR error.type=-32600\n"
        "    tools/call ask_model [SERVER] rpc.response.status_code=-32600"
        " !ERROR error.type=-32600\n"
        "      sampling/createMessage [CLIENT] !ERROR error.type=-32600"
    )
    refused = find(read_spans_jsonl(spans_file), "sampling/createMessage")
    assert refused.status_description is not None
    assert "no back-channel" in refused.status_description
    assert refused.attributes["network.transport"] == ("pipe" if transport == "stdio" else "tcp")
    points = json.loads(metrics_file.read_text())
    outcomes = sorted(
        (p["name"], p["attributes"]["mcp.method.name"], p["attributes"].get("error.type"))
        for p in points
        if p["attributes"].get("mcp.method.name") in ("tools/call", "sampling/createMessage")
    )
    assert outcomes == [
        ("mcp.client.operation.duration", "sampling/createMessage", "-32600"),
        ("mcp.server.operation.duration", "tools/call", "-32600"),
    ]
    (served,) = (
        p["attributes"]
        for p in points
        if p["name"] == "mcp.server.operation.duration"
        and p["attributes"].get("mcp.method.name") == "tools/call"
    )
    assert served["rpc.response.status_code"] == "-32600"  # a failed request, not a bad one


@pytest.mark.skipif(MAJOR < 2, reason="HEADER_MISMATCH is a 2026-07-28 answer (mcp 2.x)")
def test_a_call_sent_again_after_a_header_mismatch_is_one_client_span(
    telemetry: Any, tmp_path: Path
) -> None:
    """2026-07-28 over streamable HTTP: the server rejects a ``tools/call`` whose tool the
    client has not listed (no ``Mcp-Param-*`` header) with HEADER_MISMATCH, and the Client
    lists the tools and sends it again: one successful call, one CLIENT span (no error) and one
    metric point, the SERVER span of the request that got through beneath it."""
    spans_file = tmp_path / "spans.jsonl"

    async def turn(url: str) -> Any:
        async with connect(url, mode="auto") as session:
            with threadline.invoke_agent("weather_agent"):
                return await session.call_tool("routed", {"city": "Paris"})

    with http_server(tmp_path, spans_file, SERVER_LOWLEVEL="1") as url:
        result = anyio.run(turn, url)
    assert not is_error(result)
    merged = _agent_trace(telemetry.spans(), read_spans_jsonl(spans_file))
    tree = render_tree(
        [s for s in merged if s.name != "tools/list"],
        attributes=("jsonrpc.request.id", "rpc.response.status_code"),
    )
    assert tree == (
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call routed [CLIENT] jsonrpc.request.id=4\n"
        "    tools/call routed [SERVER] jsonrpc.request.id=4\n"
        "      lookup_forecast [INTERNAL]"
    )
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(p["attributes"].get("error.type"), p["count"]) for p in calls] == [(None, 1)]
