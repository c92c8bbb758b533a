"""The session id an SSE client is told: the ``session_id`` of the endpoint its server announces,
on every CLIENT span of the connection, when it is fit to record. The server here is a stand-in
behind the HTTP client's mock transport (no network), so it can announce any id at all; the
end-to-end tests (``test_cross_process``) check both ends of a real SDK server's session."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from harness import MAJOR

pytestmark = pytest.mark.usefixtures("instrumented")

if MAJOR >= 2:
    import httpx2 as httpx
else:
    import httpx  # type: ignore[no-redef]

URL = "http://mcp.test/sse"
ANSWERS: dict[str, Any] = {
    "initialize": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "stand-in", "version": "0"},
    },
    "tools/list": {"tools": []},
}


class StandInServer:
    """Just enough of a legacy SSE server: announces ``endpoint``, answers every request it is
    posted on the event stream."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.events, self.pending = anyio.create_memory_object_stream[bytes](16)

    async def handle(self, request: Any) -> Any:
        if request.method == "GET":
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=_Events(self)
            )
        message = json.loads(request.content)
        if "id" in message and "method" in message:
            result = ANSWERS.get(message["method"], {})
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            await self.events.send(f"event: message\ndata: {json.dumps(answer)}\n\n".encode())
        return httpx.Response(202)

    def client_factory(self, headers: Any = None, timeout: Any = None, auth: Any = None) -> Any:
        return httpx.AsyncClient(
            transport=httpx.MockTransport(self.handle), headers=headers, timeout=timeout, auth=auth
        )


class _Events(httpx.AsyncByteStream):
    def __init__(self, server: StandInServer) -> None:
        self.server = server

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield f"event: endpoint\ndata: {self.server.endpoint}\n\n".encode()
        async for event in self.server.pending:
            yield event


def _connect(endpoint: str, *, positional: bool = False) -> list[str]:
    """Open an SSE client to a stand-in server announcing ``endpoint`` and list its tools; what
    the caller's own ``on_session_created`` was told."""
    from mcp.client.sse import sse_client

    server = StandInServer(endpoint)
    told: list[str] = []
    if positional:  # (url, headers, timeout, sse_read_timeout, factory, auth, on_session_created)
        transport = sse_client(URL, None, 5, 5, server.client_factory, None, told.append)
    else:
        transport = sse_client(
            URL, httpx_client_factory=server.client_factory, on_session_created=told.append
        )

    async def turn() -> None:
        if MAJOR >= 2:
            from mcp import Client

            async with Client(transport, mode="legacy") as client:  # type: ignore[arg-type]
                await client.list_tools()
            return
        from mcp import ClientSession

        async with transport as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()

    anyio.run(turn)
    return told


def _session_ids(telemetry: Any) -> dict[str, object]:
    spans = [s for s in telemetry.spans() if s.kind == "CLIENT"]
    assert {"initialize", "tools/list"} <= {s.name for s in spans}
    return {s.name: s.attributes.get("mcp.session.id") for s in spans}


@pytest.mark.parametrize("positional", [False, True])
def test_sse_client_spans_carry_the_announced_session(telemetry: Any, positional: bool) -> None:
    """The caller's own ``on_session_created`` (by keyword or position) is still called."""
    told = _connect("/messages/?session_id=0123abcd-EF", positional=positional)
    assert told == ["0123abcd-EF"]
    ids = _session_ids(telemetry)
    assert ids == dict.fromkeys(ids, "0123abcd-EF")


@pytest.mark.parametrize(
    ("query", "announced"),
    [
        ("a%0Ab", "a\nb"),  # a control character
        ("a%20b", "a b"),  # not visible
        ("%C3%A9t%C3%A9", "été"),  # not ASCII
        ("x" * 257, "x" * 257),  # too long
    ],
)
def test_an_unfit_sse_session_id_is_left_out(
    telemetry: Any, caplog: pytest.LogCaptureFixture, query: str, announced: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger="threadline.mcp"):
        told = _connect(f"/messages/?session_id={query}")
    assert told == [announced]  # the SDK's own handling is unchanged
    ids = _session_ids(telemetry)
    assert ids == dict.fromkeys(ids)
    assert "ignoring an SSE session id" in caplog.text
    assert announced not in caplog.text  # a hostile value stays out of the log too
