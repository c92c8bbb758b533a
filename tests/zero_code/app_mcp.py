"""An MCP client calling a tool on a server it starts as a stdio subprocess. No threadline import:
run it under ``opentelemetry-instrument`` and the ``threadline_mcp`` entry point traces the client.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

SERVER = Path(__file__).with_name("mcp_weather_server.py")


async def main() -> None:
    # The server gets the SDK's default environment (no PYTHONPATH): it runs untraced.
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
    async with Client(params) as client:
        result = await client.call_tool("get_weather", {"city": "Paris"})
    assert not result.is_error
    assert "sunny in Paris" in "".join(getattr(part, "text", "") for part in result.content)


if __name__ == "__main__":
    anyio.run(main)
