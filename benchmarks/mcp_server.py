"""The MCP server of the ``mcp.tool_call`` workload, spawned over stdio by the client worker
with the same ``BENCH_CONFIG``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from benchmarks._common import (
    CLOCKLESS_ENV,
    THREADLINE_CONFIGS,
    Replay,
    Telemetry,
    configure_threadline,
    span_template,
)
from benchmarks.workloads.mcp_common import drop_native_server

CONFIG = os.environ.get("BENCH_CONFIG", "baseline")


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def main() -> None:
    # Counting instructions: no forced GIL hand-offs and no clocked export, as in the worker.
    clockless = os.environ.get(CLOCKLESS_ENV) == "1"
    if clockless:
        sys.setswitchinterval(1e6)
    telemetry = Telemetry(clockless=clockless)
    memory: InMemorySpanExporter | None = None
    if os.environ.get("BENCH_RECORD"):
        memory = InMemorySpanExporter()
        telemetry.provider.add_span_processor(SimpleSpanProcessor(memory))

    from mcp.server.mcpserver import MCPServer

    middleware: list[Any] = []
    if CONFIG in THREADLINE_CONFIGS:
        import threadline.mcp

        configure_threadline(CONFIG)
        middleware.append(threadline.mcp.TracingMiddleware())
    elif CONFIG == "floor":
        template = Path(os.environ["BENCH_TEMPLATE"] + ".server.json")
        replay = Replay(json.loads(template.read_text()), telemetry.provider)

        async def passthrough(ctx: Any, call_next: Any) -> Any:
            # The floor joins the client's trace: extract what it propagated in _meta.
            meta = getattr(ctx, "meta", None)
            parent = propagate.extract(meta) if meta else None
            result = await call_next(ctx)
            if ctx.method == "tools/call" and (ctx.params or {}).get("name") == "get_weather":
                replay(parent)
            return result

        middleware.append(passthrough)

    server: Any = MCPServer("bench", middleware=middleware)
    if CONFIG in ("baseline", "floor"):
        drop_native_server(server)
    server.tool(name="get_weather")(get_weather)

    @server.tool(name="cpu_ns")
    def cpu_ns() -> str:
        return str(time.process_time_ns())

    counter: list[Any] = []

    @server.tool(name="count_instructions")
    async def count_instructions(on: bool) -> str:
        if not counter:
            from benchmarks._instructions import Counter

            counter.append(Counter())
        if on:
            telemetry.provider.force_flush()
            counter[0].start()
        else:
            telemetry.provider.force_flush()  # the export thread's work for the calls is theirs
            counter[0].stop()
        return "ok"

    @server.tool(name="dump_spans")
    def dump_spans(path: str) -> str:
        assert memory is not None
        telemetry.provider.force_flush()
        spans = [s for s in memory.get_finished_spans() if "get_weather" in s.name]
        last = spans[-1].context.trace_id
        mine = [s for s in memory.get_finished_spans() if s.context.trace_id == last]
        Path(path).write_text(json.dumps(span_template(mine), indent=1))
        return str(len(mine))

    _ = trace
    server.run("stdio")


if __name__ == "__main__":
    main()
