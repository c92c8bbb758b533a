"""Chat models against recorded OpenAI wire traffic: invoke, ainvoke, stream, astream, batch."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import openai_http_module
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from threadline import semconv

ATTRS = (
    semconv.GEN_AI_PROVIDER_NAME,
    semconv.GEN_AI_REQUEST_MODEL,
    semconv.GEN_AI_REQUEST_TEMPERATURE,
    semconv.GEN_AI_REQUEST_MAX_TOKENS,
    semconv.GEN_AI_REQUEST_STREAM,
    semconv.GEN_AI_RESPONSE_ID,
    semconv.GEN_AI_RESPONSE_MODEL,
    semconv.GEN_AI_RESPONSE_FINISH_REASONS,
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
)

INVOKED = (
    "chat gpt-4o-mini [CLIENT] gen_ai.provider.name=openai gen_ai.request.model=gpt-4o-mini "
    "gen_ai.request.temperature=0.2 gen_ai.request.max_tokens=100 "
    "gen_ai.response.id=chatcmpl-inv1 gen_ai.response.model=gpt-4o-mini-2024-07-18 "
    "gen_ai.response.finish_reasons=['stop'] gen_ai.usage.input_tokens=12 "
    "gen_ai.usage.output_tokens=5 gen_ai.usage.cache_read.input_tokens=4 "
    "gen_ai.usage.reasoning.output_tokens=2"
)
STREAMED = (
    "chat gpt-4o-mini [CLIENT] gen_ai.provider.name=openai gen_ai.request.model=gpt-4o-mini "
    "gen_ai.request.temperature=0.2 gen_ai.request.max_tokens=100 gen_ai.request.stream=True "
    "gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.response.finish_reasons=['stop'] "
    "gen_ai.usage.input_tokens=12 gen_ai.usage.output_tokens=2 "
    "gen_ai.usage.cache_read.input_tokens=4 gen_ai.usage.reasoning.output_tokens=1"
)


def _invoked(answer: Any) -> str:
    """The expected span; older langchain-openai releases do not pass the response id on."""
    if answer.response_metadata.get("id") == "chatcmpl-inv1":
        return INVOKED
    return INVOKED.replace("gen_ai.response.id=chatcmpl-inv1 ", "")


def model() -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", temperature=0.2, max_tokens=100, max_retries=0)


def _assert_metrics(telemetry: Any, *, input_tokens: int, output_tokens: int) -> None:
    (duration,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["count"] == 1
    assert duration["attributes"] == {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        semconv.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        semconv.SERVER_ADDRESS: "api.openai.com",
        semconv.SERVER_PORT: 443,
    }
    tokens = {
        point["attributes"][semconv.GEN_AI_TOKEN_TYPE]: point["sum"]
        for point in telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    }
    assert tokens == {"input": input_tokens, "output": output_tokens}


def test_invoke(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    with cassette("chat_invoke.yaml"):
        answer = model().invoke("Say hello", config=config)
    assert answer.content == "Hello from the cassette"
    assert telemetry.tree(attributes=ATTRS) == _invoked(answer)
    _assert_metrics(telemetry, input_tokens=12, output_tokens=5)
    span = telemetry.find("chat gpt-4o-mini")
    # content capture is off by default: no messages, no tool definitions
    assert not {k for k in span.attributes if k in semconv.CONTENT_SCHEMAS}
    telemetry.assert_conformant(strict=True)


def test_ainvoke(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    with cassette("chat_invoke.yaml"):
        answer = asyncio.run(model().ainvoke("Say hello", config=config))
    assert answer.content == "Hello from the cassette"
    assert telemetry.tree(attributes=ATTRS) == _invoked(answer)
    _assert_metrics(telemetry, input_tokens=12, output_tokens=5)
    telemetry.assert_conformant(strict=True)


# The chunks of chat_stream.yaml: role, two words, finish reason, usage.
CASSETTE_CHUNKS = 5


def _assert_stream_timing(telemetry: Any, chunks: int = CASSETTE_CHUNKS) -> None:
    span = telemetry.find("chat gpt-4o-mini")
    ttfc = span.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttfc < 5
    (first,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert first["count"] == 1
    (per_chunk,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk["count"] == chunks - 1  # one gap between each two chunks received


def test_stream(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    with cassette("chat_stream.yaml"):
        chunks = list(model().stream("Say hello", config=config))
    assert "".join(str(c.content) for c in chunks) == "Hello streamed"
    assert telemetry.tree(attributes=ATTRS) == STREAMED
    _assert_stream_timing(telemetry)
    _assert_metrics(telemetry, input_tokens=12, output_tokens=2)
    telemetry.assert_conformant(strict=True)


def test_astream(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    async def consume() -> list[Any]:
        return [chunk async for chunk in model().astream("Say hello", config=config)]

    with cassette("chat_stream.yaml"):
        chunks = asyncio.run(consume())
    assert "".join(str(c.content) for c in chunks) == "Hello streamed"
    assert telemetry.tree(attributes=ATTRS) == STREAMED
    _assert_stream_timing(telemetry)
    telemetry.assert_conformant(strict=True)


def test_batch_makes_one_trace_per_input(
    telemetry: Any, config: dict[str, Any], cassette: Any
) -> None:
    with cassette("chat_batch.yaml"):
        answers = model().batch(["first", "second"], config=config)
    assert sorted(str(a.content) for a in answers) == ["Hello from the cassette", "Second answer"]
    tree = telemetry.tree(attributes=(semconv.GEN_AI_USAGE_OUTPUT_TOKENS,))
    assert sorted(tree.split("\n---\n")) == [
        "chat gpt-4o-mini [CLIENT] gen_ai.usage.output_tokens=5",
        "chat gpt-4o-mini [CLIENT] gen_ai.usage.output_tokens=7",
    ]
    telemetry.assert_conformant(strict=True)


def test_content_capture(
    telemetry: Any, config: dict[str, Any], cassette: Any, capture_content: Any
) -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Say hello")]
    with cassette("chat_invoke.yaml"):
        model().invoke(messages, config=config)
    span = telemetry.find("chat gpt-4o-mini")
    assert json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]},
    ]
    assert json.loads(span.attributes[semconv.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello from the cassette"}],
            "finish_reason": "stop",
        }
    ]
    (event,) = telemetry.events(semconv.EVENT_INFERENCE_DETAILS)
    assert event["attributes"][semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    telemetry.assert_conformant(strict=True)


def test_provider_error_marks_span(telemetry: Any, config: dict[str, Any], cassette: Any) -> None:
    """A request the cassette cannot answer fails inside the client: the span records it."""
    with cassette("chat_invoke.yaml"):
        model().invoke("one", config=config)
        with pytest.raises(Exception, match=r"(?i)connection|cassette") as raised:
            model().invoke("two", config=config)  # a second request: not in the cassette
    error_type = f"{type(raised.value).__module__}.{type(raised.value).__qualname__}"
    assert telemetry.tree(attributes=(semconv.GEN_AI_USAGE_OUTPUT_TOKENS,)) == (
        "chat gpt-4o-mini [CLIENT] gen_ai.usage.output_tokens=5\n---\n"
        f"chat gpt-4o-mini [CLIENT] !ERROR error.type={error_type}"
    )
    telemetry.assert_conformant()


def test_plain_llm_is_text_completion(telemetry: Any, config: dict[str, Any]) -> None:
    from langchain_core.language_models.fake import FakeListLLM

    llm = FakeListLLM(responses=["forty-two"])
    assert llm.invoke("meaning of life?", config=config) == "forty-two"
    span = telemetry.find("text_completion FakeListLLM")
    assert span.kind == "CLIENT"
    assert span.attributes[semconv.GEN_AI_OPERATION_NAME] == "text_completion"
    assert (
        span.attributes[semconv.GEN_AI_PROVIDER_NAME] == "fakelist"
    )  # ls_provider LangChain derives from the class
    telemetry.assert_conformant()


def test_plain_llm_stream_counts_chunks(
    telemetry: Any, config: dict[str, Any], caplog: Any
) -> None:
    """A plain LLM streams ``GenerationChunk``s, which carry no message (and no usage)."""
    from langchain_core.language_models.llms import LLM
    from langchain_core.outputs import GenerationChunk

    class EchoLLM(LLM):
        @property
        def _llm_type(self) -> str:
            return "echo"

        def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any) -> str:
            return "forty-two"

        def _stream(
            self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Iterator[GenerationChunk]:
            for text in ("forty", "-", "two"):
                chunk = GenerationChunk(text=text)
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk

    with caplog.at_level(logging.DEBUG, logger="threadline"):
        assert "".join(EchoLLM().stream("meaning of life?", config=config)) == "forty-two"
    span = telemetry.find("text_completion EchoLLM")
    assert span.attributes[semconv.GEN_AI_REQUEST_STREAM] is True
    assert span.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert not [r for r in caplog.records if "langchain." in r.getMessage()]
    telemetry.assert_conformant()


@pytest.mark.parametrize("how", ["stream", "astream", "streaming_invoke"])
def test_langchains_closing_chunk_is_no_output_chunk(
    telemetry: Any, config: dict[str, Any], how: str
) -> None:
    """langchain-core 1.x reports an empty chunk marked last after a stream whose own last
    chunk was not: LangChain made it, no provider sent it, so it adds no time per chunk."""
    from conftest import ScriptedChatModel, usage
    from langchain_core.messages import AIMessage

    answer = AIMessage(content="one two three", usage_metadata=usage(3, 3))  # type: ignore[arg-type]
    # streaming=False set explicitly would make stream() fall back to invoke()
    model = ScriptedChatModel(
        responses=[answer], **({"streaming": True} if how == "streaming_invoke" else {})
    )

    async def consume() -> None:
        async for _ in model.astream("hi", config=config):
            pass

    if how == "stream":
        list(model.stream("hi", config=config))
    elif how == "astream":
        asyncio.run(consume())
    else:
        model.invoke("hi", config=config)
    # three words and the usage: four chunks received, three gaps between them
    (per_chunk,) = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk["count"] == 3
    span = telemetry.find("chat scripted-1")
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 3


def test_server_address_from_base_url(telemetry: Any, config: dict[str, Any]) -> None:
    http = openai_http_module()
    local = ChatOpenAI(
        model="gpt-4o-mini",
        base_url="http://llm.internal:8080/v1",
        max_retries=0,
        http_client=http.Client(
            transport=http.MockTransport(lambda request: http.Response(503, json={}))
        ),
    )
    with pytest.raises(Exception, match="503") as raised:
        local.invoke("hi", config=config)
    span = telemetry.find("chat gpt-4o-mini")
    assert span.attributes[semconv.SERVER_ADDRESS] == "llm.internal"
    assert span.attributes[semconv.SERVER_PORT] == 8080
    assert span.attributes[semconv.ERROR_TYPE].endswith(type(raised.value).__name__)


def test_a_stream_failing_before_its_first_chunk_is_a_streamed_request(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A rate-limited or overloaded provider fails a stream before any chunk arrives: the
    request was still streamed. A model that cannot stream answers ``stream()`` by ``invoke``,
    which streams nothing."""
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate

    http = openai_http_module()

    def overloaded(request: Any) -> Any:
        return http.Response(503, json={"error": {"message": "overloaded"}})

    failing = ChatOpenAI(
        model="gpt-4o-mini",
        max_retries=0,
        http_client=http.Client(transport=http.MockTransport(overloaded)),
        http_async_client=http.AsyncClient(transport=http.MockTransport(overloaded)),
    )

    async def astream() -> None:
        async for _ in failing.astream("hi", config=config):
            pass

    with pytest.raises(Exception, match="503"):
        list(failing.stream("hi", config=config))
    with pytest.raises(Exception, match="503"):
        asyncio.run(astream())
    with pytest.raises(Exception, match="503"):
        failing.invoke("hi", config=config)
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | failing
    with pytest.raises(Exception, match="503"):
        list(chain.stream({"q": "hi"}, config=config))
    unstreamed = FakeMessagesListChatModel(responses=[AIMessage(content="hello")])
    assert [chunk.content for chunk in unstreamed.stream("hi", config=config)] == ["hello"]
    assert [
        (span.name, span.attributes.get(semconv.GEN_AI_REQUEST_STREAM))
        for span in telemetry.spans()
        if span.name.startswith("chat")
    ] == [
        ("chat gpt-4o-mini", True),
        ("chat gpt-4o-mini", True),
        ("chat gpt-4o-mini", None),
        ("chat gpt-4o-mini", True),
        ("chat FakeMessagesListChatModel", None),
    ]


