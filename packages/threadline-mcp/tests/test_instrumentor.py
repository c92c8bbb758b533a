"""instrument()/uninstrument() and the entry point."""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points
from typing import Any

import anyio
import pytest
from harness import MAJOR
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

import threadline
import threadline.mcp
from threadline.mcp import MCPInstrumentor

if MAJOR >= 2:
    # Module level: the in-process server below resolves its tools' annotations here.
    from mcp.server.mcpserver import Context

    PATCHED = [
        ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher", "send_raw_request"),
        ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher", "notify"),
        ("mcp.shared.jsonrpc_dispatcher", None, "otel_span"),
        ("mcp.shared.jsonrpc_dispatcher", None, "inject_trace_context"),
        ("mcp.shared.direct_dispatcher", "DirectDispatcher", "send_raw_request"),
        ("mcp.client.client", "Client", "_build_session"),
        ("mcp.client.session", "ClientSession", "_on_request"),
        ("mcp.client.session", "ClientSession", "__aenter__"),
        ("mcp.client.session", "ClientSession", "__aexit__"),
        ("mcp.shared.memory", None, "create_client_server_memory_streams"),
        ("mcp.client._memory", None, "create_client_server_memory_streams"),
    ]
else:
    PATCHED = [
        ("mcp.shared.session", "BaseSession", "send_request"),
        ("mcp.server.lowlevel.server", "Server", "_handle_request"),
        ("mcp.server.session", "ServerSession", "_received_request"),
        ("mcp.client.session", "ClientSession", "_received_request"),
        ("mcp.shared.session", "BaseSession", "__aenter__"),
        ("mcp.shared.session", "BaseSession", "__aexit__"),
        ("mcp.shared.memory", None, "create_client_server_memory_streams"),
        ("mcp.server.websocket", None, "websocket_server"),
        ("mcp.client.websocket", None, "websocket_client"),
    ]
# Client transports, on both majors (ClientSessionGroup imported two of them by name).
PATCHED += [
    ("mcp.client.stdio", None, "stdio_client"),
    ("mcp", None, "stdio_client"),
    ("mcp.client.streamable_http", None, "streamable_http_client"),
    ("mcp.client.sse", None, "sse_client"),
    ("mcp.client.session_group", None, "sse_client"),
    ("mcp.client.session_group", None, "streamable_http_client"),
]


def _current() -> list[object]:
    found = []
    for module, owner, name in PATCHED:
        target: object = importlib.import_module(module)
        if owner:
            target = getattr(target, owner)
        found.append(getattr(target, name))
    return found


def test_instrument_uninstrument_round_trip() -> None:
    original = _current()
    for _ in range(2):  # repeatable, and idempotent while instrumented
        threadline.mcp.instrument()
        threadline.mcp.instrument()
        patched = _current()
        assert all(p is not o for p, o in zip(patched, original, strict=True))
        threadline.mcp.uninstrument()
        assert all(p is o for p, o in zip(_current(), original, strict=True))


def test_a_later_instrument_sets_its_options(caplog: pytest.LogCaptureFixture) -> None:
    from threadline.mcp import _client

    try:
        with caplog.at_level("WARNING"):
            threadline.mcp.instrument()
            threadline.mcp.instrument(merge_tool_spans=True)
            assert _client.Options.merge_tool_spans is True
            threadline.mcp.instrument()
            assert _client.Options.merge_tool_spans is False
            threadline.mcp.uninstrument()
            threadline.mcp.uninstrument()
        assert caplog.records == []  # no "already instrumented" warnings
    finally:
        threadline.mcp.uninstrument()
        _client.Options.merge_tool_spans = False


def test_entry_point() -> None:
    (entry,) = [
        e
        for e in entry_points(group="opentelemetry_instrumentor")
        if e.value.startswith("threadline.mcp")
    ]
    assert entry.load() is MCPInstrumentor
    assert isinstance(MCPInstrumentor(), BaseInstrumentor)
    assert MCPInstrumentor().instrumentation_dependencies() == ("mcp >= 1.30",)


