"""The Tracing capability on real agents driven by FunctionModel / TestModel."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from pai_helpers import V2, agent_span, scripted, streaming, text, tool_calls
from pydantic_ai import Agent, ModelRetry, RunContext, ToolOutput
from pydantic_ai import exceptions as _exc
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

import threadline
from threadline import semconv
from threadline.pydantic_ai import Tracing, _capability
from threadline.testing import Telemetry
from threadline.testing.stalls import Stalls

# Pydantic AI lists the attempts a request moved on from (2.x): a span each
ATTEMPTS = "failed_attempts" in getattr(ModelResponse, "__dataclass_fields__", {})

USAGE_ATTRS = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
)


def weather_agent(**kwargs: Any) -> Agent[None, str]:
    """An agent that calls two tools in one step, then answers."""
    model = scripted(
        tool_calls(
            ("lookup_city", {"city": "Paris"}, "call_1"),
            ("lookup_weather", {"city": "Paris"}, "call_2"),
            input_tokens=20,
            output_tokens=5,
            cache_read_tokens=8,
            details={"reasoning_tokens": 2},
        ),
        text("Sunny in Paris, France", input_tokens=30, output_tokens=4),
        name="weather-model",
    )
    agent: Agent[None, str] = Agent(
        model,
        name="weather",
        description="Answers weather questions.",
        capabilities=[Tracing()],
        instructions="Be brief.",
        **kwargs,
    )

    @agent.tool_plain
    def lookup_city(city: str) -> str:
        """Country of a city."""
        return f"{city}, France"

    @agent.tool_plain
    async def lookup_weather(city: str) -> str:
        """Current weather."""
        return "sunny"

    return agent


def test_tool_calling_agent(telemetry: Telemetry) -> None:
    result = weather_agent().run_sync("Weather in Paris?")

    assert result.output == "Sunny in Paris, France"
    assert telemetry.tree(
        attributes=(
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_RESPONSE_ID,
            semconv.GEN_AI_RESPONSE_FINISH_REASONS,
            *USAGE_ATTRS,
            semconv.GEN_AI_TOOL_CALL_ID,
        )
    ) == "\n".join(
        [
            f"{agent_span('weather')} [INTERNAL] gen_ai.usage.input_tokens=50"
            " gen_ai.usage.output_tokens=9",
            "  chat weather-model [CLIENT] gen_ai.provider.name=function"
            " gen_ai.response.id=resp_tools gen_ai.response.finish_reasons=['tool_call']"
            " gen_ai.usage.input_tokens=20 gen_ai.usage.output_tokens=5"
            " gen_ai.usage.cache_read.input_tokens=8 gen_ai.usage.reasoning.output_tokens=2",
            "  execute_tool lookup_city [INTERNAL] gen_ai.tool.call.id=call_1",
            "  execute_tool lookup_weather [INTERNAL] gen_ai.tool.call.id=call_2",
            "  chat weather-model [CLIENT] gen_ai.provider.name=function"
            " gen_ai.response.id=resp_text gen_ai.response.finish_reasons=['stop']"
            " gen_ai.usage.input_tokens=30 gen_ai.usage.output_tokens=4",
        ]
    )
    if agent_span("weather") != "invoke_agent":  # an unnamed agent span has no description
        invoke = telemetry.find("invoke_agent weather")
        assert invoke.attributes[semconv.GEN_AI_AGENT_DESCRIPTION] == "Answers weather questions."
    chat = telemetry.spans()[0]
    assert chat.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert chat.attributes[semconv.GEN_AI_REQUEST_MODEL] == "weather-model"
    assert chat.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "weather-model"
    tool = telemetry.find("execute_tool lookup_city")
    assert tool.attributes[semconv.GEN_AI_TOOL_DESCRIPTION] == "Country of a city."
    assert tool.attributes[semconv.GEN_AI_TOOL_TYPE] == "function"
    # content is off by default: nothing of the conversation is recorded
    for span in telemetry.spans():
        assert not set(span.attributes) & {
            semconv.GEN_AI_INPUT_MESSAGES,
            semconv.GEN_AI_OUTPUT_MESSAGES,
            semconv.GEN_AI_SYSTEM_INSTRUCTIONS,
            semconv.GEN_AI_TOOL_DEFINITIONS,
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
            semconv.GEN_AI_TOOL_CALL_RESULT,
        }
    telemetry.assert_conformant()


def _points(telemetry: Telemetry, name: str) -> list[tuple[dict[str, Any], Any]]:
    return sorted(
        ((p["attributes"], p.get("count", p.get("sum"))) for p in telemetry.metric_points(name)),
        key=repr,
    )


def test_metrics(telemetry: Telemetry) -> None:
    weather_agent().run_sync("Weather in Paris?")

    chat = {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "function",
        semconv.GEN_AI_REQUEST_MODEL: "weather-model",
        semconv.GEN_AI_RESPONSE_MODEL: "weather-model",
    }
    assert _points(telemetry, semconv.METRIC_CLIENT_OPERATION_DURATION) == [(chat, 2)]
    tokens = {
        (p["attributes"][semconv.GEN_AI_TOKEN_TYPE], p["sum"])
        for p in telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    }
    assert tokens == {("input", 50), ("output", 9)}
    tools = _points(telemetry, semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert [(a[semconv.GEN_AI_TOOL_NAME], n) for a, n in tools] == [
        ("lookup_city", 1),
        ("lookup_weather", 1),
    ]
    agent_name = {} if agent_span("weather") == "invoke_agent" else {"gen_ai.agent.name": "weather"}
    assert _points(telemetry, semconv.METRIC_INVOKE_AGENT_DURATION) == [
        ({**agent_name, semconv.GEN_AI_REQUEST_MODEL: "weather-model"}, 1)
    ]


def test_content_capture(telemetry: Telemetry, capture_content: Any) -> None:
    weather_agent().run_sync("Weather in Paris?")

    first, second = (s for s in telemetry.spans() if s.name == "chat weather-model")
    assert json.loads(first.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    ]
    assert json.loads(first.attributes[semconv.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."}
    ]
    definitions = json.loads(first.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert [(d["name"], d["description"]) for d in definitions] == [
        ("lookup_city", "Country of a city."),
        ("lookup_weather", "Current weather."),
    ]
    assert json.loads(first.attributes[semconv.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "finish_reason": "tool_call",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "lookup_city",
                 "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "call_2", "name": "lookup_weather",
                 "arguments": {"city": "Paris"}},
            ],
        }
    ]  # fmt: skip
    history = json.loads(second.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool"]
    assert history[2]["parts"] == [
        {"type": "tool_call_response", "id": "call_1", "response": "Paris, France"}
    ]
    tool = telemetry.find("execute_tool lookup_weather")
    assert json.loads(tool.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "sunny"
    telemetry.assert_conformant()


def test_native_tools_are_generic_tool_definitions(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """The provider's own tools (web search) are defined by their type, with their settings."""
    from pydantic_ai.profiles import ModelProfile

    if V2:
        from pydantic_ai.capabilities import NativeTool
        from pydantic_ai.native_tools import WebSearchTool

        supported = {"supported_native_tools": frozenset([WebSearchTool])}
        enable: dict[str, Any] = {
            "capabilities": [Tracing(), NativeTool(WebSearchTool(max_uses=2))]
        }
    else:
        from pydantic_ai.builtin_tools import WebSearchTool  # type: ignore[no-redef]

        supported = {}
        enable = {"capabilities": [Tracing()], "builtin_tools": [WebSearchTool(max_uses=2)]}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("found it")])

    model = FunctionModel(answer, profile=ModelProfile(**supported))  # type: ignore[arg-type]
    Agent(model, name="searcher", **enable).run_sync("Search for it")

    [chat] = [s for s in telemetry.spans() if s.name.startswith("chat")]
    [definition] = json.loads(chat.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert (definition["type"], definition["name"], definition["max_uses"]) == (
        "web_search",
        "web_search",
        2,
    )
    telemetry.assert_conformant()


def test_native_tool_calls_and_generated_files_in_messages(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """A call of the provider's own tool (web search) and its result are server tool parts,
    not a call of the app's tools left unanswered; an image the model made is a blob."""
    from pydantic_ai import BinaryContent
    from pydantic_ai import messages as pai_messages

    prefix = "Native" if V2 else "Builtin"
    call_part = getattr(pai_messages, f"{prefix}ToolCallPart")
    return_part = getattr(pai_messages, f"{prefix}ToolReturnPart")

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[
                call_part("web_search", {"query": "paris"}, tool_call_id="ws_1"),
                return_part("web_search", {"status": "completed"}, tool_call_id="ws_1"),
                pai_messages.FilePart(BinaryContent(b"\x89PNG", media_type="image/png")),
                TextPart("found it"),
            ]
        )

    agent = Agent(FunctionModel(answer), name="searcher", capabilities=[Tracing()])
    first = agent.run_sync("Search for it")
    agent.run_sync("Again", message_history=first.all_messages())

    expected = [
        {
            "type": "server_tool_call",
            "name": "web_search",
            "id": "ws_1",
            "server_tool_call": {"type": "web_search", "arguments": {"query": "paris"}},
        },
        {
            "type": "server_tool_call_response",
            "id": "ws_1",
            "server_tool_call_response": {
                "type": "web_search",
                "response": {"status": "completed"},
            },
        },
        {"type": "blob", "modality": "image", "content": "iVBORw==", "mime_type": "image/png"},
        {"type": "text", "content": "found it"},
    ]
    first_chat, second_chat = [s for s in telemetry.spans() if s.name.startswith("chat")]
    [output] = json.loads(first_chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert output["parts"] == expected
    history = json.loads(second_chat.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert history[1] == {"role": "assistant", "parts": expected}
    telemetry.assert_conformant()


@pytest.mark.parametrize(
    ("output", "expected"),
    [(str, "text"), ("prompted", "json"), (int, None)],  # int: a tool's arguments, no format
)
def test_the_agent_span_has_the_runs_output_type(
    telemetry: Telemetry, output: Any, expected: str | None
) -> None:
    from pydantic import BaseModel
    from pydantic_ai import PromptedOutput

    class Answer(BaseModel):
        value: int

    output_type = PromptedOutput(Answer) if output == "prompted" else output
    model = TestModel(custom_output_text='{"value": 1}' if output == "prompted" else None)
    Agent(model, name="typed", capabilities=[Tracing()], output_type=output_type).run_sync("hi")
    [agent] = [s for s in telemetry.spans() if s.name.startswith("invoke_agent")]
    assert agent.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) == expected
    for chat in [s for s in telemetry.spans() if s.name.startswith("chat")]:
        assert chat.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) == expected
    telemetry.assert_conformant()


@pytest.mark.parametrize("mode", ["native", "prompted"])
def test_structured_output_without_a_mode_has_the_models_output_type(
    telemetry: Telemetry, capture_content: Any, mode: str
) -> None:
    """A structured output type given without a mode is left to the model, which picks its
    default only as it sends the request: native or prompted output is JSON, with no output
    tool among the tools the model is told of."""
    from pydantic import BaseModel
    from pydantic_ai.profiles import ModelProfile

    class Answer(BaseModel):
        value: int

    sent: list[tuple[str, list[str]]] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        parameters = info.model_request_parameters
        sent.append((parameters.output_mode, [tool.name for tool in parameters.output_tools]))
        return text('{"value": 1}')

    profile = ModelProfile(default_structured_output_mode=mode, supports_json_schema_output=True)  # type: ignore[arg-type]
    model = FunctionModel(answer, model_name="m", profile=profile)
    agent = Agent(model, name="typed", capabilities=[Tracing()], output_type=Answer)

    @agent.tool_plain
    def lookup() -> str:
        """Look it up."""
        return "1"

    assert agent.run_sync("hi").output == Answer(value=1)
    assert sent == [(mode, [])]
    for span in telemetry.spans():
        assert span.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) == "json", span.name
    chat = telemetry.find("chat m")
    definitions = json.loads(chat.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert [definition["name"] for definition in definitions] == ["lookup"]
    telemetry.assert_conformant()


@pytest.mark.parametrize("native_first", [False, True], ids=["to_native", "to_tool"])
def test_a_fallback_to_a_model_of_another_output_mode_has_its_output_type(
    telemetry: Telemetry, capture_content: Any, native_first: bool
) -> None:
    """A fallback chain whose first model fails: the request is the answering model's, and so
    are its output type and the tools it was told of (native output: JSON, no output tool;
    tool output: the output tool, and no output type)."""
    from pydantic import BaseModel
    from pydantic_ai.models.fallback import FallbackModel
    from pydantic_ai.profiles import ModelProfile

    class Answer(BaseModel):
        value: int

    sent: list[tuple[str, str, list[str]]] = []

    def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        sent.append(("a", info.model_request_parameters.output_mode, []))
        raise _exc.ModelHTTPError(500, "a", None)

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        parameters = info.model_request_parameters
        tools = [tool.name for tool in parameters.output_tools]
        sent.append(("b", parameters.output_mode, tools))
        if tools:
            return ModelResponse(parts=[ToolCallPart(tools[0], {"value": 1})], model_name="b")
        return ModelResponse(parts=[TextPart('{"value": 1}')], model_name="b")

    native = ModelProfile(default_structured_output_mode="native", supports_json_schema_output=True)  # type: ignore[arg-type]
    first, second = (native, None) if native_first else (None, native)
    chain = FallbackModel(
        FunctionModel(down, model_name="a", profile=first),
        FunctionModel(answer, model_name="b", profile=second),
    )
    agent = Agent(chain, name="typed", capabilities=[Tracing()], output_type=Answer)
    assert agent.run_sync("hi").output == Answer(value=1)
    chat = telemetry.find("chat b")
    invoked = telemetry.find(agent_span("typed"))
    definitions = json.loads(chat.attributes.get(semconv.GEN_AI_TOOL_DEFINITIONS, "[]"))
    if native_first:
        assert sent == [("a", "native", []), ("b", "tool", ["final_result"])]
        assert semconv.GEN_AI_OUTPUT_TYPE not in chat.attributes
        assert semconv.GEN_AI_OUTPUT_TYPE not in invoked.attributes
        assert [definition["name"] for definition in definitions] == ["final_result"]
    else:
        assert sent == [("a", "tool", []), ("b", "native", [])]
        assert chat.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) == "json"
        assert invoked.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) == "json"
        assert definitions == []  # no tool was sent
    telemetry.assert_conformant()


