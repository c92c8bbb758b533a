"""threadline integration for the Model Context Protocol (MCP).

Server (mcp 2.x)::

    from threadline.mcp import TracingMiddleware
    server = MCPServer("weather", middleware=[TracingMiddleware()])

Client (mcp 2.x), and both sides for mcp 1.x::

    import threadline.mcp
    threadline.mcp.instrument()

Spans follow the OpenTelemetry MCP conventions (``tools/call get_weather`` CLIENT and SERVER), and
trace context plus allow-listed session baggage travel in ``params._meta``.
"""

from typing import TYPE_CHECKING

from threadline._deferred import lazy_exports
from threadline.mcp._instrumentor import MCPInstrumentor, instrument, uninstrument

if TYPE_CHECKING:
    from threadline.mcp._server import TracingMiddleware

__all__ = ["MCPInstrumentor", "TracingMiddleware", "instrument", "uninstrument"]

# Loaded on first use: ``opentelemetry-instrument`` imports this package in every process.
__getattr__, __dir__ = lazy_exports(__name__, {"TracingMiddleware": "threadline.mcp._server"})