@pytest.mark.skipif(MAJOR < 2, reason="Client(server) in-process is mcp 2.x")
def test_in_process_client_and_server(telemetry: Any, instrumented: None) -> None:
    """``Client(server)`` with the server in this process: instrument() alone traces both
    sides, each SERVER span under its CLIENT span (the server runs in the caller's context),
    the server's request back to the client (sampling) included."""
    from mcp import Client, types
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")

    @server.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    @server.tool()
    async def ask_model(question: str, ctx: Context) -> str:  # type: ignore[type-arg]
        """Asks the client's model."""
        message = types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=question)
        )
        result = await ctx.session.create_message(messages=[message], max_tokens=8)
        return getattr(result.content, "text", "")

    async def sampling_callback(context: Any, params: Any) -> Any:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="42"), model="stub"
        )

    async def main() -> None:
        async with Client(server, mode="legacy", sampling_callback=sampling_callback) as client:
            with threadline.invoke_agent("weather_agent"):
                await client.call_tool("get_weather", {"city": "Paris"})
                await client.call_tool("ask_model", {"question": "6*7?"})

    anyio.run(main)
    agent = telemetry.find("invoke_agent weather_agent")
    trees = telemetry.tree(attributes=("gen_ai.tool.name",)).split("\n---\n")
    # (the client lists tools after a call to validate its output: a second request)
    assert [tree for tree in trees if tree.startswith("invoke_agent")] == [
        "invoke_agent weather_agent [INTERNAL]\n"
        "  tools/call get_weather [CLIENT] gen_ai.tool.name=get_weather\n"
        "    tools/call get_weather [SERVER] gen_ai.tool.name=get_weather\n"
        "  tools/list [CLIENT]\n"
        "    tools/list [SERVER]\n"
        "  tools/call ask_model [CLIENT] gen_ai.tool.name=ask_model\n"
        "    tools/call ask_model [SERVER] gen_ai.tool.name=ask_model\n"
        "      sampling/createMessage [CLIENT]\n"
        "        sampling/createMessage [SERVER]"
    ]
    assert {span.trace_id for span in telemetry.spans() if "/" in span.name} == {agent.trace_id}
    # The server's request to the client: the version of the connection, and no network.
    sampling = next(
        s for s in telemetry.spans() if s.name == "sampling/createMessage" and s.kind == "CLIENT"
    )
    assert sampling.attributes["mcp.protocol.version"] == "2025-11-25"
    assert "network.transport" not in sampling.attributes


@pytest.mark.skipif(MAJOR < 2, reason="Client(server) in-process is mcp 2.x")
def test_direct_in_process_client_has_no_network(telemetry: Any, instrumented: None) -> None:
    """``Client(server)`` through the direct dispatcher (no transport at all): the SERVER span
    claims no ``network.transport``; both sides carry the request id the dispatcher gave."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")

    @server.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    async def main() -> None:
        async with Client(server, mode="auto") as client:
            await client.call_tool("get_weather", {"city": "Paris"})

    anyio.run(main)
    spans = [s for s in telemetry.spans() if s.name == "tools/call get_weather"]
    assert sorted(s.kind for s in spans) == ["CLIENT", "SERVER"]
    for span in spans:
        assert "network.transport" not in span.attributes, span.kind
    client, server_span = sorted(spans, key=lambda s: s.kind)
    assert client.attributes["jsonrpc.request.id"] == server_span.attributes["jsonrpc.request.id"]


def test_a_server_over_the_in_memory_transport_has_no_network(
    telemetry: Any, instrumented: None
) -> None:
    """mcp's in-memory streams (``Client(server, mode="legacy")`` on 2.x,
    ``create_connected_server_and_client_session`` on 1.x) look to the server like stdio: no
    HTTP request under the message. Its SERVER span claims no ``network.transport``, while a
    server over stdio says ``pipe`` (test_cross_process)."""
    if MAJOR >= 2:
        from mcp import Client
        from mcp.server.mcpserver import MCPServer as Server

        def connect(server: Any) -> Any:
            return Client(server, mode="legacy")
    else:
        from mcp.server.fastmcp import FastMCP as Server
        from mcp.shared.memory import create_connected_server_and_client_session

        def connect(server: Any) -> Any:
            return create_connected_server_and_client_session(server._mcp_server)

    server = Server("weather")

    @server.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    async def main() -> None:
        async with connect(server) as client:
            await client.call_tool("get_weather", {"city": "Paris"})

    anyio.run(main)
    served = [s for s in telemetry.spans() if s.kind == "SERVER"]
    assert {s.name for s in served} >= {"initialize", "tools/call get_weather"}
    for span in served:
        assert "network.transport" not in span.attributes, span.name


@pytest.mark.skipif(MAJOR >= 2, reason="mcp 2.x has no websocket transport")
def test_a_deprecated_transport_still_warns_at_the_apps_call(instrumented: None) -> None:
    """mcp 1.x marks its websocket transports deprecated: wrapped, each still warns once per
    call, naming the app's line (where the default filters show it), not threadline's."""
    import mcp.client.websocket
    import mcp.server.websocket

    for make in (
        lambda: mcp.client.websocket.websocket_client("ws://127.0.0.1:9/ws"),
        lambda: mcp.server.websocket.websocket_server({}, None, None),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make()
        assert [(w.category, w.filename) for w in caught] == [(DeprecationWarning, __file__)]
        assert "WebSocket" in str(caught[0].message)


@pytest.mark.skipif(MAJOR >= 2, reason="mcp 2.x has no websocket transport")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_websocket_server_is_tcp_with_its_peer(telemetry: Any, instrumented: None) -> None:
    """mcp 1.x's websocket transport gives its messages no HTTP request: its SERVER spans say
    ``tcp`` over ``websocket``, with the client's address, not stdio's ``pipe``."""
    import json

    from mcp.server.fastmcp import FastMCP
    from mcp.server.websocket import websocket_server
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient

    server = FastMCP("weather")

    @server.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    async def endpoint(websocket: Any) -> None:
        lowlevel = server._mcp_server
        async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (
            read,
            write,
        ):
            await lowlevel.run(read, write, lowlevel.create_initialization_options())

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    initialize = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    }
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    with TestClient(app) as client, client.websocket_connect("/ws", subprotocols=["mcp"]) as ws:
        ws.send_text(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
        )
        assert json.loads(ws.receive_text())["id"] == 1
        ws.send_text(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        ws.send_text(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        )
        assert "sunny in Paris" in ws.receive_text()
    served = {s.name: s.attributes for s in telemetry.spans() if s.kind == "SERVER"}
    for name in ("initialize", "tools/call get_weather"):
        assert served[name]["network.transport"] == "tcp", name
        assert served[name]["network.protocol.name"] == "websocket", name
        assert served[name]["client.address"] == "testclient", name


@pytest.mark.skipif(MAJOR < 2, reason="Client(server) in-process is mcp 2.x")
@pytest.mark.parametrize(
    ("mode", "raise_exceptions", "code"),
    [("legacy", False, "0"), ("auto", False, "-32603"), ("auto", True, "-32603")],
)
def test_in_process_handler_exception(
    telemetry: Any, instrumented: None, mode: str, raise_exceptions: bool, code: str
) -> None:
    """``Client(server)``: in legacy mode the server answers through in-memory streams (code
    0); otherwise the direct dispatcher hands the client -32603, with or without
    ``raise_exceptions``. Both spans carry the code the client got, also as ``error.type``;
    the SERVER span's status tells the exception (MCPServer re-raises it as ValueError)."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")

    @server.prompt()
    def brief() -> str:
        """A prompt whose store is down."""
        raise RuntimeError("prompt store down")

    async def main() -> None:
        async with Client(server, mode=mode, raise_exceptions=raise_exceptions) as client:  # type: ignore[arg-type]
            with pytest.raises(Exception) as raised:  # noqa: PT011 - MCPError
                await client.get_prompt("brief", {})
            assert str(raised.value.error.code) == code  # type: ignore[attr-defined]

    anyio.run(main)
    spans = {s.kind: s for s in telemetry.spans() if s.name == "prompts/get brief"}
    assert spans["CLIENT"].attributes["rpc.response.status_code"] == code
    assert spans["SERVER"].attributes["rpc.response.status_code"] == code
    assert spans["CLIENT"].attributes["error.type"] == code
    assert spans["SERVER"].attributes["error.type"] == code
    assert spans["SERVER"].status_code == "ERROR"
    assert spans["SERVER"].status_description == "ValueError: Error rendering prompt brief"


