"""A LlamaIndex workflow whose step calls an MCP tool in another process: one trace.

A workflow step runs in a task of the workflow's own, where no span of the caller is current;
the MCP client injects whatever is current into the request's ``_meta``. So the server's spans
join the caller's trace only if the workflow's span is current inside its steps. The server is
a real subprocess over stdio (an in-process server would share the client's contextvars).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import threadline
from threadline.testing import Telemetry, find, read_spans_jsonl, render_tree
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)

pytest.importorskip("llama_index.core.workflow")
pytest.importorskip("threadline.mcp")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages/threadline-mcp/tests"))

from harness import connect, stdio_params, tool_text
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

import threadline.llamaindex
import threadline.mcp


@pytest.fixture
def instrumented() -> Iterator[None]:
    threadline.llamaindex.instrument()
    threadline.mcp.instrument()
    yield
    threadline.mcp.uninstrument()
    threadline.llamaindex.uninstrument()


class Forecast(Workflow):
    """One step: ask the weather server (path of its span file in ``ev.spans``)."""

    @step
    async def ask(self, ev: StartEvent) -> StopEvent:
        async with connect(stdio_params(Path(ev.spans))) as session:
            result = await session.call_tool("get_weather", {"city": "Paris"})
        return StopEvent(result=tool_text(result))


@pytest.mark.usefixtures("instrumented")
def test_mcp_call_in_a_workflow_step_joins_the_workflow_trace(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    spans_file = tmp_path / "server-spans.jsonl"

    async def run() -> str:
        with threadline.session("sess-9"), threadline.invoke_agent("planner"):
            return str(await Forecast(timeout=60).run(spans=str(spans_file)))

    seen = json.loads(asyncio.run(run()))
    assert seen["forecast"] == "sunny"
    assert seen["session"] == {"session.id": "sess-9"}  # the baggage crossed with the context
    client_spans = telemetry.spans()
    server_spans = read_spans_jsonl(spans_file)
    call = find(client_spans, "tools/call get_weather")
    workflow = find(client_spans, "invoke_workflow Forecast")
    served = find(server_spans, "tools/call get_weather")
    assert call.parent_span_id == workflow.span_id
    assert served.trace_id == call.trace_id == workflow.trace_id
    assert served.parent_span_id == call.span_id
    assert served.attributes["session.id"] == "sess-9"
    merged = [s for s in client_spans + server_spans if s.trace_id == workflow.trace_id]
    tree = render_tree(merged)
    assert tree.startswith(
        "invoke_agent planner [INTERNAL]\n  invoke_workflow Forecast [INTERNAL]\n"
    ), tree
    assert "    tools/call get_weather [CLIENT]\n      tools/call get_weather [SERVER]\n" in tree
    assert threadline.current_run() is None
