"""Client side: one ``{mcp.method.name} {target}`` CLIENT span per outbound MCP request, with
trace context and allow-listed baggage injected into ``params._meta``.

mcp 2.x sends every request through ``JSONRPCDispatcher.send_raw_request``, which opens its own
``MCP send …`` span and injects *all* baggage with the global propagator. While instrumented, that
span is replaced by ours and the injection by :func:`threadline.inject` (allow-list only).
mcp 1.x has no propagation at all: ``BaseSession.send_request`` gets a copy of the request with
``_meta`` filled in.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, TypedDict

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

import threadline
from threadline import semconv
from threadline._failopen import guarded, report
from threadline._runs import current_made_run
from threadline.mcp._common import (
    HEADER_MISMATCH,
    REQUEST_TIMEOUT,
    error_code,
    is_cancellation,
    is_input_required,
    is_modern,
    is_no_back_channel,
    is_tool_error,
    local_failure,
    record_request_content,
    session_id_text,
    sse_session_id_text,
    targets,
    version_text,
)
from threadline.mcp._server import (
    ServerConnection,
    server_connection,
    transport_protocol,
    v1_server_connection,
)
from threadline.providers import server_address

_PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"


class Options:
    """Set by ``instrument(...)``."""

    merge_tool_spans = False
    """When a ``tools/call`` is made while the current span is a threadline ``execute_tool``
    span for the same tool (an agent framework already traces the tool execution), add the MCP
    attributes to that span instead of starting a CLIENT span under it (the MCP conventions'
    optional de-duplication). Its context is what goes over the wire."""


def _merge_into_tool_span(
    tool_name: str | None, params: object, request_id: int | str | None, peer: Peer | None
) -> threadline.ToolRun | None:
    outer = current_made_run()
    if (
        not isinstance(outer, threadline.ToolRun)
        or outer.name != tool_name
        or outer.ended
        or trace.get_current_span() is not outer.span
    ):
        return None
    reached = connection(params, peer)
    # mcp 2.x streamable HTTP also tags it when posting, as it does the CLIENT span
    outer.record_mcp_call(request_id=request_id, session_id=_session_of(reached, peer), **reached)
    return outer


def _session_of(reached: Connection, peer: Peer | None) -> str | None:
    """The session a request goes out in: the one the connection knows of (an SSE endpoint's,
    or what an mcp 1.x server issued in ``initialize``); 2026-07-28 and later have none,
    whatever the transport."""
    session_id = peer.session_id if peer is not None else None
    if session_id is not None and is_modern(reached["protocol_version"]):
        return None
    return session_id


# The tool span a tools/call is being recorded on (merge_tool_spans), while the call runs.
_merged_call: ContextVar[threadline.ToolRun | None] = ContextVar(
    "threadline_mcp_merged_call", default=None
)


class Peer:
    """What a connection knows about its peer, for the CLIENT spans: a client's about its
    server, or a server's about the client it sends requests to."""

    __slots__ = (
        "address",
        "cancels_by_abort",
        "dispatched",
        "network_protocol",
        "port",
        "sent_session_id",
        "session",
        "session_id",
        "session_id_of",
        "transport",
        "version",
    )

    def __init__(
        self,
        transport: str | None,
        address: str | None,
        port: int | None,
        *,
        protocol: str | None = None,
    ) -> None:
        self.transport = transport
        self.address = address
        self.port = port
        # (network.protocol.name, version): the version is the HTTP client's to negotiate
        self.network_protocol: tuple[str, str | None] | None = (
            (protocol, None) if protocol else None
        )
        self.session: weakref.ReferenceType[Any] | None = None  # an mcp 2.x ClientSession
        self.version: str | None = None  # negotiated, where no 2.x ClientSession tells
        # A server's own session with its client, or the one an mcp 1.x client's server issued
        # (in initialize's answer, fixed from then on): on every CLIENT span of the connection.
        self.session_id: str | None = None
        self.session_id_of: Callable[[], object] | None = None  # mcp 1.x streamable HTTP
        # The Mcp-Session-Id an mcp 2.x client last sent its server, for that server's requests
        # back to it (their SERVER spans); its own requests are tagged with what each sends.
        self.sent_session_id: str | None = None
        # An mcp 2.x streamable HTTP client: it cancels a 2026-07-28 request by aborting its
        # POST and never sends the notifications/cancelled its dispatcher writes.
        self.cancels_by_abort = False
        # A request went out through a dispatcher on this connection (for a server's request
        # to its client: whether it got that far, see wrap_server_send_request).
        self.dispatched = False

    @property
    def connection_session_id(self) -> str | None:
        return self.session_id or self.sent_session_id

    @property
    def protocol_version(self) -> str | None:
        session = self.session() if self.session is not None else None
        version = getattr(session, "protocol_version", None)
        return version if isinstance(version, str) else self.version


def _connection_peer(connection: ServerConnection) -> Peer:
    """The peer of a server's request to its client: the client, on that server connection."""
    version, transport, protocol, session_id = connection
    peer = Peer(transport, None, None)
    peer.network_protocol = protocol
    peer.version = version
    peer.session_id = session_id
    return peer


# ClientSession -> Peer (set by mcp 2.x Client, or by an mcp 1.x session's answered initialize),
# and dispatcher -> Peer (set when an mcp 2.x session is entered).
_session_peers: weakref.WeakKeyDictionary[Any, Peer] = weakref.WeakKeyDictionary()
_dispatcher_peers: weakref.WeakKeyDictionary[Any, Peer] = weakref.WeakKeyDictionary()


def _peer_of(server: object) -> Peer:
    if isinstance(server, str):  # a URL: streamable HTTP
        peer = Peer("tcp", *server_address(server), protocol="http")
        peer.cancels_by_abort = _http_cancels_by_abort()
        return peer
    if type(server).__name__ == "StdioServerParameters":
        return Peer("pipe", None, None)
    return Peer(None, None, None)


