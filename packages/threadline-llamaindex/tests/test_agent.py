"""A function-calling agent that calls two tools, then answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import make_llm
from llama_index.core.tools import FunctionTool

import threadline
from threadline.testing import Telemetry

try:
    from llama_index.core.agent.workflow import FunctionAgent
except ImportError:  # early 0.12 releases have only the step-based agents
    FunctionAgent = None

ATTRIBUTES = (
    "gen_ai.agent.name",
    "gen_ai.tool.call.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.request.stream",
)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def get_time(city: str) -> str:
    """The local time in a city."""
    return "14:00"


def fail_lookup(city: str) -> str:
    """A tool that fails."""
    raise LookupError(city)


def _run_agent(cassette: Any, tools: list[Any]) -> str:
    if FunctionAgent is not None:
        agent = FunctionAgent(
            name="assistant",
            description="Answers weather questions.",
            tools=tools,
            llm=make_llm(),
            system_prompt="Be brief.",
        )

        async def run() -> str:
            return str(await agent.run("Weather and time in Paris?"))

        with cassette("agent.yaml"):
            return asyncio.run(run())
    from llama_index.core.agent import FunctionCallingAgent

    legacy = FunctionCallingAgent.from_tools(
        [FunctionTool.from_defaults(tool) for tool in tools], llm=make_llm()
    )
    with cassette("agent_legacy.yaml"):
        return str(legacy.chat("Weather and time in Paris?"))


@pytest.mark.skipif(FunctionAgent is None, reason="no agent workflows in this LlamaIndex")
def test_function_agent_tree(telemetry: Telemetry, cassette: Any) -> None:
    answer = _run_agent(cassette, [get_weather, get_time])
    assert answer == "It is sunny in Paris and the time is 14:00."
    assert (
        telemetry.tree(attributes=ATTRIBUTES)
        == """\
invoke_agent assistant [INTERNAL] gen_ai.agent.name=assistant gen_ai.usage.input_tokens=220 \
gen_ai.usage.output_tokens=42
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=80 gen_ai.usage.output_tokens=30 \
gen_ai.response.finish_reasons=['tool_calls'] gen_ai.request.stream=True
  execute_tool get_weather [INTERNAL] gen_ai.agent.name=assistant gen_ai.tool.call.id=call_weather
  execute_tool get_time [INTERNAL] gen_ai.agent.name=assistant gen_ai.tool.call.id=call_time
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=140 gen_ai.usage.output_tokens=12 \
gen_ai.response.finish_reasons=['stop'] gen_ai.request.stream=True"""
    )
    # Workflow.run's span ends in another context: nothing may stay attached in this one.
    assert threadline.current_run() is None
    agent = telemetry.find("invoke_agent assistant")
    assert agent.attributes["gen_ai.agent.description"] == "Answers weather questions."
    # The tool step knows the tool's name only; the tool's own call tells its description.
    weather = telemetry.find("execute_tool get_weather")
    description = FunctionTool.from_defaults(get_weather).metadata.description
    assert weather.attributes["gen_ai.tool.description"] == description
    for chat in (s for s in telemetry.spans() if s.name.startswith("chat ")):
        assert chat.attributes["gen_ai.response.time_to_first_chunk"] > 0
    telemetry.assert_conformant()
    (point,) = telemetry.metric_points("gen_ai.invoke_agent.duration")
    assert point["attributes"] == {
        "gen_ai.agent.name": "assistant",
        "gen_ai.request.model": "gpt-4o-mini",
    }
    assert sorted(
        (p["attributes"]["gen_ai.tool.name"], p["count"])
        for p in telemetry.metric_points("gen_ai.execute_tool.duration")
    ) == [("get_time", 1), ("get_weather", 1)]


@pytest.mark.skipif(FunctionAgent is not None, reason="step-based agents were removed in 0.13")
def test_legacy_function_calling_agent_tree(telemetry: Telemetry, cassette: Any) -> None:
    answer = _run_agent(cassette, [get_weather, get_time])
    assert answer == "It is sunny in Paris and the time is 14:00."
    assert (
        telemetry.tree(attributes=ATTRIBUTES)
        == """\
invoke_agent FunctionCallingAgent [INTERNAL] gen_ai.agent.name=FunctionCallingAgent \
gen_ai.usage.input_tokens=220 gen_ai.usage.output_tokens=42
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=80 gen_ai.usage.output_tokens=30 \
gen_ai.response.finish_reasons=['tool_calls']
  execute_tool get_weather [INTERNAL] gen_ai.agent.name=FunctionCallingAgent \
