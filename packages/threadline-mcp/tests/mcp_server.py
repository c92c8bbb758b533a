"""An MCP server for the cross-process tests, run as a subprocess.

    python mcp_server.py stdio SPANS_FILE
    python mcp_server.py http SPANS_FILE PORT_FILE      # 127.0.0.1, ephemeral port
    python mcp_server.py sse SPANS_FILE PORT_FILE       # the legacy SSE transport, likewise
    python mcp_server.py websocket SPANS_FILE PORT_FILE # mcp 1.x's websocket transport, likewise

Spans go to SPANS_FILE as JSON lines. mcp 2.x servers use ``TracingMiddleware``; mcp 1.x servers
are traced by ``threadline.mcp.instrument()``. Set ``SERVER_LOWLEVEL=1`` (mcp 2.x) for a low-level
``Server`` instead of ``MCPServer``, ``SERVER_INSTRUMENT_ONLY=1`` (mcp 2.x) for an ``MCPServer``
traced by ``instrument()`` alone, ``SERVER_NO_META=1`` for one that sends no trace context,
``SERVER_STARTUP_SPAN=1`` to serve inside a span of the server process's own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from importlib.metadata import version
from typing import Any

from opentelemetry import baggage
from opentelemetry.sdk.resources import Resource

import threadline
import threadline.mcp
from threadline.testing import install_jsonl_exporter

MAJOR = int(version("mcp").split(".", 1)[0])


if MAJOR >= 2:
    from mcp.server.mcpserver import Context
else:
    from mcp.server.fastmcp import Context


def wire_baggage(meta: Any) -> Any:
    """The ``baggage`` entry of ``_meta`` exactly as it came over the wire."""
    if meta is None:
        return None
    if isinstance(meta, dict):
        return meta.get("baggage")
    return (getattr(meta, "model_extra", None) or {}).get("baggage")


def lookup(city: str, meta: Any = None) -> str:
    # The tool's own work: a span that must be a child of the tools/call SERVER span.
    with threadline.step("lookup_forecast"):
        seen = {
            "city": city,
            "forecast": "sunny",
            "session": threadline.current_session(),
            "baggage": dict(baggage.get_all()),
            "wire_baggage": wire_baggage(meta),
        }
    return json.dumps(seen, sort_keys=True)


def get_weather(city: str, ctx: Context) -> str:  # type: ignore[type-arg]
    return lookup(city, ctx.request_context.meta)


def broken(city: str) -> str:
    raise ValueError(f"no forecast for {city}")


def city_brief(city: str, style: str = "short") -> str:
    """A prompt template with two variables."""
    return f"Write a {style} weather brief for {city}."


def crash_prompt() -> str:
    """A prompt whose function raises: the SDK answers with a JSON-RPC error."""
    raise RuntimeError("prompt store down")


def crash_resource() -> str:
    raise RuntimeError("resource store down")


async def slow(seconds: float) -> str:
    import anyio

    await anyio.sleep(seconds)
    return "done"


async def chatty(ctx: Context) -> str:  # type: ignore[type-arg]
    """Logs to the client while the call is open (a message on the request's own stream)."""
    await ctx.info("working on it")
    return "done"


async def progress(ctx: Context) -> str:  # type: ignore[type-arg]
    """Reports progress to the client while the call is open."""
    await ctx.report_progress(1, 2)
    await ctx.report_progress(2, 2)
    return "done"


async def complete(ref: Any, argument: Any, context: Any) -> Any:
    """Completes prompt and resource template arguments."""
    from mcp import types

    return types.Completion(values=["Paris"])


async def ask_model(question: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks the client's model (sampling): a request from the server back to the client."""
    from mcp import types

    result = await ctx.session.create_message(
        messages=[
            types.SamplingMessage(
                role="user", content=types.TextContent(type="text", text=question)
            )
        ],
        max_tokens=16,
    )
    return getattr(result.content, "text", "")


if MAJOR >= 2:
    from typing import Annotated

    from mcp import types as _types
    from mcp.server.mcpserver.resolve import Resolve, Sample

    def _sample(question: str) -> Sample:
        text = _types.TextContent(type="text", text=question)
        return Sample([_types.SamplingMessage(role="user", content=text)], max_tokens=16)

    async def ask_model_resolved(
        question: str, answer: Annotated[_types.CreateMessageResult, Resolve(_sample)]
    ) -> str:
        """``ask_model`` with the question asked through a resolver: a request to the client
        mid-call on handshake-era connections; on 2026-07-28 ones, an ``InputRequiredResult``
        the client answers, then retries the call with."""
        with threadline.step("use_answer"):
            return getattr(answer.content, "text", "")


def roots_changed() -> None:
    """The server's own work on a client notification: a span under its SERVER span."""
    with threadline.step("refresh_roots"):
        pass


def on_roots_changed(server: Any) -> None:
    """Handle ``notifications/roots/list_changed`` (``server``: an MCPServer or a FastMCP)."""
    from mcp import types

    if MAJOR >= 2:

        async def handler(ctx: Any, params: Any) -> None:
            roots_changed()

        server._lowlevel_server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, handler
        )
    else:

        async def v1_handler(notification: Any) -> None:
            roots_changed()

        server._mcp_server.notification_handlers[types.RootsListChangedNotification] = v1_handler


def build() -> Any:
    if MAJOR >= 2 and os.environ.get("SERVER_LOWLEVEL"):
        return build_lowlevel()
    # Requests this server sends to its client (sampling) are traced by instrument().
    threadline.mcp.instrument()
    if os.environ.get("SERVER_NO_META"):  # as an uninstrumented server: no context in _meta
        from threadline.mcp import _client

        _client._with_context = lambda params: params  # type: ignore[assignment]
        _client.v1_with_context = lambda message: message  # type: ignore[assignment]
    if MAJOR >= 2:
        from mcp.server.mcpserver import MCPServer

        # SERVER_INSTRUMENT_ONLY: no middleware of its own; instrument() (as zero-code
        # instrumentation would) puts ours in place of the SDK's.
        middleware = (
            [] if os.environ.get("SERVER_INSTRUMENT_ONLY") else [threadline.mcp.TracingMiddleware()]
        )
        server: Any = MCPServer("weather", middleware=middleware)
    else:
        from mcp.server.fastmcp import FastMCP

        server = FastMCP("weather")
    server.tool(name="get_weather")(get_weather)
    server.tool(name="broken")(broken)
    server.tool(name="ask_model")(ask_model)
    if MAJOR >= 2:
        server.tool(name="ask_model_resolved")(ask_model_resolved)
    server.tool(name="slow")(slow)
    server.tool(name="chatty")(chatty)
    server.tool(name="progress")(progress)
    server.prompt(name="crash_prompt")(crash_prompt)
    server.prompt(name="city_brief")(city_brief)
    server.completion()(complete)
    server.resource("weather://crash")(crash_resource)
    on_roots_changed(server)
    return server


def build_lowlevel() -> Any:
    from mcp import types
    from mcp.server.lowlevel import Server

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"city": {"type": "string"}}}
        # 2026-07-28 streamable HTTP: a client that has not listed it sends no Mcp-Param-City
        # header, and the SDK rejects the call with HEADER_MISMATCH.
        routed = {
            "type": "object",
            "properties": {"city": {"type": "string", "x-mcp-header": "City"}},
        }
        return types.ListToolsResult(
            tools=[
                types.Tool(name="get_weather", input_schema=schema),
                types.Tool(name="broken", input_schema=schema),
                types.Tool(name="routed", input_schema=routed),
            ]
        )

    async def call_tool(ctx: Any, params: Any) -> types.CallToolResult:
        city = (params.arguments or {}).get("city", "")
        if params.name == "broken":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="no forecast")], is_error=True
            )
        if params.name == "crash":  # a low-level handler has no isError conversion
            raise RuntimeError("tool store down")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=lookup(city, ctx.meta))]
        )

    async def get_prompt(ctx: Any, params: Any) -> types.GetPromptResult:
        raise RuntimeError("prompt store down")

    async def read_resource(ctx: Any, params: Any) -> types.ReadResourceResult:
        raise RuntimeError("resource store down")

    server = Server(
        "weather",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_get_prompt=get_prompt,
        on_read_resource=read_resource,
    )
    server.middleware.append(threadline.mcp.TracingMiddleware())
    return server