def test_a_stream_cut_off_midway_keeps_what_its_chunks_told(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A connection dropped mid-stream fails the call; the provider's response id and model
    from the chunks that arrived stay on the span (the id is what the provider's logs know)."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    class Dropped(GenericFakeChatModel):
        def _stream(self, *args: Any, run_manager: Any = None, **kwargs: Any) -> Any:
            meta = {"model_name": "gpt-4o-mini-2024-07-18"}
            for text in ("Hel", "lo"):
                message = AIMessageChunk(content=text, id="chatcmpl-cut", response_metadata=meta)
                chunk = ChatGenerationChunk(message=message)
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
                meta = {}
            raise ConnectionError("connection dropped")

    async def astream() -> None:
        async for _ in Dropped(messages=iter(())).astream("hi", config=config):
            pass

    with pytest.raises(ConnectionError):
        list(Dropped(messages=iter(())).stream("hi", config=config))
    with pytest.raises(ConnectionError):
        asyncio.run(astream())
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_RESPONSE_ID, semconv.GEN_AI_RESPONSE_MODEL)
    ) == "\n---\n".join(
        [
            "chat Dropped [CLIENT] gen_ai.response.id=chatcmpl-cut "
            "gen_ai.response.model=gpt-4o-mini-2024-07-18 !ERROR error.type=ConnectionError"
        ]
        * 2
    )


