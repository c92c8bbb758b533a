"""A plain MCP server (no tracing) that ``app_mcp.py`` starts as a stdio subprocess."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("weather", log_level="WARNING")


@server.tool()
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


if __name__ == "__main__":
    server.run("stdio")
