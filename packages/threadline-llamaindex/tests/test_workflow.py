"""Custom workflows and multi-agent workflows: what their steps do joins the workflow's trace."""

import asyncio
from typing import Any

import pytest
from conftest import make_llm
from llama_index.core.llms import MockLLM
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step
from opentelemetry import trace

import threadline
import threadline.llamaindex
from threadline.testing import Telemetry

try:
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
except ImportError:  # early 0.12 releases have only the step-based agents
    AgentWorkflow = FunctionAgent = None


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


# At module level and without postponed annotations: LlamaIndex 0.12 reads a step's annotations
# as objects, from the module's globals.
class Drafted(Event):
    text: str


class Writer(Workflow):
    @step
    async def draft(self, ev: StartEvent) -> Drafted:
        with trace.get_tracer("app").start_as_current_span("app.lookup"):
            pass
        response = await MockLLM(max_tokens=3).acomplete(ev.topic)
        return Drafted(text=response.text)

    @step
    async def publish(self, ev: Drafted) -> StopEvent:
        with trace.get_tracer("app").start_as_current_span("app.publish"):
            pass
        return StopEvent(result=ev.text)


class Broken(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        with trace.get_tracer("app").start_as_current_span("app.work"):
            pass
        raise KeyError("missing")


class Waiting(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        with trace.get_tracer("app").start_as_current_span("app.work"):
            pass
        await asyncio.sleep(30)
        return StopEvent(result="late")


class Job(Event):
    payload: str


class NamedLikeAToolStep(Workflow):
    """A step that happens to be called call_tool (like an agent's tool step) and calls none."""

    @step
    async def start(self, ev: StartEvent) -> Job:
        return Job(payload="x")

    @step
    async def call_tool(self, ev: Job) -> StopEvent:
        with trace.get_tracer("app").start_as_current_span("app.http"):
            pass
        return StopEvent(result=ev.payload)


def test_step_named_call_tool_is_a_step(telemetry: Telemetry) -> None:
    async def run() -> Any:
        return await NamedLikeAToolStep(timeout=10).run()

    asyncio.run(run())
    assert (
        telemetry.tree() == "invoke_workflow NamedLikeAToolStep [INTERNAL]\n  app.http [INTERNAL]"
    )


def test_verbose_steps_are_current_while_they_run(telemetry: Telemetry) -> None:
    """verbose=True shows the steps as spans (on LlamaIndex 0.12, methods of the workflow);
    each is current while it runs."""
    threadline.llamaindex.uninstrument()
    threadline.llamaindex.instrument(verbose=True)

    async def run() -> Any:
        return await Writer(timeout=10).run(topic="x")

    asyncio.run(run())
    tree = telemetry.tree()
    assert "---" not in tree, tree  # one trace
    assert tree.startswith("invoke_workflow Writer [INTERNAL]\n  Writer.draft [INTERNAL]\n")
    assert "\n    app.lookup [INTERNAL]\n" in tree
    assert threadline.current_run() is None


def test_step_work_is_inside_the_workflow(telemetry: Telemetry) -> None:
    """A step runs in a task of the workflow's own, where the workflow's span was never
    current: an application span, or any other instrumented call, made in a step still belongs
    to the workflow's trace."""

    async def run() -> str:
        with trace.get_tracer("app").start_as_current_span("request"):
            return str(await Writer(timeout=10).run(topic="otel"))

    asyncio.run(run())
    assert (
        telemetry.tree()
        == """\
request [INTERNAL]
  invoke_workflow Writer [INTERNAL]
    app.lookup [INTERNAL]
    text_completion unknown [INTERNAL]
    app.publish [INTERNAL]"""
    )
    assert threadline.current_run() is None
    telemetry.assert_conformant()


def test_failing_step_fails_the_workflow(telemetry: Telemetry) -> None:
    async def run() -> Any:
        return await Broken(timeout=10).run()

    with pytest.raises(Exception, match="missing"):
        asyncio.run(run())
    tree = telemetry.tree()
    assert tree.startswith("invoke_workflow Broken [INTERNAL] !ERROR")
    assert tree.endswith("\n  app.work [INTERNAL]")
    assert threadline.current_run() is None
    telemetry.assert_conformant()


def test_a_workflow_the_app_cancels_is_no_failure(telemetry: Telemetry) -> None:
    """``handler.cancel_run()``: the app stopped the workflow, which failed at nothing; the
    caller still gets LlamaIndex's exception. (0.12 raises it through the workflow's span.)"""

    async def run() -> None:
        handler = Waiting(timeout=10).run()
        await asyncio.sleep(0.1)
        await handler.cancel_run()
        await handler

    with pytest.raises(Exception) as raised:  # noqa: PT011 - LlamaIndex's own class
        asyncio.run(run())
    assert type(raised.value).__name__ == "WorkflowCancelledByUser"
    assert telemetry.tree() == "invoke_workflow Waiting [INTERNAL]\n  app.work [INTERNAL]"
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0


@pytest.mark.skipif(AgentWorkflow is None, reason="no agent workflows in this LlamaIndex")
def test_handoff_starts_the_next_agents_run(telemetry: Telemetry, cassette: Any) -> None:
    """Each agent's turns in an AgentWorkflow are an invoke_agent run of that agent; a handoff
    ends one and starts the next, both under the workflow's run."""
    assert AgentWorkflow is not None
    assert FunctionAgent is not None
    triage = FunctionAgent(
        name="triage",
        description="Routes questions.",
        llm=make_llm(),
        tools=[],
        can_handoff_to=["forecaster"],
    )
    forecaster = FunctionAgent(
        name="forecaster", description="Knows the weather.", llm=make_llm(), tools=[get_weather]
    )
    workflow = AgentWorkflow(agents=[triage, forecaster], root_agent="triage")

    async def run() -> str:
        return str(await workflow.run(user_msg="Weather in Paris?"))

    with cassette("agent_handoff.yaml"):
        assert asyncio.run(run()) == "It is sunny in Paris."
    assert (
        telemetry.tree(attributes=("gen_ai.agent.name", "gen_ai.usage.input_tokens"))
        == """\
invoke_workflow [INTERNAL]
  invoke_agent triage [INTERNAL] gen_ai.agent.name=triage gen_ai.usage.input_tokens=90
    chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=90
    execute_tool handoff [INTERNAL] gen_ai.agent.name=triage
  invoke_agent forecaster [INTERNAL] gen_ai.agent.name=forecaster gen_ai.usage.input_tokens=270
    chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=120
    execute_tool get_weather [INTERNAL] gen_ai.agent.name=forecaster
    chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=150"""
    )
    assert telemetry.find("invoke_agent forecaster").attributes["gen_ai.agent.description"] == (
        "Knows the weather."
    )
    assert threadline.current_run() is None
    telemetry.assert_conformant()
    assert sorted(
        p["attributes"]["gen_ai.agent.name"]
        for p in telemetry.metric_points("gen_ai.invoke_agent.duration")
    ) == ["forecaster", "triage"]


class SlowLLM(MockLLM):
    async def achat(self, messages: Any, **kwargs: Any) -> Any:  # spanned like any LLM's
        await asyncio.sleep(30)
        return await super().achat(messages, **kwargs)


async def slow_lookup(city: str) -> str:
    """A tool that takes its time."""
    await asyncio.sleep(30)
    return city


class InFlight(Workflow):
    """Its one step is in a model or tool call when the app cancels the run (or it times out)."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        from llama_index.core.llms import ChatMessage
        from llama_index.core.tools import FunctionTool

        if ev.get("tool"):
            await FunctionTool.from_defaults(async_fn=slow_lookup).acall(city="Paris")
        else:
            await SlowLLM().achat([ChatMessage(role="user", content="hi")])
        return StopEvent(result="done")


@pytest.mark.parametrize(
    ("tool", "inner"),
    [(False, "chat unknown [CLIENT]"), (True, "execute_tool slow_lookup [INTERNAL]")],
)
def test_calls_in_flight_when_the_app_cancels_are_no_failure(
    telemetry: Telemetry, tool: bool, inner: str
) -> None:
    """The model or tool call that ``handler.cancel_run()`` cancels is how the run stopped, as
    for the workflow: no failure either."""

    async def run() -> None:
        handler = InFlight(timeout=10).run(tool=tool)
        await asyncio.sleep(0.1)
        await handler.cancel_run()
        await handler

    with pytest.raises(Exception) as raised:  # noqa: PT011 - LlamaIndex's own class
        asyncio.run(run())
    assert type(raised.value).__name__ == "WorkflowCancelledByUser"
    assert telemetry.tree() == f"invoke_workflow InFlight [INTERNAL]\n  {inner}"
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_calls_in_flight_at_a_timeout_fail(telemetry: Telemetry) -> None:
    async def run() -> None:
        await InFlight(timeout=0.1).run()

    with pytest.raises(Exception, match="timed out"):
        asyncio.run(run())
    chat = telemetry.find("chat unknown")
    assert chat.status_code == "ERROR"
    assert chat.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert telemetry.find("invoke_workflow InFlight").status_code == "ERROR"
    telemetry.assert_conformant()


class Race(Workflow):
    """One step ends the run with no result while the other is in a model call."""

    @step
    async def fast(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0.1)
        return StopEvent()

    @step
    async def slow(self, ev: StartEvent) -> StopEvent:
        from llama_index.core.llms import ChatMessage

        await SlowLLM().achat([ChatMessage(role="user", content="hi")])
        return StopEvent(result="slow")


def test_a_run_that_ends_with_no_result_is_no_stop_by_the_app(telemetry: Telemetry) -> None:
    """A StopEvent with no result is how a workflow finishes (it exits with that result before
    llama-index-workflows 2): the sibling call it cancels is not settled as stopped by the app."""

    async def run() -> None:
        await Race(timeout=10).run()

    asyncio.run(run())
    chat = telemetry.find("chat unknown")
    assert chat.status_code == "ERROR"
    assert chat.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert len(threadline.open_runs) == 0


try:
    from llama_index.core.llms.mock import MockFunctionCallingLLM
except ImportError:  # pragma: no cover - later LlamaIndex releases have it
    MockFunctionCallingLLM = None


def _slow_stream(messages: Any, **kwargs: Any) -> Any:
    """An answer that streams its first token, then stalls."""
    from llama_index.core.llms import ChatMessage

    async def tokens() -> Any:
        yield ChatMessage(role="assistant", content="It is ")
        await asyncio.sleep(30)
        yield ChatMessage(role="assistant", content="It is sunny.")

    return tokens()


@pytest.mark.skipif(MockFunctionCallingLLM is None, reason="no MockFunctionCallingLLM")
@pytest.mark.parametrize("multi_agent", [False, True])
def test_agent_stream_the_app_cancels_is_no_failure(
    telemetry: Telemetry, multi_agent: bool
) -> None:
    """The app reads an agent's first token, then cancels the run: the streamed model call it
    cut off is no failure (nor the agent's turn inside a multi-agent workflow)."""
    from llama_index.core.agent.workflow import AgentStream

    assert FunctionAgent is not None
    assert AgentWorkflow is not None
    agent = FunctionAgent(
        name="forecaster",
        description="Knows the weather.",
        llm=MockFunctionCallingLLM(response_generator=_slow_stream),
        tools=[get_weather],
    )
    runner: Any = AgentWorkflow(agents=[agent], root_agent="forecaster") if multi_agent else agent

    async def run() -> None:
        handler = runner.run(user_msg="Weather in Paris?")
        async for event in handler.stream_events():
            if isinstance(event, AgentStream) and event.delta:
                break
        await handler.cancel_run()
        with pytest.raises(Exception) as raised:  # noqa: PT011 - LlamaIndex's own class
            await handler
        assert type(raised.value).__name__ == "WorkflowCancelledByUser"

    asyncio.run(run())
    expected = "invoke_agent forecaster [INTERNAL]\n  chat unknown [INTERNAL]"
    if multi_agent:
        expected = "invoke_workflow [INTERNAL]\n" + expected.replace("\n", "\n  ").replace(
            "invoke_agent", "  invoke_agent", 1
        )
    assert telemetry.tree() == expected
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


async def slow_forecast(city: str = "Paris") -> str:
    """A weather lookup that takes its time (a default, so the mock model can call it)."""
    await asyncio.sleep(30)
    return city


@pytest.mark.skipif(MockFunctionCallingLLM is None, reason="no MockFunctionCallingLLM")
@pytest.mark.parametrize("timeout", [False, True])
def test_agent_tool_call_in_flight_when_the_run_stops(telemetry: Telemetry, timeout: bool) -> None:
    """An agent's tool call cut off by the run's timeout fails; cut off by the app
    (``handler.cancel_run()``) it does not. (The workflow catches the cancellation inside the
    tool step, whose span then ends with no result.)"""
    from llama_index.core.agent.workflow import ToolCall

    assert FunctionAgent is not None
    agent = FunctionAgent(
        name="forecaster",
        llm=MockFunctionCallingLLM(),
        tools=[slow_forecast],
        timeout=0.5 if timeout else 10,
    )

    async def run() -> None:
        handler = agent.run(user_msg="Weather in Paris?")
        async for event in handler.stream_events():
            if isinstance(event, ToolCall) and not timeout:
                await asyncio.sleep(0.05)
                await handler.cancel_run()
                break
        with pytest.raises(Exception) as raised:  # noqa: PT011 - LlamaIndex's own classes
            await handler
        expected = "WorkflowTimeoutError" if timeout else "WorkflowCancelledByUser"
        assert type(raised.value).__name__ == expected

    asyncio.run(run())
    tool = telemetry.find("execute_tool slow_forecast")
    if timeout:
        assert tool.status_code == "ERROR"
        assert tool.attributes["error.type"] == "asyncio.exceptions.CancelledError"
        assert telemetry.find("invoke_agent forecaster").status_code == "ERROR"
    else:
        assert tool.status_code == "UNSET"
        assert "error.type" not in tool.attributes
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


async def confirm(ctx: Context, city: str = "Paris") -> str:
    """Asks the user before looking the weather up."""
    from llama_index.core.workflow import HumanResponseEvent, InputRequiredEvent

    answer = await ctx.wait_for_event(
        HumanResponseEvent, waiter_id="confirm", waiter_event=InputRequiredEvent(prefix="ok?")
    )
    with trace.get_tracer("app").start_as_current_span("app.after_confirm"):
        pass
    return str(answer.response)


@pytest.mark.skipif(MockFunctionCallingLLM is None, reason="no MockFunctionCallingLLM")
@pytest.mark.parametrize("answered", [True, False])
def test_tool_waiting_for_the_user_is_one_tool_call(telemetry: Telemetry, answered: bool) -> None:
    """A tool that waits for the user (``ctx.wait_for_event``) is run again from its start
    once the answer comes: still one tool call, one span. Stopped by the app while it waits,
    it ends without failure."""
    from llama_index.core.tools import FunctionTool
    from llama_index.core.workflow import HumanResponseEvent, InputRequiredEvent

    assert FunctionAgent is not None
    agent = FunctionAgent(
        name="forecaster",
        llm=MockFunctionCallingLLM(),
        tools=[FunctionTool.from_defaults(async_fn=confirm)],
    )

    async def run() -> None:
        handler = agent.run(user_msg="Weather in Paris?")
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                if not answered:
                    await handler.cancel_run()
                    break
                handler.ctx.send_event(HumanResponseEvent(response="yes"))
        if answered:
            await handler
        else:
            with pytest.raises(Exception):  # noqa: B017, PT011 - LlamaIndex's own class
                await handler

    asyncio.run(run())
    tools = [s for s in telemetry.spans() if s.name == "execute_tool confirm"]
    assert len(tools) == 1
    assert tools[0].status_code == "UNSET"
    if answered:
        assert (
            telemetry.tree()
            == """\
invoke_agent forecaster [INTERNAL]
  chat unknown [INTERNAL]
  execute_tool confirm [INTERNAL]
    app.after_confirm [INTERNAL]
  chat unknown [INTERNAL]"""
        )
    (point,) = telemetry.metric_points("gen_ai.execute_tool.duration")
    assert point["count"] == 1
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


class Answer(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0.05)
        response = await MockLLM(max_tokens=2).acomplete(ev.q)
        return StopEvent(result=response.text)


def test_callers_calls_while_a_workflow_runs_are_not_its_children(telemetry: Telemetry) -> None:
    """LlamaIndex before llama-index-workflows 2 leaves a run's span active in the context that
    called ``run``: what that context does next (another run of the same workflow, a model
    call) is no step of the running workflow and does not nest under it."""

    async def run() -> None:
        with trace.get_tracer("app").start_as_current_span("request"):
            workflow = Answer(timeout=10)
            first = workflow.run(q="a")
            await MockLLM(max_tokens=2).acomplete("app")
            second = workflow.run(q="b")
            await asyncio.gather(first, second)

    asyncio.run(run())
    # each run with its own model call, the app's call beside them (in whichever order they
    # started: llama-index-workflows 2 starts a run's span in its own task)
    assert sorted(telemetry.tree().splitlines()) == [
        "    text_completion unknown [INTERNAL]",
        "    text_completion unknown [INTERNAL]",
        "  invoke_workflow Answer [INTERNAL]",
        "  invoke_workflow Answer [INTERNAL]",
        "  text_completion unknown [INTERNAL]",
        "request [INTERNAL]",
    ]
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_a_request_after_a_workflow_is_one_trace(telemetry: Telemetry) -> None:
    """The span id a finished run left active in its caller's context (before
    llama-index-workflows 2) names no parent: a request made there next still gets the span
    that keeps it in one trace."""
    from llama_index.core import PromptTemplate

    async def run() -> None:
        await Answer(timeout=10).run(q="a")
        await MockLLM(max_tokens=2).apredict(PromptTemplate("Say {word}"), word="hi")

    asyncio.run(run())
    assert (
        telemetry.tree()
        == """\
invoke_workflow Answer [INTERNAL]
  text_completion unknown [INTERNAL]
---
invoke_workflow [INTERNAL]
  text_completion unknown [INTERNAL]"""
    )
    assert len(threadline.open_runs) == 0


async def _runs_then_summarizes() -> None:
    first = Answer(timeout=10).run(q="a")
    await MockLLM(max_tokens=2).acomplete("meanwhile")
    await first
    await Answer(timeout=10).run(q="b")
    await MockLLM(max_tokens=2).acomplete("summary")


def test_calls_after_a_workflow_in_a_spanned_function_stay_in_its_trace(
    telemetry: Telemetry,
) -> None:
    """An app's function spanned by LlamaIndex's dispatcher starts the request's trace. The run
    span a workflow leaves active in its caller's context (before llama-index-workflows 2)
    names no parent: what the function does while it runs and after it (another run, a model
    call) is still the function's, in its trace."""
    from llama_index.core.instrumentation import get_dispatcher

    handle = get_dispatcher("app").span(_runs_then_summarizes)
    asyncio.run(handle())
    assert sorted(telemetry.tree().splitlines()) == [
        "    text_completion unknown [INTERNAL]",
        "    text_completion unknown [INTERNAL]",
        "  invoke_workflow Answer [INTERNAL]",
        "  invoke_workflow Answer [INTERNAL]",
        "  text_completion unknown [INTERNAL]",
        "  text_completion unknown [INTERNAL]",
        "invoke_workflow [INTERNAL]",
    ]
    assert len({span.trace_id for span in telemetry.spans()}) == 1
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@pytest.mark.skipif(MockFunctionCallingLLM is None, reason="no MockFunctionCallingLLM")
def test_tool_call_resumed_from_a_saved_context_is_its_agents(telemetry: Telemetry) -> None:
    """A multi-agent run stopped while a tool waits for the user, resumed later from its saved
    Context: the resumed run starts with that tool call, before any event names the agent. It
    is still the call of the agent that has the tool, inside that agent's run."""
    from llama_index.core.memory import ChatMemoryBuffer
    from llama_index.core.tools import FunctionTool
    from llama_index.core.workflow import HumanResponseEvent, InputRequiredEvent

    assert FunctionAgent is not None
    assert AgentWorkflow is not None
    forecaster = FunctionAgent(
        name="forecaster",
        description="Knows the weather.",
        llm=MockFunctionCallingLLM(),
        tools=[FunctionTool.from_defaults(async_fn=confirm)],
        can_handoff_to=[],
    )
    planner = FunctionAgent(
        name="planner",
        description="Plans trips.",
        llm=MockFunctionCallingLLM(),
        tools=[get_weather],
    )
    workflow = AgentWorkflow(agents=[forecaster, planner], root_agent="forecaster")

    async def run() -> None:
        handler = workflow.run(user_msg="Weather in Paris?")
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                saved = handler.ctx.to_dict()
                await handler.cancel_run()
                break
        with pytest.raises(Exception):  # noqa: B017, PT011 - LlamaIndex's own class
            await handler
        ctx = Context.from_dict(workflow, saved)
        await ctx.store.set("memory", ChatMemoryBuffer.from_defaults())  # not serializable
        handler = workflow.run(ctx=ctx)
        handler.ctx.send_event(HumanResponseEvent(response="yes"))
        await handler

    asyncio.run(run())
    resumed = telemetry.tree(attributes=("gen_ai.agent.name",)).split("\n---\n")[1]
    assert (
        resumed
        == """\
invoke_workflow [INTERNAL]
  invoke_agent forecaster [INTERNAL] gen_ai.agent.name=forecaster
    execute_tool confirm [INTERNAL] gen_ai.agent.name=forecaster
      app.after_confirm [INTERNAL]
    chat unknown [INTERNAL]"""
    )
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()