def test_inline_media_is_a_blob_part(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    from conftest import ScriptedChatModel
    from langchain_core.messages import AIMessage

    png = "iVBORw0KGgo="
    message = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image", "source_type": "base64", "data": png, "mime_type": "image/png"},
        ]
    )
    ScriptedChatModel(responses=[AIMessage(content="a cat")]).invoke([message], config=config)
    [span] = telemetry.spans()
    parts = json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])[0]["parts"]
    blob = {"type": "blob", "modality": "image", "content": png, "mime_type": "image/png"}
    assert parts[1:] == [
        blob,
        {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
        blob,
    ]
    telemetry.assert_conformant()


def test_message_chunks_in_the_history_keep_their_roles(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    """A history often holds a streamed answer as the sum of its chunks."""
    from conftest import ScriptedChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessageChunk

    call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}
    history = [
        HumanMessage("weather?"),
        AIMessageChunk(content="", tool_calls=[call]),
        ToolMessageChunk(content="sunny", tool_call_id="c1"),
    ]
    ScriptedChatModel(responses=[AIMessage(content="sunny")]).invoke(history, config=config)
    [span] = telemetry.spans()
    assert json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])[1:] == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "name": "get_weather",
                    "id": "c1",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "response": "sunny", "id": "c1"}],
        },
    ]
    telemetry.assert_conformant()


def test_provider_built_in_tools_are_generic_tool_definitions(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    from conftest import ScriptedChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.utils.function_calling import convert_to_openai_tool

    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    tools = [
        convert_to_openai_tool(get_weather),
        {"type": "web_search_preview"},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"name": "lookup", "description": "Anthropic's shape", "input_schema": {"type": "object"}},
    ]
    model = ScriptedChatModel(responses=[AIMessage(content="done")])
    model.bind(tools=tools).invoke("Search for it", config=config)
    [span] = telemetry.spans()
    definitions = json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert [(d["type"], d["name"]) for d in definitions] == [
        ("function", "get_weather"),
        ("web_search_preview", "web_search_preview"),
        ("web_search_20250305", "web_search"),
        ("function", "lookup"),
    ]
    assert definitions[2]["max_uses"] == 3
    telemetry.assert_conformant()
