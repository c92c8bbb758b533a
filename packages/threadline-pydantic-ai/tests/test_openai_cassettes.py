"""Agents on OpenAI's chat completions API, replayed offline from hand-written vcrpy cassettes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr
from openai import AsyncOpenAI
from pai_helpers import agent_span
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import threadline
from threadline import semconv
from threadline.pydantic_ai import Tracing
from threadline.testing import Telemetry

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "pydantic_ai"
REPLAY = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path", "query"],
)


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> Iterator[Any]:
    name = request.node.get_closest_marker("cassette").args[0]
    with REPLAY.use_cassette(f"{name}.yaml") as played:
        yield played
    assert played.all_played, "every recorded interaction was requested"


def openai_model(name: str = "gpt-4o-mini") -> OpenAIChatModel:
    client = AsyncOpenAI(api_key="test-key", max_retries=0)
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))


CHAT_ATTRS = (
    semconv.GEN_AI_PROVIDER_NAME,
    semconv.GEN_AI_RESPONSE_MODEL,
    semconv.GEN_AI_RESPONSE_ID,
    semconv.GEN_AI_RESPONSE_FINISH_REASONS,
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    semconv.GEN_AI_TOOL_CALL_ID,
)


@pytest.mark.cassette("tool_agent")
def test_tool_calling_agent(telemetry: Telemetry, cassette: Any) -> None:
    agent: Agent[None, str] = Agent(openai_model(), name="guide", capabilities=[Tracing()])

    @agent.tool_plain
    def get_city(place: str) -> str:
        """City a landmark is in."""
        return "Paris"

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "sunny"

    result = agent.run_sync("Weather at the Eiffel Tower?")

    assert result.output == "It is sunny at the Eiffel Tower."
    assert telemetry.tree(attributes=CHAT_ATTRS) == "\n".join(
        [
            f"{agent_span('guide')} [INTERNAL] gen_ai.usage.input_tokens=160"
            " gen_ai.usage.output_tokens=42",
            "  chat gpt-4o-mini [CLIENT] gen_ai.provider.name=openai"
            " gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.response.id=chatcmpl-tools-1"
            " gen_ai.response.finish_reasons=['tool_call'] gen_ai.usage.input_tokens=60"
            " gen_ai.usage.output_tokens=30 gen_ai.usage.cache_read.input_tokens=16"
            " gen_ai.usage.reasoning.output_tokens=4",
            "  execute_tool get_city [INTERNAL] gen_ai.tool.call.id=call_city",
            "  execute_tool get_weather [INTERNAL] gen_ai.tool.call.id=call_weather",
            "  chat gpt-4o-mini [CLIENT] gen_ai.provider.name=openai"
            " gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.response.id=chatcmpl-tools-2"
            " gen_ai.response.finish_reasons=['stop'] gen_ai.usage.input_tokens=100"
            " gen_ai.usage.output_tokens=12",
        ]
    )
    chat = telemetry.spans()[0]
    assert chat.attributes[semconv.SERVER_ADDRESS] == "api.openai.com"
    assert chat.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    telemetry.assert_conformant()


@pytest.mark.cassette("stream")
def test_streamed_run(telemetry: Telemetry, cassette: Any) -> None:
    agent: Agent[None, str] = Agent(openai_model(), name="greeter", capabilities=[Tracing()])

    async def consume() -> list[str]:
        async with agent.run_stream("Greet Paris") as stream:
            return [delta async for delta in stream.stream_text(delta=True)]

    deltas = asyncio.run(consume())

    assert "".join(deltas) == "Bonjour de Paris"
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_REQUEST_STREAM, *CHAT_ATTRS[2:8])
    ) == "\n".join(
        [
            f"{agent_span('greeter')} [INTERNAL] gen_ai.usage.input_tokens=12"
            " gen_ai.usage.output_tokens=3",
            "  chat gpt-4o-mini [CLIENT] gen_ai.request.stream=True"
            " gen_ai.response.id=chatcmpl-stream gen_ai.response.finish_reasons=['stop']"
            " gen_ai.usage.input_tokens=12 gen_ai.usage.output_tokens=3"
            " gen_ai.usage.cache_read.input_tokens=4 gen_ai.usage.reasoning.output_tokens=1",
        ]
    )
    chat = telemetry.find("chat gpt-4o-mini")
    assert chat.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    (ttfc,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttfc["count"] == 1
    assert ttfc["attributes"][semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    telemetry.assert_conformant()


@pytest.mark.cassette("delegation")
def test_delegating_agent(telemetry: Telemetry, cassette: Any) -> None:
    expert: Agent[None, str] = Agent(
        openai_model("gpt-4o-mini"), name="expert", capabilities=[Tracing()]
    )
    boss: Agent[None, str] = Agent(openai_model("gpt-4o"), name="boss", capabilities=[Tracing()])

    @boss.tool
    async def ask_expert(ctx: RunContext[None], question: str) -> str:
        """Ask the expert agent."""
        return (await expert.run(question, usage=ctx.usage)).output

    assert boss.run_sync("What is the capital of France?").output == "The expert says: Paris."
    tree = telemetry.tree(
        attributes=(
            semconv.GEN_AI_RESPONSE_ID,
            semconv.GEN_AI_TOOL_CALL_ID,
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        )
    )
    assert tree == "\n".join(
        [
            f"{agent_span('boss')} [INTERNAL] gen_ai.usage.input_tokens=100"
            " gen_ai.usage.output_tokens=16",
            "  chat gpt-4o [CLIENT] gen_ai.response.id=chatcmpl-boss-1"
            " gen_ai.usage.input_tokens=40 gen_ai.usage.output_tokens=10",
            "  execute_tool ask_expert [INTERNAL] gen_ai.tool.call.id=call_ask",
            f"    {agent_span('expert')} [INTERNAL] gen_ai.usage.input_tokens=15"
            " gen_ai.usage.output_tokens=1",
            "      chat gpt-4o-mini [CLIENT] gen_ai.response.id=chatcmpl-expert-1"
            " gen_ai.usage.input_tokens=15 gen_ai.usage.output_tokens=1",
            "  chat gpt-4o [CLIENT] gen_ai.response.id=chatcmpl-boss-2"
            " gen_ai.usage.input_tokens=60 gen_ai.usage.output_tokens=6",
        ]
    )
    telemetry.assert_conformant()


@pytest.mark.cassette("server_error")
def test_provider_error(telemetry: Telemetry, cassette: Any) -> None:
    from pydantic_ai.exceptions import ModelHTTPError

    agent: Agent[None, str] = Agent(openai_model(), name="unlucky", capabilities=[Tracing()])
    with pytest.raises(ModelHTTPError) as raised:
        agent.run_sync("hello")

    assert raised.value.status_code == 500
    # ModelHTTPError itself on 1.x, its ModelServerError subclass on 2.x: the class raised
    kind = threadline.error_type(raised.value)
    assert kind in (
        "pydantic_ai.exceptions.ModelHTTPError",
        "pydantic_ai.exceptions.ModelServerError",
    )
    assert telemetry.tree() == "\n".join(
        [
            f"{agent_span('unlucky')} [INTERNAL] !ERROR error.type={kind}",
            f"  chat gpt-4o-mini [CLIENT] !ERROR error.type={kind}",
        ]
    )
    (duration,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["attributes"][semconv.ERROR_TYPE] == kind
    telemetry.assert_conformant()
