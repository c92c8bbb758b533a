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

from threadline.mcp._instrumentor import MCPInstrumentor, instrument, uninstrument
from threadline.mcp._server import TracingMiddleware

__all__ = ["MCPInstrumentor", "TracingMiddleware", "instrument", "uninstrument"]