gen_ai.tool.call.id=call_weather
  execute_tool get_time [INTERNAL] gen_ai.agent.name=FunctionCallingAgent \
gen_ai.tool.call.id=call_time
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=140 gen_ai.usage.output_tokens=12 \
gen_ai.response.finish_reasons=['stop']"""
    )
    telemetry.assert_conformant()


def test_agent_content(telemetry: Telemetry, cassette: Any, capture_content: Any) -> None:
    _run_agent(cassette, [get_weather, get_time])
    telemetry.assert_conformant()
    weather = telemetry.find("execute_tool get_weather")
    # the object the model sent, also where step-based agents call a one-parameter tool with
    # its value alone
    assert weather.attributes["gen_ai.tool.call.arguments"] == '{"city":"Paris"}'
    assert weather.attributes["gen_ai.tool.call.result"] == "sunny in Paris"
    first_chat = min(
        (s for s in telemetry.spans() if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_ns
    )
    (output,) = json.loads(first_chat.attributes["gen_ai.output.messages"])
    assert output["finish_reason"] == "tool_call"
    assert [(p["type"], p["name"], p["id"], p["arguments"]) for p in output["parts"]] == [
        ("tool_call", "get_weather", "call_weather", {"city": "Paris"}),
        ("tool_call", "get_time", "call_time", {"city": "Paris"}),
    ]
    definitions = json.loads(first_chat.attributes["gen_ai.tool.definitions"])
    assert [d["name"] for d in definitions] == ["get_weather", "get_time"]


@pytest.mark.skipif(FunctionAgent is None, reason="no agent workflows in this LlamaIndex")
def test_failing_tool_is_an_error_span(telemetry: Telemetry, cassette: Any) -> None:
    fail_lookup.__name__ = "get_time"  # the cassette asks for get_time
    try:
        answer = _run_agent(cassette, [get_weather, fail_lookup])
    finally:
        fail_lookup.__name__ = "fail_lookup"
    assert answer == "It is sunny in Paris and the time is 14:00."
    assert (
        telemetry.tree()
        == """\
invoke_agent assistant [INTERNAL]
  chat gpt-4o-mini [CLIENT]
  execute_tool get_weather [INTERNAL]
  execute_tool get_time [INTERNAL] !ERROR error.type=LookupError
  chat gpt-4o-mini [CLIENT]"""
    )
    telemetry.assert_conformant()


@pytest.mark.skipif(FunctionAgent is None, reason="no agent workflows in this LlamaIndex")
def test_react_agent_tree(telemetry: Telemetry, cassette: Any) -> None:
    from llama_index.core.agent.workflow import ReActAgent

    agent = ReActAgent(name="reasoner", tools=[get_weather, get_time], llm=make_llm())

    async def run() -> str:
        return str(await agent.run(user_msg="Weather and time in Paris?"))

    with cassette("react_agent.yaml"):
        assert asyncio.run(run()) == "It is sunny in Paris and the time is 14:00."
    assert (
        telemetry.tree(attributes=("gen_ai.usage.input_tokens",))
        == """\
invoke_agent reasoner [INTERNAL] gen_ai.usage.input_tokens=720
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=200
  execute_tool get_weather [INTERNAL]
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=240
  execute_tool get_time [INTERNAL]
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=280"""
    )
    # ReAct tool calls get ids made up by LlamaIndex (the model wrote text, not tool calls).
    for tool in (s for s in telemetry.spans() if s.name.startswith("execute_tool")):
        assert tool.attributes["gen_ai.tool.call.id"]
    telemetry.assert_conformant()


@pytest.mark.skipif(FunctionAgent is None, reason="no agent workflows in this LlamaIndex")
def test_agent_workflow_tree(telemetry: Telemetry, cassette: Any) -> None:
    from llama_index.core.agent.workflow import AgentWorkflow

    assert FunctionAgent is not None
    agent = FunctionAgent(name="assistant", tools=[get_weather, get_time], llm=make_llm())
    workflow = AgentWorkflow(agents=[agent], root_agent="assistant")

    async def run() -> str:
        return str(await workflow.run(user_msg="Weather and time in Paris?"))

    with cassette("agent.yaml"):
        assert asyncio.run(run()) == "It is sunny in Paris and the time is 14:00."
    assert (
        telemetry.tree()
        == """\
invoke_workflow [INTERNAL]
  invoke_agent assistant [INTERNAL]
    chat gpt-4o-mini [CLIENT]
    execute_tool get_weather [INTERNAL]
    execute_tool get_time [INTERNAL]
    chat gpt-4o-mini [CLIENT]"""
    )
    telemetry.assert_conformant()
