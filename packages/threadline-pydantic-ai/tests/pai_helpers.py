"""Deterministic Pydantic AI models for the tests (FunctionModel scripts) and version facts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

PYDANTIC_AI_VERSION = tuple(int(p) for p in version("pydantic-ai-slim").split(".")[:2])
# RunContext.agent (so an explicitly added Tracing() knows the agent's name) exists since 1.76.
RUN_CONTEXT_HAS_AGENT = "agent" in getattr(RunContext, "__dataclass_fields__", {})
V2 = PYDANTIC_AI_VERSION >= (2, 0)


def agent_span(name: str, *, explicit: bool = True) -> str:
    """The span name of agent ``name`` (an explicit ``Tracing()`` on 1.71-1.75 has no name)."""
    if explicit and not RUN_CONTEXT_HAS_AGENT:
        return "invoke_agent"
    return f"invoke_agent {name}"


def _requests(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if getattr(m, "kind", None) == "request")


def scripted(
    *responses: ModelResponse | Callable[[list[ModelMessage]], ModelResponse],
    name: str = "scripted",
) -> FunctionModel:
    """A FunctionModel answering the n-th request of a run with the n-th response."""

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = responses[min(_requests(messages), len(responses)) - 1]
        return step(messages) if callable(step) else step

    return FunctionModel(fn, model_name=name)


def tool_calls(*calls: tuple[str, dict[str, Any], str], **usage: int) -> ModelResponse:
    return ModelResponse(
        parts=[ToolCallPart(name, args, tool_call_id=call_id) for name, args, call_id in calls],
        usage=RequestUsage(**usage),
        provider_response_id="resp_tools",
        finish_reason="tool_call",
    )


def text(content: str, response_id: str = "resp_text", **usage: int) -> ModelResponse:
    return ModelResponse(
        parts=[TextPart(content)],
        usage=RequestUsage(**usage),
        provider_response_id=response_id,
        finish_reason="stop",
    )


def streaming(*chunks: str, name: str = "streamer") -> FunctionModel:
    async def stream_fn(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        for chunk in chunks:
            yield chunk

    return FunctionModel(stream_function=stream_fn, model_name=name)
