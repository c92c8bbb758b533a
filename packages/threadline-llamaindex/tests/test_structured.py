"""Structured output: the requested output type, and the output class called as a tool."""

# No `from __future__ import annotations`: LlamaIndex 0.12.0 validates tool schemas as types.

import asyncio
import json
from typing import Any

import httpx
import pytest
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import BaseTool, ToolMetadata, ToolOutput
from llama_index.core.tools.calling import acall_tool, call_tool
from pydantic import BaseModel

import threadline.llamaindex
from threadline._registry import open_runs
from threadline.testing import Telemetry


class City(BaseModel):
    city: str


def _openai(requests: list[dict[str, Any]], **kwargs: Any) -> Any:
    """OpenAI's LLM against an in-process transport that answers ``{"city": "Paris"}`` (as
    one response, or as a stream when asked for one)."""
    from llama_index.llms.openai import OpenAI

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        message: dict[str, Any] = {"role": "assistant", "content": '{"city": "Paris"}'}
        if body.get("tools"):
            function = {"name": "City", "arguments": '{"city": "Paris"}'}
            call = {"id": "call_1", "type": "function", "function": function}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        if body.get("stream"):
            return _streamed(message)
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
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
        **kwargs,
    )


def _streamed(message: dict[str, Any]) -> httpx.Response:
    """``message`` as a Chat Completions stream: its delta, then the finish reason."""
    calls = message.get("tool_calls")
    delta = dict(message, tool_calls=[dict(calls[0], index=0)]) if calls else message
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1}
    chunk["model"] = "gpt-4o-mini-2024-07-18"
    chunks = [
        dict(chunk, choices=[{"index": 0, "delta": delta, "finish_reason": None}]),
        dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


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


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_model_given_per_call_is_the_requested_model(telemetry: Telemetry, use_async: bool) -> None:
    """``llm.chat(messages, model=...)`` sends that model: it names the span, the request's
    model and the metrics, as the call's other per-call parameters do."""
    requests: list[dict[str, Any]] = []
    llm = _openai(requests)
    messages = [ChatMessage(role="user", content="Which city?")]
    if use_async:
        asyncio.run(llm.achat(messages, model="gpt-4o", temperature=0.9))
    else:
        llm.chat(messages, model="gpt-4o", temperature=0.9)
    llm.chat(messages)
    assert [request["model"] for request in requests] == ["gpt-4o", "gpt-4o-mini"]
    attributes = ("gen_ai.request.model", "gen_ai.request.temperature")
    assert telemetry.tree(attributes=attributes).split("\n---\n") == [
        "chat gpt-4o [CLIENT] gen_ai.request.model=gpt-4o gen_ai.request.temperature=0.9",
        "chat gpt-4o-mini [CLIENT] gen_ai.request.model=gpt-4o-mini gen_ai.request.temperature=0.1",
    ]
    points = telemetry.metric_points("gen_ai.client.operation.duration")
    assert sorted(p["attributes"]["gen_ai.request.model"] for p in points) == [
        "gpt-4o",
        "gpt-4o-mini",
    ]
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


def _read_structured_stream(llm: Any, use_async: bool) -> list[Any]:
    from llama_index.core.prompts import PromptTemplate

    prompt = PromptTemplate("Which city?")
    if not use_async:
        stream = llm.stream_structured_predict(City, prompt)
        return list(stream)

    async def read() -> list[Any]:
        return [partial async for partial in await llm.astream_structured_predict(City, prompt)]

    return asyncio.run(read())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_stream_structured_predict_is_one_request_as_structured_predict(
    telemetry: Telemetry, use_async: bool
) -> None:
    """``stream_structured_predict`` is a generator: LlamaIndex exits its span before the model
    is called, as the caller reads it. The model's stream still belongs to the request, as
    ``structured_predict``'s call does; the request ends with the stream, not when the
    generator is released."""
    from llama_index.core.prompts import PromptTemplate

    llm = _openai([])
    assert llm.structured_predict(City, PromptTemplate("Which city?")).city == "Paris"
    partials = _read_structured_stream(llm, use_async)
    assert partials[-1].city == "Paris"
    predicted, streamed = telemetry.tree(attributes=("gen_ai.request.stream",)).split("\n---\n")
    # (0.12 calls the output class as a tool after the model call)
    assert predicted.startswith("invoke_workflow [INTERNAL]\n  chat gpt-4o-mini [CLIENT]")
    assert streamed == (
        "invoke_workflow [INTERNAL]\n  chat gpt-4o-mini [CLIENT] gen_ai.request.stream=True"
    )
    request, chat = telemetry.spans()[-1], telemetry.spans()[-2]
    assert (request.name, chat.name) == ("invoke_workflow", "chat gpt-4o-mini")
    assert request.start_ns <= chat.start_ns
    assert chat.end_ns <= request.end_ns
    assert len(open_runs) == 0
    telemetry.assert_conformant()


def test_stream_structured_predict_closed_early_or_never_read(telemetry: Telemetry) -> None:
    """A structured stream closed after its first partial ends its request with the model's
    stream; one never read makes no span and leaves nothing behind."""
    from llama_index.core.prompts import PromptTemplate

    llm = _openai([])
    stream = llm.stream_structured_predict(City, PromptTemplate("Which city?"))
    next(stream)
    stream.close()
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  chat gpt-4o-mini [CLIENT]"
    assert len(open_runs) == 0
    unread = llm.stream_structured_predict(City, PromptTemplate("Which city?"))
    del unread, stream
    assert len(telemetry.spans()) == 2
    installed = threadline.llamaindex._instrument._installed
    assert installed is not None
    tracker = installed[0]._tracker
    assert (tracker.deferred_roots, tracker.roots, tracker.nodes) == ({}, {}, {})
    assert (tracker.deferred_spans, tracker.deferred_runs) == ({}, {})


def test_a_structured_llms_stream_is_one_request(telemetry: Telemetry) -> None:
    """``as_structured_llm(...).stream_chat`` streams through ``stream_structured_predict``
    as the caller reads it: the model's stream nests under the wrapper's call."""
    structured = _openai([]).as_structured_llm(City)
    chunks = list(structured.stream_chat([ChatMessage(role="user", content="Which city?")]))
    assert chunks[-1].raw.city == "Paris"
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  chat gpt-4o-mini [CLIENT]"
    assert len(open_runs) == 0


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_tool_called_for_a_models_tool_call_has_its_id(
    telemetry: Telemetry, use_async: bool
) -> None:
    """``predict_and_call`` (and the programs and step agents built on it) runs the model's
    tool call through ``call_tool_with_selection``: the tool's span has the call's id."""
    from llama_index.core.tools import FunctionTool

    def city(city: str) -> str:
        return city

    tool = FunctionTool.from_defaults(fn=city, name="City", description="Names a city.")
    assert _predict_and_call(tool, use_async).response == "Paris"
    assert telemetry.tree(attributes=("gen_ai.tool.call.id",)) == (
        "invoke_workflow [INTERNAL]\n"
        "  chat gpt-4o-mini [CLIENT]\n"
        "  execute_tool City [INTERNAL] gen_ai.tool.call.id=call_1"
    )
    telemetry.assert_conformant()


def _predict_and_call(tool: Any, use_async: bool) -> Any:
    llm = _openai([])
    if use_async:
        return asyncio.run(llm.apredict_and_call([tool], "Which city?"))
    return llm.predict_and_call([tool], "Which city?")


class _PositionalTool(BaseTool):
    """A one-parameter tool of the app's own, which ``call_tool`` calls with the value alone."""

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="City", description="Names a city.", fn_schema=City)

    def __call__(self, input: Any) -> ToolOutput:
        return ToolOutput(content=input, tool_name="City", raw_input={}, raw_output=input)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", ["function", "custom"])
