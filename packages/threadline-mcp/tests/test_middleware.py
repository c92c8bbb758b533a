"""The server middleware's mapping of outcomes to spans, driven directly with request contexts
(no transport: nothing here is about propagation, which the subprocess tests cover)."""

from __future__ import annotations

import json
import types
from typing import Any

import anyio
import pytest
from harness import MAJOR

import threadline
import threadline.mcp
from threadline.mcp import TracingMiddleware

pytestmark = pytest.mark.skipif(MAJOR < 2, reason="ServerMiddleware is mcp 2.x")

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _ctx(method: str = "tools/call", params: Any = None, request_id: Any = 7) -> Any:
    if params is None:
        params = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    return types.SimpleNamespace(
        method=method,
        params=params,
        request_id=request_id,
        protocol_version="2025-11-25",
        request=None,
        session=types.SimpleNamespace(_connection=None),
    )


def _serve(middleware: TracingMiddleware, ctx: Any, handler: Any) -> Any:
    async def main() -> Any:
        return await middleware(ctx, handler)

    return anyio.run(main)


def _mcp_error(code: int, message: str) -> BaseException:
    from mcp.shared.exceptions import MCPError

    return MCPError(code=code, message=message)


def test_success_and_tool_error(telemetry: Any) -> None:
    async def ok(ctx: Any) -> Any:
        return {"content": [], "isError": False}

    async def soft_fail(ctx: Any) -> Any:
        return {"content": [], "isError": True}

    _serve(TracingMiddleware(), _ctx(), ok)
    _serve(TracingMiddleware(), _ctx(), soft_fail)
    assert telemetry.tree(attributes=("jsonrpc.request.id", "network.transport")) == (
        "tools/call get_weather [SERVER] jsonrpc.request.id=7 network.transport=pipe\n---\n"
        "tools/call get_weather [SERVER] jsonrpc.request.id=7 network.transport=pipe"
        " !ERROR error.type=tool_error"
    )
    points = telemetry.metric_points("mcp.server.operation.duration")
    assert sorted(p["attributes"].get("error.type", "") for p in points) == ["", "tool_error"]


@pytest.mark.parametrize("request_id", ["x" * 129, 10**4000, -(10**19)])
def test_oversized_request_ids_stay_off_the_span(telemetry: Any, request_id: Any) -> None:
    """Ids come from the peer: JSON allows strings and integers of any size."""

    async def ok(ctx: Any) -> Any:
        return {"content": [], "isError": False}

    _serve(TracingMiddleware(), _ctx(request_id=request_id), ok)
    (span,) = telemetry.spans()
    assert "jsonrpc.request.id" not in span.attributes


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [(-32602, "UNSET", None), (-32601, "UNSET", None), (-32603, "ERROR", "-32603")],
)
def test_json_rpc_errors(telemetry: Any, code: int, status: str, error: str | None) -> None:
    """Bad-request codes are recorded but are not server errors; the rest are."""
    raised = _mcp_error(code, "nope")

    async def handler(ctx: Any) -> Any:
        raise raised

    with pytest.raises(type(raised)) as caught:
        _serve(TracingMiddleware(), _ctx(), handler)
    assert caught.value is raised
    span = telemetry.find("tools/call get_weather")
    assert span.attributes["rpc.response.status_code"] == str(code)
    assert span.status_code == status
    assert span.attributes.get("error.type") == error


def test_handler_exception_is_reraised_untouched(telemetry: Any) -> None:
    class WeatherDown(Exception):
        pass

    raised = WeatherDown("down")

    async def handler(ctx: Any) -> Any:
        raise raised

    with pytest.raises(WeatherDown) as caught:
        _serve(TracingMiddleware(), _ctx(), handler)
    assert caught.value is raised
    span = telemetry.find("tools/call get_weather")
    assert span.attributes["error.type"].endswith("WeatherDown")
    assert span.status_code == "ERROR"


