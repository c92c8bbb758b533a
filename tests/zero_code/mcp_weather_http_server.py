"""A plain MCP server (no threadline import) on streamable HTTP at 127.0.0.1, an ephemeral port
written to the file given as the first argument. Run it under ``opentelemetry-instrument``: the
``threadline_mcp`` entry point traces it. It stops on SIGTERM/SIGINT, flushing its spans."""

from __future__ import annotations

import contextlib
import os
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("weather", log_level="WARNING")


@server.tool()
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


def main(port_file: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    http = uvicorn.Server(config)

    async def serve() -> None:
        async def announce() -> None:
            while not http.started:
                await anyio.sleep(0.01)
            with open(port_file + ".tmp", "w") as file:
                file.write(str(sock.getsockname()[1]))
            os.replace(port_file + ".tmp", port_file)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce)
            await http.serve(sockets=[sock])

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the signal after shutdown
        anyio.run(serve)


if __name__ == "__main__":
    main(sys.argv[1])
