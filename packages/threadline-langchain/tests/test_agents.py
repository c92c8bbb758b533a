"""LangGraph agents: the agent span, its model calls and its tool calls, in one correct tree."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from agents import build_agent, get_time, get_weather, tools_sorted, two_tool_model
from conftest import CASSETTES, ScriptedChatModel, openai_http_module, usage
from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool, InjectedToolArg, InjectedToolCallId, tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import InjectedState

import threadline
from threadline import semconv
from threadline.langchain import _handler

AGENT_TREE = """\
invoke_agent support [INTERNAL] gen_ai.usage.input_tokens=130 gen_ai.usage.output_tokens=40
  chat scripted-1 [CLIENT] gen_ai.usage.input_tokens=40 gen_ai.usage.output_tokens=30
  execute_tool get_time [INTERNAL] gen_ai.tool.call.id=call_time
  execute_tool get_weather [INTERNAL] gen_ai.tool.call.id=call_weather
  chat scripted-1 [CLIENT] gen_ai.usage.input_tokens=90 gen_ai.usage.output_tokens=10"""

TREE_ATTRS = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.GEN_AI_TOOL_CALL_ID,
)


def test_agent_invoke(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    result = agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    assert result["messages"][-1].content == "It is sunny and noon in Paris."
    assert tools_sorted(telemetry.tree(attributes=TREE_ATTRS)) == AGENT_TREE

    agent_span = telemetry.find("invoke_agent support")
    assert agent_span.attributes[semconv.GEN_AI_AGENT_NAME] == "support"
    assert agent_span.attributes[semconv.GEN_AI_REQUEST_MODEL] == "scripted-1"
    chat = next(s for s in telemetry.spans() if s.name.startswith("chat"))
    assert chat.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert chat.attributes[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 8
    assert chat.attributes[semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] == 2
    assert chat.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "scripted-1-2026"
    assert chat.attributes[semconv.GEN_AI_RESPONSE_ID] == "resp-1"
    last_chat = [s for s in telemetry.spans() if s.name.startswith("chat")][-1]
    assert last_chat.attributes[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 4
    tool = telemetry.find("execute_tool get_weather")
    assert tool.attributes[semconv.GEN_AI_TOOL_DESCRIPTION] == "Get the weather in a city."
    assert tool.attributes[semconv.GEN_AI_TOOL_TYPE] == "function"
    assert tool.attributes[semconv.GEN_AI_AGENT_NAME] == "support"
    assert semconv.GEN_AI_TOOL_CALL_ARGUMENTS not in tool.attributes  # capture is off
    assert semconv.GEN_AI_TOOL_CALL_RESULT not in tool.attributes
    (agent_duration,) = telemetry.metric_points(semconv.METRIC_INVOKE_AGENT_DURATION)
    assert agent_duration["attributes"][semconv.GEN_AI_AGENT_NAME] == "support"
    tools = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert sorted(p["attributes"][semconv.GEN_AI_TOOL_NAME] for p in tools) == [
        "get_time",
        "get_weather",
    ]
    telemetry.assert_conformant(strict=True)


def test_an_unnamed_agent_has_no_agent_name(telemetry: Any, config: dict[str, Any]) -> None:
    """An agent the app did not name is called after LangGraph's type ("LangGraph"), which is
    no agent name: the span is plain ``invoke_agent`` and no span or metric names one."""
    try:
        from langchain.agents import create_agent
    except ImportError:
        from langgraph.prebuilt import create_react_agent as create_agent
    agent = create_agent(two_tool_model(), [get_weather, get_time])
    agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    roots = [s for s in telemetry.spans() if s.parent_span_id is None]
    assert [s.name for s in roots] == ["invoke_agent"]
    assert all(semconv.GEN_AI_AGENT_NAME not in s.attributes for s in telemetry.spans())
    (point,) = telemetry.metric_points(semconv.METRIC_INVOKE_AGENT_DURATION)
    assert semconv.GEN_AI_AGENT_NAME not in point["attributes"]
    telemetry.assert_conformant(strict=True)


def test_agent_ainvoke(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    asyncio.run(agent.ainvoke({"messages": [("user", "Weather?")]}, config=config))
    assert tools_sorted(telemetry.tree(attributes=TREE_ATTRS)) == AGENT_TREE
    telemetry.assert_conformant(strict=True)


def test_agent_astream_messages(telemetry: Any, config: dict[str, Any]) -> None:
    """Streaming the graph token by token: chat spans get streaming timing and usage."""
    agent = build_agent(two_tool_model(streaming=True), [get_weather, get_time])

    async def consume() -> list[Any]:
        return [
            item
            async for item in agent.astream(
                {"messages": [("user", "Weather?")]}, config=config, stream_mode="messages"
            )
        ]

    asyncio.run(consume())
    assert tools_sorted(telemetry.tree(attributes=TREE_ATTRS)) == AGENT_TREE
    final = [s for s in telemetry.spans() if s.name.startswith("chat")][-1]
    assert final.attributes[semconv.GEN_AI_REQUEST_STREAM] is True
    assert final.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    telemetry.assert_conformant(strict=True)


def test_agent_stream_updates(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    updates = list(agent.stream({"messages": [("user", "Weather?")]}, config=config))
    assert len(updates) >= 3
    assert tools_sorted(telemetry.tree(attributes=TREE_ATTRS)) == AGENT_TREE


def test_agent_content_capture(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    tool = telemetry.find("execute_tool get_weather")
    assert json.loads(tool.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "sunny in Paris"
    first_chat = next(s for s in telemetry.spans() if s.name.startswith("chat"))
    definitions = json.loads(first_chat.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert sorted(d["name"] for d in definitions) == ["get_time", "get_weather"]
    output = json.loads(first_chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert output == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "name": "get_weather",
                    "id": "call_weather",
                    "arguments": {"city": "Paris"},
                },
                {
                    "type": "tool_call",
                    "name": "get_time",
                    "id": "call_time",
                    "arguments": {"city": "Paris"},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]
    last_chat = [s for s in telemetry.spans() if s.name.startswith("chat")][-1]
    inputs = json.loads(last_chat.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in inputs] == ["user", "assistant", "tool", "tool"]
    assert inputs[2]["parts"][0]["type"] == "tool_call_response"
    telemetry.assert_conformant(strict=True)


def test_session_baggage_on_every_span(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    with threadline.session("sess-1", user_id="user-7", conversation_id="conv-3"):
        agent.invoke({"messages": [("user", "Weather?")]}, config=config)
    spans = telemetry.spans()
    assert len(spans) == 5
    for span in spans:
        assert span.attributes[semconv.SESSION_ID] == "sess-1", span.name
        assert span.attributes[semconv.USER_ID] == "user-7", span.name
        assert span.attributes[semconv.GEN_AI_CONVERSATION_ID] == "conv-3", span.name


# --- the real wire format, with an instrumented HTTP client -------------------------------------


def _cassette_bodies(name: str) -> list[str]:
    data = yaml.safe_load(Path(CASSETTES, name).read_text())
    return [item["response"]["body"]["string"] for item in data["interactions"]]


@pytest.fixture
def instrumented_client() -> Any:
    """An HTTP client answering from the agent cassette, instrumented by
    opentelemetry-instrumentation-httpx. (vcrpy replaces the client's send path, so the
    instrumented transport would never run under a cassette.)"""
    http = openai_http_module()
    from opentelemetry.instrumentation import httpx as otel_httpx

    bodies = _cassette_bodies("agent_two_tools.yaml")

    def answer(request: Any) -> Any:
        return http.Response(
            200, headers={"content-type": "application/json"}, content=bodies.pop(0).encode()
        )

    client = http.Client(transport=http.MockTransport(answer))
    instrumentor_class = (
        otel_httpx.HTTPXClientInstrumentor
        if http.__name__ == "httpx"
        else otel_httpx.HTTPX2ClientInstrumentor
    )
    instrumentor_class.instrument_client(client)
    return client


def test_http_span_nests_under_chat(
    telemetry: Any, config: dict[str, Any], instrumented_client: Any, caplog: Any
) -> None:
    model = ChatOpenAI(
        model="gpt-4o-mini", max_retries=0, http_client=instrumented_client, temperature=0
    )
    agent = build_agent(model, [get_weather, get_time])
    with caplog.at_level("ERROR", logger="opentelemetry.context"):
        result = agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    assert result["messages"][-1].content == "It is sunny and noon in Paris."
    assert not caplog.records
    tree = tools_sorted(telemetry.tree(attributes=(semconv.GEN_AI_TOOL_CALL_ID,)))
    post = "POST [CLIENT]"
    assert (
        tree
        == f"""\