def http_span(app: Any) -> Any:
    """A stand-in for an ASGI instrumentation: one HTTP SERVER span per request, parented on
    the request's ``traceparent`` header and current while the app runs."""
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer("http-stand-in")

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = propagate.extract(headers)
        with tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", context=parent, kind=trace.SpanKind.SERVER
        ):
            return await app(scope, receive, send)

    return traced


def websocket_app(server: Any) -> Any:
    """A Starlette app serving ``server`` (a FastMCP) over mcp 1.x's websocket transport at /ws."""
    from mcp.server.websocket import websocket_server
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    lowlevel = server._mcp_server

    async def endpoint(websocket: Any) -> None:
        async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (
            read,
            write,
        ):
            await lowlevel.run(read, write, lowlevel.create_initialization_options())

    return Starlette(routes=[WebSocketRoute("/ws", endpoint=endpoint)])


def serve_http(
    server: Any, port_file: str, on_exit: Any = None, *, transport: str = "http"
) -> None:
    """Serve until SIGTERM (streamable HTTP at /mcp, the legacy SSE transport at /sse or the
    websocket transport at /ws); ``on_exit`` runs once the server has shut down (uvicorn
    re-raises the signal when ``serve`` returns, so nothing after it would run)."""
    import anyio
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            if on_exit is not None:
                on_exit()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    stateless: dict[str, Any] = {}
    if os.environ.get("SERVER_STATELESS"):
        if MAJOR >= 2:
            stateless["stateless_http"] = True
        else:
            server.settings.stateless_http = True  # FastMCP reads it from its settings
    if transport == "websocket":
        app = websocket_app(server)
    elif transport == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(**stateless)
    if os.environ.get("SERVER_HTTP_SPAN"):
        app = http_span(app)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn_server = Server(config)

    async def main() -> None:
        async def announce() -> None:
            while not uvicorn_server.started:
                await anyio.sleep(0.01)
            tmp = port_file + ".tmp"
            with open(tmp, "w") as file:
                file.write(str(sock.getsockname()[1]))
            os.replace(tmp, port_file)

        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await uvicorn_server.serve(sockets=[sock])

    anyio.run(main)