@pytest.mark.skipif(not V2, reason="deferred tool loading is 2.x")
def test_tool_definitions_are_the_tools_the_model_is_shown(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """A tool of deferred loading is withheld from the model (its description too) until a
    tool search reveals it, and the local search tool is not sent where the provider has its
    own: the tool definitions are those the model is shown."""
    shown: list[list[str]] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        shown.append([tool.name for tool in info.function_tools])
        if len(shown) == 1:
            return tool_calls(("search_tools", {"queries": ["payroll"]}, "call_search"))
        if len(shown) == 2:
            return tool_calls(("payroll", {}, "call_payroll"))
        return text("done")

    agent = Agent(FunctionModel(answer, model_name="m"), name="a", capabilities=[Tracing()])

    @agent.tool_plain
    def lookup() -> str:
        """Look it up."""
        return "1"

    @agent.tool_plain(defer_loading=True)
    def payroll() -> str:
        """Internal payroll lookup."""
        return "paid"

    assert agent.run_sync("hi").output == "done"
    assert shown == [["lookup"], ["lookup", "payroll"], ["lookup", "payroll"]]
    recorded = [
        [
            definition["name"]
            for definition in json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
            if definition["type"] == "function"
        ]
        for span in telemetry.spans()
        if span.name.startswith("chat")
    ]
    assert recorded == shown
    telemetry.assert_conformant()


def test_request_parameters_and_conversation(telemetry: Telemetry) -> None:
    agent = Agent(TestModel(custom_output_text="ok"), name="p", capabilities=[Tracing()])
    kwargs: dict[str, Any] = {"conversation_id": "conv-1"} if V2 else {}
    agent.run_sync(
        "hi",
        model_settings={
            "temperature": 0.2,
            "max_tokens": 50,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 7,
        },
        **kwargs,
    )

    chat = telemetry.find("chat test")
    assert chat.attributes[semconv.GEN_AI_REQUEST_TOP_K] == 40
    assert chat.attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert chat.attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert chat.attributes[semconv.GEN_AI_REQUEST_TOP_P] == 0.9
    assert chat.attributes[semconv.GEN_AI_REQUEST_SEED] == 7
    assert chat.attributes[semconv.GEN_AI_OUTPUT_TYPE] == "text"
    assert semconv.GEN_AI_REQUEST_STREAM not in chat.attributes
    if V2:
        agent_span_ = telemetry.find("invoke_agent p")
        assert agent_span_.attributes[semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
        assert chat.attributes[semconv.GEN_AI_CONVERSATION_ID] == "conv-1"


def test_a_models_attribute_of_the_apps_model_is_left_alone(telemetry: Telemetry) -> None:
    """Only a ``FallbackModel``'s ``models`` is read: another model's may be a property of
    the app's own, with its own rules."""

    class Pooled(TestModel):
        @property
        def models(self) -> Any:
            raise RuntimeError("no pool outside a request")

    agent = Agent(Pooled(custom_output_text="ok"), name="p", capabilities=[Tracing()])
    assert agent.run_sync("hi").output == "ok"
    assert telemetry.tree() == f"{agent_span('p')} [INTERNAL]\n  chat test [CLIENT]"


def test_session_conversation_wins_over_the_minted_one(telemetry: Telemetry) -> None:
    """Without a ``conversation_id`` argument, Pydantic AI 2.x mints a new id per run; the one
    the application set on the session is the conversation."""
    agent = Agent(TestModel(custom_output_text="ok"), name="support", capabilities=[Tracing()])
    with threadline.session("sess-42", conversation_id="thread-3"):
        agent.run_sync("first question")
        agent.run_sync("second question")
    agent.run_sync("outside the session")
    *in_session, outside_chat, outside_agent = telemetry.spans()
    assert len(in_session) == 4
    for span in in_session:
        assert span.attributes[semconv.GEN_AI_CONVERSATION_ID] == "thread-3", span.name
    if V2:  # outside a session, the run's own conversation id
        minted = outside_agent.attributes[semconv.GEN_AI_CONVERSATION_ID]
        assert minted != "thread-3"
        assert outside_chat.attributes[semconv.GEN_AI_CONVERSATION_ID] == minted


@pytest.mark.skipif(not hasattr(_exc, "SkipModelRequest"), reason="no SkipModelRequest")
@pytest.mark.parametrize("tracing_first", [True, False])
def test_request_answered_by_a_capability_is_no_failure(
    telemetry: Telemetry, tracing_first: bool
) -> None:
    """A capability raising SkipModelRequest (a cache) answers in the model's place: the chat
    span ends normally, with the response it was given."""

    @dataclass
    class CachedAnswer(AbstractCapability[Any]):
        async def before_model_request(self, ctx: Any, request_context: Any) -> Any:
            response = ModelResponse(parts=[TextPart("cached")], finish_reason="stop")
            raise _exc.SkipModelRequest(response)

    capabilities = [Tracing(), CachedAnswer()]
    agent = Agent(
        TestModel(),
        name="cached",
        capabilities=capabilities if tracing_first else capabilities[::-1],
    )
    assert agent.run_sync("hi").output == "cached"
    spans = {span.name: span for span in telemetry.spans()}
    assert set(spans) <= {"chat test", agent_span("cached")}
    for span in spans.values():
        assert span.status_code == "UNSET", span.name
        assert semconv.ERROR_TYPE not in span.attributes
    if V2:  # on 1.x the hook runs before wrap_model_request: no chat span at all
        assert spans["chat test"].attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert threadline.current_run() is None


def test_streamed_run(telemetry: Telemetry) -> None:
    agent = Agent(streaming("Hel", "lo", " world"), name="streamer", capabilities=[Tracing()])

    async def consume() -> list[str]:
        async with agent.run_stream("hi") as stream:
            return [chunk async for chunk in stream.stream_text(delta=True)]

    chunks = asyncio.run(consume())

    assert "".join(chunks) == "Hello world"
    assert telemetry.tree(attributes=(semconv.GEN_AI_REQUEST_STREAM,)) == "\n".join(
        [
            f"{agent_span('streamer')} [INTERNAL]",
            "  chat streamer [CLIENT] gen_ai.request.stream=True",
        ]
    )
    chat = telemetry.find("chat streamer")
    first_chunk = chat.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < first_chunk < (chat.end_ns - chat.start_ns) / 1e9
    (ttfc,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttfc["count"] == 1
    if V2:  # 1.x run_stream hands the chunks after the first to the caller unobserved
        (per_chunk,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
        assert per_chunk["count"] >= 2  # one per chunk after the first
    telemetry.assert_conformant()


def test_a_node_streamed_under_iter(telemetry: Telemetry) -> None:
    """A model request node the caller streams under ``iter``: its span lasts until the stream
    is read to its end. 1.71 passes that stream's events to no capability hook and does not
    tell the request it streams: no stream flag, no time to first chunk."""
    agent = Agent(streaming("Hel", "lo", " world"), name="streamer", capabilities=[Tracing()])
    read_at: list[int] = []

    async def drive() -> None:
        async with agent.iter("hi") as run:
            async for node in run:
                if Agent.is_model_request_node(node):
                    async with node.stream(run.ctx) as stream:
                        async for _ in stream:
                            read_at.append(time.time_ns())

    asyncio.run(drive())
    chat = telemetry.find("chat streamer")
    assert chat.end_ns >= read_at[-1]  # after the last event
    assert chat.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    metrics = telemetry.metrics()
    if V2:
        assert chat.attributes[semconv.GEN_AI_REQUEST_STREAM] is True
        assert chat.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
        assert semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK in metrics
    else:
        assert semconv.GEN_AI_REQUEST_STREAM not in chat.attributes
        assert semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in chat.attributes
        assert semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK not in metrics
    telemetry.assert_conformant()


@pytest.mark.skipif(not V2, reason="1.x run_stream hands the chunks after the first unobserved")
def test_a_streamed_request_ends_with_its_response(telemetry: Telemetry) -> None:
    """The model request's span ends when its response has been read to its end, not when the
    caller leaves ``run_stream``'s block."""
    agent = Agent(streaming("Hel", "lo"), name="streamer", capabilities=[Tracing()])
    tracer = trace.get_tracer("app")

    async def consume() -> None:
        async with agent.run_stream("hi") as stream:
            async for _ in stream.stream_text(delta=True):
                with tracer.start_as_current_span("app.chunk"):
                    pass
            await stream.get_output()
            await asyncio.sleep(0.3)

    asyncio.run(consume())
    chat = telemetry.find("chat streamer")
    assert (chat.end_ns - chat.start_ns) / 1e9 < 0.3
    (duration,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["sum"] < 0.3
    assert threadline.current_run() is None


def test_a_streamed_request_read_to_its_end_stays_a_success_when_validation_fails(
    telemetry: Telemetry,
) -> None:
    """A failing output validator fails the run; the request whose response was read in full
    did not fail, though Pydantic AI cancels its task as the block raises."""
    agent = Agent(streaming("may", "be"), name="strict", capabilities=[Tracing()])

    @agent.output_validator
    def must_say_yes(output: str) -> str:
        raise ValueError("not yes")

    async def consume() -> None:
        async with agent.run_stream("hi") as stream:
            await stream.get_output()

    with pytest.raises(ValueError, match="not yes"):
        asyncio.run(consume())
    run, chat = telemetry.spans()[::-1]  # the request ends first
    assert run.name.startswith("invoke_agent")
    assert (run.status_code, run.attributes["error.type"]) == ("ERROR", "ValueError")
    assert (chat.name, chat.parent_span_id) == ("chat streamer", run.span_id)
    assert chat.status_code == "UNSET"
    assert "error.type" not in chat.attributes
    assert threadline.current_run() is None


def test_plain_run_stays_unstreamed(telemetry: Telemetry) -> None:
    """Observing streams must not switch a plain run to streamed model requests."""
    agent = Agent(streaming("x"), name="s", capabilities=[Tracing()])
    with pytest.raises(Exception, match="stream"):
        agent.run_sync("hi")  # no non-streaming function: only streamed requests could succeed


def expert_and_boss() -> tuple[Agent[None, str], Agent[None, str]]:
    expert: Agent[None, str] = Agent(
        scripted(text("42", "resp_expert", input_tokens=7, output_tokens=1), name="expert-model"),
        name="expert",
        capabilities=[Tracing()],
    )
    boss: Agent[None, str] = Agent(
        scripted(
            tool_calls(("ask_expert", {"question": "meaning?"}, "call_9"), input_tokens=10,
                       output_tokens=3),
            text("The expert says 42", "resp_boss", input_tokens=15, output_tokens=5),
            name="boss-model",
        ),
        name="boss",
        capabilities=[Tracing()],
    )  # fmt: skip

    @boss.tool
    async def ask_expert(ctx: RunContext[None], question: str) -> str:
        """Delegate to the expert agent."""
        result = await expert.run(question, usage=ctx.usage)
        return result.output

    return boss, expert


def test_delegation(telemetry: Telemetry) -> None:
    boss, _ = expert_and_boss()
    assert boss.run_sync("What is the meaning of life?").output == "The expert says 42"

    assert telemetry.tree(attributes=USAGE_ATTRS[:2]) == "\n".join(
        [
            f"{agent_span('boss')} [INTERNAL] gen_ai.usage.input_tokens=25"
            " gen_ai.usage.output_tokens=8",
            "  chat boss-model [CLIENT] gen_ai.usage.input_tokens=10 gen_ai.usage.output_tokens=3",
            "  execute_tool ask_expert [INTERNAL]",
            f"    {agent_span('expert')} [INTERNAL] gen_ai.usage.input_tokens=7"
            " gen_ai.usage.output_tokens=1",
            "      chat expert-model [CLIENT] gen_ai.usage.input_tokens=7"
            " gen_ai.usage.output_tokens=1",
            "  chat boss-model [CLIENT] gen_ai.usage.input_tokens=15 gen_ai.usage.output_tokens=5",
        ]
    )
    assert len({span.trace_id for span in telemetry.spans()}) == 1
    telemetry.assert_conformant()


def test_output_function_is_a_tool_call(telemetry: Telemetry) -> None:
    """An output function is user code the model calls like a tool (a hand-off to another
    agent, say): each call gets an ``execute_tool`` span, current while it runs. Pydantic AI 2.x
    runs it in the output hooks, 1.x through the tool hooks."""
    from pydantic_ai import ToolOutput

    expert: Agent[None, str] = Agent(
        scripted(text("42", "resp_expert"), name="expert-model"),
        name="expert",
        capabilities=[Tracing()],
    )

    async def hand_off(ctx: RunContext[None], question: str) -> str:
        if not question:
            raise ModelRetry("ask a question")
        return (await expert.run(question, usage=ctx.usage)).output

    router: Agent[None, str] = Agent(
        scripted(
            tool_calls(("hand_off", {"question": ""}, "out_1")),
            tool_calls(("hand_off", {"question": "meaning?"}, "out_2")),
            name="router-model",
        ),
        name="router",
        output_type=ToolOutput(hand_off, name="hand_off"),
        capabilities=[Tracing()],
    )

    assert router.run_sync("go").output == "42"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('router')} [INTERNAL]",
            "  chat router-model [CLIENT]",
            "  execute_tool hand_off [INTERNAL] gen_ai.tool.call.id=out_1"
            " threadline.retry.cause=model_retry",
            "  chat router-model [CLIENT] threadline.retry.cause=output_validation",
            "  execute_tool hand_off [INTERNAL] gen_ai.tool.call.id=out_2",
            f"    {agent_span('expert')} [INTERNAL]",
            "      chat expert-model [CLIENT]",
        ]
    )
    telemetry.assert_conformant()


def test_streamed_output_function_is_one_tool_call(telemetry: Telemetry) -> None:
    """Streamed, Pydantic AI calls the output function on every partial output as well: the
    call is recorded once, when it runs on the final output."""
    from pydantic_ai import ToolOutput

    partial: list[bool] = []

    def final(ctx: RunContext[None], x: int, y: str = "") -> str:
        partial.append(ctx.partial_output)
        return f"{x}{y}"

    async def stream_fn(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        name = info.output_tools[0].name
        yield {0: DeltaToolCall(name=name, json_args='{"x": 1', tool_call_id="out_1")}
        yield {0: DeltaToolCall(json_args=', "y": "ab')}
        yield {0: DeltaToolCall(json_args='c"}')}

    agent: Agent[None, str] = Agent(
        FunctionModel(stream_function=stream_fn, model_name="s"),
        name="streamer",
        output_type=ToolOutput(final, name="final_result"),
        capabilities=[Tracing()],
    )

    async def consume() -> str:
        async with agent.run_stream("go") as stream:
            async for _ in stream.stream_output(debounce_by=None):
                pass
            return await stream.get_output()

    assert asyncio.run(consume()) == "1abc"
    assert True in partial  # it did run on partial outputs
    assert partial[-1] is False
    assert telemetry.tree(attributes=(semconv.GEN_AI_TOOL_CALL_ID,)) == "\n".join(
        [
            f"{agent_span('streamer')} [INTERNAL]",
            "  chat s [CLIENT]",
            "  execute_tool final_result [INTERNAL] gen_ai.tool.call.id=out_1",
        ]
    )


def test_streamed_partial_output_failing_validation_is_no_call(telemetry: Telemetry) -> None:
    """A partial structured output misses fields: Pydantic AI's validation of it fails (on 1.x
    through the tool validation hooks) and is ignored. Leaving the stream there records no
    failed call."""
    from pydantic import BaseModel

    class Answer(BaseModel):
        a: int
        b: str

    async def stream_fn(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        name = info.output_tools[0].name
        yield {0: DeltaToolCall(name=name, json_args='{"a": 1, ', tool_call_id="out_1")}
        yield {0: DeltaToolCall(json_args='"b": "x"}')}

    agent: Agent[None, Answer] = Agent(
        FunctionModel(stream_function=stream_fn, model_name="s"),
        name="streamer",
        output_type=Answer,
        capabilities=[Tracing()],
    )

    async def first_partial() -> Answer:
        async with agent.run_stream("go") as stream:
            async for output in stream.stream_output(debounce_by=None):
                return output
        raise AssertionError("no output")

    assert asyncio.run(first_partial()).a == 1
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('streamer')} [INTERNAL]", "  chat s [CLIENT]"]
    )
    assert all(span.status_code != "ERROR" for span in telemetry.spans())


def test_tool_that_raises(telemetry: Telemetry) -> None:
    boom = ValueError("database down")
    agent: Agent[None, str] = Agent(
        scripted(tool_calls(("fetch", {}, "call_1"), input_tokens=3, output_tokens=1),
                 name="m"),
        name="fragile",
        capabilities=[Tracing()],
    )  # fmt: skip

    @agent.tool_plain
    def fetch() -> str:
        raise boom

    with pytest.raises(ValueError, match="database down") as raised:
        agent.run_sync("go")

    assert raised.value is boom
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('fragile')} [INTERNAL] !ERROR error.type=ValueError",
            "  chat m [CLIENT]",
            "  execute_tool fetch [INTERNAL] !ERROR error.type=ValueError",
        ]
    )
    telemetry.assert_conformant()