invoke_agent support [INTERNAL]
  chat gpt-4o-mini [CLIENT]
    {post}
  execute_tool get_time [INTERNAL] gen_ai.tool.call.id=call_time
  execute_tool get_weather [INTERNAL] gen_ai.tool.call.id=call_weather
  chat gpt-4o-mini [CLIENT]
    {post}"""
    )
    print(  # shown with `pytest -s`
        telemetry.tree(
            attributes=(
                semconv.GEN_AI_USAGE_INPUT_TOKENS,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
                semconv.GEN_AI_RESPONSE_FINISH_REASONS,
                semconv.GEN_AI_TOOL_CALL_ID,
                "http.method",
                "http.url",
            )
        )
    )
    telemetry.assert_conformant()


def test_agent_with_openai_cassette(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    model = ChatOpenAI(model="gpt-4o-mini", max_retries=0, temperature=0)
    agent = build_agent(model, [get_weather, get_time])
    with cassette("agent_two_tools.yaml"):
        agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    assert (
        tools_sorted(
            telemetry.tree(
                attributes=(semconv.GEN_AI_USAGE_INPUT_TOKENS, semconv.GEN_AI_TOOL_CALL_ID)
            )
        )
        == """\
invoke_agent support [INTERNAL] gen_ai.usage.input_tokens=130
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=40
  execute_tool get_time [INTERNAL] gen_ai.tool.call.id=call_time
  execute_tool get_weather [INTERNAL] gen_ai.tool.call.id=call_weather
  chat gpt-4o-mini [CLIENT] gen_ai.usage.input_tokens=90"""
    )
    chats = [s for s in telemetry.spans() if s.name.startswith("chat")]
    assert [s.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] for s in chats] == [
        ("tool_calls",),
        ("stop",),
    ]
    assert chats[1].attributes[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 64
    telemetry.assert_conformant(strict=True)


def test_a_graph_whose_agent_node_is_an_agent_of_its_own_is_a_workflow(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A node called ``agent`` tells a prebuilt ReAct agent; a graph of the app's that adds an
    agent as its ``agent`` node runs an agent and is none: the agent is its subgraph."""
    from langgraph.graph import START, MessagesState, StateGraph

    for node in (
        build_agent(two_tool_model(), [get_weather, get_time], name="support"),
        build_agent(two_tool_model(), [get_weather, get_time], name="support").with_config(
            tags=["wrapped"]
        ),
    ):
        graph = StateGraph(MessagesState)
        graph.add_node("agent", node)
        graph.add_edge(START, "agent")
        app = graph.compile().with_config(run_name="desk")
        app.invoke({"messages": [("user", "weather?")]}, config=config)
    desk = (
        "invoke_workflow desk [INTERNAL]\n"
        "  invoke_agent support [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]\n"
        "    execute_tool get_time [INTERNAL]\n"
        "    execute_tool get_weather [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]"
    )
    assert tools_sorted(telemetry.tree()).split("\n---\n") == [desk, desk]
    telemetry.assert_conformant(strict=True)


