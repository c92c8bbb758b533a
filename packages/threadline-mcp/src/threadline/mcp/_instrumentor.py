"""``MCPInstrumentor``: clients and servers, mcp 2.x and 1.x (2.x servers through
``TracingMiddleware`` in place of the SDK's OpenTelemetry middleware)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from threadline._deferred import DeferredInstrumentation
from threadline._failopen import report
from threadline._instrumentor import DeferredInstrumentor
from threadline._patching import Patches

_INSTRUMENTS = ("mcp >= 1.30",)


def _major() -> int:
    from importlib.metadata import version

    return int(version("mcp").split(".", 1)[0])


_logger = logging.getLogger("threadline.mcp")
_patches = Patches()
_deferred = DeferredInstrumentation(
    "mcp",
    instrument="threadline.mcp._instrumentor:apply",
    uninstrument="threadline.mcp._instrumentor:undo",
    options=("merge_tool_spans",),
)


def _replace_if_present(module: str, cls: str | None, name: str, wrap: Any) -> None:
    """Patch what only some mcp releases have: one without it is traced all the same."""
    try:
        _patches.replace_in(module, cls, name, wrap)
    except (ImportError, AttributeError) as error:
        _logger.debug("mcp has no %s.%s%s: %s", module, f"{cls}." if cls else "", name, error)


def apply(*, merge_tool_spans: bool = False) -> None:
    """Patch the mcp SDK (once; a later call only sets the options)."""
    from threadline.mcp import _client, _server

    _client.Options.merge_tool_spans = bool(merge_tool_spans)
    patches = _patches
    if patches:
        return
    # Transports whose server messages carry no HTTP request, told apart from stdio; optional:
    # a release without one of them is traced all the same.
    for module, transport, wrap in (
        ("mcp.shared.memory", "create_client_server_memory_streams", _server.wrap_memory_streams),
        ("mcp.client._memory", "create_client_server_memory_streams", _server.wrap_memory_streams),
        ("mcp.server.websocket", "websocket_server", _server.wrap_websocket_server),
    ):
        _replace_if_present(module, None, transport, wrap)
    try:
        if _major() >= 2:
            dispatcher = "mcp.shared.jsonrpc_dispatcher"
            patches.replace_in(
                dispatcher,
                "JSONRPCDispatcher",
                "send_raw_request",
                _client.wrap_send_raw_request,
            )
            patches.replace_in(dispatcher, "JSONRPCDispatcher", "notify", _client.wrap_notify)
            # A 2026-07-28 server answering over streamable HTTP sends its notifications on
            # the request's own response stream, around the dispatcher.
            _replace_if_present(
                "mcp.server._streamable_http_modern",
                "_SingleExchangeDispatchContext",
                "notify",
                _client.wrap_notify,
            )
            # Client(server) with an in-process server: requests (and the server's requests
            # back to the client) call the peer directly; no _meta is needed, the peer's
            # span joins the current context.
            patches.replace_in(
                "mcp.shared.direct_dispatcher",
                "DirectDispatcher",
                "send_raw_request",
                _client.wrap_send_raw_request,
            )
            direct = importlib.import_module("mcp.shared.direct_dispatcher").DirectDispatcher
            if hasattr(direct, "_make_context"):  # where an in-process request gets its id
                patches.replace(direct, "_make_context", _client.wrap_make_context)
            patches.replace_in(dispatcher, None, "otel_span", lambda _: _client.sdk_span)
            patches.replace_in(
                dispatcher, None, "inject_trace_context", lambda _: _client.inject_meta
            )
            patches.replace_in(
                "mcp.client.client", "Client", "_build_session", _client.wrap_build_session
            )
            # A call the Client sends more than once (2026-07-28: again with the input an
            # InputRequiredResult asks for, or after a HEADER_MISMATCH): one CLIENT span for
            # its requests (optional).
            client_class = importlib.import_module("mcp.client.client").Client
            if hasattr(client_class, "_drive_input_required"):
                patches.replace(
                    client_class, "_drive_input_required", _client.wrap_drive_input_required
                )
                for name, method in (
                    ("call_tool", "tools/call"),
                    ("get_prompt", "prompts/get"),
                    ("read_resource", "resources/read"),
                ):
                    patches.replace(client_class, name, _client.wrap_rounds(method))
            http = "mcp.client.streamable_http"
            patches.replace_in(
                http,
                "StreamableHTTPTransport",
                "_handle_post_request",
                _client.wrap_handle_post_request,
            )
            patches.replace_in(
                http,
                "StreamableHTTPTransport",
                "_handle_resumption_request",
                _client.wrap_handle_post_request,
            )
            patches.replace_in(
                http,
                "StreamableHTTPTransport",
                "_maybe_extract_session_id_from_response",
                _client.wrap_extract_session_id,
            )
            session = "mcp.client.session"
            patches.replace_in(
                session, "ClientSession", "_on_request", _server.wrap_client_on_request
            )
            patches.replace_in(
                session, "ClientSession", "_on_notify", _server.wrap_client_on_notify
            )
            patches.replace_in(session, "ClientSession", "__aenter__", _client.wrap_session_enter)
            patches.replace_in(session, "ClientSession", "__aexit__", _client.wrap_session_exit)
            # A server's requests to its client: the connection they go out on.
            patches.replace_in(
                "mcp.server.session",
                "ServerSession",
                "send_request",
                _client.wrap_server_send_request,
            )
            # ... and its notifications to it (progress, log messages, list changes), where a
            # release has these methods (a low-level handler's ``ctx.notify`` goes around them).
            server_session = importlib.import_module("mcp.server.session").ServerSession
            for method in ("_notify", "report_progress"):
                if hasattr(server_session, method):
                    patches.replace(server_session, method, _client.wrap_server_send_request)
            _server.trace_every_server(True)
        else:
            patches.replace_in(
                "mcp.shared.session", "BaseSession", "send_request", _client.wrap_send_request
            )
            patches.replace_in(
                "mcp.server.lowlevel.server",
                "Server",
                "_handle_request",
                _server.wrap_handle_request,
            )
            patches.replace_in(
                "mcp.server.session",
                "ServerSession",
                "_received_request",
                _server.wrap_received_request,
            )
            # Notifications from the client (1.x has no hook of its own for them; optional).
            _replace_if_present(
                "mcp.server.lowlevel.server",
                "Server",
                "_handle_message",
                _server.wrap_handle_message,
            )
            patches.replace_in(
                "mcp.client.session",
                "ClientSession",
                "_received_request",
                _server.wrap_client_received_request,
            )
            patches.replace_in(
                "mcp.shared.session",
                "BaseSession",
                "send_notification",
                _client.wrap_send_notification,
            )
            patches.replace_in(
                "mcp.client.session",
                "ClientSession",
                "_received_notification",
                _server.wrap_client_received_notification,
            )
            # A server run over a legacy SSE connection: its session id (optional, as above).
            _replace_if_present(
                "mcp.server.sse", "SseServerTransport", "connect_sse", _server.wrap_connect_sse
            )
            # A server run over a streamable HTTP transport: the session id it issued.
            _replace_if_present(
                "mcp.server.streamable_http",
                "StreamableHTTPServerTransport",
                "connect",
                _server.wrap_streamable_http_connect,
            )
            # Client and server sessions: mcp.{client,server}.session.duration.
            shared = "mcp.shared.session"
            patches.replace_in(shared, "BaseSession", "__aenter__", _client.wrap_session_enter)
            patches.replace_in(shared, "BaseSession", "__aexit__", _client.wrap_session_exit)
        # Client transports: a session over their streams knows its server (network
        # attributes; on mcp 2.x, where its Client cannot tell: SSE, or any transport a session
        # is made over by hand); optional, as above. ClientSessionGroup imported two by name.
        for module, transport, kind in (
            ("mcp.client.stdio", "stdio_client", "stdio"),
            ("mcp", "stdio_client", "stdio"),
            ("mcp.client.streamable_http", "streamable_http_client", "http"),
            ("mcp.client.sse", "sse_client", "sse"),
            ("mcp.client.websocket", "websocket_client", "websocket"),
            ("mcp.client.session_group", "sse_client", "sse"),
            ("mcp.client.session_group", "streamable_http_client", "http"),
        ):
            try:
                patches.replace_in(module, None, transport, _client.wrap_client_transport(kind))
            except Exception as error:  # noqa: BLE001 - absent, or its imports fail
                _logger.debug("mcp has no %s.%s: %s", module, transport, error)
    except Exception as error:  # noqa: BLE001 - an unknown mcp layout: leave it untouched
        patches.undo()
        report("threadline.mcp.instrument", error)


def undo() -> None:
    from threadline.mcp import _server

    _patches.undo()
    _server.trace_every_server(False)


class MCPInstrumentor(DeferredInstrumentor):
    """Traces MCP clients and servers in this process (mcp 2.x and 1.x), from when mcp is
    imported (at once if it already is). A 2.x server gets a
    :class:`threadline.mcp.TracingMiddleware` in place of the SDK's built-in OpenTelemetry
    middleware unless it has one of its own."""

    deferred = _deferred
    requirements = _INSTRUMENTS


def instrument(*, merge_tool_spans: bool = False, **kwargs: Any) -> None:
    """Trace MCP clients and servers in this process. Idempotent: once instrumented (by an
    earlier call or ``opentelemetry-instrument``), a call only sets the options it is given.

    ``merge_tool_spans``: record a ``tools/call`` on the enclosing threadline ``execute_tool``
    span of the same tool instead of a CLIENT span beneath it (off by default)."""
    instrumentor = MCPInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        _deferred.enable({"merge_tool_spans": merge_tool_spans})
        return
    instrumentor.instrument(merge_tool_spans=merge_tool_spans, **kwargs)


def uninstrument() -> None:
    """Undo :func:`instrument`; nothing to do if not instrumented."""
    instrumentor = MCPInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