def _dispatch(kind: str, *, raising: bool = False, cancelled: bool = False) -> Any:
    """A real mcp 2.x dispatch context: ``legacy`` (the JSONRPCDispatcher's own), ``modern``
    (wrapped for a 2026-07-28 request over a stream), or anything else (not the SDK's)."""
    from mcp.server.runner import _NoServerRequestsDispatchContext
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher, _JSONRPCDispatchContext
    from mcp.shared.transport_context import TransportContext

    send, receive = anyio.create_memory_object_stream[Any](1)
    dispatcher: Any = JSONRPCDispatcher(receive, send, raise_handler_exceptions=raising)
    dctx = _JSONRPCDispatchContext(
        transport=TransportContext(kind="jsonrpc", can_send_request=True),
        _dispatcher=dispatcher,
        _request_id=7,
    )
    if cancelled:
        dctx.cancel_requested.set()
    if kind == "legacy":
        return dctx
    if kind == "modern":
        return _NoServerRequestsDispatchContext(dctx)
    return types.SimpleNamespace(cancel_requested=anyio.Event(), _dispatcher=object())


@pytest.mark.parametrize(
    ("kind", "options", "request_id", "expected"),
    [
        ("legacy", {}, 7, "0"),
        ("modern", {}, 7, "-32603"),
        ("legacy", {"raising": True}, 7, None),  # the answer may never leave the process
        ("modern", {"raising": True}, 7, None),
        ("legacy", {"cancelled": True}, 7, None),  # peer cancelled: never answered
        ("legacy", {}, None, None),  # a notification: never answered
        ("unknown", {}, 7, None),
    ],
)
def test_handler_exception_carries_the_code_answered_with(
    telemetry: Any, kind: str, options: Any, request_id: Any, expected: str | None
) -> None:
    """An exception that is no MCP error: the span carries the JSON-RPC code the SDK answers
    with, read from the request's dispatch context, and only when an answer is sure to go
    out: then ``error.type`` is that code, else the exception's class. Either way the status
    description tells the exception."""
    raised = RuntimeError("store down")

    async def handler(ctx: Any) -> Any:
        raise raised

    async def main() -> None:
        ctx = _ctx(request_id=request_id)
        ctx.session._request_outbound = _dispatch(kind, **options)
        with pytest.raises(RuntimeError) as caught:
            await TracingMiddleware(notifications="all")(ctx, handler)
        assert caught.value is raised

    anyio.run(main)
    span = telemetry.find("tools/call get_weather")
    assert span.attributes.get("rpc.response.status_code") == expected
    error = expected or "RuntimeError"
    assert (span.status_code, span.attributes["error.type"]) == ("ERROR", error)
    assert span.status_description == "RuntimeError: store down"
    (point,) = telemetry.metric_points("mcp.server.operation.duration")
    assert point["attributes"].get("rpc.response.status_code") == expected
    assert point["attributes"]["error.type"] == error


def test_dispatch_contexts_the_codes_are_read_from() -> None:
    """Contract with the SDK: where its answer to an unmapped exception is decided."""
    from threadline.mcp._server import _dispatch_kinds

    assert _dispatch_kinds() is not None


def test_context_is_attached_during_the_handler_and_detached_after(telemetry: Any) -> None:
    seen: dict[str, Any] = {}

    async def handler(ctx: Any) -> Any:
        seen["run"] = threadline.current_run()
        seen["session"] = threadline.current_session()
        return {"content": []}

    ctx = _ctx(
        params={"name": "x", "_meta": {"traceparent": TRACEPARENT, "baggage": "session.id=s"}}
    )
    _serve(TracingMiddleware(), ctx, handler)
    assert isinstance(seen["run"], threadline.McpRun)
    assert seen["session"] == {"session.id": "s"}
    assert threadline.current_run() is None
    assert threadline.current_session() == {}
    span = telemetry.find("tools/call x")
    assert span.trace_id == TRACEPARENT.split("-")[1]
    assert span.attributes["session.id"] == "s"