def test_an_unnamed_agent_added_as_a_node_goes_by_the_nodes_name(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A multi-agent graph adds each agent as a node: an agent the app did not name is the
    agent it named that node for."""
    from langgraph.graph import START, MessagesState, StateGraph

    try:
        from langchain.agents import create_agent
    except ImportError:
        from langgraph.prebuilt import create_react_agent as create_agent
    graph = StateGraph(MessagesState)
    graph.add_node("researcher", create_agent(two_tool_model(), [get_weather, get_time]))
    graph.add_edge(START, "researcher")
    graph.compile().with_config(run_name="desk").invoke(
        {"messages": [("user", "weather?")]}, config=config
    )
    assert tools_sorted(telemetry.tree()) == (
        "invoke_workflow desk [INTERNAL]\n"
        "  invoke_agent researcher [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]\n"
        "    execute_tool get_time [INTERNAL]\n"
        "    execute_tool get_weather [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]"
    )
    agent = telemetry.find("invoke_agent researcher")
    assert agent.attributes[semconv.GEN_AI_AGENT_NAME] == "researcher"
    assert telemetry.find("execute_tool get_time").attributes[semconv.GEN_AI_AGENT_NAME] == (
        "researcher"
    )
    telemetry.assert_conformant(strict=True)


def test_agent_and_workflow_called_from_a_tool(telemetry: Any, config: dict[str, Any]) -> None:
    """Nested runs: a sub-agent and a plain workflow inside a tool of the outer agent."""
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class Lookup(TypedDict):
        city: str
        report: str

    flow = StateGraph(Lookup)
    # named as create_agent's model node, whose marker the workflow inherits in the agent's tool
    flow.add_node("model", lambda state: {"report": f"sunny in {state['city']}"})
    flow.add_edge(START, "model")
    lookup_flow = flow.compile().with_config(run_name="lookup_flow")
    researcher = build_agent(
        ScriptedChatModel(
            responses=[AIMessage(content="checked", usage_metadata=usage(3, 1))]  # type: ignore[arg-type]
        ),
        [],
        name="researcher",
    )

    @tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        report = lookup_flow.invoke({"city": city})["report"]
        checked = researcher.invoke({"messages": [("user", report)]})["messages"][-1].content
        return f"{report} ({checked})"

    agent = build_agent(two_tool_model(), [get_weather, get_time])
    agent.invoke({"messages": [("user", "Weather?")]}, config=config)
    assert (
        tools_sorted(telemetry.tree())
        == """\
invoke_agent support [INTERNAL]
  chat scripted-1 [CLIENT]
  execute_tool get_time [INTERNAL]
  execute_tool get_weather [INTERNAL]
    invoke_workflow lookup_flow [INTERNAL]
    invoke_agent researcher [INTERNAL]
      chat scripted-1 [CLIENT]
  chat scripted-1 [CLIENT]"""
    )
    telemetry.assert_conformant(strict=True)


def test_create_agents_named_by_run_name_or_unnamed_in_a_tool_are_agents(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """An unnamed create_agent named by its run name, and one called in a named agent's tool
    (which inherits the outer agent's name in its metadata), are agents: their own model node
    tells, not their metadata."""
    pytest.importorskip("langchain.agents.middleware")  # create_agent: langchain 1.x
    agents = pytest.importorskip("langchain.agents")
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool

    agents.create_agent(two_tool_model(), [get_weather, get_time]).invoke(
        {"messages": [("user", "Weather?")]}, config={**config, "run_name": "support"}
    )
    (root,) = [s for s in telemetry.spans() if s.parent_span_id is None]
    assert root.name == "invoke_agent support"
    telemetry.span_exporter.clear()

    researcher = agents.create_agent(
        ScriptedChatModel(
            responses=[AIMessage(content="checked", usage_metadata=usage(3, 1))]  # type: ignore[arg-type]
        ),
        [],
    )

    @tool
    def get_weather_checked(city: str) -> str:
        """Get the weather in a city."""
        return str(researcher.invoke({"messages": [("user", city)]})["messages"][-1].content)

    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[{"name": "get_weather_checked", "args": {"city": "P"}, "id": "c1"}],
                usage_metadata=usage(1, 1),  # type: ignore[arg-type]
            ),
            AIMessage(content="done", usage_metadata=usage(1, 1)),  # type: ignore[arg-type]
        ]
    )
    agents.create_agent(model, [get_weather_checked], name="support").invoke(
        {"messages": [("user", "Weather?")]}, config=config
    )
    assert telemetry.tree() == "\n".join(
        [
            "invoke_agent support [INTERNAL]",
            "  chat scripted-1 [CLIENT]",
            "  execute_tool get_weather_checked [INTERNAL]",
            "    invoke_agent [INTERNAL]",
            "      chat scripted-1 [CLIENT]",
            "  chat scripted-1 [CLIENT]",
        ]
    )


def test_create_agent_with_middleware_is_an_agent(telemetry: Any, config: dict[str, Any]) -> None:
    agents = pytest.importorskip("langchain.agents")
    middleware = pytest.importorskip("langchain.agents.middleware")

    class Noting(middleware.AgentMiddleware):  # type: ignore[misc, name-defined]
        def before_model(self, state: Any, runtime: Any) -> None:
            return None

    agent = agents.create_agent(
        two_tool_model(), [get_weather, get_time], name="support", middleware=[Noting()]
    )
    agent.invoke({"messages": [("user", "Weather?")]}, config=config)
    assert tools_sorted(telemetry.tree(attributes=TREE_ATTRS)) == AGENT_TREE


def test_an_agent_asking_the_provider_for_structured_output_has_its_output_type(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """create_agent's response_format sent as the provider's (ProviderStrategy) is the agent's
    output type too; as a tool the model calls (ToolStrategy), or asked for by a model a tool
    calls, it is not."""
    agents = pytest.importorskip("langchain.agents")
    strategies = pytest.importorskip("langchain.agents.structured_output")
    from pydantic import BaseModel

    class Forecast(BaseModel):
        city: str
        sky: str

    @tool
    def forecaster(city: str) -> str:
        """Ask another model for a forecast."""
        answer = AIMessage(json.dumps({"city": city, "sky": "sunny"}))
        model = ScriptedChatModel(model="inner-1", responses=[answer])
        return model.bind(response_format=Forecast).invoke(city).text

    answer = AIMessage(json.dumps({"city": "Paris", "sky": "sunny"}))
    native = agents.create_agent(
        ScriptedChatModel(responses=[answer]),
        name="native",
        response_format=strategies.ProviderStrategy(Forecast),
    )
    assert native.invoke({"messages": [("user", "?")]}, config=config)["structured_response"]
    call = ToolCall(name="Forecast", args={"city": "Paris", "sky": "sunny"}, id="c1")
    as_tool = agents.create_agent(
        ScriptedChatModel(
            responses=[
                AIMessage("", tool_calls=[ToolCall(name="forecaster", args={"city": "P"}, id="f")]),
                AIMessage("", tool_calls=[call]),
            ]
        ),
        [forecaster],
        name="as_tool",
        response_format=strategies.ToolStrategy(Forecast),
    )
    assert as_tool.invoke({"messages": [("user", "?")]}, config=config)["structured_response"]
    assert telemetry.tree(attributes=(semconv.GEN_AI_OUTPUT_TYPE,)) == "\n".join(
        [
            "invoke_agent native [INTERNAL] gen_ai.output.type=json",
            "  chat scripted-1 [CLIENT] gen_ai.output.type=json",
            "---",
            "invoke_agent as_tool [INTERNAL]",
            "  chat scripted-1 [CLIENT]",
            "  execute_tool forecaster [INTERNAL]",
            "    chat inner-1 [CLIENT] gen_ai.output.type=json",
            "  chat scripted-1 [CLIENT]",
        ]
    )


def test_create_agent_resumed_in_its_tools_is_an_agent(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A run resumed after an interrupt inside a tool starts in the tools node: the agent is
    known from its own metadata, not only from its model node running first."""
    agents = pytest.importorskip("langchain.agents")
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.types import Command, interrupt

    @tool
    def approve(amount: int) -> str:
        """Ask a person to approve a payment."""
        return f"approved: {interrupt(f'approve {amount}?')}"

    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="", tool_calls=[{"name": "approve", "args": {"amount": 5}, "id": "c1"}]
            ),
            AIMessage(content="paid"),
        ]
    )
    agent = agents.create_agent(model, [approve], name="payer", checkpointer=MemorySaver())
    run_config = {**config, "configurable": {"thread_id": "t-1"}}
    agent.invoke({"messages": [("user", "pay 5")]}, config=run_config)
    agent.invoke(Command(resume="yes"), config=run_config)
    attributes = (semconv.GEN_AI_AGENT_NAME,)
    assert telemetry.tree(attributes=attributes) == "\n".join(
        [
            "invoke_agent payer [INTERNAL] gen_ai.agent.name=payer",
            "  chat scripted-1 [CLIENT]",
            "  execute_tool approve [INTERNAL] gen_ai.agent.name=payer",
            "---",
            "invoke_agent payer [INTERNAL] gen_ai.agent.name=payer",
            "  execute_tool approve [INTERNAL] gen_ai.agent.name=payer",
            "  chat scripted-1 [CLIENT]",
        ]
    )