@dataclass
class Fallback(AbstractCapability[Any]):
    """Answers for any tool that raises (``on_tool_execute_error``), or raises ``replace``."""

    replace: Exception | None = None

    async def on_tool_execute_error(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, error: Exception
    ) -> Any:
        if self.replace is not None:
            raise self.replace
        return "cached forecast"


def _forecaster(*capabilities: AbstractCapability[Any]) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(
        scripted(tool_calls(("forecast", {}, "call_1")), text("done"), name="m"),
        name="forecaster",
        capabilities=list(capabilities),
    )

    @agent.tool_plain
    def forecast() -> str:
        raise ValueError("service down")

    return agent


@pytest.mark.parametrize("tracing_first", [True, False])
def test_a_tool_error_recovered_by_a_capability_is_no_failure(
    telemetry: Telemetry, capture_content: Any, tracing_first: bool
) -> None:
    """A capability's ``on_tool_execute_error`` that answers for a tool which raised makes its
    answer the call's result, as in Pydantic AI's own instrumentation. Pydantic AI 1.x runs
    that hook after ``wrap_tool_execute``, 2.x inside it."""
    tracing, fallback = Tracing(), Fallback()
    agent = _forecaster(*((tracing, fallback) if tracing_first else (fallback, tracing)))

    assert agent.run_sync("rain?").output == "done"
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('forecaster')} [INTERNAL]",
            "  chat m [CLIENT]",
            "  execute_tool forecast [INTERNAL]",
            "  chat m [CLIENT]",
        ]
    )
    tool = telemetry.find("execute_tool forecast")
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "cached forecast"
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@pytest.mark.parametrize("tracing_first", [True, False])
def test_a_tool_error_replaced_by_a_capability_is_the_calls_error(
    telemetry: Telemetry, tracing_first: bool
) -> None:
    """An ``on_tool_execute_error`` hook that raises another error for the tool's: that error
    ended the call (and the run), and is the one its span records."""
    replaced = KeyError("forecast")
    tracing, fallback = Tracing(), Fallback(replace=replaced)
    agent = _forecaster(*((tracing, fallback) if tracing_first else (fallback, tracing)))

    with pytest.raises(KeyError) as raised:
        agent.run_sync("rain?")

    assert raised.value is replaced
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('forecaster')} [INTERNAL] !ERROR error.type=KeyError",
            "  chat m [CLIENT]",
            "  execute_tool forecast [INTERNAL] !ERROR error.type=KeyError",
        ]
    )
    tool, invoke = telemetry.find("execute_tool forecast"), telemetry.spans()[-1]
    assert tool.end_ns <= invoke.end_ns
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def _model_down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    raise _exc.ModelHTTPError(503, "m", {"error": "overloaded"})


async def _stream_down(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    raise _exc.ModelHTTPError(503, "m", {"error": "overloaded"})
    yield ""  # pragma: no cover - an async generator that fails as its stream opens


@dataclass
class Backup(AbstractCapability[Any]):
    """Answers for a model request that failed (``on_model_request_error``), or raises
    ``replace``."""

    replace: Exception | None = None

    async def on_model_request_error(
        self, ctx: Any, *, request_context: Any, error: Exception
    ) -> Any:
        if self.replace is not None:
            raise self.replace
        return ModelResponse(
            parts=[TextPart("from the backup")],
            usage=RequestUsage(input_tokens=5, output_tokens=2),
            model_name="backup-model",
            provider_response_id="resp_backup",
            finish_reason="stop",
        )


RESPONSE_ATTRS = (
    semconv.GEN_AI_RESPONSE_MODEL,
    semconv.GEN_AI_RESPONSE_ID,
    semconv.GEN_AI_RESPONSE_FINISH_REASONS,
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("tracing_first", [True, False])
def test_a_model_error_recovered_by_a_capability_is_the_requests_response(
    telemetry: Telemetry, tracing_first: bool, streamed: bool
) -> None:
    """A capability's ``on_model_request_error`` that answers for a failed model request makes
    its response the request's: the ``chat`` span ends normally with that response's model,
    finish reasons and usage. Pydantic AI 2.x runs that hook inside ``wrap_model_request``, 1.x
    after it, where the span waits for the hook's outcome."""
    capabilities = [Tracing(), Backup()]
    model = FunctionModel(stream_function=_stream_down) if streamed else FunctionModel(_model_down)
    agent = Agent(
        model, name="backed", capabilities=capabilities if tracing_first else capabilities[::-1]
    )

    async def run() -> str:
        if not streamed:
            return (await agent.run("hi")).output
        async with agent.run_stream("hi") as result:
            return await result.get_output()

    assert asyncio.run(run()) == "from the backup"
    model_name = model.model_name
    assert telemetry.tree(attributes=RESPONSE_ATTRS) == "\n".join(
        [
            f"{agent_span('backed')} [INTERNAL] gen_ai.usage.input_tokens=5"
            " gen_ai.usage.output_tokens=2",
            f"  chat {model_name} [CLIENT] gen_ai.response.model=backup-model"
            " gen_ai.response.id=resp_backup gen_ai.response.finish_reasons=['stop']"
            " gen_ai.usage.input_tokens=5 gen_ai.usage.output_tokens=2",
        ]
    )
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@pytest.mark.parametrize("tracing_first", [True, False])
def test_a_model_error_replaced_by_a_capability_is_the_requests_error(
    telemetry: Telemetry, tracing_first: bool
) -> None:
    """An ``on_model_request_error`` hook that raises another error for the model's: that error
    ended the request (and the run), and is the one its span records, at the request's end."""
    replaced = KeyError("backup")
    capabilities = [Tracing(), Backup(replace=replaced)]
    agent = Agent(
        FunctionModel(_model_down, model_name="m"),
        name="backed",
        capabilities=capabilities if tracing_first else capabilities[::-1],
    )

    with pytest.raises(KeyError) as raised:
        agent.run_sync("hi")

    assert raised.value is replaced
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('backed')} [INTERNAL] !ERROR error.type=KeyError",
            "  chat m [CLIENT] !ERROR error.type=KeyError",
        ]
    )
    chat, invoke = telemetry.spans()
    assert chat.end_ns <= invoke.end_ns
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@dataclass
class RetryAround(AbstractCapability[Any]):
    """Makes a failed model request again, around the other capabilities' request hooks."""

    async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> Any:
        try:
            return await handler(request_context)
        except _exc.ModelHTTPError:
            return await handler(request_context)


@pytest.mark.skipif(V2, reason="2.x does not let a capability call its handler twice")
def test_a_model_error_retried_around_the_request_hooks_is_a_failed_request(
    telemetry: Telemetry,
) -> None:
    """A capability that makes a failed request again around ours: no hook recovered the first
    request, so its span is the failure it was, and the second one's span its answer."""
    calls = [0]

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls[0] += 1
        if calls[0] == 1:
            raise _exc.ModelHTTPError(503, "m", {"error": "overloaded"})
        return ModelResponse(parts=[TextPart("ok")], model_name="m2")

    agent = Agent(
        FunctionModel(flaky, model_name="m"), name="a", capabilities=[RetryAround(), Tracing()]
    )
    assert agent.run_sync("hi").output == "ok"
    assert telemetry.tree(attributes=(semconv.GEN_AI_RESPONSE_MODEL,)) == "\n".join(
        [
            f"{agent_span('a')} [INTERNAL]",
            "  chat m [CLIENT] !ERROR error.type=pydantic_ai.exceptions.ModelHTTPError",
            "  chat m [CLIENT] gen_ai.response.model=m",
        ]
    )
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_model_retry_is_not_a_failure(telemetry: Telemetry) -> None:
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("flaky", {"n": 1}, "call_1"), input_tokens=3, output_tokens=1),
            tool_calls(("flaky", {"n": 2}, "call_2"), input_tokens=5, output_tokens=1),
            text("done", input_tokens=7, output_tokens=1),
            name="m",
        ),
        name="retrier",
        capabilities=[Tracing()],
    )

    @agent.tool_plain(retries=2)
    def flaky(n: int) -> str:
        if n == 1:
            raise ModelRetry("n must be 2")
        return "ok"

    assert agent.run_sync("go").output == "done"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('retrier')} [INTERNAL]",
            "  chat m [CLIENT]",
            "  execute_tool flaky [INTERNAL] gen_ai.tool.call.id=call_1"
            " threadline.retry.cause=model_retry",
            "  chat m [CLIENT]",
            "  execute_tool flaky [INTERNAL] gen_ai.tool.call.id=call_2",
            "  chat m [CLIENT]",
        ]
    )
    telemetry.assert_conformant()


def _adder(*capabilities: Any, retries: int = 1) -> Agent[None, str]:
    """An agent whose first tool call has an argument that fails validation."""
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("add", {"a": "not-a-number", "b": 2}, "call_1")),
            tool_calls(("add", {"a": 1, "b": 2}, "call_2")),
            text("done"),
            name="m",
        ),
        name="adder",
        capabilities=list(capabilities),
    )

    @agent.tool_plain(retries=retries)
    def add(a: int, b: int) -> int:
        return a + b

    return agent


@dataclass
class Repair(AbstractCapability[Any]):
    """Recovers any tool call whose arguments fail validation with valid ones for ``add``."""

    async def on_tool_validate_error(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, error: Any
    ) -> Any:
        return {"a": 1, "b": 2}


INVALID_CALL = (
    "  execute_tool add [INTERNAL] gen_ai.tool.call.id=call_1 threadline.retry.cause=model_retry"
    " !ERROR error.type=pydantic_core._pydantic_core.ValidationError"
)