def wrap_build_session(original: Any) -> Any:
    """Wraps mcp 2.x ``Client._build_session``: remembers how the session reaches its server."""

    async def _build_session(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = await original(self, *args, **kwargs)
        try:
            _session_peers[session] = _peer_of(getattr(self, "server", None))
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.build_session", error)
        return session

    _build_session.__wrapped__ = original  # type: ignore[attr-defined]
    return _build_session


# The connection of the request a server is sending its client (mcp 2.x, whose server
# dispatchers are not registered), while ``ServerSession.send_request`` runs.
_serving: ContextVar[Peer | None] = ContextVar("threadline_mcp_serving", default=None)


def _peer_for(dispatcher: Any) -> Peer | None:
    try:
        return _dispatcher_peers.get(dispatcher) or _serving.get()
    except TypeError:  # not weak-referenceable: nothing was registered for it
        return _serving.get()


def wrap_server_send_request(original: Any) -> Any:
    """Wraps mcp 2.x ``ServerSession.send_request``, which the typed requests to the client
    (``create_message``, ``elicit_*``, ``list_roots``) go through, and its ``_notify`` and
    ``report_progress``, which its notifications do: their CLIENT spans get the connection's
    protocol version, transport and session."""

    async def send_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = None
        peer = None
        started = time.time_ns()
        try:
            peer = _connection_peer(server_connection(self))
            token = _serving.set(peer)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.server.send_request", error)
        try:
            return await original(self, *args, **kwargs)
        except BaseException as error:
            if peer is not None and not peer.dispatched and is_no_back_channel(error):
                _refused(peer, error, started)
            raise
        finally:
            if token is not None:
                _serving.reset(token)

    send_request.__wrapped__ = original  # type: ignore[attr-defined]
    return send_request


@guarded(site="threadline.mcp.server.refused")
def _refused(peer: Peer, error: BaseException, started: int) -> None:
    """A server's request its channel refused to send (``NoBackChannelError``, before any
    dispatcher saw it): the CLIENT span it would have had, failed with the error's code. No
    ``rpc.response.status_code``: nothing was sent, so nothing answered."""
    method = getattr(error, "method", None)
    if isinstance(method, str):
        run = start(method, None, peer=peer, start_time=started)
        if isinstance(run, threadline.McpRun):
            fail(run, error, answered=False)


def client_peer(session: Any) -> Peer | None:
    """What a client session knows about its server (mcp 2.x: through its dispatcher, which
    every entered session registers; mcp 1.x: its transport and ``initialize``)."""
    dispatcher = getattr(session, "_dispatcher", None)
    peer = _dispatcher_peers.get(dispatcher) if dispatcher is not None else None
    return peer or _session_peers.get(session)


def _register_dispatcher(session: Any) -> None:
    dispatcher = getattr(session, "_dispatcher", None)
    if dispatcher is None:
        return
    peer = _session_peers.get(session) or Peer(None, None, None)
    peer.session = weakref.ref(session)
    _dispatcher_peers[dispatcher] = peer


def protocol_version(params: object, peer: Peer | None) -> str | None:
    """The protocol version a request is sent under: its ``_meta`` entry (2026-07-28 and
    later), else what the connection negotiated."""
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    if isinstance(meta, Mapping):
        value = meta.get(_PROTOCOL_VERSION_META_KEY)
        if isinstance(value, str):
            return value
    return peer.protocol_version if peer is not None else None


class Connection(TypedDict):
    """How a request reaches its server, as the MCP span and metric attributes take it."""

    protocol_version: str | None
    transport: str | None
    network_protocol: tuple[str, str | None] | None
    peer_address: str | None
    peer_port: int | None


def connection(params: object, peer: Peer | None) -> Connection:
    return Connection(
        protocol_version=protocol_version(params, peer),
        transport=peer.transport if peer is not None else None,
        network_protocol=peer.network_protocol if peer is not None else None,
        peer_address=peer.address if peer is not None else None,
        peer_port=peer.port if peer is not None else None,
    )


def start(
    method: str,
    params: object,
    *,
    request_id: int | str | None = None,
    peer: Peer | None = None,
    start_time: int | None = None,
) -> threadline.McpRun | threadline.ToolRun | None:
    """Start and attach the CLIENT run of a request about to be sent (``None`` on failure).
    A ``tools/call`` recorded on an enclosing tool span instead (``merge_tool_spans``) returns
    that tool's run, which is not ours to end."""
    try:
        tool_name, prompt_name, resource_uri = targets(method, params)
        if Options.merge_tool_spans and method == "tools/call":
            outer = _merge_into_tool_span(tool_name, params, request_id, peer)
            if outer is not None:
                return outer
        reached = connection(params, peer)
        run = threadline.mcp_request(
            method,
            server=False,
            tool_name=tool_name,
            prompt_name=prompt_name,
            resource_uri=resource_uri,
            request_id=request_id,
            session_id=_session_of(reached, peer),
            start_time=start_time,
            **reached,
        )
        record_request_content(run, method, params)
        run.attach()
        return run
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.mcp.client.start", error)
        return None


async def call_merged(
    tool: threadline.ToolRun,
    call: Callable[[], Awaitable[Any]],
    *,
    params: object,
    peer: Peer | None = None,
    sending: _NoSpan | None = None,
    rounds: _Rounds | None = None,
) -> Any:
    """Make a ``tools/call`` recorded on ``tool``: its outcome marks the tool span, which its
    owner (the agent framework) ends, and it gets its ``mcp.client.operation.duration`` point.
    ``sending``: the SDK span's stand-in (mcp 2.x); ``rounds``: the call it is a request of,
    whose requests get one point, when the last is answered (see :class:`_Rounds`)."""
    token = _merged_call.set(tool)
    started = rounds.resume_merged() if rounds is not None else None
    if started is None:
        started = time.monotonic()
    outcome: tuple[int | None, str | None] | None = (None, None)
    try:
        result = await call()
    except BaseException as error:
        answered = sending.answered_by(error) if sending is not None else None
        if (
            answered
            and rounds is not None
            and rounds.hold_merged(tool, started, params, peer, error=error)
        ):
            outcome = None  # the SDK sends the call again: its point comes with that request
        else:
            outcome = _merged_failure(tool, error, answered)
        raise
    else:
        if rounds is not None and rounds.hold_merged(tool, started, params, peer, result):
            outcome = None  # the call goes on: its point comes with its last request
        elif is_tool_error(result):
            tool.mark_failed(semconv.ERROR_TYPE_TOOL_ERROR)
            outcome = (None, semconv.ERROR_TYPE_TOOL_ERROR)
        return result
    finally:
        _merged_call.reset(token)
        if outcome is not None:
            _record_merged(tool, time.monotonic() - started, params, peer, *outcome)


@guarded(site="threadline.mcp.client.merged")
def _merged_failure(
    tool: threadline.ToolRun, error: BaseException, answered: bool | None
) -> tuple[int | None, str | None]:
    """``(JSON-RPC status code, error.type)`` of a failed merged call. On the span, only what
    the framework cannot know: the JSON-RPC error response. The exception reaches the
    framework, which records it (or decides it is no failure)."""
    rpc = error_code(error)
    if rpc is not None:
        local = local_failure(*rpc, answered=answered)
        if local is not None:
            return None, local
        tool.set_attributes({semconv.RPC_RESPONSE_STATUS_CODE: str(rpc[0])})
        tool.mark_failed(str(rpc[0]), description=rpc[1])
        return rpc[0], str(rpc[0])
    return None, "cancelled" if is_cancellation(error) else threadline.error_type(error)


@guarded(site="threadline.mcp.client.merged_metric")
def _record_merged(
    tool: threadline.ToolRun,
    duration: float,
    params: object,
    peer: Peer | None,
    status: int | None,
    error: str | None,
) -> None:
    threadline.record_mcp_operation(
        duration,
        "tools/call",
        tool_name=tool.name,
        **connection(params, peer),
        status_code=status,
        error=error,
    )


@guarded(site="threadline.mcp.client.finish")
def finish(run: threadline.McpRun, method: str, result: object) -> None:
    run.detach()
    if method == "tools/call":
        if threadline.capture_enabled():
            content = (
                result.get("content")
                if isinstance(result, Mapping)
                else getattr(result, "content", None)
            )
            run.update(result=content)
        if is_tool_error(result):
            run.fail_tool()
            return
    elif method == "initialize":  # the version the connection now speaks
        run.update(protocol_version=answered_version(result))
    run.end()


def answered_version(result: object) -> str | None:
    """The ``protocolVersion`` of an ``initialize`` result (wire dict, 2.x or 1.x model)."""
    if isinstance(result, Mapping):
        return version_text(result.get("protocolVersion"))
    version = getattr(result, "protocol_version", None) or getattr(result, "protocolVersion", None)
    return version_text(version)


@guarded(site="threadline.mcp.client.fail")
def fail(run: threadline.McpRun, error: BaseException, *, answered: bool | None = None) -> None:
    """The request raised ``error``. ``answered``: see :func:`local_failure`."""
    run.detach()
    rpc = error_code(error)
    if rpc is not None:
        local = local_failure(*rpc, answered=answered)
        if local is None:
            # Client(mode="auto") probes with server/discover and falls back to initialize
            # when a server of an older protocol rejects it: an answer it expects.
            probe = run.method == "server/discover" and rpc[0] in _PROBE_REJECTIONS
            run.fail_rpc(*rpc, expected=probe)
        else:
            run.fail(local, description=rpc[1])
    elif is_cancellation(error):
        run.fail("cancelled")
    else:
        run.fail(error)


_PROBE_REJECTIONS = frozenset({-32601, -32602})  # method not found, invalid params


def _in_context(callback: Callable[..., Awaitable[Any]], ctx: Context) -> Any:
    async def in_context(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(ctx)
        try:
            return await callback(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return in_context


def _progress_in_context(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, key: str | None = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of a request send with its progress callback (argument ``name``, at
    ``index`` of ``args``; ``key``: the entry of that argument holding it) run in the current
    context, the request's. The SDK runs it in the task reading the connection, which over stdio
    carries whatever context was current when the connection opened: a stale span, or none."""
    positional = len(args) > index
    value = args[index] if positional else kwargs.get(name)
    if value is None:
        return args, kwargs
    if key is not None:
        callback = value.get(key) if isinstance(value, Mapping) else None
        if callback is None:
            return args, kwargs
        value = {**value, key: _in_context(callback, otel_context.get_current())}
    else:
        value = _in_context(value, otel_context.get_current())
    if positional:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    return args, {**kwargs, name: value}


# --- mcp 2.x -----------------------------------------------------------------------------------
class _NoSpan:
    """Stands in for the SDK's own ``MCP send …`` span while ours is current. The SDK gives it
    ``rpc.response.status_code`` only when the peer answered with an error; an ``MCPError``
    raised without that came from no response (a timeout, a closed connection)."""

    __slots__ = ("answered", "handled", "peer", "request_id", "run")

    def __init__(self, peer: Peer | None = None, run: threadline.Run | None = None) -> None:
        self.answered = False
        self.handled = False  # an in-process peer's handler was reached (DirectDispatcher)
        self.request_id: str | None = None  # what the dispatcher allocated
        self.peer = peer  # the connection the request goes out on
        self.run = run  # what records the request: our CLIENT run, or a merged tool span

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if semconv.RPC_RESPONSE_STATUS_CODE in attributes:
            self.answered = True

    def answered_by(self, error: BaseException) -> bool:
        """Whether ``error`` is the peer's error response. The DirectDispatcher opens no SDK
        span: once the peer's handler is reached, an ``MCPError`` it raises back is that
        handler's answer, except the dispatcher's own timeout: ``REQUEST_TIMEOUT`` raised
        ``from None`` as its deadline's ``TimeoutError`` is handled (a handler's answer given
        while handling a timeout of its own is still an answer)."""
        if self.answered:
            return True
        own_timeout = (
            error.__suppress_context__
            and error.__cause__ is None
            and isinstance(error.__context__, TimeoutError)
            and (error_code(error) or (None,))[0] == REQUEST_TIMEOUT
        )
        return self.handled and not own_timeout

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    # The SDK uses it as ``with otel_span(...) as span`` (a class is cheaper than a generator).
    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


# The stand-in of the request being sent, read back when it fails.
_sending: ContextVar[_NoSpan | None] = ContextVar("threadline_mcp_sending", default=None)


def sdk_span(name: str, *, attributes: Mapping[str, Any] | None = None, **_: Any) -> _NoSpan:
    """Replacement for ``jsonrpc_dispatcher.otel_span`` (a context manager): no span of its
    own; the request id the dispatcher just allocated goes onto our CLIENT run."""
    stand_in = _sending.get() or _NoSpan()
    try:
        if attributes and semconv.JSONRPC_REQUEST_ID in attributes:
            request_id = str(attributes[semconv.JSONRPC_REQUEST_ID])
            stand_in.request_id = request_id
            target = stand_in.run
            if target is not None:
                target.set_attributes({semconv.JSONRPC_REQUEST_ID: request_id})
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.mcp.client.sdk_span", error)
    return stand_in


def wrap_make_context(original: Any) -> Any:
    """mcp 2.x ``DirectDispatcher._make_context``: a request to an in-process peer gets its id
    here, in the sender's context (no JSON-RPC message, so no ``otel_span``); it goes onto our
    CLIENT run as on the wire. Its handler is called next, so what fails from here on is the
    peer's answer (see :meth:`_NoSpan.answered_by`)."""

    def _make_context(self: Any, *args: Any, **kwargs: Any) -> Any:
        context = original(self, *args, **kwargs)
        try:
            request_id = getattr(context, "request_id", None)
            if request_id is not None:  # a request (a notification has none)
                stand_in = _sending.get()
                if stand_in is not None:
                    stand_in.handled = True
                run = _request_run()
                if run is not None and not run.ended:
                    run.set_attributes({semconv.JSONRPC_REQUEST_ID: str(request_id)})
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.request_id", error)
        return context

    _make_context.__wrapped__ = original  # type: ignore[attr-defined]
    return _make_context


def _request_run() -> threadline.Run | None:
    """The run recording the request being sent in this context: our CLIENT run, or the tool
    span a merged ``tools/call`` is recorded on."""
    run = current_made_run()
    if isinstance(run, threadline.McpRun) and run.kind is SpanKind.CLIENT:
        return run
    merged = _merged_call.get()
    return merged if merged is not None and run is merged else None


def _note_session(session_id: object, message: object) -> None:
    """Put the session id on the run of the request ``message``, if that is the request this
    context is sending. The transport posts every message (notifications and responses too,
    e.g. sent from a callback while some request's run is current) in its sender's context."""
    stand_in = _sending.get()
    request_id = getattr(message, "id", None)
    if (
        stand_in is not None
        and request_id is not None
        and getattr(message, "method", None) is not None  # a response has an id, no method
        and str(request_id) == stand_in.request_id
    ):
        value = session_id_text(session_id)
        if stand_in.peer is not None:
            stand_in.peer.sent_session_id = value
        _tag_session(value)


def _tag_session(value: str | None) -> None:
    run = _request_run() if value is not None else None
    if run is not None and not run.ended:
        run.set_attributes({semconv.MCP_SESSION_ID: value})


def _posted(ctx: object) -> object:
    return getattr(getattr(ctx, "session_message", None), "message", None)


def wrap_handle_post_request(original: Any) -> Any:
    """mcp 2.x ``StreamableHTTPTransport._handle_post_request`` (and
    ``_handle_resumption_request``): the transport posts each message in a task started in its
    sender's context, so a request's run is current here; it gets the ``Mcp-Session-Id`` the
    request is sent with."""

    async def _handle_post_request(self: Any, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            _note_session(getattr(ctx, "session_id", None), _posted(ctx))
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.session_id", error)
        return await original(self, ctx, *args, **kwargs)

    _handle_post_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _handle_post_request


def wrap_extract_session_id(original: Any) -> Any:
    """mcp 2.x ``StreamableHTTPTransport._maybe_extract_session_id_from_response``: the
    ``initialize`` request learns the session id from its response. The transport calls it
    for that request only, in the request's own POST task."""

    def _maybe_extract_session_id_from_response(
        self: Any, response: Any, *args: Any, **kwargs: Any
    ) -> Any:
        result = original(self, response, *args, **kwargs)
        try:
            value = session_id_text(getattr(self, "session_id", None))
            stand_in = _sending.get()
            if value is not None and stand_in is not None and stand_in.peer is not None:
                stand_in.peer.sent_session_id = value
            _tag_session(value)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.session_id", error)
        return result

    _maybe_extract_session_id_from_response.__wrapped__ = original  # type: ignore[attr-defined]
    return _maybe_extract_session_id_from_response


def inject_meta(meta: MutableMapping[str, Any]) -> None:
    """Replacement for ``jsonrpc_dispatcher.inject_trace_context``: W3C trace context plus the
    allow-listed baggage only (a caller-supplied ``baggage`` entry is replaced too)."""
    threadline.inject(meta)


def wrap_send_raw_request(original: Any) -> Any:
    async def send_raw_request(
        self: Any, method: str, params: Mapping[str, Any] | None, *args: Any, **kwargs: Any
    ) -> Any:
        peer = _peer_for(self)
        if peer is not None:
            peer.dispatched = True
        rounds = _rounds.get()
        run: threadline.McpRun | threadline.ToolRun | None = None
        if rounds is not None:
            if rounds.method == method:
                run = rounds.resume()
            else:
                rounds = None
        if run is None:
            run = start(method, params, peer=peer)
        if run is None:
            return await original(self, method, params, *args, **kwargs)
        sending = _NoSpan(peer, run)
        token = _sending.set(sending)
        try:
            try:
                args, kwargs = _progress_in_context(args, kwargs, 0, "opts", "on_progress")
            except Exception as error:  # noqa: BLE001 - fail-open: the callback as it was
                report("threadline.mcp.client.progress", error)
            if isinstance(run, threadline.ToolRun):
                return await call_merged(
                    run,
                    lambda: original(self, method, params, *args, **kwargs),
                    params=params,
                    peer=peer,
                    sending=sending,
                    rounds=rounds,
                )
            try:
                result = await original(self, method, params, *args, **kwargs)
            except BaseException as error:
                answered = sending.answered_by(error)
                if not (answered and rounds is not None and rounds.hold(run, error=error)):
                    fail(run, error, answered=answered)
                raise
        finally:
            _sending.reset(token)
        if rounds is None or not rounds.hold(run, result):
            finish(run, method, result)
        return result

    send_raw_request.__wrapped__ = original  # type: ignore[attr-defined]
    return send_raw_request


# --- calls of several requests (mcp 2.x, 2026-07-28) ----------------------------------------------
class _Rounds:
    """One call of mcp 2.x ``Client.call_tool``, ``get_prompt`` or ``read_resource``, which
    the SDK may send more than once. On a 2026-07-28 connection the server may answer with an
    ``InputRequiredResult`` (SEP-2322): the client gathers the input it asks for (its sampling,
    elicitation and roots callbacks) and sends the request again, with a new JSON-RPC id, until
    the server answers for good. And a ``tools/call`` the server rejects with
    ``HEADER_MISMATCH`` (the client had not listed the tool, or its schema changed) is sent once
    more after the client lists the tools. Either way it is one operation (one ``execute_tool``
    for a tool): its requests share one CLIENT span and one metric point, held open between
    them, with the SERVER span of each request beneath it, as a handshake-era call that asks its
    client mid-call has one."""

    __slots__ = ("merged", "method", "rejected", "run")

    def __init__(self, method: str) -> None:
        self.method = method
        self.run: threadline.McpRun | None = None  # held open between the requests
        # A tools/call recorded on a framework's tool span instead: what its point needs.
        self.merged: tuple[threadline.ToolRun, float, object, Peer | None] | None = None
        # The rejection the SDK sends the request again after (it raises it if it cannot).
        self.rejected: BaseException | None = None

    def _goes_on(self, result: object, error: BaseException | None) -> bool:
        if self.run is not None or self.merged is not None:
            return False  # another request, made while this call waits (e.g. by a callback)
        if error is None:
            return is_input_required(result)
        rpc = error_code(error)
        return self.method == "tools/call" and rpc is not None and rpc[0] == HEADER_MISMATCH

    def _resumes(self) -> bool:
        """Whether the request being sent is this call's again: the SDK's retry with the input,
        or the one request after a rejection (only the tools listing comes between)."""
        return self.rejected is not None or _retrying.get() is self

    def hold(
        self,
        run: threadline.McpRun | threadline.ToolRun,
        result: object = None,
        error: BaseException | None = None,
    ) -> bool:
        """Keep ``run`` open, rather than ending it, if the call goes on after this answer
        (``result``, or the error response ``error``)."""
        if not isinstance(run, threadline.McpRun) or not self._goes_on(result, error):
            return False
        run.detach()
        self.run = run
        self.rejected = error
        return True

    def resume(self) -> threadline.McpRun | None:
        """The held run, for this call's next request (not for another request, such as one a
        callback makes meanwhile)."""
        run = self.run
        if run is None or not self._resumes():
            return None
        self.run = None
        self.rejected = None
        run.attach()
        return run

    def hold_merged(
        self,
        tool: threadline.ToolRun,
        started: float,
        params: object,
        peer: Peer | None,
        result: object = None,
        error: BaseException | None = None,
    ) -> bool:
        """As :meth:`hold`, for a ``tools/call`` recorded on a framework's tool span."""
        if not self._goes_on(result, error):
            return False
        self.merged = (tool, started, params, peer)
        self.rejected = error
        return True

    def resume_merged(self) -> float | None:
        """When a merged ``tools/call`` began, for this call's next request."""
        merged = self.merged
        if merged is None or not self._resumes():
            return None
        self.merged = None
        self.rejected = None
        return merged[1]

    def failed(self, error: BaseException) -> None:
        """The call failed between its requests: a callback refused the input, too many
        rounds, cancelled (no answer of the server's), or the SDK could not list the tools
        after a rejection (then ``error`` is that answer)."""
        answered = error is self.rejected
        run, merged = self.run, self.merged
        self.run = self.merged = self.rejected = None
        if run is not None:
            fail(run, error, answered=answered)
        if merged is not None:
            tool, started, params, peer = merged
            outcome = _merged_failure(tool, error, answered)
            status, kind = outcome if outcome is not None else (None, None)
            _record_merged(tool, time.monotonic() - started, params, peer, status, kind)

    def close(self) -> None:
        """The call is over: a run still held (the SDK stopped asking) ends with it."""
        run, merged = self.run, self.merged
        self.run = self.merged = self.rejected = None
        if run is not None:
            run.end()
        if merged is not None:
            tool, started, params, peer = merged
            _record_merged(tool, time.monotonic() - started, params, peer, None, None)


# The call a Client method is making, and (in the SDK's retry) the call being sent again.
_rounds: ContextVar[_Rounds | None] = ContextVar("threadline_mcp_rounds", default=None)
_retrying: ContextVar[_Rounds | None] = ContextVar("threadline_mcp_retrying", default=None)


def wrap_rounds(method: str) -> Callable[[Any], Any]:
    """A wrapper for mcp 2.x ``Client.call_tool`` (``method`` ``tools/call``), ``get_prompt``
    or ``read_resource``: its requests are one call (see :class:`_Rounds`)."""

    def wrap(original: Any) -> Any:
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            rounds = _Rounds(method)
            token = _rounds.set(rounds)
            try:
                return await original(self, *args, **kwargs)
            except BaseException as error:
                _settle(rounds, error)
                raise
            finally:
                _rounds.reset(token)
                _settle(rounds, None)

        call.__wrapped__ = original  # type: ignore[attr-defined]
        return call

    return wrap


@guarded(site="threadline.mcp.client.rounds")
def _settle(rounds: _Rounds, error: BaseException | None) -> None:
    if error is None:
        rounds.close()
    else:
        rounds.failed(error)


def wrap_drive_input_required(original: Any) -> Any:
    """mcp 2.x ``Client._drive_input_required(first, retry)``, which gathers the input an
    ``InputRequiredResult`` asks for and calls ``retry`` with it: the held run is current
    meanwhile (spans of the callbacks go beneath it), and ``retry`` sends its request again."""

    async def _drive_input_required(
        self: Any, first: Any, retry: Any, *args: Any, **kwargs: Any
    ) -> Any:
        rounds = _rounds.get()
        if rounds is None or (rounds.run is None and rounds.merged is None):
            return await original(self, first, retry, *args, **kwargs)

        async def again(*again_args: Any, **again_kwargs: Any) -> Any:
            token = _retrying.set(rounds)
            try:
                return await retry(*again_args, **again_kwargs)
            finally:
                _retrying.reset(token)

        run = rounds.run
        scope = run.attach_scope() if run is not None else None
        try:
            return await original(self, first, again, *args, **kwargs)
        finally:
            if run is not None and scope is not None:
                run.detach_scope(scope)

    _drive_input_required.__wrapped__ = original  # type: ignore[attr-defined]
    return _drive_input_required


def _with_context(params: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``params`` with the current trace context (and allow-listed baggage) in ``_meta``, or
    ``params`` itself when that changes nothing. A caller's own ``_meta.baggage`` is filtered
    to the allow-list too: only allow-listed entries leave the process."""
    existing = params.get("_meta") if params is not None else None
    before: dict[str, Any] = dict(existing) if isinstance(existing, Mapping) else {}
    meta = dict(before)
    threadline.inject(meta)
    if meta == before:
        return params
    out = dict(params) if params is not None else {}
    out["_meta"] = meta
    return out


def start_notification(method: str, params: object, peer: Peer | None) -> threadline.McpRun | None:
    """Start and attach the CLIENT run of a notification about to be sent (``None`` on
    failure): named after its method, no ``jsonrpc.request.id``, the connection's session. Its
    context is what the notification carries in ``_meta``, so the receiver's span joins it.
    None outside any trace, as a receiver traces by default (``notifications/initialized`` sent
    outside any span opens no trace of its own), and for a ``notifications/cancelled`` that
    the transport drops (see :attr:`Peer.cancels_by_abort`)."""
    try:
        if not trace.get_current_span().get_span_context().is_valid:
            return None
        reached = connection(params, peer)
        session_id = peer.connection_session_id if peer is not None else None
        if is_modern(reached["protocol_version"]):
            if peer is not None and peer.cancels_by_abort and method == "notifications/cancelled":
                return None  # never goes on the wire: the transport aborts the request instead
            session_id = None
        run = threadline.mcp_request(
            method,
            server=False,
            resource_uri=targets(method, params)[2],
            session_id=session_id,
            **reached,
        )
        run.attach()
        return run
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.mcp.client.notification", error)
        return None


@guarded(site="threadline.mcp.client.notification_sent")
def notification_sent(run: threadline.McpRun, error: BaseException | None) -> None:
    run.detach()
    if error is None:
        run.end()
    elif is_cancellation(error):
        run.fail("cancelled")
    else:
        run.fail(error)


async def _send_notification(
    run: threadline.McpRun | None, send: Callable[[], Awaitable[Any]]
) -> Any:
    """Send a notification, its CLIENT run (if any) ended with how the sending went."""
    if run is None:
        return await send()
    try:
        result = await send()
    except BaseException as error:
        notification_sent(run, error)
        raise
    notification_sent(run, None)
    return result


def wrap_notify(original: Any) -> Any:
    """mcp 2.x ``JSONRPCDispatcher.notify``: a CLIENT span per notification sent (by a client,
    or by a server: the conventions' sender side), whose context the notification carries in
    ``_meta`` (the MCP conventions inject into requests *and* notifications). A
    ``notifications/cancelled`` sent for an abandoned request is sent while that request's
    span is current, so it joins the request's trace."""

    async def notify(
        self: Any, method: str, params: Mapping[str, Any] | None, *args: Any, **kwargs: Any
    ) -> Any:
        run = start_notification(method, params, _peer_for(self))
        try:
            params = _with_context(params)
        except Exception as error:  # noqa: BLE001 - fail-open: send it as it was
            report("threadline.mcp.client.notify", error)
        return await _send_notification(
            run, lambda: original(self, method, params, *args, **kwargs)
        )

    notify.__wrapped__ = original  # type: ignore[attr-defined]
    return notify


# --- mcp 1.x -----------------------------------------------------------------------------------
def v1_method_params(request: Any) -> tuple[str, dict[str, Any] | None]:
    """Method and a plain view of the params (name/uri/arguments/ref/_meta) of a 1.x request."""
    root = getattr(request, "root", request)
    method = getattr(root, "method", None)
    params = getattr(root, "params", None)
    if params is None:
        return str(method), None
    view: dict[str, Any] = {}
    for key in ("name", "arguments"):
        value = getattr(params, key, None)
        if value is not None:
            view[key] = value
    uri = getattr(params, "uri", None)
    if uri is not None:
        view["uri"] = str(uri)
    ref = getattr(params, "ref", None)  # completion/complete
    if ref is not None:
        view["ref"] = {"type": getattr(ref, "type", None), "name": getattr(ref, "name", None)}
    meta = getattr(params, "meta", None)
    if meta is not None:
        extra = getattr(meta, "model_extra", None)
        view["_meta"] = dict(extra) if isinstance(extra, Mapping) else {}
    return str(method), view


def v1_with_context(request: Any) -> Any:
    """A copy of ``request`` whose ``params._meta`` carries the current trace context."""
    try:
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        params = data.get("params")
        if not isinstance(params, dict):
            params = {}
        before = params.get("_meta")
        before = dict(before) if isinstance(before, dict) else {}
        meta = dict(before)
        threadline.inject(meta)
        if meta == before:
            return request
        params["_meta"] = meta
        data["params"] = params
        return type(request).model_validate(data)
    except Exception as error:  # noqa: BLE001 - fail-open: send it as it was
        report("threadline.mcp.client.v1_inject", error)
        return request


def wrap_send_request(original: Any) -> Any:
    async def send_request(
        self: Any, request: Any, result_type: Any, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            method, params = v1_method_params(request)
            request_id = getattr(self, "_request_id", None)
            peer = _v1_peer(self)
            run = start(
                method,
                params,
                request_id=request_id if isinstance(request_id, int) else None,
                peer=peer,
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.v1", error)
            run = None
        if run is None:  # no span of ours: still propagate
            return await original(self, v1_with_context(request), result_type, *args, **kwargs)
        try:
            args, kwargs = _progress_in_context(args, kwargs, 2, "progress_callback")
        except Exception as error:  # noqa: BLE001 - fail-open: the callback as it was
            report("threadline.mcp.client.progress", error)
        if isinstance(run, threadline.ToolRun):  # recorded on the enclosing tool span
            return await call_merged(
                run,
                lambda: original(self, v1_with_context(request), result_type, *args, **kwargs),
                params=params,
                peer=peer,
            )
        try:
            result = await original(self, v1_with_context(request), result_type, *args, **kwargs)
        except BaseException as error:
            fail(run, error)
            raise
        if method == "initialize":
            _v1_initialized(self, result, run)
        finish(run, method, result)
        return result

    send_request.__wrapped__ = original  # type: ignore[attr-defined]
    return send_request


def wrap_send_notification(original: Any) -> Any:
    """mcp 1.x ``BaseSession.send_notification``: as :func:`wrap_notify` (1.x injects nothing
    into notifications either)."""

    async def send_notification(self: Any, notification: Any, *args: Any, **kwargs: Any) -> Any:
        run = None
        try:
            method, params = v1_method_params(notification)
            run = start_notification(method, params, _v1_peer(self))
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.v1_notification", error)
        return await _send_notification(
            run, lambda: original(self, v1_with_context(notification), *args, **kwargs)
        )

    send_notification.__wrapped__ = original  # type: ignore[attr-defined]
    return send_notification


def _v1_peer(session: Any) -> Peer | None:
    """What an mcp 1.x session knows about its peer: a client session, the version its
    ``initialize`` negotiated; a server session (a request to its client), its connection."""
    peer = _session_peers.get(session)
    if peer is None and _is_server_session(session):
        over_http = session in _http_sessions
        return _connection_peer(v1_server_connection(session, over_http=over_http))
    return peer


@guarded(site="threadline.mcp.client.v1_initialized")
def _v1_initialized(session: Any, result: object, run: threadline.McpRun) -> None:
    """mcp 1.x keeps no negotiated version: remember the one its server answered with, if the
    SDK accepts it (it fails the session otherwise). Over streamable HTTP, the session id the
    answer came with too: the transport learns it from this response only, so the session's
    later requests take it from the peer at no cost of their own."""
    peer = _session_peers.get(session)
    if peer is not None and peer.session_id_of is not None:
        session_id = session_id_text(peer.session_id_of())
        if session_id is not None:
            peer.session_id = session_id
            run.set_attributes({semconv.MCP_SESSION_ID: session_id})
    version = answered_version(result)
    versions = _v1_versions()
    if version is None or (versions is not None and version not in versions[0]):
        return
    if peer is None:
        peer = _session_peers[session] = Peer(None, None, None)
    peer.version = version


# --- client transports --------------------------------------------------------------------------
# id of the read stream an open client transport yielded -> (that stream, what a session over it
# knows about its server). Taken when the session is entered: its requests find it with the
# session lookup they make anyway. Keyed by id (mcp 2.x streams cannot be weakly referenced);
# the entry holds the stream, so the id stays its own, and goes when the transport closes.
_stream_peers: dict[int, tuple[Any, Peer]] = {}
_CLIENT_TRANSPORT_WRAPPER = "_threadline_client_transport"


def wrap_client_transport(kind: str) -> Callable[[Any], Any]:
    """A wrapper for a client transport: ``stdio_client`` (``kind`` ``stdio``),
    ``streamable_http_client`` (``http``), ``sse_client`` (``sse``) or ``websocket_client``
    (``websocket``). What an mcp 1.x session over its streams knows of its server; an mcp 2.x
    session too where the ``Client`` cannot tell (given the transport itself, or a
    ``ClientSession`` made over its streams)."""

    def wrap(original: Any) -> Any:
        if getattr(original, _CLIENT_TRANSPORT_WRAPPER, False):
            return original  # a module that imported it by name after it was wrapped
        hook = _session_hook_index(original) if kind == "sse" else None

        @contextlib.asynccontextmanager
        async def transport(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            told: list[str] = []  # the session id of the SSE endpoint the server announced
            if hook is not None:
                try:
                    args, kwargs = _with_session_hook(hook, args, kwargs, told)
                except Exception as error:  # noqa: BLE001 - fail-open
                    report("threadline.mcp.client.sse_session", error)
            async with original(*args, **kwargs) as streams:
                key = None
                try:
                    stream = streams[0]
                    peer = _transport_peer(kind, args, kwargs, streams)
                    if told:
                        peer.session_id = told[0]
                    _stream_peers[id(stream)] = (stream, peer)
                    key = id(stream)
                except Exception as error:  # noqa: BLE001 - fail-open
                    report("threadline.mcp.client.transport", error)
                try:
                    yield streams
                finally:
                    if key is not None:
                        _stream_peers.pop(key, None)

        functools.update_wrapper(transport, original)
        setattr(transport, _CLIENT_TRANSPORT_WRAPPER, True)
        return transport

    return wrap


_SESSION_HOOK = "on_session_created"


def _session_hook_index(original: Any) -> int | None:
    """The position of ``sse_client``'s ``on_session_created`` parameter, which it calls with
    the session id of the endpoint the server announces, before it yields its streams; None
    for a release without it (its sessions get no ``mcp.session.id``)."""
    try:
        names = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return None
    return names.index(_SESSION_HOOK) if _SESSION_HOOK in names else None


def _with_session_hook(
    index: int, args: tuple[Any, ...], kwargs: dict[str, Any], told: list[str]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of an ``sse_client`` call with an ``on_session_created`` that keeps the
    session id in ``told``, then calls the caller's own, if any."""
    positional = len(args) > index
    callback = args[index] if positional else kwargs.get(_SESSION_HOOK)

    def on_session_created(session_id: str) -> None:
        try:
            value = sse_session_id_text(session_id)
            if value is not None and not told:
                told.append(value)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.client.sse_session", error)
        if callback is not None:
            callback(session_id)

    if positional:
        return (*args[:index], on_session_created, *args[index + 1 :]), kwargs
    return args, {**kwargs, _SESSION_HOOK: on_session_created}


def _transport_peer(
    kind: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], streams: Any
) -> Peer:
    if kind == "stdio":
        return Peer("pipe", None, None)
    url = args[0] if args else kwargs.get("url")
    address, port = server_address(url) if isinstance(url, str) else (None, None)
    peer = Peer("tcp", address, port, protocol="websocket" if kind == "websocket" else "http")
    if kind == "http":
        peer.cancels_by_abort = _http_cancels_by_abort()
        if len(streams) > 2 and callable(streams[2]):
            peer.session_id_of = streams[2]  # the transport's get_session_id
    return peer


@functools.cache
def _http_cancels_by_abort() -> bool:
    """Whether this mcp's streamable HTTP client transport drops an outbound
    ``notifications/cancelled`` on 2026-07-28 (that wire has no client notifications: closing
    the request's POST is its cancellation), as ``_consume_modern_cancellation`` does."""
    try:
        module = importlib.import_module("mcp.client.streamable_http")
        return hasattr(module.StreamableHTTPTransport, "_consume_modern_cancellation")
    except (ImportError, AttributeError):
        return False


def _take_transport_peer(session: Any) -> None:
    """A client session entered over streams of a wrapped transport: its peer, unless it
    already knows how it reaches its server (an mcp 2.x ``Client`` given a URL)."""
    stream = getattr(session, "_read_stream", None)  # mcp 1.x
    if stream is None:  # mcp 2.x: the session's dispatcher reads the streams
        stream = getattr(getattr(session, "_dispatcher", None), "_read_stream", None)
    entry = _stream_peers.pop(id(stream), None) if stream is not None else None
    if entry is None:
        return
    known = _session_peers.get(session)
    if known is None or known.transport is None:
        _session_peers[session] = entry[1]


# --- session duration ----------------------------------------------------------------------------
_session_starts: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
# mcp 1.x server sessions seen serving HTTP requests (their session object cannot tell).
_http_sessions: weakref.WeakSet[Any] = weakref.WeakSet()


def note_http_session(session: Any) -> None:
    """An mcp 1.x server session received a request over HTTP."""
    if session in _session_starts and session not in _http_sessions:
        _http_sessions.add(session)


def is_http_session(session: Any) -> bool:
    """Whether an mcp 1.x server session was seen receiving requests over HTTP."""
    return session in _http_sessions


def _session_version(session: Any) -> str | None:
    version = getattr(session, "protocol_version", None)  # mcp 2.x ClientSession
    if version is None:  # mcp 1.x ServerSession
        return v1_negotiated_version(getattr(session, "client_params", None))
    return version if isinstance(version, str) else None


def v1_negotiated_version(client_params: Any) -> str | None:
    """The version an mcp 1.x server answered ``initialize`` with: the client's, if the server
    supports it, else its latest (``ServerSession._received_request``). Never the client's
    string as sent: any client could put any value on the server's spans and metrics."""
    requested = getattr(client_params, "protocolVersion", None)
    versions = _v1_versions()
    if not isinstance(requested, str) or versions is None:
        return None
    supported, latest = versions
    return requested if requested in supported else latest


@functools.cache
def _v1_versions() -> tuple[frozenset[str], str] | None:
    """mcp 1.x's supported protocol versions and its latest; None for a release that
    predates version negotiation (the answer is unknown)."""
    try:
        supported = importlib.import_module("mcp.shared.version").SUPPORTED_PROTOCOL_VERSIONS
        latest = importlib.import_module("mcp.types").LATEST_PROTOCOL_VERSION
        return frozenset(map(str, supported)), str(latest)
    except (ImportError, AttributeError, TypeError):
        return None


def _is_server_session(session: Any) -> bool:
    return type(session).__name__ == "ServerSession"


def _stateless(session: Any) -> bool:
    """An mcp 1.x server session of a stateless HTTP server: one per request, initialized from
    the start (no handshake), so no session to record."""
    if not _is_server_session(session):
        return False
    state = getattr(session, "_initialization_state", None)
    return getattr(state, "name", None) == "Initialized"


def wrap_session_enter(original: Any) -> Any:
    async def __aenter__(self: Any) -> Any:
        entered = await original(self)
        try:
            if not _stateless(self):
                _session_starts[self] = time.monotonic()
            if _stream_peers:
                _take_transport_peer(self)
            _register_dispatcher(self)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("threadline.mcp.session_enter", error)
        return entered

    __aenter__.__wrapped__ = original  # type: ignore[attr-defined]
    return __aenter__


def wrap_session_exit(original: Any) -> Any:
    async def __aexit__(self: Any, *args: Any) -> Any:
        try:
            return await original(self, *args)
        finally:
            _session_ended(self, args[1] if len(args) > 1 else None)

    __aexit__.__wrapped__ = original  # type: ignore[attr-defined]
    return __aexit__


@guarded(site="threadline.mcp.session_exit")
def _session_ended(session: Any, error: object) -> None:
    """``mcp.{client,server}.session.duration`` for a session object that was entered."""
    start = _session_starts.pop(session, None)
    if start is None:
        return
    server = _is_server_session(session)
    # known for an mcp 2.x Client and an initialized mcp 1.x ClientSession
    peer = None if server else _session_peers.get(session)
    version = _session_version(session)
    if version is None and peer is not None:
        version = peer.protocol_version
    if is_modern(version):
        return  # 2026-07-28 and later have no sessions (the server side records none either)
    if server:
        # a session over a websocket has no HTTP request, but ran inside the wrapped transport
        protocol = "http" if session in _http_sessions else transport_protocol()
    else:
        protocol = peer.network_protocol[0] if peer is not None and peer.network_protocol else None
    threadline.record_mcp_session(
        time.monotonic() - start,
        server=server,
        protocol_version=version,
        network_protocol=protocol,
        server_address=peer.address if peer is not None else None,
        server_port=peer.port if peer is not None else None,
        error=threadline.error_type(error) if isinstance(error, Exception) else None,
    )
