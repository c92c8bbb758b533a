"""MCP workload: one ``tools/call`` over stdio to a server subprocess
(``benchmarks/mcp_server.py``), with the same configuration on both sides. Times are round
trips; CPU time adds the server's."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from benchmarks._common import THREADLINE_CONFIGS, Replay, installed, instrument_threadline

SERVER = Path(__file__).resolve().parents[1] / "mcp_server.py"
_loop = asyncio.new_event_loop()
_session: Any = None
_stop: asyncio.Event | None = None
_holder: asyncio.Task[None] | None = None


def configs() -> list[str]:
    out = ["baseline", "floor"]
    if installed("threadline.mcp"):
        out += THREADLINE_CONFIGS
    out.append("native")
    return out


def instrument(config: str) -> None:
    from benchmarks.workloads import mcp_common

    if instrument_threadline(config, "mcp"):
        return
    if config == "baseline":
        mcp_common.disable_native_client()
    elif config != "native":
        raise SystemExit(f"mcp has no configuration {config!r}")


def noop_hook() -> None:
    """Pass-through wrapper where threadline hooks the client (the dispatcher's raw send); the
    server side gets a pass-through middleware (see ``benchmarks/mcp_server.py``)."""
    from mcp.shared import jsonrpc_dispatcher

    from benchmarks.workloads import mcp_common

    mcp_common.disable_native_client()
    original = jsonrpc_dispatcher.JSONRPCDispatcher.send_raw_request

    async def send_raw_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await original(self, *args, **kwargs)

    jsonrpc_dispatcher.JSONRPCDispatcher.send_raw_request = send_raw_request  # type: ignore[method-assign]


def with_floor(call: Callable[[], Any], replay: Replay) -> Callable[[], Any]:
    """The floor of a call that crosses processes: the replayed CLIENT span is started before
    the call and its context injected into ``_meta`` with the global propagator, as any
    instrumentation must for the server's span to join it; the server extracts it
    (``benchmarks/mcp_server.py``)."""
    from mcp.shared import jsonrpc_dispatcher
    from opentelemetry import propagate
    from opentelemetry.context import Context

    sending: list[Context | None] = [None]

    def inject(meta: dict[str, Any]) -> None:
        propagate.inject(meta, context=sending[0])

    jsonrpc_dispatcher.inject_trace_context = inject  # type: ignore[assignment]

    def traced(ctx: Context) -> Any:
        sending[0] = ctx
        try:
            return call()
        finally:
            sending[0] = None

    return lambda: replay.around(traced)


async def _hold(ready: asyncio.Future[Any]) -> None:
    global _stop
    _stop = asyncio.Event()
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=dict(os.environ))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        ready.set_result(session)
        await _stop.wait()


def _open() -> Any:
    global _session, _holder
    if _session is None:
        ready: asyncio.Future[Any] = _loop.create_future()
        _holder = _loop.create_task(_hold(ready))
        _session = _loop.run_until_complete(ready)
    return _session


def close() -> None:
    if _stop is not None and _holder is not None:
        _stop.set()
        _loop.run_until_complete(_holder)


def other_cpu_ns() -> int:
    result = _loop.run_until_complete(_open().call_tool("cpu_ns", {}))
    return int(result.content[0].text)


def count_other_side(on: bool) -> None:
    """Start or stop the server's instruction count (see ``benchmarks/_instructions.py``)."""
    _loop.run_until_complete(_open().call_tool("count_instructions", {"on": on}))


def record_other_side() -> None:
    path = os.environ["BENCH_RECORD"] + ".server.json"
    _loop.run_until_complete(_open().call_tool("dump_spans", {"path": path}))


def make_tool_call() -> Callable[[], Any]:
    session = _open()

    def call() -> Any:
        result = _loop.run_until_complete(session.call_tool("get_weather", {"city": "Paris"}))
        return result.content[0].text

    return call


WORKLOADS: dict[str, Callable[[], Callable[[], Any]]] = {"tool_call": make_tool_call}
