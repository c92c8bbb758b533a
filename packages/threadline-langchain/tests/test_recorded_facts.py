"""What the spans record of the many shapes providers give the same facts in: media blocks (in
messages and in what tools return), endpoints from the environment, system prompts sent apart,
finish reasons, reasoning, malformed tool calls, structured output, a tool's ``Command``,
retrieval scores."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import ScriptedChatModel, openai_http_module
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI

import threadline.langchain
from threadline import config as settings
from threadline import semconv
from threadline.content import BlobPart, FilePart, UriPart

SECRET = base64.b64encode(b"PRIVATE-PHOTO-BYTES" * 3).decode()


def _messages(span: Any, key: str) -> list[dict[str, Any]]:
    return json.loads(span.attributes[key])  # type: ignore[no-any-return]


def _openai(handle: Callable[[Any], dict[str, Any]], **kwargs: Any) -> ChatOpenAI:
    """A ChatOpenAI whose requests a function answers with a JSON body."""
    http = openai_http_module()
    transport = http.MockTransport(lambda request: http.Response(200, json=handle(request)))
    return ChatOpenAI(http_client=http.Client(transport=transport), max_retries=0, **kwargs)


def _completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


# --- media -------------------------------------------------------------------------------------

MEDIA_BLOCKS: list[dict[str, Any]] = [
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{SECRET}"}},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": SECRET}},
    {"type": "input_audio", "input_audio": {"data": SECRET, "format": "wav"}},
    {
        "type": "file",
        "file": {"filename": "scan.pdf", "file_data": f"data:application/pdf;base64,{SECRET}"},
    },
    {"type": "input_image", "image_url": f"data:image/png;base64,{SECRET}"},
    {
        "type": "input_file",
        "filename": "a.pdf",
        "file_data": f"data:application/pdf;base64,{SECRET}",
    },
    {"type": "image", "base64": SECRET, "mime_type": "image/png"},
    {"type": "image", "source_type": "base64", "data": SECRET, "mime_type": "image/png"},
    {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": SECRET},
    },
]
BLOBS = [
    ("image", "image/png"),
    ("image", "image/png"),
    ("audio", "audio/wav"),
    ("document", "application/pdf"),
    ("image", "image/png"),
    ("document", "application/pdf"),
    ("image", "image/png"),
    ("image", "image/png"),
    ("document", "application/pdf"),
]


@pytest.fixture
def drop_blobs() -> Iterator[None]:
    """The redactor docs/content.md shows: never record images or audio."""
    previous = settings.current()
    settings.configure(
        capture_content="SPAN_ONLY",
        redactor=lambda part: None if isinstance(part, BlobPart) else part,
    )
    try:
        yield
    finally:
        settings.restore(previous)


def test_inline_media_of_every_shape_is_a_blob_part(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    message = HumanMessage(content=[{"type": "text", "text": "what is this?"}, *MEDIA_BLOCKS])
    ScriptedChatModel(responses=[AIMessage("a cat")]).invoke([message], config=config)
    [span] = telemetry.spans()
    parts = _messages(span, semconv.GEN_AI_INPUT_MESSAGES)[0]["parts"]
    raw = base64.b64encode(base64.b64decode(SECRET)).decode()
    assert parts[1:] == [
        {"type": "blob", "modality": modality, "content": raw, "mime_type": mime}
        for modality, mime in BLOBS
    ]
    telemetry.assert_conformant()


def test_a_redactor_dropping_blobs_drops_all_inline_media(
    telemetry: Any, config: dict[str, Any], drop_blobs: None
) -> None:
    history = [
        HumanMessage(content=[{"type": "text", "text": "what is this?"}, *MEDIA_BLOCKS]),
        AIMessage("", tool_calls=[{"name": "screenshot", "args": {}, "id": "c1"}]),
        ToolMessage(
            content=[
                {"type": "text", "text": "the screen"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": SECRET},
                },
            ],
            tool_call_id="c1",
        ),
    ]
    ScriptedChatModel(responses=[AIMessage("a cat")]).invoke(history, config=config)
    [span] = telemetry.spans()
    recorded = span.attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert SECRET not in recorded
    messages = json.loads(recorded)
    assert messages[0]["parts"] == [{"type": "text", "content": "what is this?"}]
    assert messages[2]["parts"] == [
        {
            "type": "tool_call_response",
            "response": [{"type": "text", "text": "the screen"}],
            "id": "c1",
        }
    ]


def test_media_by_url_and_by_file_id(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "image", "source": {"type": "file", "file_id": "file_anthropic"}},
        {"type": "image", "file_id": "file_v1"},
        {"type": "image", "source_type": "id", "id": "file_03"},
        {"type": "file", "file": {"file_id": "file_openai"}},
        {"type": "input_image", "file_id": "file_responses"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
    ]
    ScriptedChatModel(responses=[AIMessage("ok")]).invoke(
        [HumanMessage(content=blocks)], config=config
    )
    [span] = telemetry.spans()
    assert _messages(span, semconv.GEN_AI_INPUT_MESSAGES)[0]["parts"] == [
        {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
        {"type": "file", "modality": "image", "file_id": "file_anthropic"},
        {"type": "file", "modality": "image", "file_id": "file_v1"},
        {"type": "file", "modality": "image", "file_id": "file_03"},
        {"type": "file", "modality": "document", "file_id": "file_openai"},
        {"type": "file", "modality": "image", "file_id": "file_responses"},
        {"type": "uri", "modality": "document", "uri": "https://example.com/a.pdf"},
    ]
    telemetry.assert_conformant()


PLAIN_TEXT = "CONFIDENTIAL MEMO: the merger closes Friday."


def test_plain_text_documents_are_document_parts(
    telemetry: Any, config: dict[str, Any], drop_blobs: None
) -> None:
    """LangChain 1.x's "text-plain" blocks and Anthropic's text-sourced documents are documents
    like any other: inline (text or base64) a blob, else a URI or file part."""
    inline = base64.b64encode(PLAIN_TEXT.encode()).decode()
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": "summarize"},
        {"type": "text-plain", "text": PLAIN_TEXT, "mime_type": "text/plain", "title": "memo"},
        {"type": "text-plain", "base64": inline, "mime_type": "text/plain"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": PLAIN_TEXT},
        },
        {"type": "text-plain", "url": "https://example.com/memo.txt", "mime_type": "text/plain"},
        {"type": "text-plain", "file_id": "file_memo", "mime_type": "text/plain"},
    ]
    ScriptedChatModel(responses=[AIMessage("ok")]).invoke(
        [HumanMessage(content=blocks)], config=config
    )
    [span] = telemetry.spans()
    recorded = span.attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert PLAIN_TEXT not in recorded
    assert inline not in recorded
    mime = {"mime_type": "text/plain"}
    assert json.loads(recorded)[0]["parts"] == [
        {"type": "text", "content": "summarize"},
        {"type": "uri", "modality": "document", "uri": "https://example.com/memo.txt", **mime},
        {"type": "file", "modality": "document", "file_id": "file_memo", **mime},
    ]
    telemetry.assert_conformant()


def test_plain_text_document_content_is_a_blob(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    inline = base64.b64encode(PLAIN_TEXT.encode()).decode()
    blocks: list[dict[str, Any]] = [
        {"type": "text-plain", "text": PLAIN_TEXT, "mime_type": "text/plain"},
        {"type": "text-plain", "base64": inline, "mime_type": "text/plain"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
    ]
    ScriptedChatModel(responses=[AIMessage("ok")]).invoke(
        [HumanMessage(content=blocks)], config=config
    )
    [span] = telemetry.spans()
    blob = {"type": "blob", "modality": "document", "mime_type": "text/plain"}
    assert _messages(span, semconv.GEN_AI_INPUT_MESSAGES)[0]["parts"] == [
        {**blob, "content": inline},
        {**blob, "content": inline},
        {**blob, "content": base64.b64encode(b"x").decode()},
    ]
    telemetry.assert_conformant()


def test_media_parts_reach_the_redactor_as_such(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    seen: list[type] = []
    saved = settings.current()
    settings.configure(redactor=lambda part: seen.append(type(part)) or part)
    try:
        blocks: list[dict[str, Any]] = [
            {"type": "input_audio", "input_audio": {"data": SECRET, "format": "mp3"}},
            {"type": "image", "file_id": "file_1"},
            {"type": "image", "url": "https://example.com/a.png"},
        ]
        ScriptedChatModel(responses=[AIMessage("ok")]).invoke(
            [HumanMessage(content=blocks)], config=config
        )
    finally:
        settings.restore(saved)
    assert seen[:3] == [BlobPart, FilePart, UriPart]


SCREEN: list[dict[str, Any]] = [
    {"type": "text", "text": "the screen"},
    {"type": "image", "base64": SECRET, "mime_type": "image/png"},
    {"type": "image", "url": "https://example.com/a.png"},
]


def _screenshot_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def screenshot() -> list[dict[str, Any]]:
        """Takes a screenshot."""
        return SCREEN

    return screenshot


def _screen_flow(config: dict[str, Any]) -> None:
    """A tool returning an image, called for a model's tool call and on its own, then the next
    model call with its ToolMessage in the history."""
    screenshot = _screenshot_tool()
    message = screenshot.invoke(
        {"name": "screenshot", "args": {}, "id": "c1", "type": "tool_call"}, config=config
    )
    screenshot.invoke({}, config=config)
    history = [
        HumanMessage("look"),
        AIMessage("", tool_calls=[{"name": "screenshot", "args": {}, "id": "c1"}]),
        message,
    ]
    ScriptedChatModel(responses=[AIMessage("a screen")]).invoke(history, config=config)


def test_media_a_tool_returns_is_recorded_as_media_parts(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    _screen_flow(config)
    *tools, chat = telemetry.spans()
    raw = base64.b64encode(base64.b64decode(SECRET)).decode()
    blob = {"type": "blob", "modality": "image", "content": raw, "mime_type": "image/png"}
    uri = {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"}
    for span in tools:
        assert json.loads(span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]) == [
            {"type": "text", "text": "the screen"},
            blob,
            uri,
        ]
    assert _messages(chat, semconv.GEN_AI_INPUT_MESSAGES)[2]["parts"] == [
        {"type": "tool_call_response", "response": [SCREEN[0]], "id": "c1"},
        blob,
        uri,
    ]
    telemetry.assert_conformant()


def test_a_redactor_dropping_blobs_drops_the_media_a_tool_returns(
    telemetry: Any, config: dict[str, Any], drop_blobs: None
) -> None:
    _screen_flow(config)
    *tools, chat = telemetry.spans()
    uri = {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"}
    assert len(tools) == 2
    for span in tools:
        recorded = span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
        assert SECRET not in recorded
        assert json.loads(recorded) == [{"type": "text", "text": "the screen"}, uri]
    recorded = chat.attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert SECRET not in recorded
    assert json.loads(recorded)[2]["parts"] == [
        {"type": "tool_call_response", "response": [SCREEN[0]], "id": "c1"},
        uri,
    ]


def test_a_redactor_failing_on_a_tool_returned_image_leaves_out_only_the_image(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    def redact(part: Any) -> Any:
        if isinstance(part, BlobPart):
            raise RuntimeError("redactor bug")
        return part

    saved = settings.current()
    settings.configure(redactor=redact)
    try:
        message = _screenshot_tool().invoke(
            {"name": "screenshot", "args": {}, "id": "c1", "type": "tool_call"}, config=config
        )
    finally:
        settings.restore(saved)
    assert message.content == SCREEN
    [span] = telemetry.spans()  # ended
    result = span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
    assert SECRET not in result  # never recorded unredacted
    assert [block["type"] for block in json.loads(result)] == ["text", "uri"]


# --- server address ----------------------------------------------------------------------------


def test_server_address_from_the_environment(
    telemetry: Any, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm-proxy.internal:4000/v1")
    model = _openai(lambda request: _completion({"role": "assistant", "content": "hi"}, "stop"))
    model.model_name = "gpt-4o-mini"
    model.invoke("hi", config=config)
    model.invoke("again", config=config)
    for span in telemetry.spans():
        assert span.attributes[semconv.SERVER_ADDRESS] == "llm-proxy.internal"
        assert span.attributes[semconv.SERVER_PORT] == 4000


def test_anthropic_server_address_from_the_environment(
    telemetry: Any, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://claude-gateway.example.com")

    class ChatAnthropic(ScriptedChatModel):  # what the class name tells
        pass

    ChatAnthropic(responses=[AIMessage("hi")]).invoke("hi", config=config)
    [span] = telemetry.spans()
    assert span.attributes[semconv.SERVER_ADDRESS] == "claude-gateway.example.com"
    assert span.attributes[semconv.SERVER_PORT] == 443


def test_embeddings_server_address_from_the_client(
    telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_openai import OpenAIEmbeddings

    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm-proxy.internal:4000/v1")
    http = openai_http_module()
    body = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    client = http.Client(transport=http.MockTransport(lambda r: http.Response(200, json=body)))
    threadline.langchain.instrument()
    try:
        embedder = OpenAIEmbeddings(
            model="text-embedding-3-small", http_client=client, check_embedding_ctx_length=False
        )
        embedder.embed_query("q")
    finally:
        threadline.langchain.uninstrument()
    span = telemetry.find("embeddings text-embedding-3-small")
    assert span.attributes[semconv.SERVER_ADDRESS] == "llm-proxy.internal"
    assert span.attributes[semconv.SERVER_PORT] == 4000


# --- system instructions -----------------------------------------------------------------------


class ProviderSystemChat(BaseChatModel):
    """Says it is the chat model of the provider its LangChain integration names (``ls_provider``),
    and answers "ok"."""

    ls_provider: str

    @property
    def _llm_type(self) -> str:
        return "provider-system"

    def _get_ls_params(self, stop: Any = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.ls_provider
        return params

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])


BRIEF = {"type": "text", "content": "Be brief."}
CITE = {"type": "text", "content": "Cite sources."}
FRENCH = {"type": "text", "content": "Answer in French."}
SYSTEM_HISTORY = [
    SystemMessage("Be brief."),
    SystemMessage([{"type": "text", "text": "Cite sources.", "cache_control": {"type": "x"}}]),
    HumanMessage("hi"),
    AIMessage("hello"),
    SystemMessage("Answer in French."),
    HumanMessage("again"),
]


@pytest.mark.parametrize(
    ("ls_provider", "history", "instructions", "roles"),
    [
        pytest.param(  # langchain-anthropic: the first run of system messages, merged
            "anthropic", SYSTEM_HISTORY, [BRIEF, CITE],
            ["user", "assistant", "system", "user"], id="anthropic",
        ),
        pytest.param(  # langchain-google-genai: all, when the history starts with one
            "google_genai", SYSTEM_HISTORY, [BRIEF, CITE, FRENCH],
            ["user", "assistant", "user"], id="gemini",
        ),
        pytest.param(  # ... and none otherwise (it leaves them out of the request)
            "google_genai", SYSTEM_HISTORY[2:], None,
            ["user", "assistant", "system", "user"], id="gemini-not-leading",
        ),
        pytest.param(  # ChatVertexAI: all, wherever they are
            "google_vertexai", SYSTEM_HISTORY[2:], [FRENCH],
            ["user", "assistant", "user"], id="vertex",
        ),
        pytest.param(  # ChatBedrockConverse: all, wherever they are
            "amazon_bedrock", SYSTEM_HISTORY, [BRIEF, CITE, FRENCH],
            ["user", "assistant", "user"], id="bedrock",
        ),
        pytest.param(  # an empty system prompt: no instructions at all
            "anthropic", [SystemMessage(""), *SYSTEM_HISTORY[2:]], None,
            ["user", "assistant", "system", "user"], id="anthropic-empty",
        ),
        pytest.param(  # OpenAI's API takes system messages in the history
            "openai", SYSTEM_HISTORY, None,
            ["system", "system", "user", "assistant", "system", "user"], id="openai",
        ),
    ],
)  # fmt: skip
def test_system_instructions_of_providers_that_take_them_apart(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    ls_provider: str,
    history: list[Any],
    instructions: list[dict[str, Any]] | None,
    roles: list[str],
) -> None:
    ProviderSystemChat(ls_provider=ls_provider).invoke(history, config=config)
    [span] = telemetry.spans()
    if instructions is None:
        assert semconv.GEN_AI_SYSTEM_INSTRUCTIONS not in span.attributes
    else:
        assert _messages(span, semconv.GEN_AI_SYSTEM_INSTRUCTIONS) == instructions
    messages = _messages(span, semconv.GEN_AI_INPUT_MESSAGES)
    assert [message["role"] for message in messages] == roles
    telemetry.assert_conformant()


class GeminiChat(ProviderSystemChat):
    """Reports what ChatGoogleGenerativeAI reports: ``ls_provider="google_genai"``, and its
    ``convert_system_message_to_human`` in its serialized constructor arguments only."""

    ls_provider: str = "google_genai"
    convert_system_message_to_human: bool = False

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True


@pytest.mark.parametrize(
    ("history", "instructions", "first"),
    [
        pytest.param(  # merged into the human message after it; the later one is not sent
            [SYSTEM_HISTORY[0], *SYSTEM_HISTORY[2:]], None,
            {"role": "user", "parts": [BRIEF, {"type": "text", "content": "hi"}]},
            id="merged",
        ),
        pytest.param(  # an empty human message is left out of the request: the next one
            [SYSTEM_HISTORY[0], HumanMessage(""), *SYSTEM_HISTORY[2:]], None,
            {"role": "user", "parts": [BRIEF, {"type": "text", "content": "hi"}]},
            id="after-empty-human",
        ),
        pytest.param(  # no human message right after it: sent apart as without the option
            SYSTEM_HISTORY, [BRIEF, CITE, FRENCH],
            {"role": "user", "parts": [{"type": "text", "content": "hi"}]}, id="not-merged",
        ),
    ],
)  # fmt: skip
def test_gemini_system_message_converted_to_human(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    history: list[Any],
    instructions: list[dict[str, Any]] | None,
    first: dict[str, Any],
) -> None:
    GeminiChat(convert_system_message_to_human=True).invoke(history, config=config)
    [span] = telemetry.spans()
    if instructions is None:
        assert semconv.GEN_AI_SYSTEM_INSTRUCTIONS not in span.attributes
    else:
        assert _messages(span, semconv.GEN_AI_SYSTEM_INSTRUCTIONS) == instructions
    messages = _messages(span, semconv.GEN_AI_INPUT_MESSAGES)
    assert {k: v for k, v in messages[0].items() if k in ("role", "parts")} == first
    assert "system" not in [message["role"] for message in messages]
    if instructions is None:
        merged = next(m for m in messages if m["parts"][:1] == [BRIEF])
        assert merged["parts"] == [BRIEF, {"type": "text", "content": "hi"}]
    telemetry.assert_conformant()


# --- finish reasons ----------------------------------------------------------------------------


class ProviderChat(BaseChatModel):
    """Answers with the message and generation info a provider's LangChain model gives."""

    message: AIMessage
    info: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "provider"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        return ChatResult(
            generations=[ChatGeneration(message=self.message, generation_info=self.info)]
        )