@pytest.mark.parametrize(
    ("policy", "meta", "traced"),
    [
        ("traced", None, False),
        ("traced", {"traceparent": TRACEPARENT}, True),
        ("all", None, True),
        ("none", {"traceparent": TRACEPARENT}, False),
    ],
)
def test_notifications(telemetry: Any, policy: Any, meta: Any, traced: bool) -> None:
    params = {"requestId": 3} if meta is None else {"requestId": 3, "_meta": meta}

    async def handler(ctx: Any) -> None:
        return None

    ctx = _ctx("notifications/cancelled", params, request_id=None)
    _serve(TracingMiddleware(notifications=policy), ctx, handler)
    names = [s.name for s in telemetry.spans()]
    assert names == (["notifications/cancelled"] if traced else [])
    if traced:
        assert "jsonrpc.request.id" not in telemetry.spans()[0].attributes


def test_cancellation(telemetry: Any) -> None:
    async def main() -> None:
        async def handler(ctx: Any) -> Any:
            await anyio.sleep(10)

        with anyio.move_on_after(0.05):
            await TracingMiddleware()(_ctx(), handler)

    anyio.run(main)
    span = telemetry.find("tools/call get_weather")
    assert span.attributes["error.type"] == "cancelled"
    assert threadline.current_run() is None