def test_tool_called_with_its_value_alone_has_the_models_arguments(
    telemetry: Telemetry, capture_content: Any, use_async: bool, kind: str
) -> None:
    """``call_tool`` calls a one-parameter tool with the argument's value alone (every tool on
    0.12, a FunctionTool that takes no keywords later): its arguments are still the object the
    model sent, not the bare value."""
    from llama_index.core.tools import FunctionTool

    def city(city: str) -> str:
        return city

    tool: Any = _PositionalTool()
    if kind == "function":
        tool = FunctionTool.from_defaults(fn=city, name="City", description="Names a city.")
    assert _predict_and_call(tool, use_async).response == "Paris"
    attributes = ("gen_ai.tool.call.id", "gen_ai.tool.call.arguments")
    assert telemetry.tree(attributes=attributes).endswith(
        "\n  execute_tool City [INTERNAL] gen_ai.tool.call.id=call_1 "
        'gen_ai.tool.call.arguments={"city":"Paris"}'
    )
    telemetry.assert_conformant()


class Forecast(BaseModel):
    high: int
    conditions: str


class _RenderingTool(BaseTool):
    """A tool that gives the model a text of its own for the object it returns."""

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="render", description="Renders a forecast.", fn_schema=City)

    def __call__(self, *args: Any, **kwargs: Any) -> ToolOutput:
        raw = {"high": 75}
        return ToolOutput(content="75F", tool_name="render", raw_input=kwargs, raw_output=raw)