@pytest.mark.parametrize(
    ("message", "info", "raw", "recorded"),
    [
        pytest.param(  # langchain-ollama: the final chunk's fields
            AIMessage("truncated"), {"done": True, "done_reason": "length"}, "length", "length",
            id="ollama",
        ),
        pytest.param(  # langchain-aws ChatBedrockConverse: the Converse response
            AIMessage("truncated", response_metadata={"stopReason": "max_tokens"}), None,
            "max_tokens", "length", id="bedrock-converse",
        ),
        pytest.param(
            AIMessage("no", response_metadata={"stop_reason": "refusal"}), None,
            "refusal", "refusal", id="anthropic-refusal",
        ),
        pytest.param(
            AIMessage("...", response_metadata={"finish_reason": "RECITATION"}), None,
            "RECITATION", "RECITATION", id="gemini-recitation",
        ),
        pytest.param(  # the Responses API: a status, and why it is incomplete
            AIMessage("truncated", response_metadata={
                "object": "response", "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
            }), None, "max_output_tokens", "length", id="responses-incomplete",
        ),
        pytest.param(
            AIMessage("done", response_metadata={"object": "response", "status": "completed"}),
            None, "stop", "stop", id="responses-completed",
        ),
        pytest.param(
            AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "c1"}],
                      response_metadata={"object": "response", "status": "completed"}),
            None, "tool_call", "tool_call", id="responses-tool-call",
        ),
    ],
)  # fmt: skip
def test_finish_reasons_of_each_provider(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    message: AIMessage,
    info: dict[str, Any] | None,
    raw: str,
    recorded: str,
) -> None:
    ProviderChat(message=message, info=info).invoke("hi", config=config)
    [span] = telemetry.spans()
    assert span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == (raw,)
    [output] = _messages(span, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["finish_reason"] == recorded
    telemetry.assert_conformant()


RESPONSE = {
    "id": "resp_123",
    "object": "response",
    "created_at": 1,
    "status": "incomplete",
    "model": "o4-mini-2025-04-16",
    "output": [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [
                {"type": "summary_text", "text": "Weather first."},
                {"type": "summary_text", "text": "Then the answer."},
            ],
        },
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Sunny", "annotations": []}],
        },
    ],
    "usage": {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 15},
        "total_tokens": 30,
    },
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "text": {"format": {"type": "text"}},
    "incomplete_details": {"reason": "max_output_tokens"},
    "error": None,
    "instructions": None,
    "metadata": {},
}


