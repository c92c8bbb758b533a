"""Client side of the cross-process tests: start ``mcp_server.py`` in a subprocess and talk to it
over stdio, streamable HTTP, the legacy SSE transport or (mcp 1.x) the websocket transport with
whichever mcp major is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

MAJOR = int(version("mcp").split(".", 1)[0])
SERVER = Path(__file__).with_name("mcp_server.py")


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OTEL_TRACES_EXPORTER", None)
    env.update(extra)
    return env


class SseUrl(str):
    """The URL of a server on the legacy SSE transport (``connect`` opens an SSE client)."""


class WebSocketUrl(str):
    """The ``ws://`` URL of a server on the websocket transport (``connect`` opens a websocket
    client)."""


@contextmanager
def http_server(
    tmp_path: Path, spans: Path, *, transport: str = "http", **env: str
) -> Iterator[str]:
    """A server subprocess on 127.0.0.1 at an ephemeral port; yields its MCP URL (``transport``
    ``sse``: its SSE endpoint, as an :class:`SseUrl`; ``websocket``: a :class:`WebSocketUrl`)."""
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), transport, str(spans), str(port_file)],
        env=server_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited {proc.returncode}: {(tmp_path / 'server.log').read_text()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        port = port_file.read_text()
        base = f"http://127.0.0.1:{port}"
        if transport == "websocket":
            yield WebSocketUrl(f"ws://127.0.0.1:{port}/ws")
        else:
            yield SseUrl(f"{base}/sse") if transport == "sse" else f"{base}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Session:
    """The few client calls the tests need, across mcp 1.x and 2.x."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def call_tool(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> Any:
        if meta is None:
            return await self.client.call_tool(name, arguments)
        return await self.client.call_tool(name, arguments, meta=meta)

    async def list_tools(self) -> Any:
        return await self.client.list_tools()


def stdio_params(spans: Path, **env: str) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=[str(SERVER), "stdio", str(spans)],
        env=server_env(**env),
    )


@asynccontextmanager
async def connect(target: Any, *, mode: str = "legacy", **options: Any) -> AsyncIterator[Session]:
    """``target``: stdio parameters, an HTTP URL, an :class:`SseUrl` or a :class:`WebSocketUrl`
    (mcp 1.x). ``mode`` (mcp 2.x): legacy or auto. ``options``: client callbacks such as
    ``sampling_callback``."""
    if MAJOR >= 2:
        from mcp import Client

        if isinstance(target, SseUrl):  # a transport the Client is given, not a URL
            from mcp.client.sse import sse_client

            target = sse_client(str(target))
        async with Client(target, mode=mode, **options) as client:  # type: ignore[arg-type]
            yield Session(client)
        return
    from mcp import ClientSession

    if isinstance(target, (WebSocketUrl, SseUrl)):
        if isinstance(target, WebSocketUrl):
            from mcp.client.websocket import websocket_client as open_streams
        else:
            from mcp.client.sse import sse_client as open_streams

        async with (
            open_streams(str(target)) as (read, write),
            ClientSession(read, write, **options) as session,
        ):
            await session.initialize()
            yield Session(session)
    elif isinstance(target, str):
        from mcp.client.streamable_http import streamable_http_client

        async with (
            streamable_http_client(target) as (read, write, _),
            ClientSession(read, write, **options) as session,
        ):
            await session.initialize()
            yield Session(session)
    else:
        from mcp.client.stdio import stdio_client

        async with (
            stdio_client(target) as (read, write),
            ClientSession(read, write, **options) as session,
        ):
            await session.initialize()
            yield Session(session)


def tool_text(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))