def test_fail_open(telemetry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(threadline, "mcp_request", broken)

    async def handler(ctx: Any) -> Any:
        return {"content": ["served"]}

    assert _serve(TracingMiddleware(), _ctx(), handler) == {"content": ["served"]}
    assert telemetry.spans() == []


def test_replaces_the_sdk_middleware_in_place() -> None:
    """Contract with the provisional SDK API: servers start with the SDK's OpenTelemetry
    middleware, and composing a chain puts ours in its place (outermost)."""
    from mcp.server._otel import OpenTelemetryMiddleware
    from mcp.server.lowlevel import Server
    from mcp.server.mcpserver import MCPServer
    from mcp.server.runner import ServerRunner

    ours = TracingMiddleware()
    app = MCPServer("weather", middleware=[ours])
    chain = app.middleware
    assert isinstance(chain[0], OpenTelemetryMiddleware)
    ServerRunner._compose_server_middleware(
        types.SimpleNamespace(server=app._lowlevel_server), None
    )  # type: ignore[arg-type]
    assert chain[0] is ours
    assert not [m for m in chain if isinstance(m, OpenTelemetryMiddleware)]
    assert len(chain) == 2  # ours and the SDK's request-state boundary

    low = Server("weather")
    low.middleware.append(TracingMiddleware())
    ServerRunner._compose_server_middleware(types.SimpleNamespace(server=low), None)  # type: ignore[arg-type]
    assert [type(m) for m in low.middleware] == [TracingMiddleware]

    untouched = Server("plain")  # no TracingMiddleware: the SDK's stays
    ServerRunner._compose_server_middleware(types.SimpleNamespace(server=untouched), None)  # type: ignore[arg-type]
    assert [type(m) for m in untouched.middleware] == [OpenTelemetryMiddleware]


def test_instrument_traces_servers_without_middleware_of_their_own() -> None:
    """Zero-code: with instrument(), a server that has only the SDK's middleware is composed
    with ours in its place; its own list is left as it was, and uninstrument() brings the SDK's
    back."""
    from mcp.server._otel import OpenTelemetryMiddleware
    from mcp.server.lowlevel import Server
    from mcp.server.runner import ServerRunner

    def outermost(server: Any) -> Any:
        call = ServerRunner._compose_server_middleware(types.SimpleNamespace(server=server), None)  # type: ignore[arg-type]
        return call.args[0]  # partial(_apply_middleware, middleware, inner)

    plain = Server("plain")
    threadline.mcp.instrument()
    try:
        assert isinstance(outermost(plain), TracingMiddleware)
        assert [type(m) for m in plain.middleware] == [OpenTelemetryMiddleware]
        removed = Server("no-otel")
        removed.middleware.clear()  # the server opted out of tracing: it stays out
        assert (
            ServerRunner._compose_server_middleware(types.SimpleNamespace(server=removed), "inner")
            == "inner"
        )
    finally:
        threadline.mcp.uninstrument()
    assert isinstance(outermost(plain), OpenTelemetryMiddleware)


def test_content_only_when_capture_is_on(telemetry: Any, capture_content: Any) -> None:
    async def handler(ctx: Any) -> Any:
        return {"content": [{"type": "text", "text": "sunny"}], "isError": False}

    _serve(TracingMiddleware(), _ctx(), handler)
    span = telemetry.find("tools/call get_weather")
    assert json.loads(span.attributes["gen_ai.tool.call.arguments"]) == {"city": "Oslo"}
    assert "sunny" in span.attributes["gen_ai.tool.call.result"]


def test_no_content_by_default(telemetry: Any) -> None:
    async def handler(ctx: Any) -> Any:
        return {"content": [{"type": "text", "text": "sunny"}], "isError": False}

    _serve(TracingMiddleware(), _ctx(), handler)
    span = telemetry.find("tools/call get_weather")
    assert not [k for k in span.attributes if k.startswith("gen_ai.tool.call.")]


def test_client_wrapper_maps_outcomes(telemetry: Any, capture_content: Any) -> None:
    """The mcp 2.x client wrapper around the dispatcher, with a stand-in dispatcher."""
    from threadline.mcp import _client

    sent: list[Any] = []

    async def original(self: Any, method: str, params: Any, *args: Any, **kwargs: Any) -> Any:
        meta: dict[str, Any] = dict(params.get("_meta") or {})
        with _client.sdk_span("MCP send", attributes={"jsonrpc.request.id": "9"}) as span:
            _client.inject_meta(meta)
            if params["name"] == "down":  # an error response, marked as the SDK does
                span.set_attributes({"error.type": "-32603", "rpc.response.status_code": "-32603"})
        sent.append(meta)
        if params["name"] == "down":
            raise _mcp_error(-32603, "internal")
        if params["name"] == "slow":  # the SDK gave up waiting: no response
            raise _mcp_error(-32001, "Request 'tools/call' timed out")
        return {"content": [{"type": "text", "text": "sunny"}], "isError": params["name"] == "soft"}

    send = _client.wrap_send_raw_request(original)

    async def main() -> None:
        with threadline.session("s-1"), threadline.invoke_agent("agent"):
            await send(None, "tools/call", {"name": "ok", "arguments": {"a": 1}})
            await send(None, "tools/call", {"name": "soft", "_meta": {"baggage": "secret=1"}})
            with pytest.raises(Exception, match="internal"):
                await send(None, "tools/call", {"name": "down"})
            with pytest.raises(Exception, match="timed out"):
                await send(None, "tools/call", {"name": "slow"})

    anyio.run(main)
    assert telemetry.tree(attributes=("jsonrpc.request.id", "rpc.response.status_code")) == (
        "invoke_agent agent [INTERNAL]\n"
        "  tools/call ok [CLIENT] jsonrpc.request.id=9\n"
        "  tools/call soft [CLIENT] jsonrpc.request.id=9 !ERROR error.type=tool_error\n"
        "  tools/call down [CLIENT] jsonrpc.request.id=9 rpc.response.status_code=-32603"
        " !ERROR error.type=-32603\n"
        "  tools/call slow [CLIENT] jsonrpc.request.id=9 !ERROR error.type=timeout"
    )
    ok = telemetry.find("tools/call ok")
    assert sent[0]["traceparent"].split("-")[2] == ok.span_id
    assert [m["baggage"] for m in sent] == ["session.id=s-1"] * 4  # caller's "secret" replaced
    assert json.loads(ok.attributes["gen_ai.tool.call.arguments"]) == {"a": 1}
    points = telemetry.metric_points("mcp.client.operation.duration")
    assert sorted(p["attributes"].get("error.type", "") for p in points) == [
        "",
        "-32603",
        "timeout",
        "tool_error",
    ]


def test_client_cancellation(telemetry: Any) -> None:
    from threadline.mcp import _client

    async def original(self: Any, method: str, params: Any, *args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(10)

    send = _client.wrap_send_raw_request(original)

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await send(None, "tools/call", {"name": "slow"})

    anyio.run(main)
    span = telemetry.find("tools/call slow")
    assert span.kind == "CLIENT"
    assert span.attributes["error.type"] == "cancelled"
    assert threadline.current_run() is None


def test_construction_survives_a_changed_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a future SDK drops the seam used to replace its middleware, servers still start."""
    from mcp.server import runner

    from threadline.mcp import _server

    monkeypatch.delattr(runner.ServerRunner, "_compose_server_middleware")
    monkeypatch.setattr(_server, "_REPLACING", "_threadline_test_marker")
    middleware = TracingMiddleware()
    assert middleware.notifications == "traced"


@pytest.mark.parametrize(
    ("code", "message", "answered", "expected"),
    [
        (-32001, "Request 'tools/call' timed out", False, "timeout"),  # mcp 2.x, raised locally
        (-32000, "Connection closed", False, "connection_closed"),
        (-32000, "Connection closed", True, None),  # a server's own -32000 response
        (-32603, "internal", True, None),
        (408, "Timed out while waiting for response", None, "timeout"),  # mcp 1.x
        (-32000, "Connection closed", None, "connection_closed"),
        (-32000, "Server overloaded", None, None),
        (-32603, "internal", None, None),
    ],
)
def test_errors_the_sdk_raises_itself_are_not_responses(
    code: int, message: str, answered: bool | None, expected: str | None
) -> None:
    """No ``rpc.response.status_code`` for an error no response carried (the conventions'
    general ``error.type`` guidance applies to timeouts and transport errors)."""
    from threadline.mcp._common import local_failure

    assert local_failure(code, message, answered=answered) == expected


def test_only_the_sdks_errors_are_answered_with_their_own_code() -> None:
    """An exception that merely looks like an MCP error (an ``error`` with a ``code``) is
    answered by the SDK like any other: its code is not the response's."""
    from mcp.shared.exceptions import MCPError

    from threadline.mcp._common import error_code

    class LookAlike(Exception):
        def __init__(self) -> None:
            self.error = types.SimpleNamespace(code=-32602, message="nope")

    class Subclass(MCPError):
        pass

    assert error_code(LookAlike()) is None
    assert error_code(MCPError(-32602, "nope")) == (-32602, "nope")
    assert error_code(Subclass(-32001, "custom")) == (-32001, "custom")


def test_a_rejected_discovery_probe_is_no_error(telemetry: Any) -> None:
    """Client(mode="auto") probes with server/discover and falls back to initialize when a
    server of an older protocol rejects it: the rejection is recorded, not made an error."""
    from mcp.shared.exceptions import MCPError

    from threadline.mcp import _client

    for method, code in (
        ("server/discover", -32602),
        ("server/discover", -32603),
        ("ping", -32602),
    ):
        run = threadline.mcp_request(method, server=False)
        _client.fail(run, MCPError(code, "nope"), answered=True)
    outcome = [
        (
            s.name,
            s.status_code,
            s.attributes.get("error.type"),
            s.attributes["rpc.response.status_code"],
        )
        for s in telemetry.spans()
    ]
    assert outcome == [
        ("server/discover", "UNSET", None, "-32602"),
        ("server/discover", "ERROR", "-32603", "-32603"),
        ("ping", "ERROR", "-32602", "-32602"),
    ]


def test_callers_own_meta_baggage_is_filtered_without_a_span(telemetry: Any) -> None:
    """Messages sent outside any span (notifications) keep their ``_meta`` but lose
    the baggage entries outside the allow-list."""
    from threadline.mcp import _client

    sent: list[Any] = []

    async def original(self: Any, method: str, params: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(params)

    notify = _client.wrap_notify(original)
    plain = {"requestId": 1}
    foreign = {"requestId": 2, "_meta": {"baggage": "secret=1,session.id=s-0", "token": 3}}

    async def main() -> None:
        await notify(None, "notifications/cancelled", plain)
        await notify(None, "notifications/cancelled", foreign)
        with threadline.session("s-1"):
            await notify(None, "notifications/cancelled", foreign)

    anyio.run(main)
    assert sent[0] is plain  # nothing to add or remove: sent as it was
    assert sent[1] == {"requestId": 2, "_meta": {"token": 3}}
    assert sent[2] == {"requestId": 2, "_meta": {"baggage": "session.id=s-1", "token": 3}}
    assert foreign["_meta"]["baggage"] == "secret=1,session.id=s-0"  # the caller's dict intact
    assert telemetry.spans() == []