def test_tool_arguments_failing_validation_are_a_retried_call(telemetry: Telemetry) -> None:
    """A call whose arguments fail validation never runs the tool, yet it is an attempt the
    model is asked to redo: an error span, as Pydantic AI's own instrumentation records it."""
    assert _adder(Tracing()).run_sync("go").output == "done"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('adder')} [INTERNAL]",
            "  chat m [CLIENT]",
            INVALID_CALL,
            "  chat m [CLIENT]",
            "  execute_tool add [INTERNAL] gen_ai.tool.call.id=call_2",
            "  chat m [CLIENT]",
        ]
    )
    invalid = next(s for s in telemetry.spans() if s.status_code == "ERROR")
    # the validation error quotes the arguments (content, off by default): not in the span
    assert invalid.status_description == (
        "ValidationError: a: Input should be a valid integer, unable to parse string as an integer"
    )
    telemetry.assert_conformant()


def test_tool_arguments_failing_validation_past_their_retries(telemetry: Telemetry) -> None:
    agent = _adder(Tracing(), retries=0)
    with pytest.raises(_exc.UnexpectedModelBehavior, match="exceeded max retries"):
        agent.run_sync("go")
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('adder')} [INTERNAL] !ERROR"
            " error.type=pydantic_ai.exceptions.UnexpectedModelBehavior",
            "  chat m [CLIENT]",
            INVALID_CALL,
        ]
    )


def test_a_call_of_an_unknown_tool_is_a_refused_call(telemetry: Telemetry) -> None:
    """The model calls a tool no tool is named after: Pydantic AI asks it to retry without
    running anything or calling any hook. The call gets an ``execute_tool`` span, a retry that
    failed with Pydantic AI's cause (``unknown_tool``) as ``error.type`` and its message to the
    model as the description, as a call whose arguments fail validation gets one."""
    agent: Agent[None, str] = Agent(
        scripted(tool_calls(("lookup", {"q": "x"}, "call_1")), text("done"), name="m"),
        name="guesser",
        capabilities=[Tracing()],
    )

    @agent.tool_plain
    def search(q: str) -> str:
        return q

    assert agent.run_sync("go").output == "done"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('guesser')} [INTERNAL]",
            "  chat m [CLIENT]",
            "  execute_tool lookup [INTERNAL] gen_ai.tool.call.id=call_1"
            " threadline.retry.cause=model_retry !ERROR error.type=unknown_tool",
            "  chat m [CLIENT]",
        ]
    )
    refused = telemetry.find("execute_tool lookup")
    assert refused.status_description == "Unknown tool name: 'lookup'. Available tools: 'search'"
    first, second = (s for s in telemetry.spans() if s.name == "chat m")
    assert first.end_ns <= refused.start_ns <= refused.end_ns <= second.start_ns
    # the model made the name up: it stays off the metric
    (point,) = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert point["attributes"][semconv.ERROR_TYPE] == "unknown_tool"
    assert semconv.GEN_AI_TOOL_NAME not in point["attributes"]
    telemetry.assert_conformant()


@pytest.mark.skipif(not V2, reason="1.x counts such calls against the output retries")
def test_a_call_of_an_unknown_tool_past_its_retries(telemetry: Telemetry) -> None:
    """Refusing the unknown tool once more than its retries allow fails the run: the call that
    did it is a failed call too, with no retry."""
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("lookup", {}, "call_1")),
            tool_calls(("lookup", {}, "call_2")),
            text("done"),
            name="m",
        ),
        name="guesser",
        capabilities=[Tracing()],
    )

    @agent.tool_plain
    def search(q: str) -> str:
        return q

    with pytest.raises(_exc.UnexpectedModelBehavior, match="exceeded max retries"):
        agent.run_sync("go")
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('guesser')} [INTERNAL] !ERROR"
            " error.type=pydantic_ai.exceptions.UnexpectedModelBehavior",
            "  chat m [CLIENT]",
            "  execute_tool lookup [INTERNAL] gen_ai.tool.call.id=call_1"
            " threadline.retry.cause=model_retry !ERROR error.type=unknown_tool",
            "  chat m [CLIENT]",
            "  execute_tool lookup [INTERNAL] gen_ai.tool.call.id=call_2"
            " !ERROR error.type=unknown_tool",
        ]
    )
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_a_call_of_an_unknown_tool_beside_the_output(telemetry: Telemetry) -> None:
    """The model's last response gives the output and calls an unknown tool: the run ends with
    the output, and the refusal Pydantic AI wrote in its history is the call's record."""
    agent: Agent[None, int] = Agent(
        scripted(
            ModelResponse(
                parts=[
                    ToolCallPart("final_result", {"response": 1}, tool_call_id="call_1"),
                    ToolCallPart("lookup", {}, tool_call_id="call_2"),
                ]
            ),
            name="m",
        ),
        name="guesser",
        output_type=ToolOutput(int),
        capabilities=[Tracing()],
    )

    assert agent.run_sync("go").output == 1
    spans = telemetry.tree(attributes=(semconv.GEN_AI_TOOL_CALL_ID,)).splitlines()
    refused = (
        "  execute_tool lookup [INTERNAL] gen_ai.tool.call.id=call_2 !ERROR error.type=unknown_tool"
    )
    assert refused in spans
    assert spans[0] == f"{agent_span('guesser')} [INTERNAL]"
    telemetry.assert_conformant()


def test_a_refusal_from_an_earlier_run_is_not_this_runs_call(telemetry: Telemetry) -> None:
    """A run continuing a history whose last request refused a call records no span for it:
    that call was the earlier run's."""
    agent: Agent[None, str] = Agent(
        scripted(tool_calls(("lookup", {}, "call_1")), text("done"), name="m"),
        name="guesser",
        capabilities=[Tracing()],
    )
    history = agent.run_sync("go").all_messages()[:3]  # up to the refusal
    telemetry.span_exporter.clear()

    assert agent.run_sync(message_history=history).output == "done"
    assert [span.name for span in telemetry.spans()] == ["chat m", agent_span("guesser")]


def test_argument_validator_retry_is_not_a_failure(telemetry: Telemetry) -> None:
    """An argument validator raising ModelRetry asks for a retry as the tool itself would."""
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("add", {"a": 0, "b": 2}, "call_1")),
            tool_calls(("add", {"a": 1, "b": 2}, "call_2")),
            text("done"),
            name="m",
        ),
        name="adder",
        capabilities=[Tracing()],
    )

    def nonzero(ctx: RunContext[None], a: int, b: int) -> None:
        if a == 0:
            raise ModelRetry("a must not be 0")

    @agent.tool_plain(args_validator=nonzero)
    def add(a: int, b: int) -> int:
        return a + b

    assert agent.run_sync("go").output == "done"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_TOOL_CALL_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('adder')} [INTERNAL]",
            "  chat m [CLIENT]",
            "  execute_tool add [INTERNAL] gen_ai.tool.call.id=call_1"
            " threadline.retry.cause=model_retry",
            "  chat m [CLIENT]",
            "  execute_tool add [INTERNAL] gen_ai.tool.call.id=call_2",
            "  chat m [CLIENT]",
        ]
    )


def test_tool_arguments_recovered_by_a_capability_are_no_retry(telemetry: Telemetry) -> None:
    """A capability may recover a validation error after Tracing has seen it (hooks handling
    it run from the last capability to the first): the call then runs, once."""
    assert _adder(Repair(), Tracing()).run_sync("go").output == "done"
    calls = [s for s in telemetry.spans() if s.name == "execute_tool add"]
    assert [s.attributes[semconv.GEN_AI_TOOL_CALL_ID] for s in calls] == ["call_1", "call_2"]
    assert all(s.status_code == "UNSET" for s in calls)


def test_output_validation_retry(telemetry: Telemetry) -> None:
    agent: Agent[None, str] = Agent(
        scripted(text("maybe", "resp_1"), text("yes", "resp_2"), name="m"),
        name="validated",
        capabilities=[Tracing()],
        retries=2,
    )

    @agent.output_validator
    def must_be_sure(output: str) -> str:
        if output != "yes":
            raise ModelRetry("answer yes or no")
        return output

    assert agent.run_sync("sure?").output == "yes"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_RESPONSE_ID, semconv.THREADLINE_RETRY_CAUSE)
    ) == "\n".join(
        [
            f"{agent_span('validated')} [INTERNAL]",
            "  chat m [CLIENT] gen_ai.response.id=resp_1",
            "  chat m [CLIENT] gen_ai.response.id=resp_2 threadline.retry.cause=output_validation",
        ]
    )
    telemetry.assert_conformant()


def test_iter(telemetry: Telemetry) -> None:
    agent = weather_agent()

    async def drive() -> list[str]:
        kinds = []
        async with agent.iter("Weather in Paris?") as run:
            async for node in run:
                kinds.append(type(node).__name__)
        return kinds

    kinds = asyncio.run(drive())
    assert "CallToolsNode" in kinds
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('weather')} [INTERNAL]",
            "  chat weather-model [CLIENT]",
            "  execute_tool lookup_city [INTERNAL]",
            "  execute_tool lookup_weather [INTERNAL]",
            "  chat weather-model [CLIENT]",
        ]
    )


def test_session_baggage_on_every_span(telemetry: Telemetry) -> None:
    boss, _ = expert_and_boss()
    with threadline.session("sess-1", user_id="user-7"):
        boss.run_sync("What is the meaning of life?")

    spans = telemetry.spans()
    assert len(spans) == 6
    for span in spans:
        assert span.attributes[semconv.SESSION_ID] == "sess-1", span.name
        assert span.attributes[semconv.USER_ID] == "user-7", span.name


def test_no_context_left_attached(telemetry: Telemetry) -> None:
    weather_agent().run_sync("Weather in Paris?")
    assert threadline.current_run() is None


def test_fail_open(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("threadline bug")

    monkeypatch.setattr(threadline, "invoke_agent", broken)
    assert weather_agent().run_sync("Weather in Paris?").output == "Sunny in Paris, France"
    assert telemetry.spans() == []

    monkeypatch.undo()
    monkeypatch.setattr(threadline, "inference", broken)
    monkeypatch.setattr(threadline, "execute_tool", broken)
    assert weather_agent().run_sync("Weather in Paris?").output == "Sunny in Paris, France"
    assert telemetry.tree() == f"{agent_span('weather')} [INTERNAL]"


def test_content_conversion_failing_keeps_the_span(
    telemetry: Telemetry, capture_content: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadline.pydantic_ai import _content

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("threadline bug")

    monkeypatch.setattr(_content, "input_messages", broken)
    assert weather_agent().run_sync("Weather in Paris?").output == "Sunny in Paris, France"
    chats = [span for span in telemetry.spans() if span.name.startswith("chat")]
    assert len(chats) == 2  # both requests recorded and ended, without their input
    assert all("gen_ai.input.messages" not in span.attributes for span in chats)
    assert len(threadline.open_runs) == 0


def test_abandoned_stream_ends_every_span(telemetry: Telemetry) -> None:
    agent = Agent(streaming("a", "b", "c", "d"), name="quitter", capabilities=[Tracing()])

    async def first_chunk_only() -> None:
        async with agent.run_stream("hi") as stream:
            async for _delta in stream.stream_text(delta=True):
                break

    asyncio.run(first_chunk_only())

    # The caller stopped reading, which is no failure (Pydantic AI tears the run down by
    # cancelling its task); what was streamed so far is kept.
    assert telemetry.tree(attributes=(semconv.GEN_AI_USAGE_OUTPUT_TOKENS,)) == "\n".join(
        [
            f"{agent_span('quitter')} [INTERNAL] gen_ai.usage.output_tokens=4",
            "  chat streamer [CLIENT] gen_ai.usage.output_tokens=4",
        ]
    )
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    assert not telemetry.metric_points(semconv.METRIC_INVOKE_AGENT_DURATION)[0]["attributes"].get(
        semconv.ERROR_TYPE
    )


def test_iteration_stopped_early_is_no_error(telemetry: Telemetry) -> None:
    agent = weather_agent()

    async def first_node_only() -> None:
        async with agent.iter("Weather in Paris?") as run:
            async for _node in run:
                break

    asyncio.run(first_node_only())
    assert telemetry.tree() == f"{agent_span('weather')} [INTERNAL]"
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0


def _event_stream(agent: Agent[None, str], prompt: str) -> Any:
    """``run_stream_events(prompt)`` closed when the ``async with`` block is left: a context
    manager of its own on Pydantic AI 2.x, an async generator (closed by ``aclosing``) on 1.x."""
    events = agent.run_stream_events(prompt)
    return events if hasattr(events, "__aenter__") else contextlib.aclosing(events)


def test_event_stream_closed_early_is_no_error(telemetry: Telemetry) -> None:
    """run_stream_events: the consumer leaves at the first text delta; Pydantic AI cancels
    the run's task (2.x) or fails its next event (1.x), and that is how the run stopped, not a
    failure of it or its model call."""
    agent = Agent(streaming("a", "b", "c", "d"), name="q", capabilities=[Tracing()])

    async def first_delta() -> None:
        async with _event_stream(agent, "hi") as events:
            async for event in events:
                if type(event).__name__ == "PartDeltaEvent":
                    break
        assert threadline.current_run() is None
        await asyncio.sleep(0.05)  # on 1.x the run goes on to its next event

    asyncio.run(first_delta())
    assert [(s.name, s.status_code) for s in telemetry.spans()] == [
        ("chat streamer", "UNSET"),
        (agent_span("q"), "UNSET"),
    ]
    assert len(threadline.open_runs) == 0


def test_event_stream_closed_during_tool_call_is_no_error(telemetry: Telemetry) -> None:
    """Leaving run_stream_events while a tool runs: the tool call in flight ends without error
    too, whether the run is torn down at once (2.x cancels it) or goes on until the tool
    returns and fails at its next event (1.x)."""
    tool_started, tool_released = asyncio.Event(), asyncio.Event()

    async def stream_fn(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        yield {0: DeltaToolCall("lookup", '{"city": "Paris"}', tool_call_id="call_1")}

    agent = Agent(
        FunctionModel(stream_function=stream_fn, model_name="tools"),
        name="w",
        capabilities=[Tracing()],
    )

    @agent.tool_plain
    async def lookup(city: str) -> str:
        """Slow lookup."""
        tool_started.set()
        await tool_released.wait()
        return "sunny"

    async def leave_during_the_tool() -> None:
        async with _event_stream(agent, "Weather in Paris?") as events:
            async for event in events:
                if type(event).__name__ == "FunctionToolCallEvent":
                    await tool_started.wait()
                    break
        tool_released.set()
        await asyncio.sleep(0.05)

    asyncio.run(leave_during_the_tool())
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('w')} [INTERNAL]",
            "  chat tools [CLIENT]",
            "  execute_tool lookup [INTERNAL]",
        ]
    )
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("stop", ["timeout_waiting", "timeout_in_body", "cancel_in_body"])
def test_event_stream_consumer_timed_out_is_an_error(telemetry: Telemetry, stop: str) -> None:
    """A timeout or a task.cancel() around the consumer of run_stream_events cut the run short:
    an error, even though the stream is closed on the way out. The consumer is cancelled while
    it waits for an event, or while it handles one."""

    async def hang(messages: Any, info: Any) -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(30)
        yield "late"

    agent = Agent(
        FunctionModel(stream_function=hang, model_name="slow"), name="t", capabilities=[Tracing()]
    )

    in_body = asyncio.Event()

    async def consume(timeout: asyncio.Timeout | None = None) -> None:
        async with _event_stream(agent, "hi") as events:
            async for _event in events:
                if timeout is not None:
                    # from the first event on: the model request is under way, on a slow host too
                    if timeout.when() is None:
                        timeout.reschedule(asyncio.get_running_loop().time() + 0.1)
                    if stop == "timeout_waiting":
                        continue
                in_body.set()
                await asyncio.sleep(30)

    async def cut_short() -> None:
        if stop == "cancel_in_body":
            task = asyncio.create_task(consume())
            await in_body.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None) as timeout:
                    await consume(timeout)
        await asyncio.sleep(0.05)  # on 1.x the run goes on to its next event

    asyncio.run(cut_short())
    assert sorted((s.name, s.status_code) for s in telemetry.spans()) == [
        ("chat slow", "ERROR"),
        (agent_span("t"), "ERROR"),
    ]
    assert len(threadline.open_runs) == 0


