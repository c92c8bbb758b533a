"""A Pydantic AI run inside a LlamaIndex workflow step, cut off while a model request or a
tool call is in flight.

A cancellation is settled by the run it happened in (see ``Run.cancel``): the app stopping
the workflow (``handler.cancel_run()``) is how the agent's run and its call stopped, no
failure; the workflow timing out fails them with the cancellation. Either way every span
ends at once, in the workflow's trace, none left for the reaper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import threadline
from threadline.testing import Telemetry
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)

pytest.importorskip("llama_index.core.workflow")
pytest.importorskip("threadline.pydantic_ai")

from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import threadline.llamaindex
import threadline.pydantic_ai

CANCELLED = "asyncio.exceptions.CancelledError"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    threadline.llamaindex.instrument()
    threadline.pydantic_ai.instrument()
    yield
    threadline.pydantic_ai.uninstrument()
    threadline.llamaindex.uninstrument()


class Stalled:
    """An agent whose model request (``where="model"``) or tool call (``"tool"``) waits until
    released, inside a one-step workflow."""

    def __init__(self, where: str, timeout: float = 10) -> None:
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()

        async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            if len(messages) == 1:
                if where == "model":
                    await self.stall()
                return ModelResponse(parts=[ToolCallPart("lookup", {}, "call-1")])
            return ModelResponse(parts=[TextPart("done")])

        agent = Agent(FunctionModel(answer, model_name="planner"), name="helper")

        @agent.tool_plain
        async def lookup() -> str:
            if where == "tool":
                await self.stall()
            return "found"

        class Flow(Workflow):
            @step
            async def run_agent(self, ev: StartEvent) -> StopEvent:
                return StopEvent(result=(await agent.run("go")).output)

        self.workflow = Flow(timeout=timeout)

    async def stall(self) -> None:
        self.in_flight.set()
        await self.release.wait()


def expected_tree(where: str, status: dict[str, str]) -> str:
    def line(depth: int, name: str) -> str:
        return "  " * depth + name + status.get(name, "")

    lines = [line(0, "invoke_workflow Flow"), line(1, "invoke_agent helper")]
    lines.append(line(2, "chat planner"))
    if where == "tool":
        lines.append(line(2, "execute_tool lookup"))
    return "\n".join(lines)


def in_flight_span(where: str) -> str:
    return "chat planner" if where == "model" else "execute_tool lookup"


def assert_all_ended(recorded: Telemetry) -> None:
    spans = recorded.spans()
    assert len({s.trace_id for s in spans}) == 1
    assert not any("threadline.abandoned" in s.attributes for s in spans)
    assert len(threadline.open_runs) == 0
    assert threadline.current_run() is None


@pytest.mark.parametrize("where", ["model", "tool"])
def test_an_agent_run_the_app_cancels_inside_a_step_is_no_failure(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    where: str,
) -> None:
    """``handler.cancel_run()`` stopped the workflow: the agent's run and the call in flight
    end when it is cancelled, without error, as the workflow's own span does."""
    stalled = Stalled(where)

    async def main() -> None:
        handler = stalled.workflow.run()
        await stalled.in_flight.wait()
        cancelled_at = time.time_ns()
        await handler.cancel_run()
        with pytest.raises(Exception) as raised:  # noqa: PT011 - LlamaIndex's own class
            await handler
        assert type(raised.value).__name__ == "WorkflowCancelledByUser"
        assert len(threadline.open_runs) == 0  # at once, not at the loop's end
        inner = telemetry.find(in_flight_span(where))
        assert inner.end_ns >= cancelled_at

    asyncio.run(main())
    assert telemetry.tree(show_kind=False) == expected_tree(where, {})
    for span in telemetry.spans():
        assert span.status_code == "UNSET", span.name
        assert "error.type" not in span.attributes, span.name
    spans = {s.name: s for s in telemetry.spans()}
    assert spans[in_flight_span(where)].end_ns <= spans["invoke_agent helper"].end_ns
    assert spans["invoke_agent helper"].end_ns <= spans["invoke_workflow Flow"].end_ns
    (point,) = telemetry.metric_points("gen_ai.invoke_agent.duration")
    assert "error.type" not in point["attributes"]
    assert_all_ended(telemetry)
    telemetry.assert_conformant()


@pytest.mark.parametrize("where", ["model", "tool"])
def test_an_agent_run_cut_off_by_the_workflow_timeout_fails(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    where: str,
) -> None:
    """The workflow's timeout cancels its step: the agent's run and the call in flight fail
    with the cancellation, the workflow with its timeout."""
    stalled = Stalled(where, timeout=0.5)

    async def main() -> None:
        with pytest.raises(Exception, match="timed out"):
            await stalled.workflow.run()
        assert len(threadline.open_runs) == 0

    asyncio.run(main())
    failed = {
        "invoke_workflow Flow": " !ERROR error.type=workflows.errors.WorkflowTimeoutError",
        "invoke_agent helper": f" !ERROR error.type={CANCELLED}",
        in_flight_span(where): f" !ERROR error.type={CANCELLED}",
    }
    assert telemetry.tree(show_kind=False) == expected_tree(where, failed)
    (point,) = telemetry.metric_points("gen_ai.invoke_agent.duration")
    assert point["attributes"]["error.type"] == CANCELLED
    assert_all_ended(telemetry)
    telemetry.assert_conformant()


def test_a_cancelled_caller_leaves_the_step_running(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """Cancelling the task that awaits the handler cancels the handler, not the run: the
    workflow's span fails with the cancellation, while LlamaIndex carries on with the step,
    whose agent run stays open until it finishes, then ends as it did (no failure)."""
    stalled = Stalled("tool")

    async def main() -> None:
        handler: Any = stalled.workflow.run()

        async def caller() -> None:
            await handler

        waiting = asyncio.ensure_future(caller())
        await stalled.in_flight.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.05)
        assert telemetry.find("invoke_workflow Flow").status_code == "ERROR"
        assert len(threadline.open_runs) == 2  # the agent's run and its tool call go on
        stalled.release.set()
        for _ in range(200):
            if len(threadline.open_runs) == 0:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    failed = {"invoke_workflow Flow": f" !ERROR error.type={CANCELLED}"}
    tree = expected_tree("tool", failed) + "\n    chat planner"
    assert telemetry.tree(show_kind=False) == tree
    assert telemetry.find("invoke_agent helper").status_code == "UNSET"
    assert_all_ended(telemetry)
