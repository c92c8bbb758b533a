"""An agent calling the tools of an MCP server in a subprocess over stdio: one trace.

The most common real combination: Pydantic AI's own MCP toolset (``MCPToolset``, on the FastMCP
client) feeds an agent the tools of a server process. The agent's ``execute_tool`` span is
current when the toolset calls the tool, the MCP client's ``tools/call`` span nests under it and
carries its context (and the session baggage) in ``_meta`` to the server, whose spans (written
to a JSON-lines file) continue the trace. (``langchain-mcp-adapters`` has no release for mcp 2.x:
0.3.2 and later require ``mcp<2``, 0.3.1 imports ``mcp.server.fastmcp``, gone in 2.x.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, context

import threadline
from threadline.testing import SpanRecord, Telemetry, find, read_spans_jsonl, render_tree
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)

pytest.importorskip("threadline.mcp")
pytest.importorskip("threadline.pydantic_ai")
pytest.importorskip("fastmcp", reason="pydantic_ai.mcp needs the fastmcp client")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages/threadline-mcp/tests"))

import fastmcp
from fastmcp.client.transports import StdioTransport
from harness import SERVER, server_env
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import threadline.mcp
from threadline.pydantic_ai import Tracing


@pytest.fixture(params=[False, True], ids=["client-span", "merged"])
def merge(request: pytest.FixtureRequest) -> Iterator[bool]:
    """``threadline.mcp.instrument()``, with ``merge_tool_spans`` off or on."""
    threadline.mcp.instrument(merge_tool_spans=request.param)
    yield request.param
    threadline.mcp.uninstrument()


@pytest.fixture
def fastmcp_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastMCP's own client spans on (its default, ``native``)."""
    monkeypatch.setattr(fastmcp.settings, "telemetry_mode", "native")