def test_event_stream_consumer_timed_out_before_the_first_request(telemetry: Telemetry) -> None:
    """A timeout around the consumer of run_stream_events that lands while the run is still
    starting (here, a capability that takes its time before the run's body) fails the run:
    Pydantic AI cancels the run's task, as it does when the consumer closes the stream, and
    the agent span must not read that as a consumer that stopped early."""

    stalls = Stalls()

    class SlowStart(AbstractCapability[Any]):
        async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
            await stalls.stall(30)
            return await handler()

    agent = Agent(streaming("late"), name="t", capabilities=[Tracing(), SlowStart()])

    async def time_out() -> None:
        with contextlib.suppress(TimeoutError):
            async with stalls.timeout(), _event_stream(agent, "hi") as events:
                async for _event in events:
                    pass
        await asyncio.sleep(0.05)

    asyncio.run(time_out())
    [span] = telemetry.spans()
    assert (span.name, span.status_code) == (agent_span("t"), "ERROR")
    assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert len(threadline.open_runs) == 0


@pytest.mark.skipif(not V2, reason="1.x runs before_run in the caller's task")
@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_run_cancelled_in_a_before_run_hook_is_an_error(telemetry: Telemetry, how: str) -> None:
    """A timeout around the run, or a cancel of its task, that lands while a capability's
    ``before_run`` awaits: Pydantic AI 2.x cancels the task running ``wrap_run`` without
    reporting an error, as when its caller leaves early, but the caller is being cancelled
    itself: the run failed."""
    stalls = Stalls()
    stalled: list[asyncio.Event] = []

    class SlowSetup(AbstractCapability[Any]):
        async def before_run(self, ctx: Any) -> None:
            stalled[0].set()
            await stalls.stall(30)

    agent = Agent(TestModel(), name="setup", capabilities=[Tracing(), SlowSetup()])

    async def cut_short() -> None:
        stalled.append(asyncio.Event())
        if how == "timeout":
            await stalls.time_out(agent.run("hi"))
            return
        task = asyncio.create_task(agent.run("hi"))
        await stalled[0].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def in_a_busy_app() -> None:
        # other work goes on meanwhile: not every task of the loop is being cancelled
        other_work = asyncio.create_task(asyncio.sleep(60))
        try:
            await cut_short()
        finally:
            other_work.cancel()

    asyncio.run(in_a_busy_app())
    [span] = telemetry.spans()
    assert (span.name, span.status_code) == (agent_span("setup"), "ERROR")
    assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert len(threadline.open_runs) == 0


def test_cancelled_run_is_an_error(telemetry: Telemetry) -> None:
    async def impatient() -> None:
        requested = asyncio.Event()

        async def slow(messages: Any, info: Any) -> ModelResponse:
            requested.set()
            await asyncio.sleep(30)
            return ModelResponse(parts=[TextPart("late")])

        model = FunctionModel(slow, model_name="slow")
        agent = Agent(model, name="waiter", capabilities=[Tracing()])
        task = asyncio.create_task(agent.run("hi"))
        await requested.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(impatient())
    cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('waiter')} [INTERNAL]{cancelled}", f"  chat slow [CLIENT]{cancelled}"]
    )
    assert len(threadline.open_runs) == 0


def test_tool_calls_cancelled_by_a_failing_sibling(telemetry: Telemetry) -> None:
    """A tool call that fails ends the run, and Pydantic AI cancels the calls running beside
    it, a sub-agent's run in one of them included. As everywhere in threadline, a cancellation
    fails the runs it cut short unless what encloses them stopped early (its consumer closed
    it), and that is not the case here: the run failed. So they are errors, with
    ``error.type=asyncio.exceptions.CancelledError`` telling that they were cancelled rather
    than failed by themselves, and they end when they were cancelled."""

    helping = asyncio.Event()

    async def never(messages: Any, info: Any) -> ModelResponse:
        helping.set()
        await asyncio.sleep(30)
        return ModelResponse(parts=[TextPart("late")])

    helper = Agent(FunctionModel(never, model_name="slow"), name="helper", capabilities=[Tracing()])
    agent: Agent[None, str] = Agent(
        scripted(tool_calls(("ask_helper", {}, "call_1"), ("fetch", {}, "call_2")), name="m"),
        name="fragile",
        capabilities=[Tracing()],
    )

    @agent.tool_plain
    async def ask_helper() -> str:
        return (await helper.run("help")).output

    @agent.tool_plain
    async def fetch() -> str:
        await helping.wait()  # the helper's request is in flight
        raise ValueError("database down")

    with pytest.raises(ValueError, match="database down"):
        asyncio.run(agent.run("go"))

    cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('fragile')} [INTERNAL] !ERROR error.type=ValueError",
            "  chat m [CLIENT]",
            f"  execute_tool ask_helper [INTERNAL]{cancelled}",
            f"    {agent_span('helper')} [INTERNAL]{cancelled}",
            f"      chat slow [CLIENT]{cancelled}",
            "  execute_tool fetch [INTERNAL] !ERROR error.type=ValueError",
        ]
    )
    sibling, failed = (
        telemetry.find("execute_tool ask_helper"),
        telemetry.find("execute_tool fetch"),
    )
    assert failed.end_ns <= sibling.end_ns <= telemetry.spans()[-1].end_ns
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@pytest.mark.skipif(not V2, reason="runs cancel themselves or time out since 2.x")
@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_run_cancelled_by_itself_fails_with_what_its_caller_gets(
    telemetry: Telemetry, how: str
) -> None:
    """``RunContext.cancel()`` and a run's ``timeout`` tear the run down with a cancellation of
    its task, which Pydantic AI turns into ``RunCancelled`` or ``RunTimedOut`` for the caller:
    the agent span fails with that, the calls it cut short with the cancellation."""
    requested = asyncio.Event()

    async def slow(messages: Any, info: Any) -> ModelResponse:
        requested.set()
        await asyncio.sleep(30)
        return ModelResponse(parts=[TextPart("late")])

    agent = Agent(FunctionModel(slow, model_name="slow"), name="bounded", capabilities=[Tracing()])
    cancelling: list[asyncio.Task[None]] = []

    @agent.instructions
    async def cancel_once_requested(ctx: RunContext[None]) -> str:
        async def cancel() -> None:
            await requested.wait()
            ctx.cancel()

        if how == "cancel":
            cancelling.append(asyncio.create_task(cancel()))
        return "Be quick."

    expected = _exc.RunTimedOut if how == "timeout" else _exc.RunCancelled
    with pytest.raises(expected):
        # the timeout lands in the request: a slow host takes far less to get there
        asyncio.run(agent.run("hi", timeout=1.0 if how == "timeout" else None))

    cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('bounded')} [INTERNAL] !ERROR"
            f" error.type=pydantic_ai.exceptions.{expected.__name__}",
            f"  chat slow [CLIENT]{cancelled}",
        ]
    )
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_a_run_cut_off_by_the_loops_shutdown_is_an_error(telemetry: Telemetry) -> None:
    """``asyncio.run`` returns while a run is in flight: the loop cancels every task left,
    the run's too. Nobody stopped reading it, so it did not stop early: it was cut off."""

    async def leave_it_running() -> None:
        requested = asyncio.Event()

        async def slow(messages: Any, info: Any) -> ModelResponse:
            requested.set()
            await asyncio.sleep(30)
            return ModelResponse(parts=[TextPart("late")])

        agent = Agent(FunctionModel(slow, model_name="slow"), name="left", capabilities=[Tracing()])
        running.append(asyncio.create_task(agent.run("hi")))
        await requested.wait()

    running: list[asyncio.Task[Any]] = []
    asyncio.run(leave_it_running())
    # cancelled, or on 1.x at times failed by a stream another cancelled task closed first
    assert running[0].done()
    cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('left')} [INTERNAL]{cancelled}", f"  chat slow [CLIENT]{cancelled}"]
    )
    assert len(threadline.open_runs) == 0


def test_iteration_stopped_early_by_a_cancelled_consumer(telemetry: Telemetry) -> None:
    """A consumer being cancelled (a timeout) that runs an agent in its cleanup and leaves
    ``iter`` early, the only task in the loop: every task is cancelling, as when the loop
    shuts down, but the consumer stopped reading. 1.x runs it and tears it down early: no
    error. 2.x re-raises the consumer's cancellation at the first node: the run fails."""
    agent = Agent(TestModel(), name="cleanup", capabilities=[Tracing()])

    @agent.tool_plain
    def lookup(x: int) -> int:
        return x

    nodes: list[str] = []

    async def consumer() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            with contextlib.suppress(asyncio.CancelledError):
                async with agent.iter("hi") as run:
                    async for node in run:
                        nodes.append(type(node).__name__)
                        if Agent.is_call_tools_node(node):
                            break
            raise

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await consumer()

    asyncio.run(main())
    if V2:
        assert nodes == []
        cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
        assert telemetry.tree() == f"{agent_span('cleanup')} [INTERNAL]{cancelled}"
    else:
        assert nodes == ["UserPromptNode", "ModelRequestNode", "CallToolsNode"]
        assert telemetry.tree() == "\n".join(
            [f"{agent_span('cleanup')} [INTERNAL]", "  chat test [CLIENT]"]
        )
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("read", ["text", "output"])
def test_a_streamed_run_timed_out_ends_its_request_with_it(telemetry: Telemetry, read: str) -> None:
    """A timeout around ``run_stream`` while the request waits for its response: the run and
    the request in flight both fail with the cancellation, when the run ends. (Pydantic AI 1.x
    runs the streamed request in a task it neither cancels nor awaits then: the request's span
    used to stay open until the collector destroyed the task, and then failed with its
    ValueError.)"""

    stalls = Stalls()

    async def slow(messages: Any, info: Any) -> AsyncIterator[str]:
        await stalls.stall(30)
        yield "late"

    agent = Agent(
        FunctionModel(stream_function=slow, model_name="slow"), name="t", capabilities=[Tracing()]
    )

    async def cut_short() -> None:
        with contextlib.suppress(TimeoutError):
            async with stalls.timeout(), agent.run_stream("hi") as result:
                if read == "text":
                    async for _ in result.stream_text():
                        pass
                else:
                    await result.get_output()
        assert not trace.get_current_span().get_span_context().is_valid
        assert len(threadline.open_runs) == 0  # at once: before any collection

    asyncio.run(cut_short())
    cancelled = " !ERROR error.type=asyncio.exceptions.CancelledError"
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('t')} [INTERNAL]{cancelled}", f"  chat slow [CLIENT]{cancelled}"]
    )


def test_concurrent_runs_of_one_agent(telemetry: Telemetry) -> None:
    agent = weather_agent()

    async def both() -> None:
        await asyncio.gather(agent.run("Weather in Paris?"), agent.run("Weather in Paris?"))

    asyncio.run(both())

    one = "\n".join(
        [
            f"{agent_span('weather')} [INTERNAL]",
            "  chat weather-model [CLIENT]",
            "  execute_tool lookup_city [INTERNAL]",
            "  execute_tool lookup_weather [INTERNAL]",
            "  chat weather-model [CLIENT]",
        ]
    )
    assert telemetry.tree() == f"{one}\n---\n{one}"