def test_responses_api_reasoning_and_incomplete_answer(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    if "use_responses_api" not in ChatOpenAI.model_fields:
        pytest.skip("this langchain-openai has no Responses API support")
    model = _openai(lambda request: RESPONSE, model="o4-mini", use_responses_api=True)
    model.invoke("weather?", config=config)
    [span] = telemetry.spans()
    assert span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("max_output_tokens",)
    [output] = _messages(span, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["finish_reason"] == "length"
    assert output["parts"] == [
        {"type": "reasoning", "content": "Weather first.\n\nThen the answer."},
        {"type": "text", "content": "Sunny"},
    ]
    telemetry.assert_conformant()


SEARCHED = {
    **RESPONSE,
    "status": "completed",
    "incomplete_details": None,
    "output": [
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "query": "weather Paris"},
        },
        RESPONSE["output"][1],
    ],
}


def test_server_tool_calls_of_v1_content_are_server_tool_call_parts(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    """LangChain's standard blocks of a tool the provider ran (``output_version="v1"``) are the
    conventions' server tool call parts, with the tool's details in their own object."""
    if "output_version" not in ChatOpenAI.model_fields:
        pytest.skip("this langchain-openai has no v1 content")
    model = _openai(
        lambda request: SEARCHED, model="gpt-4.1", use_responses_api=True, output_version="v1"
    )
    answer = model.invoke("weather?", config=config)
    model.invoke([HumanMessage("weather?"), answer, HumanMessage("thanks")], config=config)
    first, second = telemetry.spans()
    call = {
        "type": "server_tool_call",
        "id": "ws_1",
        "name": "web_search",
        "server_tool_call": {
            "type": "web_search",
            "arguments": {"query": "weather Paris", "type": "search"},
        },
    }
    response = {
        "type": "server_tool_call_response",
        "id": "ws_1",
        "server_tool_call_response": {"type": "web_search", "status": "success"},
    }
    [output] = _messages(first, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["parts"] == [call, response, {"type": "text", "content": "Sunny"}]
    history = _messages(second, semconv.GEN_AI_INPUT_MESSAGES)
    assert history[1]["parts"] == output["parts"]
    telemetry.assert_conformant()


def test_a_server_tool_result_without_an_id_is_named_by_no_call(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    """A result block names its tool through its call's id: one without an id matches no call
    (not another call without one)."""
    blocks = [
        {"type": "server_tool_call", "name": "web_search", "args": {"q": "x"}},
        {"type": "server_tool_result", "status": "success"},
        {"type": "server_tool_call", "id": "ci_1", "name": "code_interpreter", "args": {}},
        {"type": "server_tool_result", "tool_call_id": "ci_1", "status": "success"},
    ]
    history = [HumanMessage("go"), AIMessage(blocks), HumanMessage("thanks")]
    ProviderSystemChat(ls_provider="openai").invoke(history, config=config)
    [span] = telemetry.spans()
    parts = _messages(span, semconv.GEN_AI_INPUT_MESSAGES)[1]["parts"]
    assert [part.get("id") for part in parts] == [None, None, "ci_1", "ci_1"]
    assert [part.get("server_tool_call_response", {}).get("type") for part in parts] == [
        None, "unknown", None, "code_interpreter",
    ]  # fmt: skip
    telemetry.assert_conformant()


def test_a_chat_completions_refusal_is_recorded(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    """OpenAI's chat completions put a refusal beside the (empty) content: it is the model's
    answer, recorded as the refusal part the Responses API's content gives."""
    refusal = "I'm sorry, I can't help with that."
    answer = _completion({"role": "assistant", "content": None, "refusal": refusal}, "stop")
    model = _openai(lambda request: answer, model="gpt-4o-mini")
    reply = model.invoke("how do I pick a lock?", config=config)
    assert reply.content == ""
    [span] = telemetry.spans()
    [output] = _messages(span, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["parts"] == [{"type": "refusal", "refusal": refusal}]
    assert output["finish_reason"] == "stop"
    telemetry.assert_conformant()


# --- reasoning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(  # DeepSeek, Ollama with reasoning=True
            AIMessage("4", additional_kwargs={"reasoning_content": "2+2 is 4."}), id="kwargs"
        ),
        pytest.param(  # Responses API, output_version="v0"
            AIMessage("4", additional_kwargs={"reasoning": {
                "type": "reasoning", "summary": [{"type": "summary_text", "text": "2+2 is 4."}],
            }}), id="responses-v0",
        ),
        pytest.param(  # Bedrock Converse's block
            AIMessage(content=[
                {"type": "reasoning_content",
                 "reasoning_content": {"text": "2+2 is 4.", "signature": "s"}},
                {"type": "text", "text": "4"},
            ]), id="bedrock",
        ),
    ],
)  # fmt: skip
def test_reasoning_beside_the_content(
    telemetry: Any, config: dict[str, Any], capture_content: Any, message: AIMessage
) -> None:
    ProviderChat(message=message).invoke("2+2?", config=config)
    [span] = telemetry.spans()
    [output] = _messages(span, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["parts"] == [
        {"type": "reasoning", "content": "2+2 is 4."},
        {"type": "text", "content": "4"},
    ]


# --- invalid tool calls ------------------------------------------------------------------------


def test_invalid_tool_calls_are_recorded_with_their_raw_arguments(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    bad = '{"city": "Par'
    call = {"id": "call_bad", "type": "function", "function": {"name": "weather", "arguments": bad}}
    answer = _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
    model = _openai(lambda request: answer, model="gpt-4o-mini")
    reply = model.invoke("weather?", config=config)
    assert reply.invalid_tool_calls
    assert not reply.tool_calls
    ScriptedChatModel(responses=[AIMessage("sorry")]).invoke(
        [HumanMessage("weather?"), reply], config=config
    )
    first, second = telemetry.spans()
    part = {"type": "tool_call", "name": "weather", "id": "call_bad", "arguments": bad}
    [output] = _messages(first, semconv.GEN_AI_OUTPUT_MESSAGES)
    assert output["parts"] == [part]
    assert output["finish_reason"] == "tool_call"
    assert _messages(second, semconv.GEN_AI_INPUT_MESSAGES)[1]["parts"] == [part]
    telemetry.assert_conformant()


# --- structured output -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_structured_output_sets_the_output_type(
    telemetry: Any, config: dict[str, Any], method: str
) -> None:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str

    answer = _completion({"role": "assistant", "content": '{"name": "Bo"}'}, "stop")
    model = _openai(lambda request: answer, model="gpt-4o-mini")
    model.with_structured_output(Person, method=method).invoke("who?", config=config)
    span = telemetry.find("chat gpt-4o-mini")
    assert span.attributes[semconv.GEN_AI_OUTPUT_TYPE] == "json"


def test_plain_call_has_no_output_type(telemetry: Any, config: dict[str, Any]) -> None:
    answer = _completion({"role": "assistant", "content": "hi"}, "stop")
    _openai(lambda request: answer, model="gpt-4o-mini").invoke("hi", config=config)
    [span] = telemetry.spans()
    assert semconv.GEN_AI_OUTPUT_TYPE not in span.attributes


def test_output_type_of_other_providers(telemetry: Any, config: dict[str, Any]) -> None:
    model = ProviderChat(message=AIMessage("{}"))
    model.bind(format={"type": "object"}).invoke("hi", config=config)  # Ollama
    model.bind(response_mime_type="application/json").invoke("hi", config=config)  # Gemini
    model.bind(response_mime_type="text/plain").invoke("hi", config=config)
    assert [span.attributes.get(semconv.GEN_AI_OUTPUT_TYPE) for span in telemetry.spans()] == [
        "json",
        "json",
        "text",
    ]


# --- tools returning a Command -----------------------------------------------------------------


def test_a_tool_returning_a_command_records_its_tool_message(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    types = pytest.importorskip("langgraph.types")
    from langchain_core.tools import tool

    @tool
    def set_flag(flag: str) -> Any:
        """Sets a flag."""
        return types.Command(
            update={"messages": [ToolMessage(f"flag {flag} set", tool_call_id="c2")], "flag": flag}
        )

    @tool
    def remember(fact: str) -> Any:
        """Remembers a fact."""
        return types.Command(update=[("facts", [fact])])

    set_flag.invoke(
        {"name": "set_flag", "args": {"flag": "x"}, "id": "c2", "type": "tool_call"}, config=config
    )
    remember.invoke(
        {"name": "remember", "args": {"fact": "f"}, "id": "c3", "type": "tool_call"}, config=config
    )
    results = [span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] for span in telemetry.spans()]
    assert results[0] == "flag x set"
    assert json.loads(results[1]) == [["facts", ["f"]]]


def test_command_result_picks_the_tool_message_of_its_call() -> None:
    types = pytest.importorskip("langgraph.types")
    from threadline.langchain import _convert

    command = types.Command(
        update={
            "messages": [
                ToolMessage("other call", tool_call_id="other"),
                ToolMessage("flag set", tool_call_id="c2"),
            ]
        }
    )
    assert _convert.tool_result(command, "c2") == "flag set"
    assert _convert.tool_result(command, "c9") == command.update
    assert (
        _convert.tool_result(
            types.Command(update=[("messages", [ToolMessage("one", tool_call_id="c1")])])
        )
        == "one"
    )


# --- retrieval scores --------------------------------------------------------------------------


class Float32:
    """Stands in for numpy's float32: a number that is not a float."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value


def test_retrieval_scores_of_any_numeric_type(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Reranked(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [
                Document("a", id="d1", metadata={"relevance_score": Float32(0.5)}),
                Document("b", id="d2", metadata={"score": Decimal("0.25")}),
                Document("c", id="d3", metadata={"score": True}),
                Document("d", id="d4", metadata={"score": 2}),
            ]

    Reranked().invoke("q", config=config)
    [span] = telemetry.spans()
    documents = json.loads(span.attributes[semconv.GEN_AI_RETRIEVAL_DOCUMENTS])
    assert [d.get("score") for d in documents] == [0.5, 0.25, None, 2]
    telemetry.assert_conformant()
