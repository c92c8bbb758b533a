"""Pieces shared by the server middleware and the client instrumentation: reading the target of a
request, spotting a tool error in a result, and telling an MCP error's code."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import threadline

_logger = logging.getLogger("threadline.mcp")

# Longest tool/prompt name and resource URI put on a span; longer values come from a broken or
# hostile peer and are left out rather than making huge span names.
MAX_NAME = 256
MAX_URI = 2048
# Session ids are chosen by the server; a longer one is left out.
MAX_SESSION_ID = 256
# Protocol versions come from the peer; a longer one is left out.
MAX_VERSION = 32

MODERN_ERA = "2026-07-28"
"""Protocol versions from this one on have no sessions (stateless, per-request envelope)."""


def _text(value: object, limit: int) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def session_id_text(value: object) -> str | None:
    """An ``Mcp-Session-Id`` fit for ``mcp.session.id``, else ``None``."""
    return _text(value, MAX_SESSION_ID)


# A legacy SSE session id travels in a URL's query (``session_id``), where any client or server
# can put anything: only visible ASCII, as streamable HTTP's ``Mcp-Session-Id`` must be.
_SSE_SESSION_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_SESSION_ID}}}")


def sse_session_id_text(value: object) -> str | None:
    """A legacy SSE connection's session id fit for ``mcp.session.id``, else ``None``."""
    if value is None:
        return None
    if isinstance(value, str) and _SSE_SESSION_ID.fullmatch(value):
        return value
    _logger.debug(
        "ignoring an SSE session id (%s of length %s)",
        type(value).__name__,
        len(value) if isinstance(value, str) else "-",
    )
    return None


def version_text(value: object) -> str | None:
    """A protocol version fit for ``mcp.protocol.version``, else ``None``."""
    return _text(value, MAX_VERSION)


def targets(method: str, params: object) -> tuple[str | None, str | None, str | None]:
    """``(tool_name, prompt_name, resource_uri)`` of a request's raw params."""
    if not isinstance(params, Mapping):
        return None, None, None
    if method == "tools/call":
        return _text(params.get("name"), MAX_NAME), None, None
    if method == "prompts/get":
        return None, _text(params.get("name"), MAX_NAME), None
    if method == "completion/complete":  # completing an argument of a prompt: about that prompt
        ref = params.get("ref")
        if isinstance(ref, Mapping) and ref.get("type") == "ref/prompt":
            return None, _text(ref.get("name"), MAX_NAME), None
        return None, None, None
    if method in _RESOURCE_METHODS:
        return None, None, _text(params.get("uri"), MAX_URI)
    return None, None, None


# The methods whose ``uri`` is ``mcp.resource.uri`` (the conventions' registry): a ``uri`` on any
# other message is the peer's own addition.
_RESOURCE_METHODS = frozenset(
    (
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "notifications/resources/updated",
    )
)


def record_request_content(run: threadline.McpRun, method: str, params: object) -> None:
    """A request's content, with capture on: a ``tools/call``'s arguments, a
    ``prompts/get``'s (its template's variables)."""
    if method not in _CONTENT_METHODS or not isinstance(params, Mapping):
        return
    if not threadline.capture_enabled():
        return
    arguments = params.get("arguments")
    if method == "tools/call":
        run.update(arguments=arguments)
    elif isinstance(arguments, Mapping) and arguments:
        run.update(prompt_variables=arguments)


_CONTENT_METHODS = frozenset(("tools/call", "prompts/get"))


def is_tool_error(result: object) -> bool:
    """True for a ``CallToolResult`` with ``isError: true`` in any of its shapes (wire dict,
    mcp 2.x model ``is_error``, mcp 1.x model ``isError``)."""
    if isinstance(result, Mapping):
        return result.get("isError") is True
    return getattr(result, "is_error", None) is True or getattr(result, "isError", None) is True


@functools.cache
def _mcp_error() -> type[BaseException] | None:
    """The SDK's exception for JSON-RPC errors: ``MCPError`` (2.x), ``McpError`` (1.x)."""
    try:
        from mcp.shared import exceptions
    except ImportError:
        return None
    found = getattr(exceptions, "MCPError", None) or getattr(exceptions, "McpError", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


@functools.cache
def _no_back_channel() -> type[BaseException] | None:
    """mcp 2.x's ``NoBackChannelError``; None on mcp 1.x, which has none."""
    try:
        from mcp.shared import exceptions
    except ImportError:
        return None
    found = getattr(exceptions, "NoBackChannelError", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def is_no_back_channel(error: BaseException) -> bool:
    """A request this side could not send: the channel it was to go out on cannot carry
    requests (a 2026-07-28 or JSON-response exchange, a stateless connection). Raised before
    anything is sent, with the ``-32600`` code its error response is answered with."""
    no_back_channel = _no_back_channel()
    return no_back_channel is not None and isinstance(error, no_back_channel)


def is_input_required(result: object) -> bool:
    """An ``InputRequiredResult`` (2026-07-28, SEP-2322): the server asks for input before the
    request can complete, and the client retries the request with it (wire dict or model)."""
    if isinstance(result, Mapping):
        return result.get("resultType") == "input_required"
    return getattr(result, "result_type", None) == "input_required"


def error_code(error: BaseException) -> tuple[int, str] | None:
    """``(code, message)`` of an MCP error (``MCPError`` in 2.x, ``McpError`` in 1.x, and their
    subclasses): only those are answered with their own code; the SDK answers any other
    exception with a code of its own, whatever the exception carries."""
    mcp_error = _mcp_error()
    if mcp_error is None or not isinstance(error, mcp_error):
        return None
    data: Any = getattr(error, "error", None)
    code = getattr(data, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        message = getattr(data, "message", None)
        return code, message if isinstance(message, str) else ""
    return None


def local_failure(code: int, message: str, *, answered: bool | None) -> str | None:
    """``error.type`` of an MCP error the SDK raised itself, with no error response from the
    peer (so no ``rpc.response.status_code``); None for a JSON-RPC error response.
    ``answered``: whether the SDK reported an error response (mcp 2.x); None where it cannot
    tell (mcp 1.x), whose own errors are known by code and message."""
    if answered is None:
        if code == _HTTP_REQUEST_TIMEOUT:
            return "timeout"
        if code == _CONNECTION_CLOSED and message == "Connection closed":
            return "connection_closed"
        return None
    if answered:
        return None
    return _LOCAL_FAILURES.get(code, str(code))


# Codes the SDKs raise themselves: mcp 2.x REQUEST_TIMEOUT and CONNECTION_CLOSED; mcp 1.x times
# out with HTTP's 408.
_HTTP_REQUEST_TIMEOUT = 408
_CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
# 2026-07-28: a tools/call whose Mcp-Param-* headers do not match its arguments (the client had
# not listed the tool, or its schema changed); mcp 2.x's Client lists the tools and resends once.
HEADER_MISMATCH = -32020
_LOCAL_FAILURES = {REQUEST_TIMEOUT: "timeout", _CONNECTION_CLOSED: "connection_closed"}


def is_modern(protocol_version: object) -> bool:
    return isinstance(protocol_version, str) and protocol_version >= MODERN_ERA


def is_cancellation(error: BaseException) -> bool:
    """The request was cancelled (the async framework's cancellation exception)."""
    try:
        import anyio
    except ImportError:  # pragma: no cover - anyio comes with mcp
        return False
    return isinstance(error, anyio.get_cancelled_exc_class())
