"""Switches for the MCP SDK's built-in OpenTelemetry (mcp 2.x): the uninstrumented baseline
and the floor turn it off on both sides."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import INVALID_SPAN


@contextlib.contextmanager
def _no_span(*args: Any, **kwargs: Any) -> Iterator[Any]:
    yield INVALID_SPAN


def disable_native_client() -> None:
    """The client dispatcher's CLIENT span and ``_meta`` injection become no-ops."""
    from mcp.shared import jsonrpc_dispatcher

    jsonrpc_dispatcher.otel_span = _no_span  # type: ignore[assignment]
    jsonrpc_dispatcher.inject_trace_context = lambda meta: None  # type: ignore[assignment]


def drop_native_server(server: Any) -> None:
    """Remove the SDK's OpenTelemetryMiddleware from a server's middleware chain."""
    from mcp.server._otel import OpenTelemetryMiddleware

    chain = server.middleware
    chain[:] = [m for m in chain if not isinstance(m, OpenTelemetryMiddleware)]