def test_structured_tool_result_is_recorded_as_json(
    telemetry: Telemetry, capture_content: Any
) -> None:
    """A tool returning a dict, a list or a pydantic model is given to the model as the
    object's ``str()``, a Python repr: its result is recorded as the object, in JSON. Text
    results, and text a tool renders of its own, are recorded as the text."""
    from llama_index.core.tools import FunctionTool

    def weather(city: str) -> dict[str, Any]:
        return {"temperature_range": {"high": 75, "low": 60}, "conditions": "sunny"}

    def forecast(city: str) -> Forecast:
        return Forecast(high=75, conditions="sunny")

    def neighbours(city: str) -> list[str]:
        return [city, "Lyon"]

    def summary(city: str) -> str:
        return f"sunny in {city}"

    for fn in (weather, forecast, neighbours, summary):
        FunctionTool.from_defaults(fn=fn).call(city="Paris")
    call_tool(_RenderingTool(), {"city": "Paris"})
    results = [span.attributes["gen_ai.tool.call.result"] for span in telemetry.spans()]
    assert results == [
        '{"temperature_range":{"high":75,"low":60},"conditions":"sunny"}',
        '{"high":75,"conditions":"sunny"}',
        '["Paris","Lyon"]',
        "sunny in Paris",
        "75F",
    ]
    telemetry.assert_conformant()


def test_tool_called_directly_looks_for_no_selected_call(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a tool that LlamaIndex's ``call_tool`` calls is looked up in the frames of
    ``call_tool_with_selection``: one the application calls directly costs no walk up its
    stack for it."""
    from llama_index.core.tools import FunctionTool

    from threadline.llamaindex import _handler

    looked_up: list[str] = []

    class Counting(frozenset[str]):
        def __contains__(self, name: object) -> bool:
            looked_up.append(str(name))
            return super().__contains__(name)

    monkeypatch.setattr(_handler, "_SELECTION_FUNCTIONS", Counting(_handler._SELECTION_FUNCTIONS))

    def city(city: str) -> str:
        return city

    tool = FunctionTool.from_defaults(fn=city, name="City", description="Names a city.")
    assert tool(city="Paris").raw_output == "Paris"
    assert telemetry.tree(attributes=("gen_ai.tool.call.id",)) == "execute_tool City [INTERNAL]"
    assert looked_up == []
    call_tool(tool, {"city": "Paris"})
    assert len(looked_up) == 1  # call_tool's caller only