# --- tool calls: the model's arguments and the tool's name ---------------------------------------


def _lookup_model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[{"name": "lookup", "args": {"city": "Paris"}, "id": "c1"}],
                usage_metadata=usage(10, 5),  # type: ignore[arg-type]
            ),
            AIMessage(content="done", usage_metadata=usage(20, 3)),  # type: ignore[arg-type]
        ]
    )


@pytest.mark.parametrize("call", ["invoke", "ainvoke"])
def test_injected_graph_state_is_not_in_tool_arguments(
    telemetry: Any, config: dict[str, Any], capture_content: Any, call: str
) -> None:
    """A tool given the graph state (``InjectedState``) records only the arguments the model
    wrote: the state (the whole conversation) is not the call's (langchain-core 0.3 passes it
    to handlers; 1.x leaves it out)."""

    @tool
    def lookup(city: str, state: Annotated[dict[str, Any], InjectedState]) -> str:
        """Look up a city."""
        return f"{city}: sunny after {len(state['messages'])} messages"

    agent = build_agent(_lookup_model(), [lookup])
    question = {"messages": [("user", "my password is hunter2, weather?")]}
    if call == "invoke":
        agent.invoke(question, config=config)
    else:
        asyncio.run(agent.ainvoke(question, config=config))
    span = telemetry.find("execute_tool lookup")
    assert json.loads(span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "Paris: sunny after 2 messages"
    telemetry.assert_conformant(strict=True)


@pytest.mark.parametrize("call", ["invoke", "ainvoke"])
def test_injected_tool_arguments_are_not_recorded(
    telemetry: Any, config: dict[str, Any], capture_content: Any, call: str
) -> None:
    """``InjectedToolArg`` and ``InjectedToolCallId`` arguments, of a function tool (sync and
    async) and of a ``BaseTool`` subclass without an args schema, are not the model's."""

    @tool
    def with_id(
        x: str,
        tool_call_id: Annotated[str, InjectedToolCallId],
        secret: Annotated[str, InjectedToolArg],
    ) -> ToolMessage:
        """Returns a ToolMessage."""
        return ToolMessage(content=f"ok {x}", tool_call_id=tool_call_id)

    @tool
    async def with_id_async(
        x: str,
        tool_call_id: Annotated[str, InjectedToolCallId],
        secret: Annotated[str, InjectedToolArg],
    ) -> ToolMessage:
        """Returns a ToolMessage."""
        return ToolMessage(content=f"ok {x}", tool_call_id=tool_call_id)

    class Keyed(BaseTool):
        name: str = "keyed"
        description: str = "Uses a key."

        def _run(self, x: str, secret: Annotated[str, InjectedToolArg]) -> str:
            return f"ok {x}"

    for tool_ in (with_id, with_id_async, Keyed()):
        tool_call = {
            "name": tool_.name,
            "args": {"x": "y", "secret": "s3cr3t"},
            "id": "call_4",
            "type": "tool_call",
        }
        if call == "invoke" and tool_ is not with_id_async:
            tool_.invoke(tool_call, config=config)
        else:
            asyncio.run(tool_.ainvoke(tool_call, config=config))
    spans = [s for s in telemetry.spans() if s.name.startswith("execute_tool")]
    assert len(spans) == 3
    for span in spans:
        assert json.loads(span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"x": "y"}
        assert span.attributes[semconv.GEN_AI_TOOL_CALL_ID] == "call_4"
    telemetry.assert_conformant(strict=True)


def test_run_name_does_not_rename_the_tool(telemetry: Any, config: dict[str, Any]) -> None:
    """A run name names the run; the tool keeps the name the model calls it by."""
    tool_call = {"name": "get_weather", "args": {"city": "P"}, "id": "c1", "type": "tool_call"}
    get_weather.invoke(tool_call, config={**config, "run_name": "weather step (retry 2)"})
    get_weather.with_config(run_name="weather step").invoke(tool_call, config=config)
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["execute_tool get_weather"] * 2
    assert [s.attributes[semconv.GEN_AI_TOOL_NAME] for s in spans] == ["get_weather"] * 2
    points = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert [p["attributes"][semconv.GEN_AI_TOOL_NAME] for p in points] == ["get_weather"]
    telemetry.assert_conformant(strict=True)


def test_a_failure_to_find_injected_arguments_records_none(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fail-open, and closed on content: the tool runs and has its span, without arguments."""

    def broken(tool_: Any) -> frozenset[str]:
        raise RuntimeError("no schema")

    monkeypatch.setattr(_handler, "_filters_injected", False)  # as on langchain-core 0.3
    monkeypatch.setattr(_handler, "_injected_keys", broken)
    with caplog.at_level(logging.DEBUG, logger="threadline"):
        result = get_weather.invoke({"city": "Paris"}, config=config)
    assert result == "sunny in Paris"
    span = telemetry.find("execute_tool get_weather")
    assert semconv.GEN_AI_TOOL_CALL_ARGUMENTS not in span.attributes
    assert span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "sunny in Paris"
    assert any("langchain.on_tool_start" in r.getMessage() for r in caplog.records)