@pytest.mark.skipif(MAJOR < 2, reason="Client(server) in-process is mcp 2.x")
@pytest.mark.parametrize("code", [-32000, -32001, -32042])
def test_direct_in_process_error_answers_are_responses(
    telemetry: Any, instrumented: None, code: int
) -> None:
    """``Client(server)`` on the direct dispatcher: an ``MCPError`` the server's handler raises
    is its answer, recorded with its code, even one that shares its code with the SDK's own
    timeout (-32001) or closed connection (-32000); the dispatcher's own timeout stays one."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer
    from mcp.shared.exceptions import MCPError

    server = MCPServer("weather")

    @server.resource("weather://{city}")
    def forecast(city: str) -> str:
        try:
            raise TimeoutError("backend slow")  # an answer given while handling its own timeout
        except TimeoutError:
            raise MCPError(code, f"no backend for {city}")  # noqa: B904

    @server.tool()
    async def slow() -> str:
        """Answers too late."""
        await anyio.sleep(5)
        return "late"

    async def main() -> None:
        async with Client(server, mode="auto") as client:  # type: ignore[arg-type]
            with pytest.raises(MCPError) as raised:
                await client.read_resource("weather://Paris")
            assert raised.value.error.code == code
            with pytest.raises(MCPError, match="Timed out"):
                await client.call_tool("slow", {}, read_timeout_seconds=0.2)

    anyio.run(main)
    spans = {(s.name, s.kind): s for s in telemetry.spans()}
    for kind in ("CLIENT", "SERVER"):
        read = spans["resources/read", kind]
        assert read.attributes["rpc.response.status_code"] == str(code), kind
        assert read.attributes["error.type"] == str(code), kind
    timed_out = spans["tools/call slow", "CLIENT"]
    assert timed_out.attributes["error.type"] == "timeout"
    assert "rpc.response.status_code" not in timed_out.attributes
