"""Server side: one ``{mcp.method.name} {target}`` SERVER span per inbound MCP message.

For mcp 2.x this is :class:`TracingMiddleware`, a context-tier ``ServerMiddleware``. The same
logic (:class:`ServerCall`) serves the mcp 1.x request hook installed by ``instrument()``.

Trace context comes from ``params._meta`` (SEP-414), or, when ``_meta`` carries none and no HTTP
server span is active, from the HTTP request headers. A ``_meta`` parent that differs from an
active HTTP span wins, and the HTTP span becomes a link. The extracted context, with its
allow-listed baggage, is attached while the handler runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

import threadline
from threadline import semconv
from threadline._failopen import guarded, report
from threadline.mcp._common import (
    MAX_VERSION,
    error_code,
    is_cancellation,
    is_modern,
    is_no_back_channel,
    is_tool_error,
    record_request_content,
    session_id_text,
    sse_session_id_text,
    targets,
    version_text,
)
from threadline.propagation import has_context

if TYPE_CHECKING:
    from threadline.mcp._client import Peer

_logger = logging.getLogger("threadline.mcp")

_SESSION_STATE_KEY = "threadline.mcp.session_start"
_EMPTY = Context()
_MAX_REQUEST_ID = 128
_INTERNAL_ERROR = -32603

NotificationPolicy = Literal["traced", "all", "none"]


def _span_context(ctx: Context) -> trace.SpanContext:
    return trace.get_current_span(ctx).get_span_context()


def _parent(
    meta: object, headers: object, *, ambient: Context | None = None
) -> tuple[Context, list[trace.Link], bool]:
    """``(parent context, links, traced)`` for an inbound message; ``traced`` is False when
    neither the message nor the ambient context carries a trace. ``ambient`` defaults to the
    current context."""
    if ambient is None:
        ambient = otel_context.get_current()
    ambient_span = _span_context(ambient)
    in_meta = has_context(meta)
    parent = threadline.extract(meta, ambient) if in_meta else ambient
    remote = _span_context(parent)
    if not remote.is_valid and has_context(headers):
        # No parent from _meta and no HTTP span: a header-only upstream (gateway, proxy) set
        # the context in HTTP headers. _meta baggage, if any, still wins over header baggage.
        parent = threadline.extract(headers, ambient)
        if in_meta:
            parent = threadline.extract(meta, parent)
        remote = _span_context(parent)
    links: list[trace.Link] = []
    if ambient_span.is_valid and remote.span_id != ambient_span.span_id:
        links = threadline.links_to([ambient])
    return parent, links, remote.is_valid


def _session_id(connection: object, request: object) -> str | None:
    """The session this request belongs to. On mcp 2.x, only the id the server issued: a
    stateless server has none, whatever ``mcp-session-id`` header the client sends. mcp 1.x
    has no connection object, so the header is read (its stateful transport rejects unknown
    ids before any handler runs). A legacy SSE connection has no such id: see
    :func:`_sse_session_id`."""
    if connection is not None:
        value = getattr(connection, "session_id", None)
        if value is None:
            return _sse_session_id(connection, request)
    else:
        issued = _http_transport_session.get()
        if issued is not None:
            return issued[0]
        headers = getattr(request, "headers", None)
        value = headers.get("mcp-session-id") if isinstance(headers, Mapping) else None
        if value is None:
            sse = _sse_connection.get()
            return _v1_sse_session_id(sse, request) if sse is not None else None
    return session_id_text(value)


# mcp 1.x: the session id a streamable HTTP server transport issued (None when stateless), set
# while the transport is open, so the server run over its streams reads it: the id is known for
# ``initialize`` too (its request has no header yet), and a stateless server records none,
# whatever ``Mcp-Session-Id`` header a client makes up.
_http_transport_session: ContextVar[tuple[str | None] | None] = ContextVar(
    "threadline.mcp.http_transport_session", default=None
)


def wrap_streamable_http_connect(original: Any) -> Any:
    """Wraps mcp 1.x ``StreamableHTTPServerTransport.connect``."""
    return _set_while_open(
        original,
        _http_transport_session,
        lambda transport, *args, **kwargs: (
            session_id_text(getattr(transport, "mcp_session_id", None)),
        ),
        "threadline.mcp.server.streamable_http",
    )


# A legacy SSE connection's session id is the ``session_id`` query parameter of each POST the
# client sends (the SDK routes a POST to its connection by it): read from the first request
# that tells, then kept with the connection, so later requests pay one lookup.
_SSE_SESSION_KEY = "threadline.mcp.sse_session_id"


def _sse_session_id(connection: object, request: object) -> str | None:
    """mcp 2.x: the session id of an SSE connection, one with a channel of its own to the
    client and no ``Mcp-Session-Id`` (a stateless HTTP server's connections have no channel)."""
    state = getattr(connection, "state", None)
    if not isinstance(state, dict):
        return None
    if _SSE_SESSION_KEY in state:
        known: str | None = state[_SSE_SESSION_KEY]
        return known
    if request is None or getattr(connection, "has_standalone_channel", None) is not True:
        return None
    value = state[_SSE_SESSION_KEY] = _query_session_id(request)
    return value


class _SseConnection:
    """mcp 1.x: an SSE connection a server runs in (see ``wrap_connect_sse``)."""

    __slots__ = ("session_id",)

    def __init__(self) -> None:
        self.session_id: str | None = None


_sse_connection: ContextVar[_SseConnection | None] = ContextVar(
    "threadline.mcp.sse_connection", default=None
)


def _v1_sse_session_id(sse: _SseConnection, request: object) -> str | None:
    if sse.session_id is None and request is not None:
        sse.session_id = _query_session_id(request)
    return sse.session_id


def _query_session_id(request: object) -> str | None:
    query = getattr(request, "query_params", None)
    return sse_session_id_text(query.get("session_id") if isinstance(query, Mapping) else None)


def wrap_connect_sse(original: Any) -> Any:
    """Wraps mcp 1.x ``SseServerTransport.connect_sse``: a server run over its streams handles
    its requests in the context it was started in, so they can tell they came over SSE."""
    return _set_while_open(
        original,
        _sse_connection,
        lambda *args, **kwargs: _SseConnection(),
        "threadline.mcp.server.sse",
    )


def _in_process(session: object) -> bool:
    """Whether a 2.x request came from an in-process ``Client(server)`` through the direct
    dispatcher: no transport, so no network attributes."""
    outbound = getattr(session, "_request_outbound", None)
    transport = getattr(outbound, "transport", None) or getattr(
        getattr(outbound, "_inner", None), "transport", None
    )
    return getattr(transport, "kind", None) == "direct"


_Network = tuple[str | None, tuple[str, str | None] | None, str | None, int | None]
_NO_NETWORK: _Network = (None, None, None, None)
_STDIO: _Network = ("pipe", None, None, None)
_HTTP: _Network = ("tcp", ("http", None), None, None)

# The network of the transport a server runs over, where its messages carry no HTTP request:
# set while mcp's in-memory streams (``Client(server, mode="legacy")`` on 2.x,
# ``create_connected_server_and_client_session`` on 1.x: none) or a 1.x websocket connection
# (tcp) are open, so the server they run inherits it. Unset means stdio.
_transport_network: ContextVar[_Network | None] = ContextVar(
    "threadline.mcp.transport_network", default=None
)


def wrap_memory_streams(original: _ContextManagerFactory) -> _ContextManagerFactory:
    """Wraps ``mcp.shared.memory.create_client_server_memory_streams`` (1.x and 2.x)."""
    return _set_while_open(
        original, _transport_network, lambda *args, **kwargs: _NO_NETWORK, _TRANSPORT_SITE
    )


def wrap_websocket_server(original: _ContextManagerFactory) -> _ContextManagerFactory:
    """Wraps mcp 1.x ``websocket_server(scope, receive, send)``."""

    def network(scope: object = None, *args: Any, **kwargs: Any) -> _Network:
        client = scope.get("client") if isinstance(scope, Mapping) else None
        host, port = client if isinstance(client, (tuple, list)) and len(client) == 2 else (0, 0)
        return (
            "tcp",
            ("websocket", None),
            host if isinstance(host, str) else None,
            port if isinstance(port, int) and port > 0 else None,
        )

    return _set_while_open(original, _transport_network, network, _TRANSPORT_SITE)


def transport_protocol() -> str | None:
    """The network protocol of the transport a server in this context runs over, where its
    messages carry no HTTP request (``websocket``); None for stdio or in memory."""
    network = _transport_network.get()
    return network[1][0] if network is not None and network[1] is not None else None


_ContextManagerFactory = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


_T = TypeVar("_T")
_TRANSPORT_SITE = "threadline.mcp.transport"


def _set_while_open(
    original: _ContextManagerFactory,
    var: ContextVar[_T | None],
    value_of: Callable[..., _T],
    site: str,
) -> _ContextManagerFactory:
    """``original`` (a transport's context manager, or a method making one), setting ``var``
    to ``value_of(*its arguments)`` while it is open: the server run over its streams starts
    in that context and inherits the value."""
    if getattr(original, _TRANSPORT_WRAPPER, False):
        return original  # a module that imported it by name after it was wrapped

    @contextlib.asynccontextmanager
    async def transport(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(*args, **kwargs) as streams:
            token = None
            try:
                token = var.set(value_of(*args, **kwargs))
            except Exception as error:  # noqa: BLE001 - fail-open
                report(site, error)
            try:
                yield streams
            finally:
                if token is not None:
                    # exited in another context than it was entered in: nothing to undo here
                    with contextlib.suppress(ValueError):
                        var.reset(token)

    functools.update_wrapper(transport, original)
    setattr(transport, _TRANSPORT_WRAPPER, True)
    return transport


_TRANSPORT_WRAPPER = "_threadline_transport"


def _network(request: object) -> _Network:
    """``(network.transport, (protocol, version), peer address, peer port)`` of a message: an
    HTTP request object means TCP; with no request, the transport's own (see
    ``_transport_network``), stdio (a pipe) unless told otherwise."""
    if request is None:
        return _transport_network.get() or _STDIO
    scope = getattr(request, "scope", None)
    version = scope.get("http_version") if isinstance(scope, Mapping) else None
    protocol = ("http", version) if isinstance(version, str) else None
    address: str | None = None
    port: int | None = None
    client = getattr(request, "client", None)
    if client is not None:
        host = getattr(client, "host", None)
        address = host if isinstance(host, str) else None
        client_port = getattr(client, "port", None)
        port = client_port if isinstance(client_port, int) else None
    return "tcp", protocol, address, port


def _watch_session(connection: Any, request: object, session_id: str | None) -> None:
    """Record ``mcp.server.session.duration`` when a handshake-era connection closes."""
    if connection is None:
        return
    state = getattr(connection, "state", None)
    if not isinstance(state, dict) or _SESSION_STATE_KEY in state:
        return
    if _stateless(connection, request, session_id):
        return  # stateless HTTP: one connection per request, no session
    start = time.monotonic()
    state[_SESSION_STATE_KEY] = start

    def ended() -> None:
        version = getattr(connection, "protocol_version", None)
        threadline.record_mcp_session(
            time.monotonic() - start,
            server=True,
            protocol_version=version if isinstance(version, str) else None,
            network_protocol="http" if request is not None else None,
        )

    connection.exit_stack.callback(ended)


def _stateless(connection: Any, request: object, session_id: str | None) -> bool:
    """Whether a connection is a stateless HTTP server's: it has no channel of its own for
    messages to the client. Not told by its session id: a legacy SSE connection has none
    either, and is a session all the same."""
    channel = getattr(connection, "has_standalone_channel", None)
    if isinstance(channel, bool):
        return not channel
    return request is not None and session_id is None  # a release that does not tell


class ServerCall:
    """Starts and finishes the SERVER run of one inbound message (fail-open throughout)."""

    __slots__ = ("method", "run")

    def __init__(self, method: str, run: threadline.McpRun) -> None:
        self.method = method
        self.run = run

    @classmethod
    def start(
        cls,
        method: str,
        params: object,
        *,
        request_id: str | int | None,
        protocol_version: str | None,
        request: object = None,
        connection: object = None,
        notifications: NotificationPolicy = "traced",
        ambient: Context | None = None,
        network: bool = True,
        upstream: Peer | None = None,
    ) -> ServerCall | None:
        """``upstream``: the connection a message without network of its own came in on (for
        a client answering its server's request, the one it reached that server on)."""
        try:
            return cls._start(
                method,
                params,
                request_id=request_id,
                protocol_version=protocol_version,
                request=request,
                connection=connection,
                notifications=notifications,
                ambient=ambient,
                network=network,
                upstream=upstream,
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.server.start", error)
            return None

    @classmethod
    def _start(
        cls,
        method: str,
        params: object,
        *,
        request_id: str | int | None,
        protocol_version: str | None,
        request: object,
        connection: object,
        notifications: NotificationPolicy,
        ambient: Context | None,
        network: bool,
        upstream: Peer | None,
    ) -> ServerCall | None:
        notification = request_id is None
        if notification and notifications == "none":
            return None
        # Ids and versions come from the peer: oversized ones stay off the span.
        if isinstance(request_id, int) and not -(10**18) < request_id < 10**18:
            request_id = None  # JSON allows integers of any size
        if isinstance(request_id, str) and len(request_id) > _MAX_REQUEST_ID:
            request_id = None
        if protocol_version is not None and len(protocol_version) > MAX_VERSION:
            protocol_version = None
        meta = params.get("_meta") if isinstance(params, Mapping) else None
        if meta is not None and not isinstance(meta, Mapping):
            _logger.debug("ignoring _meta of type %s", type(meta).__name__)
            meta = None
        headers = getattr(request, "headers", None)
        parent, links, traced = _parent(meta, headers, ambient=ambient)
        if notification and notifications == "traced" and not traced:
            return None  # e.g. notifications/initialized: no trace to join
        if upstream is None:
            session_id = _session_id(connection, request)
        else:
            session_id = upstream.connection_session_id
        if not is_modern(protocol_version):
            _watch_session(connection, request, session_id)
        else:
            session_id = None  # 2026-07-28 and later have no sessions
        tool_name, prompt_name, resource_uri = targets(method, params)
        attributes = None
        if prompt_name is not None and method == "completion/complete":
            # The SDK hands the completion handler any prompt name the client makes up, and it
            # answers without error: on the span only, not in its name or on the metric.
            attributes = {semconv.GEN_AI_PROMPT_NAME: prompt_name}
            prompt_name = None
        if upstream is not None:
            # The requester is the MCP server: its address is this span's client.address.
            transport, protocol, address, port = (
                upstream.transport,
                upstream.network_protocol,
                upstream.address,
                upstream.port,
            )
        else:
            transport, protocol, address, port = _network(request) if network else (None,) * 4
        run = threadline.mcp_request(
            method,
            server=True,
            parent=parent,
            tool_name=tool_name,
            prompt_name=prompt_name,
            resource_uri=resource_uri,
            request_id=request_id,
            session_id=session_id,
            protocol_version=protocol_version,
            transport=transport,
            network_protocol=protocol,
            peer_address=address,
            peer_port=port,
            links=links or None,
            attributes=attributes,
        )
        record_request_content(run, method, params)
        run.attach()
        return cls(method, run)

    @guarded(site="threadline.mcp.server.finish")
    def finish(self, result: object) -> None:
        """The handler returned ``result`` (a wire dict or a result model)."""
        run = self.run
        run.detach()
        if self.method == "initialize":
            version = _result_field(result, "protocolVersion", "protocol_version")
            if isinstance(version, str):
                run.update(protocol_version=version)
        elif self.method == "tools/list" or self.method == "prompts/list":
            listed = _result_field(result, self.method[:-5], self.method[:-5])
            if isinstance(listed, (list, tuple)):
                names = [_result_field(item, "name", "name") for item in listed]
                if self.method == "tools/list":
                    run.served(tools=names)
                else:
                    run.served(prompts=names)
        elif self.method == "tools/call":
            if threadline.capture_enabled():
                run.update(result=_result_field(result, "content", "content"))
            if is_tool_error(result):
                run.fail_tool()
                return
        run.end()

    @guarded(site="threadline.mcp.server.fail")
    def fail(self, error: BaseException, *, dispatch: object = None) -> None:
        """The handler raised ``error`` (re-raised by the caller, untouched). ``dispatch``: the
        request's mcp 2.x dispatch context, which tells the code the SDK answers any other
        exception with (see :func:`unmapped_error_code`); None for a notification or mcp 1.x."""
        run = self.run
        run.detach()
        rpc = error_code(error)
        if rpc is not None:
            # A handler that asked its client for something over a channel that cannot carry
            # requests is answered with -32600, which names a bad request, but the failure is
            # the server's own (the request it was handling was fine).
            run.fail_rpc(rpc[0], rpc[1], server_fault=is_no_back_channel(error))
        elif _is_validation_error(error):
            # What the SDK answers; pydantic's text echoes client input, so it stays off the span.
            run.fail_rpc(-32602, "Invalid request parameters")
        elif is_cancellation(error):
            run.fail("cancelled")
        else:
            code = None
            if dispatch is not None and isinstance(error, Exception):
                code = unmapped_error_code(dispatch)
            if code is None:
                run.fail(error)
                return
            # The SDK answered with a code of its own choosing: the response's code is the
            # error.type (as the MCP conventions ask); the exception is the status description.
            run.fail_rpc(code, error=error)

    @guarded(site="threadline.mcp.server.error_response")
    def error_response(self, code: int, message: str | None) -> None:
        """The handler produced a JSON-RPC error response instead of raising (mcp 1.x)."""
        self.run.detach()
        self.run.fail_rpc(code, message)


def _result_field(result: object, wire: str, attribute: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(wire)
    return getattr(result, attribute, None) or getattr(result, wire, None)


def unmapped_error_code(dispatch: object) -> int | None:
    """The JSON-RPC error code mcp 2.x answers a request with when its handler raised an
    exception that is neither ``MCPError`` nor pydantic's ``ValidationError``, read from the
    request's dispatch context:

    * ``JSONRPCDispatcher`` (stdio, streamable HTTP of the handshake era, in-memory streams, and
      a client answering a server's request): ``0``, the code mcp 1.x answered with;
    * 2026-07-28 requests over a stream (``Server.run``), 2026-07-28 streamable HTTP, and the
      in-process ``DirectDispatcher``: ``-32603``;
    * None when no answer is sure to be sent (the peer cancelled the request; a stream served
      with ``raise_exceptions=True``) or the dispatch context is none of the SDK's known ones."""
    kinds = _dispatch_kinds()
    if kinds is None:
        return None
    modern_stream, jsonrpc, single_exchange, direct = kinds
    wrapped = isinstance(dispatch, modern_stream)
    inner: Any = getattr(dispatch, "_inner", None) if wrapped else dispatch
    cancel_requested = getattr(inner, "cancel_requested", None)
    if cancel_requested is None or cancel_requested.is_set() is not False:
        return None  # a request the peer cancelled is never answered
    dispatcher = getattr(inner, "_dispatcher", None)
    if isinstance(dispatcher, jsonrpc):
        if getattr(dispatcher, "_raise_handler_exceptions", None) is not False:
            # raise_exceptions=True: the dispatcher queues its answer, then re-raises and the
            # server stops, so whether the answer ever leaves the process is a race.
            return None
        return _INTERNAL_ERROR if wrapped else 0
    if isinstance(inner, (single_exchange, direct)):
        return _INTERNAL_ERROR
    return None


@functools.cache
def _dispatch_kinds() -> tuple[type, type, type, type] | None:
    """``(modern request wrapper, JSONRPCDispatcher, modern HTTP context, direct context)`` of
    mcp 2.x; None on mcp 1.x or an SDK that moved them (the contract test catches that)."""
    try:
        from mcp.server._streamable_http_modern import _SingleExchangeDispatchContext
        from mcp.server.runner import _NoServerRequestsDispatchContext
        from mcp.shared.direct_dispatcher import _DirectDispatchContext
        from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
    except ImportError:
        return None
    return (
        _NoServerRequestsDispatchContext,
        JSONRPCDispatcher,
        _SingleExchangeDispatchContext,
        _DirectDispatchContext,
    )


def _is_validation_error(error: BaseException) -> bool:
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic comes with mcp
        return False
    return isinstance(error, ValidationError)


class TracingMiddleware:
    """mcp 2.x server middleware: one SERVER span per inbound request, to the MCP conventions.

    ``MCPServer(middleware=[TracingMiddleware()])``, or for a low-level ``Server``
    ``server.middleware.append(TracingMiddleware())``. It takes the place of the SDK's built-in
    OpenTelemetry middleware in that server's chain (outermost), so each request has exactly one
    SERVER span.

    ``notifications``: ``"traced"`` (default) traces a notification only when it carries trace
    context or arrives inside a traced HTTP request, so ``notifications/initialized`` does not
    start a trace of its own; ``"all"`` traces every notification; ``"none"`` none.
    """

    __slots__ = ("notifications",)

    def __init__(self, *, notifications: NotificationPolicy = "traced") -> None:
        self.notifications: NotificationPolicy = notifications
        try:
            _replace_builtin_middleware()
        except Exception as error:  # noqa: BLE001 - a changed SDK must not break the server
            report("threadline.mcp.replace_builtin_middleware", error)

    async def __call__(
        self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]
    ) -> Any:  # ServerRequestContext -> HandlerResult
        call = self._start(ctx)
        if call is None:
            return await call_next(ctx)
        try:
            result = await call_next(ctx)
        except BaseException as error:
            call.fail(error, dispatch=_request_dispatch(ctx))
            raise
        call.finish(result)
        return result

    def _start(self, ctx: Any) -> ServerCall | None:
        try:
            session = ctx.session
            in_process = _in_process(session)
            request = ctx.request
            return ServerCall.start(
                ctx.method,
                ctx.params,
                request_id=ctx.request_id,
                protocol_version=ctx.protocol_version,
                request=request,
                connection=getattr(session, "_connection", None),
                notifications=self.notifications,
                # Over stdio a handler runs in the context current when the connection opened
                # (a span long over, or a startup span): never this message's parent or link.
                ambient=(
                    _EMPTY
                    if request is None and not in_process and _transport_network.get() is None
                    else None
                ),
                network=not in_process,
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.TracingMiddleware", error)
            return None


def _request_dispatch(ctx: Any) -> object:
    """The dispatch context a request is answered through (``ServerSession`` keeps it); None for
    a notification, which is never answered."""
    try:
        if ctx.request_id is None:
            return None
        return getattr(ctx.session, "_request_outbound", None)
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.mcp.server.dispatch", error)
        return None


_REPLACING = "_threadline_replaces_builtin"


class _Auto:
    """Set by ``instrument()``: servers with no :class:`TracingMiddleware` of their own get
    this one in place of the SDK's ``OpenTelemetryMiddleware`` (zero-code server tracing)."""

    middleware: TracingMiddleware | None = None


def trace_every_server(enabled: bool) -> None:
    """``instrument()``/``uninstrument()`` for mcp 2.x servers."""
    if enabled:
        _replace_builtin_middleware()
        if _Auto.middleware is None:
            _Auto.middleware = TracingMiddleware()
    else:
        _Auto.middleware = None


def _chain_with_ours(chain: list[Any], builtin: type) -> list[Any] | None:
    """``chain`` with one TracingMiddleware where the SDK's sits and no SDK one left, or None
    when it needs no change (no SDK middleware, or nothing of ours to put there)."""
    if not any(isinstance(m, builtin) for m in chain):
        return None
    ours = next((m for m in chain if isinstance(m, TracingMiddleware)), None) or _Auto.middleware
    if ours is None:
        return None
    rest = [m for m in chain if m is not ours]
    at = next(i for i, m in enumerate(rest) if isinstance(m, builtin))
    rest[at] = ours
    return [m for m in rest if not isinstance(m, builtin)]


def _replace_builtin_middleware() -> None:
    """Make every ``ServerRunner`` put a ``TracingMiddleware`` where the SDK's
    ``OpenTelemetryMiddleware`` sits in its server's chain, dropping the SDK's. A server with a
    ``TracingMiddleware`` of its own gets its list rewritten that way; any other server, while
    ``instrument()`` is on, is composed with the one ``instrument()`` installed and its list left
    as it is (so ``uninstrument()`` gives the SDK's back). Done when the chain is composed, which
    happens per message, so middleware added after the server was built is covered too."""
    try:
        from mcp.server import runner
        from mcp.server._otel import OpenTelemetryMiddleware
    except ImportError:
        return  # mcp 1.x, or a 2.x that moved it: the contract test catches the latter
    original = runner.ServerRunner._compose_server_middleware
    if getattr(original, _REPLACING, False):
        return

    def compose(self: Any, inner: Any) -> Any:
        try:
            chain = self.server.middleware
            replaced = _chain_with_ours(chain, OpenTelemetryMiddleware)
            if replaced is not None:
                if any(isinstance(m, TracingMiddleware) for m in chain):
                    chain[:] = replaced  # the server asked for ours: keep it that way
                else:
                    # The composition reads only ``self.server.middleware`` (the contract test
                    # checks it): hand it the substituted chain, leaving the server's list alone.
                    view = SimpleNamespace(server=SimpleNamespace(middleware=replaced))
                    return original(view, inner)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - fail-open: the SDK's own composition
            report("threadline.mcp.replace_builtin_middleware", error)
        return original(self, inner)

    setattr(compose, _REPLACING, True)
    compose.__wrapped__ = original  # type: ignore[attr-defined]
    runner.ServerRunner._compose_server_middleware = compose  # type: ignore[method-assign]


# --- mcp 1.x (no middleware, no propagation): installed by instrument() -------------------------
def _v1_call(
    message: Any,
    req: Any,
    session: Any,
    *,
    network: bool = True,
    upstream: Peer | None = None,
    protocol_version: str | None = None,
) -> ServerCall | None:
    """``session``: the server session the request came in on; None for a client answering
    its server (``upstream``: the connection, ``protocol_version``: what it negotiated)."""
    from threadline.mcp._client import note_http_session, v1_method_params, v1_negotiated_version

    method, params = v1_method_params(req)
    request = None
    metadata = getattr(message, "message_metadata", None)
    if metadata is not None:
        request = getattr(metadata, "request_context", None)
    if request is not None:
        note_http_session(session)
    if session is not None:
        protocol_version = v1_negotiated_version(getattr(session, "client_params", None))
    return ServerCall.start(
        method,
        params,
        request_id=getattr(message, "request_id", None),
        protocol_version=protocol_version,
        request=request,
        # 1.x runs handlers in the session's task group, whose context is whatever was current
        # when the session started (over HTTP: the *first* request's), never this request's.
        ambient=_EMPTY,
        network=network,
        upstream=upstream,
    )


def wrap_handle_request(original: Any) -> Any:
    """Wraps mcp 1.x ``Server._handle_request(message, req, session, lifespan, raise_exceptions)``.

    1.x turns handler errors into an error response itself, so the outcome is read from what
    the handler answers (``message.respond``) rather than from an exception."""

    async def _handle_request(
        self: Any, message: Any, req: Any, session: Any, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            call = _v1_call(message, req, session)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.server.v1", error)
            call = None
        if call is None:
            return await original(self, message, req, session, *args, **kwargs)
        return await _v1_traced(
            call, message, lambda: original(self, message, req, session, *args, **kwargs)
        )

    _handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _handle_request


def wrap_received_request(original: Any) -> Any:
    """Wraps mcp 1.x ``ServerSession._received_request(responder)``, which answers
    ``initialize`` itself (the server's handlers never see it)."""

    async def _received_request(self: Any, responder: Any, *args: Any, **kwargs: Any) -> Any:
        call = None
        try:
            request = getattr(responder, "request", None)
            if getattr(getattr(request, "root", None), "method", None) == "initialize":
                call = _v1_call(responder, request, self)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.server.v1_initialize", error)
        if call is None:
            return await original(self, responder, *args, **kwargs)
        return await _v1_traced(call, responder, lambda: original(self, responder, *args, **kwargs))

    _received_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _received_request


def wrap_handle_message(original: Any) -> Any:
    """Wraps mcp 1.x ``Server._handle_message(message, session, lifespan, raise_exceptions)``:
    a notification from the client gets its SERVER span there, around the server's handler
    for it, as on mcp 2.x (requests pass through: ``_handle_request`` traces them)."""

    async def _handle_message(
        self: Any, message: Any, session: Any, *args: Any, **kwargs: Any
    ) -> Any:
        call = None
        try:
            if type(message).__name__ == "ClientNotification":
                call = _v1_notification_call(message, session)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.server.v1_notification", error)
        return await _traced_notification(
            call, lambda: original(self, message, session, *args, **kwargs)
        )

    _handle_message.__wrapped__ = original  # type: ignore[attr-defined]
    return _handle_message


def _v1_notification_call(notification: Any, session: Any) -> ServerCall | None:
    """The SERVER call of a client notification to an mcp 1.x server. The notification keeps
    nothing of the HTTP request it came in, so its network is its session's."""
    from threadline.mcp._client import _connection_peer, is_http_session, v1_method_params

    method, params = v1_method_params(notification)
    over_http = (
        is_http_session(session)
        or _http_transport_session.get() is not None
        or _sse_connection.get() is not None
    )
    connection = v1_server_connection(session, over_http=over_http)
    return ServerCall.start(
        method,
        params,
        request_id=None,
        protocol_version=connection[0],
        ambient=_EMPTY,  # the session's task group context, as for requests (see _v1_call)
        upstream=_connection_peer(connection),
    )


async def _v1_traced(call: ServerCall, message: Any, invoke: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``invoke`` with ``call`` finished by whatever ``message.respond`` is given."""
    respond = message.respond

    async def traced_respond(response: Any) -> Any:
        _v1_responded(call, response)
        return await respond(response)

    try:
        message.respond = traced_respond
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.mcp.server.v1_respond", error)
    try:
        return await invoke()
    except BaseException as error:
        call.fail(error)
        raise
    finally:
        _v1_cleanup(call, message, traced_respond)


@guarded(site="threadline.mcp.server.v1_responded")
def _v1_responded(call: ServerCall, response: Any) -> None:
    code = getattr(response, "code", None)
    if isinstance(code, int) and hasattr(response, "message"):  # ErrorData
        message = getattr(response, "message", None)
        call.error_response(code, message if isinstance(message, str) else None)
    else:
        call.finish(getattr(response, "root", response))


@guarded(site="threadline.mcp.server.v1_cleanup")
def _v1_cleanup(call: ServerCall, message: Any, traced_respond: Any) -> None:
    if getattr(message, "__dict__", {}).get("respond") is traced_respond:
        del message.respond
    if not call.run.ended:  # cancelled before answering
        call.run.detach()
        call.run.fail("cancelled")


# --- the connection a server's own requests to its client go out on -----------------------------
# Sampling, elicitation and roots requests go out on the connection the server's request came in
# on: their CLIENT spans (see _client) take its protocol version, transport and session, as that
# request's SERVER span has them.
ServerConnection = tuple[str | None, str | None, tuple[str, str | None] | None, str | None]
"""``(mcp.protocol.version, network.transport, (network protocol, version), mcp.session.id)``"""


def server_connection(session: Any) -> ServerConnection:
    """The connection of an mcp 2.x ``ServerSession`` (one per inbound request)."""
    connection = getattr(session, "_connection", None)
    version = version_text(getattr(connection, "protocol_version", None))
    outbound = getattr(session, "_request_outbound", None)
    request = getattr(getattr(outbound, "message_metadata", None), "request_context", None)
    transport, protocol, _, _ = _NO_NETWORK if _in_process(session) else _network(request)
    session_id = None if is_modern(version) else _session_id(connection, request)
    return version, transport, protocol, session_id


def v1_server_connection(session: Any, *, over_http: bool) -> ServerConnection:
    """The connection of an mcp 1.x ``ServerSession``. ``over_http``: it was seen serving HTTP
    requests (for a request sent outside a handler, which has no HTTP request)."""
    from threadline.mcp._client import v1_negotiated_version

    version = v1_negotiated_version(getattr(session, "client_params", None))
    request = _v1_handled_request(session)
    network = _HTTP if request is None and over_http else _network(request)
    return version, network[0], network[1], _session_id(None, request)


def _v1_handled_request(session: Any) -> object:
    """The HTTP request mcp 1.x is handling for ``session`` in this context, if any."""
    server = sys.modules.get("mcp.server.lowlevel.server")
    context = getattr(server, "request_ctx", None)
    current = context.get(None) if isinstance(context, ContextVar) else None
    if current is None or getattr(current, "session", None) is not session:
        return None
    return getattr(current, "request", None)


# --- requests from the server to the client (sampling, elicitation, roots) -----------------------
# The client answers them: SERVER spans in the client process, parented on the server's CLIENT
# span through _meta. The reader task that runs these callbacks carries whatever context was
# current when the connection opened, so it is never used as a parent.
def wrap_client_on_request(original: Any) -> Any:
    """Wraps mcp 2.x ``ClientSession._on_request(dctx, method, params)``."""

    async def _on_request(self: Any, dctx: Any, method: str, params: Any, *args: Any) -> Any:
        call = None
        try:
            from threadline.mcp._client import client_peer

            version = getattr(self, "_negotiated_version", None)
            call = ServerCall.start(
                method,
                params,
                request_id=getattr(dctx, "request_id", None),
                protocol_version=version if isinstance(version, str) else None,
                ambient=_EMPTY,
                network=False,
                upstream=client_peer(self),
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.inbound", error)
        if call is None:
            return await original(self, dctx, method, params, *args)
        try:
            result = await original(self, dctx, method, params, *args)
        except BaseException as error:
            call.fail(error, dispatch=dctx)
            raise
        call.finish(result)
        return result

    _on_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _on_request


def wrap_client_received_request(original: Any) -> Any:
    """Wraps mcp 1.x ``ClientSession._received_request(responder)``."""

    async def _received_request(self: Any, responder: Any, *args: Any, **kwargs: Any) -> Any:
        call = None
        try:
            from threadline.mcp._client import client_peer

            peer = client_peer(self)
            call = _v1_call(
                responder,
                getattr(responder, "request", None),
                None,
                network=False,
                upstream=peer,
                protocol_version=peer.protocol_version if peer is not None else None,
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.v1_inbound", error)
        if call is None:
            return await original(self, responder, *args, **kwargs)
        return await _v1_traced(call, responder, lambda: original(self, responder, *args, **kwargs))

    _received_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _received_request


# --- notifications from the server to the client ------------------------------------------------
# The client receives them: SERVER spans in the client process, parented by the context the
# sender put in _meta (the span that sent it: for progress and log messages, the server's span
# of the request they are about, itself under the client's request span: one trace). One with
# none (an uninstrumented server) gets no span, as on a server with notifications="traced": the
# task that delivers it holds no context of its own to join (over stdio, the reader task's,
# from when the connection opened; over HTTP, whichever request's stream it arrived on).
def _notification_call(
    session: Any, method: str, params: object, version: object
) -> ServerCall | None:
    from threadline.mcp._client import client_peer

    peer = client_peer(session)
    if version is None and peer is not None:
        version = peer.protocol_version
    return ServerCall.start(
        method,
        params,
        request_id=None,
        protocol_version=version if isinstance(version, str) else None,
        ambient=_EMPTY,
        network=False,
        upstream=peer,
    )


async def _traced_notification(
    call: ServerCall | None, invoke: Callable[[], Awaitable[Any]]
) -> Any:
    if call is None:
        return await invoke()
    try:
        result = await invoke()
    except BaseException as error:
        call.fail(error)
        raise
    call.finish(result)
    return result


def wrap_client_on_notify(original: Any) -> Any:
    """Wraps mcp 2.x ``ClientSession._on_notify(dctx, method, params)``: the typed callbacks
    (``logging_callback``, ``message_handler``) run under the notification's span."""

    async def _on_notify(
        self: Any, dctx: Any, method: str, params: Any, *args: Any, **kwargs: Any
    ) -> Any:
        call = None
        try:
            call = _notification_call(
                self, method, params, getattr(self, "_negotiated_version", None)
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.notification_received", error)
        return await _traced_notification(
            call, lambda: original(self, dctx, method, params, *args, **kwargs)
        )

    _on_notify.__wrapped__ = original  # type: ignore[attr-defined]
    return _on_notify


def wrap_client_received_notification(original: Any) -> Any:
    """Wraps mcp 1.x ``ClientSession._received_notification(notification)`` (the
    ``logging_callback`` runs in it; ``notifications/cancelled`` never reaches it)."""

    async def _received_notification(
        self: Any, notification: Any, *args: Any, **kwargs: Any
    ) -> Any:
        call = None
        try:
            from threadline.mcp._client import v1_method_params

            method, params = v1_method_params(notification)
            call = _notification_call(self, method, params, None)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.v1_notification_received", error)
        return await _traced_notification(
            call, lambda: original(self, notification, *args, **kwargs)
        )

    _received_notification.__wrapped__ = original  # type: ignore[attr-defined]
    return _received_notification