@pytest.fixture
def no_fastmcp_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastMCP's own client spans off (``propagation_only``): threadline's are the MCP spans."""
    monkeypatch.setattr(fastmcp.settings, "telemetry_mode", "propagation_only")


def toolset(spans: Path) -> MCPToolset[Any]:
    """The weather server of the MCP package's tests, a subprocess over stdio that exits when the
    toolset closes (so its spans are all written when the agent's context exits)."""
    transport = StdioTransport(
        sys.executable,
        [str(SERVER), "stdio", str(spans)],
        env=server_env(),
        keep_alive=False,
        log_file=spans.with_suffix(".log"),
    )
    return MCPToolset(transport)


def calls_once(tool: str) -> FunctionModel:
    """Calls ``tool`` once, then answers with what it returned (or the retry prompt)."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool, {"city": "Paris"}, "call-1")])
        return ModelResponse(parts=[TextPart(str(messages[-1].parts[0].content))])  # type: ignore[union-attr]

    return FunctionModel(answer, model_name="planner")


def weather_agent(tool: str, spans: Path) -> Agent[None, str]:
    return Agent(
        calls_once(tool),
        name="weather_agent",
        toolsets=[toolset(spans)],
        capabilities=[Tracing()],
    )


def run_agent(agent: Agent[None, str]) -> str:
    """One run in session ``sess-42``, with a baggage entry that must not leave the process."""

    async def run() -> str:
        token = context.attach(baggage.set_baggage("api.key", "s3cret"))
        try:
            with threadline.session("sess-42"):
                async with agent:  # connects (server/discover) outside the agent's trace
                    return (await agent.run("weather in Paris?")).output
        finally:
            context.detach(token)

    return asyncio.run(run())


def agent_trace(telemetry: Telemetry, spans_file: Path) -> list[SpanRecord]:  # noqa: F811
    """Both processes' spans of the agent run's trace."""
    every = telemetry.spans() + read_spans_jsonl(spans_file)
    agent = find(every, "invoke_agent weather_agent")
    return [s for s in every if s.trace_id == agent.trace_id]


def test_agent_tool_call_crosses_into_the_server_process(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    merge: bool,
    no_fastmcp_spans: None,
) -> None:
    """invoke_agent → execute_tool → tools/call CLIENT → (server) tools/call SERVER → the tool's
    own span, one trace, the session on the server's spans; merged, the CLIENT span's part is
    played by execute_tool."""
    spans_file = tmp_path / "server-spans.jsonl"
    seen = json.loads(run_agent(weather_agent("get_weather", spans_file)))
    assert seen["forecast"] == "sunny"
    assert seen["session"] == {"session.id": "sess-42"}
    assert seen["wire_baggage"] == "session.id=sess-42"  # allow-listed baggage only
    spans = agent_trace(telemetry, spans_file)
    tree = render_tree(spans, attributes=("session.id",))
    call = "" if merge else "    tools/call get_weather [CLIENT] session.id=sess-42\n"
    deeper = "" if merge else "  "
    assert tree == (
        "invoke_agent weather_agent [INTERNAL] session.id=sess-42\n"
        "  tools/list [CLIENT] session.id=sess-42\n"
        "    tools/list [SERVER] session.id=sess-42\n"
        "  chat planner [CLIENT] session.id=sess-42\n"
        "  execute_tool get_weather [INTERNAL] session.id=sess-42\n"
        f"{call}"
        f"{deeper}    tools/call get_weather [SERVER] session.id=sess-42\n"
        f"{deeper}      lookup_forecast [INTERNAL] session.id=sess-42\n"
        "  chat planner [CLIENT] session.id=sess-42"
    ), tree
    tool = find(spans, "execute_tool get_weather")
    served = find(read_spans_jsonl(spans_file), "tools/call get_weather")
    client = tool if merge else find(telemetry.spans(), "tools/call get_weather")
    assert served.parent_span_id == client.span_id
    assert served.attributes["network.transport"] == "pipe"
    assert served.resource.get("service.name") == "mcp-server"
    assert client.attributes["mcp.method.name"] == "tools/call"
    assert client.attributes["gen_ai.tool.name"] == "get_weather"
    assert "jsonrpc.request.id" in client.attributes
    assert all(s.status_code == "UNSET" for s in spans), tree
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p["attributes"] for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(a["gen_ai.tool.name"], a.get("error.type")) for a in calls] == [("get_weather", None)]
    assert threadline.current_run() is None


def test_tool_error_marks_the_mcp_spans_not_the_agent(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    merge: bool,
    no_fastmcp_spans: None,
) -> None:
    """A tool answering ``isError`` fails the ``tools/call`` spans of both processes
    (``error.type=tool_error``); to Pydantic AI it is a retry (``ModelRetry``), so its
    ``execute_tool`` span is no failure unless the call is merged into it, and the run goes on."""
    spans_file = tmp_path / "server-spans.jsonl"
    assert "broken" in run_agent(weather_agent("broken", spans_file))  # the retry prompt
    spans = agent_trace(telemetry, spans_file)
    tree = render_tree(
        [s for s in spans if not s.name.startswith(("tools/list", "chat"))],
        attributes=("session.id", "threadline.retry.cause"),
    )
    if merge:
        assert tree == (
            "invoke_agent weather_agent [INTERNAL] session.id=sess-42\n"
            "  execute_tool broken [INTERNAL] session.id=sess-42"
            " threadline.retry.cause=model_retry !ERROR error.type=tool_error\n"
            "    tools/call broken [SERVER] session.id=sess-42 !ERROR error.type=tool_error"
        ), tree
    else:
        assert tree == (
            "invoke_agent weather_agent [INTERNAL] session.id=sess-42\n"
            "  execute_tool broken [INTERNAL] session.id=sess-42"
            " threadline.retry.cause=model_retry\n"
            "    tools/call broken [CLIENT] session.id=sess-42 !ERROR error.type=tool_error\n"
            "      tools/call broken [SERVER] session.id=sess-42 !ERROR error.type=tool_error"
        ), tree
    points = telemetry.metric_points("mcp.client.operation.duration")
    calls = [p["attributes"] for p in points if p["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(a["gen_ai.tool.name"], a.get("error.type")) for a in calls] == [
        ("broken", "tool_error")
    ]


@pytest.mark.parametrize("tool", ["get_weather", "broken"])
def test_fastmcp_native_client_spans_stay_in_the_trace(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    merge: bool,
    fastmcp_spans: None,
    tool: str,
) -> None:
    """FastMCP (under ``MCPToolset``) opens a ``tools/call`` CLIENT span of its own by default;
    threadline's CLIENT span nests under it and the server's under threadline's: still one
    trace, the session on the server's side. With FastMCP's span current, ``execute_tool`` is
    not, so ``merge_tool_spans=True`` records a CLIENT span all the same (FastMCP's
    ``telemetry_mode="propagation_only"`` leaves the MCP spans to threadline)."""
    spans_file = tmp_path / "server-spans.jsonl"
    run_agent(weather_agent(tool, spans_file))
    spans = agent_trace(telemetry, spans_file)
    tree = render_tree(
        [s for s in spans if not s.name.startswith(("tools/list", "chat", "lookup"))],
        attributes=("session.id",),
    )
    failed = " !ERROR error.type=tool_error" if tool == "broken" else ""
    assert tree == (
        "invoke_agent weather_agent [INTERNAL] session.id=sess-42\n"
        f"  execute_tool {tool} [INTERNAL] session.id=sess-42\n"
        f"    tools/call {tool} [CLIENT]{failed}\n"  # FastMCP's
        f"      tools/call {tool} [CLIENT] session.id=sess-42{failed}\n"  # threadline's
        f"        tools/call {tool} [SERVER] session.id=sess-42{failed}"
    ), tree
    outer, inner = sorted(
        (s for s in telemetry.spans() if s.name == f"tools/call {tool}"), key=lambda s: s.start_ns
    )
    assert (outer.scope, inner.scope) == ("fastmcp", "threadline")
    assert inner.parent_span_id == outer.span_id
    assert "mcp.method.name" not in find(spans, f"execute_tool {tool}").attributes