@pytest.mark.parametrize("bound", [None, 1])
def test_runs_given_one_run_id_each_keep_their_spans(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, bound: int | None
) -> None:
    """Two runs of one agent given the same ``run_id`` (a durable engine re-running a run
    does so) and open at once: each hook is recorded beneath its own run, while both are open
    and after the later one ended first. Beyond the bound of runs open under one id, a run
    records its agent span only, and none of its calls under another run."""
    if "run_id" not in inspect.signature(Agent.run).parameters:
        pytest.skip("run_id is a Pydantic AI 2.x argument")
    if bound is not None:
        monkeypatch.setattr(_capability, "_MAX_SHARING", bound)
    in_tool = {prompt: asyncio.Event() for prompt in ("slow", "quick", "late")}
    released = {prompt: asyncio.Event() for prompt in ("slow", "quick", "late")}
    released["late"].set()

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("hold", {})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(answer, model_name="m"), name="a", capabilities=[Tracing()])

    @agent.tool
    async def hold(ctx: RunContext[None]) -> str:
        assert isinstance(ctx.prompt, str)
        in_tool[ctx.prompt].set()
        await released[ctx.prompt].wait()
        return "held"

    async def overlapping() -> None:
        slow = asyncio.create_task(agent.run("slow", run_id="shared"))
        await in_tool["slow"].wait()
        quick = asyncio.create_task(agent.run("quick", run_id="shared"))
        await in_tool["quick"].wait()
        released["slow"].set()
        await slow  # its second request is made while the quick run is open
        await agent.run("late", run_id="shared")  # and ends while the quick run is open
        released["quick"].set()
        await quick

    asyncio.run(overlapping())
    one = "\n".join(
        [
            f"{agent_span('a')} [INTERNAL]",
            "  chat m [CLIENT]",
            "  execute_tool hold [INTERNAL]",
            "  chat m [CLIENT]",
        ]
    )
    quick = one if bound is None else f"{agent_span('a')} [INTERNAL]"
    assert telemetry.tree() == f"{one}\n---\n{quick}\n---\n{one}"
    assert len(threadline.open_runs) == 0


def test_provider_names_follow_the_conventions(telemetry: Telemetry) -> None:
    class BedrockModel(FunctionModel):
        @property
        def system(self) -> str:
            return "bedrock"  # what Pydantic AI's BedrockConverseModel reports

    model = BedrockModel(lambda messages, info: ModelResponse(parts=[TextPart("ok")]))
    agent = Agent(model, name="b", capabilities=[Tracing()])
    agent.run_sync("hi")
    [chat] = [s for s in telemetry.spans() if s.name.startswith("chat")]
    assert chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "aws.bedrock"


