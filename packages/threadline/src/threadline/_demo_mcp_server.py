"""The MCP server of ``threadline demo``, started by the demo as a stdio subprocess::

    python -m threadline._demo_mcp_server SPANS_FILE [OTLP_URL]

It serves one tool, ``get_weather``, through ``threadline.mcp.TracingMiddleware``. Its spans go to
SPANS_FILE as JSON lines (the demo merges them into its tree) and, given OTLP_URL, also over
OTLP/HTTP, so a collector receives both processes' halves of the trace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import threadline

SERVICE_NAME = "threadline-demo-weather"

_FORECASTS = {
    "paris": {"city": "Paris", "temperature_c": 18, "sky": "clear"},
    "lyon": {"city": "Lyon", "temperature_c": 21, "sky": "cloudy"},
}


def get_weather(city: str) -> str:
    """Current weather for a city."""
    from mcp.server.mcpserver.exceptions import ToolError

    with threadline.step("lookup_forecast"):
        forecast = _FORECASTS.get(city.strip().lower())
    if forecast is None:
        # A ToolError reaches the client as an ``isError`` result: both tools/call spans fail.
        raise ToolError(f"no forecast for {city!r}: try a city name")
    return json.dumps(forecast)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m threadline._demo_mcp_server SPANS_FILE [OTLP_URL]", file=sys.stderr)
        return 2
    from mcp.server.mcpserver import MCPServer
    from opentelemetry.sdk.resources import Resource

    import threadline.mcp
    from threadline.testing import install_jsonl_exporter

    provider = install_jsonl_exporter(
        args[0], resource=Resource.create({"service.name": SERVICE_NAME})
    )
    if len(args) > 1:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Batched, so an unreachable collector costs one export timeout at exit, not one per
        # span; the JSON lines file gets every span as it ends either way.
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=args[1], timeout=5))
        )
    threadline.configure(tracer_provider=provider)
    server = MCPServer(
        "weather", log_level="WARNING", middleware=[threadline.mcp.TracingMiddleware()]
    )
    server.tool(name="get_weather")(get_weather)
    try:
        server.run("stdio")
    finally:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
