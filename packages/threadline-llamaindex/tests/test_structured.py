"""Structured output: the requested output type, and the output class called as a tool."""

# No `from __future__ import annotations`: LlamaIndex 0.12.0 validates tool schemas as types.

import asyncio
import json
from typing import Any

import httpx
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import BaseTool, ToolMetadata, ToolOutput
from llama_index.core.tools.calling import acall_tool, call_tool
from pydantic import BaseModel

from threadline.testing import Telemetry


class City(BaseModel):
    city: str


def _openai(requests: list[dict[str, Any]], **kwargs: Any) -> Any:
    """OpenAI's LLM against an in-process transport that answers ``{"city": "Paris"}``."""
    from llama_index.llms.openai import OpenAI

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        message: dict[str, Any] = {"role": "assistant", "content": '{"city": "Paris"}'}
        if body.get("tools"):
            function = {"name": "City", "arguments": '{"city": "Paris"}'}
            call = {"id": "call_1", "type": "function", "function": function}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [choice],
                "usage": usage,
            },
        )

    return OpenAI(
        model="gpt-4o-mini",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        **kwargs,
    )


def test_requested_json_output_is_the_output_type(telemetry: Telemetry) -> None:
    """A ``response_format`` (per call, or in the model's ``additional_kwargs``; what
    ``structured_predict`` sends on the releases that use OpenAI's structured outputs) is the
    request's ``gen_ai.output.type``."""
    from llama_index.core.prompts import PromptTemplate

    requests: list[dict[str, Any]] = []
    messages = [ChatMessage(role="user", content="Which city?")]
    _openai(requests).chat(messages, response_format={"type": "json_object"})
    _openai(requests, additional_kwargs={"response_format": {"type": "json_object"}}).chat(messages)
    _openai(requests).chat(messages, response_format={"type": "text"})
    _openai(requests).chat(messages)
    structured = _openai(requests).structured_predict(City, PromptTemplate("Which city?"))
    assert structured.city == "Paris"
    spans = [s for s in telemetry.spans() if s.name == "chat gpt-4o-mini"]
    output_types = [s.attributes.get("gen_ai.output.type") for s in spans]
    assert output_types[:4] == ["json", "json", "text", None]
    # json_schema where structured_predict asks for it, none where it calls a tool instead
    asked = "response_format" in requests[-1]
    assert output_types[4] == ("json" if asked else None)
    telemetry.assert_conformant()


class _KeywordTool(BaseTool):
    """A one-parameter tool that takes its argument only as a keyword."""

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="lookup", description="Looks a city up.", fn_schema=City)

    def __call__(self, *args: Any, **kwargs: Any) -> ToolOutput:
        if args:
            raise TypeError("keywords only")
        city = kwargs["city"]
        if city == "Atlantis":
            raise LookupError(city)
        content = f"found {city}"
        return ToolOutput(content=content, tool_name="lookup", raw_input=kwargs, raw_output=None)


def test_tool_called_again_with_keywords_is_one_tool_call(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """LlamaIndex's ``call_tool`` calls a one-parameter tool positionally and, when that
    raises, again with keywords: one tool call, one span, failed only if the retry fails."""
    assert call_tool(_KeywordTool(), {"city": "Paris"}).content == "found Paris"
    assert call_tool(_KeywordTool(), {"city": "Atlantis"}).is_error
    assert (
        telemetry.tree(attributes=("gen_ai.tool.call.arguments", "gen_ai.tool.call.result"))
        == """\
execute_tool lookup [INTERNAL] gen_ai.tool.call.arguments={"city":"Paris"} \
gen_ai.tool.call.result=found Paris
---
execute_tool lookup [INTERNAL] gen_ai.tool.call.arguments={"city":"Atlantis"} \
!ERROR error.type=LookupError"""
    )
    telemetry.assert_conformant()


def test_tool_whose_keyword_call_cannot_be_made_fails_once(telemetry: Telemetry) -> None:
    """``acall_tool`` retries through an adapter that takes no such keyword: the retry fails
    before any span, so the positional call's span is the failed call."""
    output = asyncio.run(acall_tool(_KeywordTool(), {"city": "Oslo"}))
    assert output.is_error
    assert telemetry.tree() == "execute_tool lookup [INTERNAL] !ERROR error.type=TypeError"


def test_structured_predict_through_a_tool_is_one_tool_call(telemetry: Telemetry) -> None:
    """A FunctionCallingProgram calls the output class as a tool (positionally first, on the
    releases that retry every tool): one successful ``execute_tool`` span."""
    from llama_index.core.llms.llm import PydanticProgramMode
    from llama_index.core.prompts import PromptTemplate

    llm = _openai([], pydantic_program_mode=PydanticProgramMode.FUNCTION)
    assert llm.structured_predict(City, PromptTemplate("Which city?")).city == "Paris"
    assert (
        telemetry.tree()
        == """\
invoke_workflow [INTERNAL]
  chat gpt-4o-mini [CLIENT]
  execute_tool City [INTERNAL]"""
    )
    telemetry.assert_conformant()