def test_system_prompts_are_history_and_instructions_apart(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """System prompts are messages of the history (``system`` input messages, where they are);
    instructions are given apart from it (``gen_ai.system_instructions``)."""
    agent = Agent(
        scripted(text("ok"), text("again")),
        name="policy",
        capabilities=[Tracing()],
        system_prompt=["Follow the policy.", "Be kind."],
        instructions="Answer briefly.",
    )
    first = agent.run_sync("hi")
    agent.run_sync("more", message_history=first.all_messages())
    first_chat, second_chat = [s for s in telemetry.spans() if s.name.startswith("chat")]
    system = {
        "role": "system",
        "parts": [
            {"type": "text", "content": "Follow the policy."},
            {"type": "text", "content": "Be kind."},
        ],
    }
    hi = {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    assert json.loads(first_chat.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [system, hi]
    assert json.loads(second_chat.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        system,
        hi,
        {"role": "assistant", "parts": [{"type": "text", "content": "ok"}]},
        {"role": "user", "parts": [{"type": "text", "content": "more"}]},
    ]
    for chat in (first_chat, second_chat):
        assert json.loads(chat.attributes[semconv.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
            {"type": "text", "content": "Answer briefly."}
        ]
    telemetry.assert_conformant()


def _thinks_then_answers(seen: list[list[ModelMessage]], **kwargs: Any) -> FunctionModel:
    """A model whose first response holds only reasoning (no output, so Pydantic AI asks again
    with its ``no_output`` feedback) and whose next one answers; ``seen`` gets what it is sent."""
    from pydantic_ai.messages import ThinkingPart

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(messages)
        if len(seen) == 1:
            return ModelResponse(parts=[ThinkingPart("hmm")])
        return text("ok")

    return FunctionModel(fn, model_name="m", **kwargs)


def _as_sent(messages: list[ModelMessage]) -> list[tuple[str, str]]:
    """The (role, text) of each text the model was sent."""
    out: list[tuple[str, str]] = []
    for message in messages:
        for part in message.parts:
            role = {"system-prompt": "system", "user-prompt": "user"}.get(part.part_kind)
            if message.kind == "response":
                role = "assistant"
            out.append((role or part.part_kind, str(part.content)))
    return out


def _recorded(chat: Any) -> list[tuple[str, str]]:
    return [
        (message["role"], part["content"])
        for message in json.loads(chat.attributes[semconv.GEN_AI_INPUT_MESSAGES])
        for part in message["parts"]
    ]


@pytest.mark.skipif(not V2, reason="Pydantic AI 1.x sends the history as stored")
@pytest.mark.parametrize("inline_system_prompts", [True, False])
def test_input_messages_are_the_history_as_the_model_is_sent_it(
    telemetry: Telemetry, capture_content: Any, inline_system_prompts: bool
) -> None:
    """Pydantic AI 2.x prepares the history for the model (``Model.prepare_messages``): retry
    feedback in the voice its cause calls for (its own ``no_output`` text as a system prompt), a
    mid-conversation system prompt ``<system>``-tagged in a user prompt where the model has no
    system messages past the first. The input messages are that history, not the stored one."""
    from pydantic_ai.messages import ModelRequest, SystemPromptPart, UserPromptPart
    from pydantic_ai.profiles import ModelProfile

    seen: list[list[ModelMessage]] = []
    profile = ModelProfile(supports_inline_system_prompts=inline_system_prompts)
    agent = Agent(_thinks_then_answers(seen, profile=profile), name="t", capabilities=[Tracing()])
    history: list[ModelMessage] = [
        ModelRequest(parts=[SystemPromptPart("Be brief."), UserPromptPart("a")]),
        ModelResponse(parts=[TextPart("b")]),
        ModelRequest(parts=[SystemPromptPart("Now be formal.")]),
    ]
    assert agent.run_sync("hi", message_history=history).output == "ok"
    first, second = [s for s in telemetry.spans() if s.name == "chat m"]
    assert _recorded(first) == _as_sent(seen[0])
    assert _recorded(second) == [
        *_as_sent(seen[0]),
        ("assistant", "hmm"),
        ("system", "Please return text.")
        if inline_system_prompts
        else ("user", "<system>Please return text.</system>"),
    ]
    assert _recorded(second) == _as_sent(seen[1])
    framed = ("system", "Now be formal.")
    if not inline_system_prompts:
        framed = ("user", "<system>Now be formal.</system>")
    assert framed in _recorded(first)
    telemetry.assert_conformant()


@pytest.mark.skipif(not hasattr(_exc, "SkipModelRequest"), reason="no SkipModelRequest")
@pytest.mark.skipif(not V2, reason="RetryFeedbackPart is 2.x")
def test_no_output_feedback_is_a_system_message(telemetry: Telemetry, capture_content: Any) -> None:
    """A request answered before its history was prepared records the history as stored: Pydantic
    AI's own ``no_output`` feedback is a system message there too, the voice it reaches the model
    in (as in Pydantic AI's own instrumentation from its format version 6)."""

    @dataclass
    class AnswersRetries(AbstractCapability[Any]):
        async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> Any:
            if len(request_context.messages) > 1:
                raise _exc.SkipModelRequest(text("ok"))
            return await handler(request_context)

    seen: list[list[ModelMessage]] = []
    agent = Agent(_thinks_then_answers(seen), name="t", capabilities=[Tracing(), AnswersRetries()])
    assert agent.run_sync("hi").output == "ok"
    second = [s for s in telemetry.spans() if s.name == "chat m"][1]
    assert _recorded(second) == [
        ("user", "hi"),
        ("assistant", "hmm"),
        ("system", "Please return text."),
    ]
    telemetry.assert_conformant()


def test_media_urls_are_uri_parts_with_their_type_where_known(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """Media a prompt links to are ``uri`` parts of their modality; a URL whose type Pydantic AI
    cannot infer (no known extension, where asking for it raises) has no ``mime_type`` and does
    not cost the request its input messages."""
    from pydantic_ai import AudioUrl, BinaryContent, DocumentUrl, ImageUrl, VideoUrl

    agent = Agent(scripted(text("ok"), name="m"), name="t", capabilities=[Tracing()])
    agent.run_sync(
        [
            "Compare these.",
            ImageUrl("https://img.test/render"),
            ImageUrl("https://img.test/a.png"),
            DocumentUrl("https://docs.test/d.pdf"),
            AudioUrl("https://audio.test/a.mp3"),
            VideoUrl("https://video.test/v.mp4"),
            BinaryContent(b"%PDF", media_type="application/pdf"),
        ]
    )
    chat = telemetry.find("chat m")
    [message] = json.loads(chat.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert message["parts"] == [
        {"type": "text", "content": "Compare these."},
        {"type": "uri", "modality": "image", "uri": "https://img.test/render"},
        {
            "type": "uri",
            "modality": "image",
            "uri": "https://img.test/a.png",
            "mime_type": "image/png",
        },
        {
            "type": "uri",
            "modality": "document",
            "uri": "https://docs.test/d.pdf",
            "mime_type": "application/pdf",
        },
        {
            "type": "uri",
            "modality": "audio",
            "uri": "https://audio.test/a.mp3",
            "mime_type": "audio/mpeg",
        },
        {
            "type": "uri",
            "modality": "video",
            "uri": "https://video.test/v.mp4",
            "mime_type": "video/mp4",
        },
        {
            "type": "blob",
            "modality": "document",
            "content": "JVBERg==",
            "mime_type": "application/pdf",
        },
    ]
    telemetry.assert_conformant()


def test_uploaded_files_are_file_parts_and_cache_points_no_content(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """A file in the provider's storage is a ``file`` part by its id (with its type where
    known); a cache point only marks how far the provider may cache the prompt."""
    from pydantic_ai import CachePoint, UploadedFile

    agent = Agent(scripted(text("ok"), name="m"), name="t", capabilities=[Tracing()])
    agent.run_sync(
        [
            "Summarise these.",
            UploadedFile("file-abc123", "openai", media_type="application/pdf"),
            CachePoint(),
            UploadedFile("file-xyz789", "openai"),  # no type, none inferred from the id
        ]
    )
    [message] = json.loads(telemetry.find("chat m").attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert message["parts"] == [
        {"type": "text", "content": "Summarise these."},
        {
            "type": "file",
            "modality": "document",
            "file_id": "file-abc123",
            "mime_type": "application/pdf",
        },
        {"type": "file", "modality": "document", "file_id": "file-xyz789"},
    ]
    telemetry.assert_conformant(strict=True)


@pytest.mark.skipif(not V2, reason="compaction and speech parts are 2.x")
def test_compaction_and_speech_parts_in_messages(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """The provider's summary of the history is a ``compaction`` part; one the app wrote
    reaches the model as text, and speech as its transcript (as Pydantic AI sends them)."""
    from pydantic_ai import messages as pai_messages

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[
                pai_messages.CompactionPart("the user asked about Paris", id="cmp_1"),
                pai_messages.SpeechPart(speaker="assistant", transcript="It is sunny."),
            ]
        )

    agent = Agent(FunctionModel(answer), name="talker", capabilities=[Tracing()])
    history = [ModelRequest(parts=[pai_messages.CompactionPart("earlier: greetings")])]
    agent.run_sync("Weather?", message_history=history)

    chat = next(s for s in telemetry.spans() if s.name.startswith("chat"))
    [output] = json.loads(chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert output["parts"] == [
        {"type": "compaction", "id": "cmp_1", "content": "the user asked about Paris"},
        {"type": "text", "content": "It is sunny."},
    ]
    inputs = json.loads(chat.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert inputs == [  # the prompt joins the history's last request
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "earlier: greetings"},
                {"type": "text", "content": "Weather?"},
            ],
        }
    ]
    telemetry.assert_conformant(strict=True)


def _run_lookup(result: Any) -> None:
    """Run an agent whose one tool, ``lookup``, returns ``result``."""
    agent = Agent(
        scripted(tool_calls(("lookup", {}, "call_1")), text("done")),
        name="t",
        capabilities=[Tracing()],
    )

    @agent.tool_plain
    def lookup() -> Any:
        return result

    assert agent.run_sync("hi").output == "done"


def test_tool_return_records_what_the_model_sees(
    telemetry: Telemetry, capture_content: Any
) -> None:
    from pydantic_ai.messages import ToolReturn

    _run_lookup(ToolReturn(return_value={"v": 1}, metadata={"internal": 2}))
    tool = telemetry.find("execute_tool lookup")
    assert json.loads(tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]) == {"v": 1}


def test_media_a_tool_returns_are_recorded_as_parts(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """An image a tool returns (alone, or among its result's items) is a ``blob`` or ``uri``
    part, not Pydantic AI's object written out field by field."""
    from pydantic_ai import BinaryContent, ImageUrl

    png = b"\x89PNG\r\n"
    _run_lookup(BinaryContent(png, media_type="image/png"))
    _run_lookup(
        ["the chart", BinaryContent(png, media_type="image/png"), ImageUrl("https://i.test/a.png")]
    )
    alone, listed = (
        json.loads(span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT])
        for span in telemetry.spans()
        if span.name == "execute_tool lookup"
    )
    blob = {"type": "blob", "modality": "image", "content": "iVBORw0K", "mime_type": "image/png"}
    assert alone == blob
    assert listed == [
        "the chart",
        blob,
        {
            "type": "uri",
            "modality": "image",
            "uri": "https://i.test/a.png",
            "mime_type": "image/png",
        },
    ]
    telemetry.assert_conformant()


class _ProbingFails(str):
    """A tool result whose attribute hook raises something other than AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")


def test_tool_result_whose_attributes_raise_keeps_the_call(
    telemetry: Telemetry, capture_content: Any
) -> None:
    _run_lookup(_ProbingFails("sunny"))
    tool = telemetry.find("execute_tool lookup")
    assert tool.status_code == "UNSET"
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "sunny"
    # the next request's history holds it too, and keeps its messages
    *_, answer = (span for span in telemetry.spans() if span.name.startswith("chat"))
    *_, reply = json.loads(answer.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert reply["parts"][0]["response"] == "sunny"


def test_fallback_chain_names_the_model_that_answered(telemetry: Telemetry) -> None:
    """A FallbackModel's request starts as one to its first model; when that one fails and
    the next answers, the span and its metrics name the one that answered."""
    from pydantic_ai.models.fallback import FallbackModel

    class Anthropic(FunctionModel):
        @property
        def system(self) -> str:
            return "anthropic"

        @property
        def base_url(self) -> str:
            return "https://api.anthropic.com"

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "primary-model")

    primary = FunctionModel(down, model_name="primary-model")
    backup = Anthropic(lambda messages, info: text("ok", input_tokens=3), model_name="backup")
    agent = Agent(FallbackModel(primary, backup), name="f", capabilities=[Tracing()])
    assert agent.run_sync("hi").output == "ok"
    Agent(FallbackModel(backup, primary), name="g", capabilities=[Tracing()]).run_sync("hi")
    *attempts, first, second = (s for s in telemetry.spans() if s.name.startswith("chat"))
    if ATTEMPTS:
        # the model the chain moved on from: a model call of its own, failed, beside the
        # request's
        (attempt,) = attempts
        assert attempt.name == "chat primary-model"
        assert attempt.status_code == "ERROR"
        # as the request's span names the error it raised
        assert attempt.attributes[semconv.ERROR_TYPE] == "pydantic_ai.exceptions.ModelHTTPError"
        assert attempt.parent_span_id == first.parent_span_id
        assert first.start_ns <= attempt.start_ns <= attempt.end_ns <= first.end_ns
    assert first.name == "chat backup"
    assert first.attributes[semconv.GEN_AI_REQUEST_MODEL] == "backup"
    assert first.attributes[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert first.attributes[semconv.SERVER_ADDRESS] == "api.anthropic.com"
    assert first.status_code == "UNSET"
    assert second.name == "chat backup"  # the first model of the chain answered
    assert second.attributes[semconv.SERVER_ADDRESS] == "api.anthropic.com"
    *failed, point = sorted(
        telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION),
        key=lambda p: semconv.ERROR_TYPE not in p["attributes"],
    )
    assert [p["attributes"][semconv.GEN_AI_REQUEST_MODEL] for p in failed] == (
        ["primary-model"] if ATTEMPTS else []
    )
    assert point["count"] == 2
    assert point["attributes"][semconv.GEN_AI_REQUEST_MODEL] == "backup"
    assert point["attributes"][semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    telemetry.assert_conformant()


def _answered_points(telemetry: Telemetry) -> list[dict[str, Any]]:
    """Duration points of the requests that answered (not of the attempts they moved on from)."""
    points = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    return [p for p in points if semconv.ERROR_TYPE not in p["attributes"]]


def test_fallback_answer_is_told_by_name_and_provider() -> None:
    """Which model of a chain answered: a response names a dated version of it
    ("gpt-4o-2024-08-06" for "gpt-4o"), and two providers may serve one model name."""
    from types import SimpleNamespace as Model

    from threadline.pydantic_ai._capability import _answering_model

    mini = Model(model_name="gpt-4o-mini", system="openai")
    gpt4o = Model(model_name="gpt-4o", system="openai")
    azure = Model(model_name="gpt-4o", system="azure")
    chain = [mini, gpt4o, azure]

    def answered(name: str, provider: str | None) -> Any:
        return _answering_model(chain, Model(model_name=name, provider_name=provider))

    assert answered("gpt-4o-2024-08-06", "openai") is gpt4o
    assert answered("gpt-4o-mini-2024-07-18", "openai") is mini
    assert answered("gpt-4o", "azure") is azure
    assert answered("gpt-4o", "openai") is gpt4o
    assert answered("claude-3", "anthropic") is None


def test_fallback_to_a_model_without_a_server(telemetry: Telemetry) -> None:
    from pydantic_ai.models.fallback import FallbackModel

    class OpenAI(FunctionModel):
        @property
        def base_url(self) -> str:
            return "https://api.openai.com/v1"

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "primary")

    local = FunctionModel(lambda messages, info: text("ok"), model_name="local")
    chain = FallbackModel(OpenAI(down, model_name="primary"), local)
    Agent(chain, name="f", capabilities=[Tracing()]).run_sync("hi")
    *attempts, chat = (s for s in telemetry.spans() if s.name.startswith("chat"))
    assert chat.name == "chat local"
    assert semconv.SERVER_ADDRESS not in chat.attributes
    if ATTEMPTS:  # the one moved on from
        assert [a.attributes[semconv.SERVER_ADDRESS] for a in attempts] == ["api.openai.com"]
    (point,) = _answered_points(telemetry)
    assert semconv.SERVER_ADDRESS not in point["attributes"]


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def test_retried_tool_call_records_what_the_model_is_sent(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """Arguments that fail validation and a tool's ModelRetry are answered with retry feedback:
    the history records the text the model is sent (2.x: ``{"error": ...}`` JSON)."""
    sent: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        requests = [m for m in messages if m.kind == "request"]
        for part in requests[-1].parts:
            if part.part_kind in ("tool-return", "retry-prompt", "retry-feedback"):
                respond = getattr(part, "model_response_str", None) or part.model_response
                sent.append(respond())
        if len(requests) == 1:
            return tool_calls(("add", {"a": "not-a-number"}, "call_1"))
        if len(requests) == 2:
            return tool_calls(("add", {"a": 0}, "call_2"))
        return text("done")

    agent = Agent(FunctionModel(model, model_name="m"), name="r", capabilities=[Tracing()])

    @agent.tool_plain(retries=3)
    def add(a: int) -> int:
        if a == 0:
            raise ModelRetry("a must not be 0")
        return a + 1

    assert agent.run_sync("go").output == "done"
    last = [s for s in telemetry.spans() if s.name == "chat m"][-1]
    recorded = [
        part["response"]
        for message in json.loads(last.attributes[semconv.GEN_AI_INPUT_MESSAGES])
        if message["role"] == "tool"
        for part in message["parts"]
    ]
    assert len(sent) == 2
    assert recorded == [_json_or_text(s) for s in sent]
    if V2:
        assert recorded[1] == {"error": "a must not be 0"}
        assert recorded[0]["error"][0]["type"] == "int_parsing"


@pytest.mark.skipif(not V2, reason="TextContent and StructuredContent are 2.x")
def test_text_and_structured_content_are_text_parts(
    telemetry: Telemetry, capture_content: Any
) -> None:
    from pydantic_ai.messages import StructuredContent, TextContent

    agent = Agent(scripted(text("ok"), name="m"), name="t", capabilities=[Tracing()])
    page = StructuredContent({"page": "billing"}, tag="ui_state")
    agent.run_sync([TextContent("Refunds?", metadata={"source": "faq"}), page])
    chat = telemetry.find("chat m")
    assert json.loads(chat.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Refunds?"},
                {"type": "text", "content": page.content},
            ],
        }
    ]
    assert "billing" in page.content
    telemetry.assert_conformant()


class _Failing(Exception):
    pass


@pytest.mark.parametrize("when", ["before the first chunk", "mid-stream"])
@pytest.mark.parametrize("how", ["run_stream", "event_stream_handler"])
def test_a_stream_that_fails_fails_its_request_with_that_error(
    telemetry: Telemetry, when: str, how: str
) -> None:
    """The model's error reaches the stream's consumer, and Pydantic AI then cancels the
    request: the request's span fails with the model's error, not the cancellation."""
    if how == "run_stream" and when == "mid-stream" and not V2:
        pytest.skip("1.x run_stream ends the request at its first chunk")
    error = _exc.ModelHTTPError(502, "sm", "midstream")

    async def stream_fn(messages: Any, info: Any) -> AsyncIterator[str]:
        if when == "mid-stream":
            yield "partial "
            await asyncio.sleep(0.01)
        raise error

    agent = Agent(
        FunctionModel(stream_function=stream_fn, model_name="sm"),
        name="s",
        capabilities=[Tracing()],
    )

    async def handler(ctx: Any, events: AsyncIterator[Any]) -> None:
        async for _ in events:
            pass

    async def consume() -> None:
        if how == "run_stream":
            async with agent.run_stream("hi") as result:
                async for _ in result.stream_text():
                    pass
        else:
            await agent.run("hi", event_stream_handler=handler)

    with pytest.raises(_exc.ModelHTTPError) as raised:
        asyncio.run(consume())
    assert raised.value is error
    failed = " !ERROR error.type=pydantic_ai.exceptions.ModelHTTPError"
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('s')} [INTERNAL]{failed}", f"  chat sm [CLIENT]{failed}"]
    )
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("how", ["run_stream", "event_stream_handler"])
def test_a_usage_limit_stopping_a_stream_fails_the_run_not_the_request(
    telemetry: Telemetry, how: str
) -> None:
    """A token limit reached mid-stream (2.x checks it on every event) fails the run, as when
    it is checked after a response: the request was not the model's failure."""
    from pydantic_ai.usage import UsageLimits

    agent = Agent(streaming("many ", "tokens ", "here"), name="s", capabilities=[Tracing()])

    async def handler(ctx: Any, events: AsyncIterator[Any]) -> None:
        async for _ in events:
            pass

    async def consume() -> None:
        limits = UsageLimits(output_tokens_limit=1)
        if how == "run_stream":
            async with agent.run_stream("hi", usage_limits=limits) as result:
                async for _ in result.stream_text():
                    pass
        else:
            await agent.run("hi", usage_limits=limits, event_stream_handler=handler)

    with pytest.raises(_exc.UsageLimitExceeded):
        asyncio.run(consume())
    failed = " !ERROR error.type=pydantic_ai.exceptions.UsageLimitExceeded"
    assert telemetry.tree() == "\n".join(
        [f"{agent_span('s')} [INTERNAL]{failed}", "  chat streamer [CLIENT]"]
    )
    assert len(threadline.open_runs) == 0


class _Anthropic(FunctionModel):
    @property
    def system(self) -> str:
        return "anthropic"

    @property
    def base_url(self) -> str:
        return "https://api.anthropic.com"


class _OpenAI(FunctionModel):
    @property
    def base_url(self) -> str:
        return "https://api.openai.com/v1"


def _down(messages: Any, info: Any) -> ModelResponse:
    raise _exc.ModelHTTPError(503, "primary")


async def _down_stream(messages: Any, info: Any) -> AsyncIterator[str]:
    raise _exc.ModelHTTPError(503, "primary")
    yield ""


@pytest.mark.skipif(not V2, reason="the ModelFallback capability is 2.x")
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_stream"])
def test_model_fallback_capability_names_the_model_that_answered(
    telemetry: Telemetry, streamed: bool
) -> None:
    """ModelFallback moves the request on to its own models inside the request's hook: the span
    and its metrics name the model that answered."""
    from pydantic_ai.capabilities import ModelFallback

    async def backup_stream(messages: Any, info: Any) -> AsyncIterator[str]:
        yield "ok"

    primary = _OpenAI(_down, stream_function=_down_stream, model_name="gpt-4o")
    backup = _Anthropic(
        lambda messages, info: text("ok", input_tokens=3, output_tokens=1),
        stream_function=backup_stream,
        model_name="claude-sonnet-4-5",
    )
    agent = Agent(primary, name="f", capabilities=[Tracing(), ModelFallback(backup)])
    if streamed:

        async def consume() -> str:
            async with agent.run_stream("hi") as result:
                return await result.get_output()

        assert asyncio.run(consume()) == "ok"
    else:
        assert agent.run_sync("hi").output == "ok"
    chat = telemetry.find("chat claude-sonnet-4-5")
    assert chat.attributes[semconv.GEN_AI_REQUEST_MODEL] == "claude-sonnet-4-5"
    assert chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert chat.attributes[semconv.SERVER_ADDRESS] == "api.anthropic.com"
    assert chat.status_code == "UNSET"
    (point,) = _answered_points(telemetry)
    assert point["attributes"][semconv.GEN_AI_REQUEST_MODEL] == "claude-sonnet-4-5"
    assert point["attributes"][semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert point["attributes"][semconv.SERVER_ADDRESS] == "api.anthropic.com"
    if not streamed:
        tokens = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
        assert {p["attributes"][semconv.GEN_AI_REQUEST_MODEL] for p in tokens} == {
            "claude-sonnet-4-5"
        }
    telemetry.assert_conformant()


def test_fallback_chain_wrapped_by_a_capability(telemetry: Telemetry) -> None:
    """A capability's wrapper model (``get_wrapper_model``) serves the request for the same
    model: a wrapped fallback chain still names the model of the chain that answered."""
    from pydantic_ai.models.fallback import FallbackModel
    from pydantic_ai.models.wrapper import WrapperModel

    @dataclass
    class Wrapping(AbstractCapability[Any]):
        def get_wrapper_model(self, model: Any) -> Any:
            return WrapperModel(model)

    backup = _Anthropic(lambda messages, info: text("ok"), model_name="backup")
    chain = FallbackModel(_OpenAI(_down, model_name="primary"), backup)
    Agent(chain, name="w", capabilities=[Tracing(), Wrapping()]).run_sync("hi")
    chat = telemetry.find("chat backup")
    assert chat.attributes[semconv.SERVER_ADDRESS] == "api.anthropic.com"


def test_fallback_to_a_model_addressed_by_an_alias(telemetry: Telemetry) -> None:
    """A model addressed by an alias answers under another name (Anthropic's ``-latest``):
    the span names it by its provider."""
    from pydantic_ai.models import Model
    from pydantic_ai.models.fallback import FallbackModel

    class Aliased(Model):
        """Requested as ``-latest``, the API answers with the dated name."""

        model_name = "claude-3-5-sonnet-latest"
        system = "anthropic"
        base_url = "https://api.anthropic.com"

        async def request(self, *args: Any, **kwargs: Any) -> ModelResponse:
            response = text("ok", input_tokens=3)
            response.model_name = "claude-3-5-sonnet-20241022"
            response.provider_name = "anthropic"
            return response

    chain = FallbackModel(_OpenAI(_down, model_name="gpt-4o"), Aliased())
    assert Agent(chain, name="f", capabilities=[Tracing()]).run_sync("hi").output == "ok"
    chat = telemetry.find("chat claude-3-5-sonnet-latest")
    assert chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert chat.attributes[semconv.SERVER_ADDRESS] == "api.anthropic.com"
    assert chat.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "claude-3-5-sonnet-20241022"
    (point,) = _answered_points(telemetry)
    assert point["attributes"][semconv.GEN_AI_PROVIDER_NAME] == "anthropic"


def test_fallback_answer_by_an_alias_is_told_by_provider_and_attempts() -> None:
    from types import SimpleNamespace as Model

    from threadline.pydantic_ai._capability import _answering_model

    gpt4o = Model(model_name="gpt-4o", system="openai")
    mini = Model(model_name="gpt-4o-mini", system="openai")
    deployment = Model(model_name="prod-deployment", system="azure")
    claude = Model(model_name="claude-3-5-sonnet-latest", system="anthropic")
    chain = [gpt4o, mini, deployment, claude]

    def answered(name: str, provider: str | None, *failed: tuple[str, str]) -> Any:
        attempts = [Model(model_name=n, provider_name=p, kind="fallback") for n, p in failed]
        response = Model(model_name=name, provider_name=provider, failed_attempts=attempts)
        return _answering_model(chain, response)

    assert answered("claude-3-5-sonnet-20241022", "anthropic") is claude
    assert answered("gpt-4o-2024-08-06", "azure") is deployment
    # two OpenAI models: the first one the chain did not move on from
    assert answered("o-alias", "openai") is None
    assert answered("o-alias", "openai", ("gpt-4o", "openai")) is mini
    assert answered("o-alias", None, ("gpt-4o", "openai"), ("gpt-4o-mini", "openai")) is (
        deployment
    )
    assert answered("x", "google") is None


@pytest.mark.parametrize("repair_first", [True, False])
def test_tool_arguments_recovered_in_the_last_step_are_no_retry(
    telemetry: Telemetry, repair_first: bool
) -> None:
    """With the output in the same response, no request follows the repaired call: its running
    alone tells it was no retry."""
    from pydantic_ai.messages import ToolCallPart

    last = ModelResponse(
        parts=[
            ToolCallPart("add", {"a": "not a number", "b": 2}, tool_call_id="call_1"),
            ToolCallPart("final_result", {"response": 3}, tool_call_id="call_out"),
        ],
    )
    capabilities = [Repair(), Tracing()] if repair_first else [Tracing(), Repair()]
    agent: Agent[None, int] = Agent(
        scripted(last, name="m"),
        name="adder",
        output_type=int,
        end_strategy="exhaustive",
        capabilities=capabilities,
    )

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    assert asyncio.run(agent.run("go")).output == 3
    calls = [s for s in telemetry.spans() if s.name == "execute_tool add"]
    assert [s.status_code for s in calls] == ["UNSET"]


@pytest.mark.skipif(
    not hasattr(_exc, "RetryModelRequest"), reason="RetryModelRequest is new in 2.x"
)
def test_a_response_rejected_and_asked_again_is_a_billed_model_call(
    telemetry: Telemetry,
) -> None:
    """A capability rejecting a response (``RetryModelRequest`` from ``after_model_request``)
    has the request made again inside its hook: the rejected response was a model call that
    was billed, a ``chat`` span of its own whose tokens the agent's span and the token metric
    count, as the run's usage does."""
    calls = [0]

    def model(messages: Any, info: Any) -> ModelResponse:
        calls[0] += 1
        return text(f"answer {calls[0]}", input_tokens=10 * calls[0], output_tokens=calls[0])

    @dataclass
    class RejectFirst(AbstractCapability[Any]):
        async def after_model_request(
            self, ctx: Any, *, request_context: Any, response: Any
        ) -> Any:
            if calls[0] == 1:
                raise _exc.RetryModelRequest()
            return response

    agent = Agent(FunctionModel(model), name="a", capabilities=[Tracing(), RejectFirst()])
    result = agent.run_sync("hi")
    assert result.output == "answer 2"
    rejected, answered = (s for s in telemetry.spans() if s.name.startswith("chat"))
    assert rejected.attributes[semconv.THREADLINE_RETRY_CAUSE] == (
        semconv.RETRY_CAUSE_RESPONSE_REJECTED
    )
    assert rejected.status_code == "UNSET"  # the model answered; the app asked again
    assert rejected.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 10
    assert answered.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert semconv.THREADLINE_RETRY_CAUSE not in answered.attributes
    assert rejected.parent_span_id == answered.parent_span_id
    agent_run = telemetry.find(agent_span("a"))
    assert agent_run.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 30
    assert agent_run.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens) == (30, 3)
    tokens = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    inputs = [p for p in tokens if p["attributes"][semconv.GEN_AI_TOKEN_TYPE] == "input"]
    assert sum(p["sum"] for p in inputs) == 30
    telemetry.assert_conformant()


def test_every_model_of_a_chain_failing_is_a_failed_call_each(telemetry: Telemetry) -> None:
    """A fallback chain whose models all fail: the request fails, and each model it tried is a
    failed ``chat`` span of its own (2.x lists them on the error)."""
    from pydantic_ai.models.fallback import FallbackModel

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "down")

    chain = FallbackModel(
        FunctionModel(down, model_name="first"), FunctionModel(down, model_name="second")
    )
    with pytest.raises(_exc.FallbackExceptionGroup):
        Agent(chain, name="f", capabilities=[Tracing()]).run_sync("hi")
    chats = [s for s in telemetry.spans() if s.name.startswith("chat")]
    assert all(s.status_code == "ERROR" for s in chats)
    if ATTEMPTS:
        assert sorted(s.name for s in chats) == ["chat first", "chat first", "chat second"]
    telemetry.assert_conformant()


def _rejecting_chain(second: Any, **kwargs: Any) -> Any:
    """A chain whose first model's answer ("no", billed 7 input tokens) it rejects."""
    from pydantic_ai.models.fallback import FallbackModel

    def rejected(messages: Any, info: Any) -> ModelResponse:
        return text("no", input_tokens=7, output_tokens=1)

    def reject(response: ModelResponse) -> bool:
        return response.text == "no"

    return FallbackModel(
        FunctionModel(rejected, model_name="one"),
        second,
        fallback_on=[_exc.ModelAPIError, reject],
        **kwargs,
    )


def _input_tokens(telemetry: Telemetry) -> int:
    points = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    return int(
        sum(p["sum"] for p in points if p["attributes"][semconv.GEN_AI_TOKEN_TYPE] == "input")
    )


@pytest.mark.skipif(not ATTEMPTS, reason="Pydantic AI lists a request's attempts from 2.x")
def test_attempts_carried_on_an_error_the_chain_does_not_cover(telemetry: Telemetry) -> None:
    """A chain ended by an error its ``fallback_on`` does not cover: the rejected response
    before it was billed all the same, and Pydantic AI carries it on that error."""

    def boom(messages: Any, info: Any) -> ModelResponse:
        raise ValueError("boom")

    agent = Agent(
        _rejecting_chain(FunctionModel(boom, model_name="two")), name="a", capabilities=[Tracing()]
    )
    with pytest.raises(ValueError, match="boom"):
        agent.run_sync("hi")
    # the request's span starts as one to the chain's first model, and fails
    request, rejected = sorted(
        (s for s in telemetry.spans() if s.name == "chat one"), key=lambda s: s.status_code
    )
    assert request.status_code == "ERROR"
    assert rejected.status_code == "UNSET"
    assert rejected.attributes[semconv.THREADLINE_RETRY_CAUSE] == (
        semconv.RETRY_CAUSE_RESPONSE_REJECTED
    )
    assert rejected.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert _input_tokens(telemetry) == 7


@pytest.mark.skipif(not ATTEMPTS, reason="Pydantic AI lists a request's attempts from 2.x")
def test_a_nested_agents_failed_attempts_are_its_own(telemetry: Telemetry) -> None:
    """A capability's hook runs another agent whose chain fails throughout: its attempts are
    recorded under that agent's run, not again under the run whose request its error passes."""
    from pydantic_ai.models.fallback import FallbackModel

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "down")

    guard = Agent(
        FallbackModel(FunctionModel(down, model_name="g1"), FunctionModel(down, model_name="g2")),
        name="guard",
        capabilities=[Tracing()],
    )

    @dataclass
    class Guardrail(AbstractCapability[Any]):
        async def before_model_request(self, ctx: Any, request_context: Any) -> Any:
            await guard.run("check")
            return request_context

    main = Agent(
        FunctionModel(lambda messages, info: text("ok"), model_name="main"),
        name="main",
        capabilities=[Tracing(), Guardrail()],
    )
    with pytest.raises(_exc.FallbackExceptionGroup):
        main.run_sync("hi")
    guard_run = telemetry.find(agent_span("guard"))
    attempts = [s for s in telemetry.spans() if s.name in ("chat g1", "chat g2")]
    # g1 is also the name of the guard's request, which starts as one to its chain's first model
    assert sorted(s.name for s in attempts) == ["chat g1", "chat g1", "chat g2"]
    assert {s.parent_span_id for s in attempts} == {guard_run.span_id}


@pytest.mark.skipif(not ATTEMPTS, reason="Pydantic AI lists a request's attempts from 2.x")
def test_a_nested_chain_failing_is_no_model_call_of_its_own(telemetry: Telemetry) -> None:
    """A chain within a chain: its models' attempts are model calls, the inner chain's failure
    (listed beside them) is none."""
    from pydantic_ai.models.fallback import FallbackModel

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "down")

    inner = FallbackModel(
        FunctionModel(down, model_name="a1"), FunctionModel(down, model_name="a2")
    )
    outer = FallbackModel(
        inner,
        FunctionModel(lambda messages, info: text("ok"), model_name="b"),
        fallback_on=(_exc.ModelAPIError, _exc.FallbackExceptionGroup),
    )
    Agent(outer, name="a", capabilities=[Tracing()]).run_sync("hi")
    names = sorted(s.name for s in telemetry.spans() if s.name.startswith("chat"))
    assert names == ["chat a1", "chat a2", "chat b"]


@pytest.mark.skipif(not ATTEMPTS, reason="Pydantic AI lists a request's attempts from 2.x")
def test_an_attempt_has_the_server_of_the_model_it_names(telemetry: Telemetry) -> None:
    """Two models of a chain whose names share a prefix: each attempt has its own's server."""
    from pydantic_ai.models.fallback import FallbackModel

    class Served(FunctionModel):
        def __init__(self, *args: Any, base_url: str, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._served_at = base_url

        @property
        def base_url(self) -> str:
            return self._served_at

        @property
        def system(self) -> str:
            return "openai"

    def down(messages: Any, info: Any) -> ModelResponse:
        raise _exc.ModelHTTPError(503, "down")

    chain = FallbackModel(
        Served(down, model_name="gpt-4o", base_url="https://proxy.internal/v1"),
        Served(down, model_name="gpt-4o-mini", base_url="https://api.openai.com/v1"),
        Served(lambda m, i: text("ok"), model_name="c", base_url="https://api.openai.com/v1"),
    )
    Agent(chain, name="a", capabilities=[Tracing()]).run_sync("hi")
    servers = {
        s.name: s.attributes.get(semconv.SERVER_ADDRESS)
        for s in telemetry.spans()
        if s.status_code == "ERROR"
    }
    assert servers == {"chat gpt-4o": "proxy.internal", "chat gpt-4o-mini": "api.openai.com"}


@pytest.mark.skipif(
    not ATTEMPTS or not hasattr(ModelResponse, "state"),
    reason="suspended responses are new in 2.x",
)
def test_a_resumed_response_counts_only_what_the_resuming_run_billed(
    telemetry: Telemetry,
) -> None:
    """A run resuming a suspended response from history (a background job): the attempts and
    usage of that response were the suspending run's, which recorded them."""
    from pydantic_ai.output import PendingModelResponse

    class Pollable(FunctionModel):
        def continuation_delay(self, response: Any) -> float | None:
            return 0.0 if response.state == "suspended" else None

    polls = [0]

    def job(messages: Any, info: Any) -> ModelResponse:
        polls[0] += 1
        if polls[0] == 1:
            return ModelResponse(
                parts=[],
                usage=RequestUsage(input_tokens=100),
                state="suspended",
                provider_response_id="job1",
            )
        return ModelResponse(
            parts=[TextPart("done")],
            usage=RequestUsage(input_tokens=100, output_tokens=5),
            provider_response_id="job1",
        )

    agent = Agent(
        _rejecting_chain(Pollable(job, model_name="backup")),
        name="a",
        output_type=[str, PendingModelResponse],
        capabilities=[Tracing()],
    )
    first = agent.run_sync("hi")
    second = agent.run_sync(message_history=first.all_messages())
    assert second.output == "done"
    assert [s.name for s in telemetry.spans()].count("chat one") == 1  # the suspending run's
    assert _input_tokens(telemetry) == first.usage.input_tokens + second.usage.input_tokens