def record_metrics() -> Any:
    """With ``METRICS_FILE`` set, threadline's metrics are written there as JSON when the server
    exits (a stdio server exits when its client disconnects)."""
    path = os.environ.get("METRICS_FILE")
    if not path:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    threadline.configure(meter_provider=MeterProvider(metric_readers=[reader]))

    def dump() -> None:
        points = []
        data = reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        points.append(
                            {
                                "name": metric.name,
                                "attributes": dict(point.attributes or {}),
                                "count": getattr(point, "count", None),
                            }
                        )
        with open(path, "w") as file:
            json.dump(points, file)

    return dump


def main() -> None:
    transport, spans_file = sys.argv[1], sys.argv[2]
    if os.environ.get("SERVER_DEBUG_LOG"):
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
        logging.getLogger("threadline").setLevel(logging.DEBUG)
    install_jsonl_exporter(spans_file, resource=Resource({"service.name": "mcp-server"}))
    dump_metrics = record_metrics()
    server = build()
    if os.environ.get("SERVER_STARTUP_SPAN"):  # served from inside a span of the process's own
        with threadline.step("serve"):
            serve(server, transport, dump_metrics)
    else:
        serve(server, transport, dump_metrics)


def serve(server: Any, transport: str, dump_metrics: Any) -> None:
    if transport == "stdio":
        if MAJOR >= 2 and os.environ.get("SERVER_LOWLEVEL"):
            import anyio
            from mcp.server.stdio import stdio_server

            async def run() -> None:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

            anyio.run(run)
        else:
            server.run("stdio")
    else:
        serve_http(server, sys.argv[3], on_exit=dump_metrics, transport=transport)
        return
    if dump_metrics is not None:
        dump_metrics()


if __name__ == "__main__":
    main()
