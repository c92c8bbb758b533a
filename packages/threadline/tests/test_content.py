"""Content capture: off by default, JSON on spans, structured on events, truncation, redaction."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import threadline
from threadline import config, semconv
from threadline.content import (
    BlobPart,
    FilePart,
    FunctionToolDefinition,
    GenericPart,
    GenericToolDefinition,
    InputMessage,
    OutputMessage,
    ReasoningPart,
    Redactable,
    RetrievalDocument,
    ServerToolCallPart,
    ServerToolCallResponsePart,
    TextPart,
    ToolCallRequestPart,
    ToolCallResponsePart,
    UriPart,
    text_input,
)
from threadline.testing import Telemetry, find


@pytest.fixture
def restore_settings() -> Iterator[None]:
    previous = config.current()
    yield
    config.restore(previous)


def chat_with_content() -> None:
    with threadline.inference(
        "gpt-4o",
        provider="openai",
        system_instructions=[TextPart("Be brief.")],
        tool_definitions=[
            FunctionToolDefinition(
                "get_weather", "Weather by city", {"type": "object", "properties": {}}
            )
        ],
        input_messages=[
            text_input("user", "Weather in Paris?"),
            InputMessage(
                "assistant",
                [ToolCallRequestPart("get_weather", "c1", '{"city": "Paris"}')],
            ),
            InputMessage("tool", [ToolCallResponsePart({"temp": 18}, "c1")]),
            InputMessage(
                "user",
                [
                    BlobPart("image", b"\x89PNG", "image/png"),
                    UriPart("image", "https://example.com/a.png"),
                ],
            ),
        ],
    ) as run:
        run.update(
            output_messages=[
                OutputMessage([ReasoningPart("think"), TextPart("18 °C")], finish_reason="stop")
            ],
            finish_reasons=["stop"],
        )
    with threadline.execute_tool("get_weather", arguments='{"city": "Paris"}') as tool:
        tool.update(result="18 degrees")
    with threadline.retrieval("kb", query="paris weather") as retrieval:
        retrieval.update(documents=[RetrievalDocument("doc-1", 0.9, "Paris is mild.")])


def test_content_is_off_by_default(telemetry: Telemetry) -> None:
    assert config.current().capture_content is config.ContentCapture.NO_CONTENT
    chat_with_content()
    for span in telemetry.spans():
        assert not set(span.attributes) & {
            *semconv.CONTENT_SCHEMAS,
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
            semconv.GEN_AI_TOOL_CALL_RESULT,
            semconv.GEN_AI_RETRIEVAL_QUERY_TEXT,
        }
    assert telemetry.events() == []


def test_span_and_event_content_match_the_schemas(
    telemetry: Telemetry, capture_content: object
) -> None:
    chat_with_content()
    spans = telemetry.spans()
    chat = find(spans, "chat gpt-4o")
    assert json.loads(chat.attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
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
            "parts": [{"type": "tool_call_response", "response": {"temp": 18}, "id": "c1"}],
        },
        {
            "role": "user",
            "parts": [
                {
                    "type": "blob",
                    "modality": "image",
                    "content": "iVBORw==",
                    "mime_type": "image/png",
                },
                {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
            ],
        },
    ]
    assert json.loads(chat.attributes[semconv.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][1] == {
        "type": "text",
        "content": "18 °C",
    }
    tool = find(spans, "execute_tool get_weather")
    assert json.loads(tool.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "18 degrees"
    retrieval = find(spans, "retrieval kb")
    assert retrieval.attributes[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] == "paris weather"
    [event] = telemetry.events(semconv.EVENT_INFERENCE_DETAILS)
    assert event["severity_number"] == 5
    assert event["span_id"] == chat.span_id
    assert event["timestamp"] == chat.end_ns  # when the operation it details ended
    assert event["attributes"][semconv.GEN_AI_OPERATION_NAME] == "chat"
    # structured (not JSON text) on the event
    assert event["attributes"][semconv.GEN_AI_SYSTEM_INSTRUCTIONS][0]["content"] == "Be brief."
    telemetry.assert_conformant()


def test_event_only_mode_keeps_spans_clean(telemetry: Telemetry, restore_settings: None) -> None:
    threadline.configure(capture_content="EVENT_ONLY")
    chat_with_content()
    assert semconv.GEN_AI_INPUT_MESSAGES not in find(telemetry.spans(), "chat gpt-4o").attributes
    assert len(telemetry.events(semconv.EVENT_INFERENCE_DETAILS)) == 1


def test_truncation_preserves_json_structure(telemetry: Telemetry, restore_settings: None) -> None:
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=10)
    with threadline.inference(
        "m", provider="openai", input_messages=[text_input("user", "x" * 50)]
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    messages = json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert messages[0]["parts"][0]["content"] == "x" * 10 + "…[truncated]"
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    telemetry.assert_conformant()


def test_server_tool_parts_hold_their_details_under_the_tools_name(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=10)
    call = ServerToolCallPart("web_search", "ws_1", {"arguments": {"query": "q" * 50}})
    result = ServerToolCallResponsePart("web_search", "ws_1", {"status": "success", "type": "x"})
    with threadline.inference("m", provider="openai") as run:
        run.update(output_messages=[OutputMessage([call, result, ServerToolCallPart("code")])])
    span = find(telemetry.spans(), "chat m")
    [message] = json.loads(span.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert message["parts"] == [
        {
            "type": "server_tool_call",
            "name": "web_search",
            "id": "ws_1",
            "server_tool_call": {
                "type": "web_search",
                "arguments": {"query": "q" * 10 + "…[truncated]"},
            },
        },
        {
            "type": "server_tool_call_response",
            "id": "ws_1",
            # told by the tool's name, whatever "type" the provider's fields held
            "server_tool_call_response": {"type": "web_search", "status": "success"},
        },
        {"type": "server_tool_call", "name": "code", "server_tool_call": {"type": "code"}},
    ]
    telemetry.assert_conformant()


def test_truncation_cuts_mapping_keys_too(telemetry: Telemetry, restore_settings: None) -> None:
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=10)
    with threadline.execute_tool("t", arguments={"k" * 1000: {"n" * 1000: 1}, "short": 2}):
        pass
    span = find(telemetry.spans(), "execute_tool t")
    arguments = json.loads(span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS])
    assert arguments == {"k" * 10 + "…[truncated]": {"n" * 10 + "…[truncated]": 1}, "short": 2}
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True


def test_truncated_blob_stays_valid_base64(telemetry: Telemetry, restore_settings: None) -> None:
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=10)
    image = bytes(range(50))
    with threadline.inference(
        "m",
        provider="openai",
        input_messages=[InputMessage("user", [BlobPart("image", image, "image/png")])],
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    [part] = json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])[0]["parts"]
    assert len(part["content"]) <= 10
    assert base64.b64decode(part["content"], validate=True) == image[:6]  # the leading bytes
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    telemetry.assert_conformant()


def test_redactor_sees_every_part(telemetry: Telemetry, restore_settings: None) -> None:
    seen: list[str] = []

    def redact(part: Redactable) -> Redactable | None:
        seen.append(type(part).__name__)
        if isinstance(part, TextPart) and "secret" in part.content:
            return TextPart("[redacted]")
        if isinstance(part, BlobPart):
            return None  # drop images entirely
        return part

    threadline.configure(capture_content="SPAN_ONLY", redactor=redact)
    chat_with_content()
    with threadline.inference(
        "m", provider="openai", input_messages=[text_input("user", "my secret")]
    ):
        pass
    spans = telemetry.spans()
    assert json.loads(find(spans, "chat m").attributes[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "[redacted]"}]}
    ]
    chat = json.loads(find(spans, "chat gpt-4o").attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert [p["type"] for p in chat[3]["parts"]] == ["uri"]
    assert set(seen) >= {
        "TextPart",
        "ToolCallRequestPart",
        "ToolCallResponsePart",
        "BlobPart",
        "UriPart",
        "ReasoningPart",
        "FunctionToolDefinition",
        "RetrievalDocument",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SPAN_ONLY", "SPAN_ONLY"),
        ("span_and_event", "SPAN_AND_EVENT"),
        ("event_only", "EVENT_ONLY"),
        ("true", "SPAN_AND_EVENT"),
        ("nonsense", "NO_CONTENT"),
        ("", "NO_CONTENT"),
    ],
)
def test_capture_env_var(value: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = config.current()
    monkeypatch.setenv(config.ENV_CAPTURE_CONTENT, value)
    try:
        assert config.reload_from_env().capture_content.value == expected
    finally:
        config.restore(previous)


def test_configure_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="capture_content"):
        threadline.configure(capture_content="sometimes")
    with pytest.raises(ValueError, match="max_content_length"):
        threadline.configure(max_content_length=0)
    with pytest.raises(TypeError, match="redactor"):
        threadline.configure(redactor="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="baggage_allowlist"):
        threadline.configure(baggage_allowlist="session.id")
    with pytest.raises(ValueError, match="'bad key' is not a valid baggage key"):
        threadline.configure(baggage_allowlist=["session.id", "bad key"])
    with pytest.raises(ValueError, match="metric_baggage_keys"):
        threadline.configure(metric_baggage_keys=[""])
    with pytest.raises(TypeError, match="cost must be a bool"):
        threadline.configure(cost="false")  # type: ignore[arg-type]
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    with pytest.raises(TypeError, match="tracer_provider must have a get_tracer"):
        threadline.configure(tracer_provider=MeterProvider())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider must have a get_meter"):
        threadline.configure(meter_provider=TracerProvider())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logger_provider must have a get_logger"):
        threadline.configure(logger_provider=object())  # type: ignore[arg-type]


def test_configure_rejects_values_of_the_wrong_type_with_a_clear_error(
    restore_settings: None,
) -> None:
    with pytest.raises(TypeError, match="capture_content must be a ContentCapture"):
        threadline.configure(capture_content=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capture_content must be a ContentCapture"):
        threadline.configure(capture_content=["SPAN_ONLY"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="baggage_allowlist must be an iterable of str keys"):
        threadline.configure(baggage_allowlist=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric_baggage_keys: keys must be str"):
        threadline.configure(metric_baggage_keys=[["feature"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="baggage_allowlist: keys must be str"):
        threadline.configure(baggage_allowlist=[1])  # type: ignore[list-item]
    assert threadline.configure(capture_content=True).capture_content.value == "SPAN_AND_EVENT"


def test_a_baggage_key_with_a_trailing_newline_is_refused(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A key ending in a newline would be written into the carrier's ``baggage`` header."""
    with pytest.raises(ValueError, match="is not a valid baggage key"):
        threadline.configure(baggage_allowlist=["session.id", "feature\n"])
    with pytest.raises(ValueError, match="is not a valid baggage key"):
        threadline.session("s-1", **{"feature\n": "search"})
    threadline.configure(baggage_allowlist=["session.id", "feature"])
    headers: dict[str, str] = {}
    with threadline.session("s-1", feature="search"):
        threadline.inject(headers)
        threadline.inference("m", provider="openai").end()
    assert headers == {"baggage": "session.id=s-1,feature=search"}
    assert telemetry.find("chat m").attributes["feature"] == "search"


def test_invalid_baggage_keys_from_the_environment_are_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, restore_settings: None
) -> None:
    monkeypatch.setenv("THREADLINE_BAGGAGE_ALLOWLIST", "session.id, bad key,tenant.id")
    with caplog.at_level("WARNING", logger="threadline"):
        settings = config.reload_from_env()
    assert settings.baggage_allowlist == {"session.id", "tenant.id"}
    assert "bad key" in caplog.text


def test_media_in_a_tool_result_is_redacted_and_recorded_as_parts(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """An image a tool returned, given as a media part among the result's blocks, is recorded
    as that part (valid base64 even when cut) and passed through the redactor on its own."""
    png = b"\x89PNG" + bytes(range(256)) * 40
    result = [
        {"type": "text", "text": "the chart"},
        BlobPart(modality="image", content=png, mime_type="image/png"),
        UriPart(modality="image", uri="https://example.com/a.png"),
    ]
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=4096)
    with threadline.execute_tool("chart") as tool:
        tool.update(result=result)
    threadline.configure(redactor=lambda part: None if isinstance(part, BlobPart) else part)
    with threadline.execute_tool("chart_redacted") as tool:
        tool.update(result=result)
    spans = telemetry.spans()
    recorded = json.loads(
        find(spans, "execute_tool chart").attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
    )
    assert recorded[0] == {"type": "text", "text": "the chart"}
    assert (recorded[1]["type"], recorded[1]["mime_type"]) == ("blob", "image/png")
    assert png.startswith(base64.b64decode(recorded[1]["content"]))  # cut, still base64
    assert recorded[2] == {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"}
    redacted = find(spans, "execute_tool chart_redacted").attributes[
        semconv.GEN_AI_TOOL_CALL_RESULT
    ]
    assert json.loads(redacted) == [recorded[0], recorded[2]]
    assert base64.b64encode(png[:64]).decode() not in redacted
    telemetry.assert_conformant()
    # A redactor answering with something that is no part loses that part only.
    threadline.configure(redactor=lambda part: {"bad": 1} if isinstance(part, BlobPart) else part)
    with threadline.execute_tool("chart_misredacted") as tool:
        tool.update(result=result)
    misredacted = find(telemetry.spans(), "execute_tool chart_misredacted")
    assert json.loads(misredacted.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]) == json.loads(
        redacted
    )


def test_a_dataclass_result_is_its_public_fields_read_as_they_are(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A dataclass is recorded by its public fields, each converted like any value: a field no
    deep copy can take (a lock) does not lose the result, and private fields stay out."""

    @dataclasses.dataclass
    class Report:
        title: str
        rows: list[dict[str, int]]
        lock: Any = dataclasses.field(default_factory=threading.Lock)
        _cache: str = "internal"
        api_key: str = dataclasses.field(default="sk-secret", repr=False)

    threadline.configure(capture_content="SPAN_ONLY")
    with threadline.execute_tool("report") as tool:
        tool.update(result=Report("sales", [{"q1": 3}]))
    recorded = json.loads(
        find(telemetry.spans(), "execute_tool report").attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
    )
    assert recorded["title"] == "sales"
    assert recorded["rows"] == [{"q1": 3}]
    assert recorded["lock"].startswith("<unlocked _thread.lock")
    assert "_cache" not in recorded
    assert "api_key" not in recorded


def test_non_finite_numbers_are_recorded_as_null(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(capture_content="SPAN_ONLY")
    with threadline.execute_tool("stats") as tool:
        tool.update(result={"mean": float("nan"), "max": float("inf")})
    with threadline.retrieval("kb") as retrieval:
        retrieval.update(documents=[RetrievalDocument(id="d1", score=float("-inf"))])
    spans = telemetry.spans()
    result = find(spans, "execute_tool stats").attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
    documents = find(spans, "retrieval kb").attributes[semconv.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert result == '{"mean":null,"max":null}'
    assert documents == '[{"id":"d1","score":null}]'
    telemetry.assert_conformant()


def test_the_schema_check_rejects_non_finite_numbers() -> None:
    from threadline.testing import content_errors

    bad = '[{"role":"user","parts":[{"type":"text","content":"x","n":NaN}]}]'
    assert content_errors(semconv.GEN_AI_INPUT_MESSAGES, bad)
    assert not content_errors(semconv.GEN_AI_INPUT_MESSAGES, bad.replace("NaN", "null"))


def test_redactor_sees_the_retrieval_query(telemetry: Telemetry, restore_settings: None) -> None:
    def redact(part: Redactable) -> Redactable | None:
        if isinstance(part, TextPart):
            return TextPart(part.content.replace("bob@example.com", "<email>"))
        return part

    threadline.configure(capture_content="SPAN_ONLY", redactor=redact)
    with threadline.retrieval("kb", query="find bob@example.com"):
        pass
    threadline.configure(redactor=lambda part: None if isinstance(part, TextPart) else part)
    with threadline.retrieval("dropped", query="find bob@example.com"):
        pass
    spans = telemetry.spans()
    kb = find(spans, "retrieval kb").attributes
    assert kb[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] == "find <email>"
    assert semconv.GEN_AI_RETRIEVAL_QUERY_TEXT not in find(spans, "retrieval dropped").attributes


def test_every_span_with_cut_content_is_flagged(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=8)
    with threadline.execute_tool("long", arguments={"q": "x" * 20}):
        pass
    with threadline.retrieval("kb", query="y" * 20):
        pass
    with threadline.execute_tool("short", arguments={"q": "x"}):
        pass
    spans = telemetry.spans()
    for name in ("execute_tool long", "retrieval kb"):
        assert find(spans, name).attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True, name
    assert semconv.THREADLINE_CONTENT_TRUNCATED not in find(spans, "execute_tool short").attributes


@pytest.mark.parametrize(
    ("env", "value"),
    [
        (config.ENV_RUN_TTL, "nan"),
        (config.ENV_RUN_TTL, "inf"),
        (config.ENV_RUN_TTL, "-1"),
        (config.ENV_COST, "enabled"),
    ],
)
def test_invalid_env_values_keep_the_default(
    env: str, value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    previous = config.current()
    monkeypatch.setenv(env, value)
    try:
        settings = config.reload_from_env()
        assert settings.run_ttl_seconds == config.Settings.run_ttl_seconds
        assert settings.cost is True
    finally:
        config.restore(previous)
    assert f"ignoring invalid {env}" in caplog.text


def test_configure_rejects_a_ttl_that_is_not_finite(restore_settings: None) -> None:
    for ttl in (float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="run_ttl_seconds"):
            threadline.configure(run_ttl_seconds=ttl)
    assert threadline.configure(capture_content="1").capture_content.value == "SPAN_AND_EVENT"


def test_media_given_by_url() -> None:
    from threadline.content import UriPart, media_part

    assert media_part("image", "data:image/png;base64,iVBORw0KGgo=") == BlobPart(
        "image", b"\x89PNG\r\n\x1a\n", mime_type="image/png"
    )
    assert media_part("image", "https://example.com/a.png", "image/png") == UriPart(
        "image", "https://example.com/a.png", mime_type="image/png"
    )
    # not base64 after all, or not marked as such: kept as the URI given
    assert isinstance(media_part("image", "data:image/png;base64,%%%"), UriPart)
    assert isinstance(media_part("image", "data:text/plain,hello"), UriPart)


def test_a_tool_schema_nested_past_the_depth_limit_stays_a_valid_schema(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A recursive model expanded inline nests deeper than content keeps; where it is cut, a
    subschema gives way to ``{}`` (any value), never to a string where a schema belongs."""
    from jsonschema import Draft202012Validator

    threadline.configure(capture_content="SPAN_ONLY")
    node: dict[str, object] = {"type": "string"}
    for level in range(30):  # object → properties → child → anyOf → [schema, null], ...
        node = {
            "type": "object",
            "properties": {"child": {"anyOf": [node, {"type": "null"}]}},
            "required": ["child"],
            "enum" if level == 0 else "examples": [{"a": [[1]]}],
        }
    with threadline.inference(
        "m", provider="openai", tool_definitions=[FunctionToolDefinition("tree", parameters=node)]
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    (definition,) = json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    Draft202012Validator.check_schema(definition["parameters"])
    assert "…[truncated]" not in span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS]
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    # the top levels are kept as given
    assert definition["parameters"]["required"] == ["child"]
    assert definition["parameters"]["properties"]["child"]["anyOf"][1] == {"type": "null"}


def test_generic_tool_definition_keeps_its_type_and_settings(
    telemetry: Telemetry, restore_settings: None
) -> None:
    seen: list[object] = []

    def redact(item: Redactable) -> Redactable | None:
        seen.append(item)
        return item

    threadline.configure(capture_content="SPAN_ONLY", redactor=redact)
    search = GenericToolDefinition("web_search", "web_search", {"max_uses": 3, "type": "ignored"})
    remote = GenericToolDefinition(
        "mcp",
        "github",
        {
            "server_url": "https://user:pw@mcp.example.com:8443/sse?token=abc#x",
            "headers": {"Authorization": "Bearer sk-1"},
            "authorization_token": "sk-2",
            "api_key": "sk-3",
            "allowed_tools": ["search", "read"],
            "settings": {"nested": "dropped"},
            "require_approval": "never",
        },
    )
    with threadline.inference(
        "m",
        provider="anthropic",
        tool_definitions=[FunctionToolDefinition("lookup"), search, remote],
    ):
        pass
    definitions = json.loads(
        find(telemetry.spans(), "chat m").attributes[semconv.GEN_AI_TOOL_DEFINITIONS]
    )
    assert definitions == [
        {"type": "function", "name": "lookup"},
        {"type": "web_search", "name": "web_search", "max_uses": 3},
        {  # plain settings only, nothing that looks like a credential
            "type": "mcp",
            "name": "github",
            "server_url": "https://mcp.example.com:8443/sse",
            "allowed_tools": ["search", "read"],
            "require_approval": "never",
        },
    ]
    assert (
        "sk-" not in find(telemetry.spans(), "chat m").attributes[semconv.GEN_AI_TOOL_DEFINITIONS]
    )
    assert search in seen
    telemetry.assert_conformant()


def test_a_tool_call_reply_without_text_keeps_the_rest_of_its_content(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """OpenAI's ``message.content`` is None on a reply of tool calls only: that part is left
    out, and a part that cannot be serialised loses only itself, never the span's content."""
    threadline.configure(capture_content="SPAN_AND_EVENT")
    with threadline.inference(
        "gpt-4o",
        provider="openai",
        input_messages=[text_input("user", "weather in Paris?")],
        system_instructions=[TextPart("Be brief."), UriPart("image", None)],  # type: ignore[arg-type]
    ) as chat:
        chat.update(
            output_messages=[
                OutputMessage(
                    [TextPart(None), ToolCallRequestPart("weather", id="c1")],  # type: ignore[arg-type]
                    finish_reason="tool_calls",
                )
            ]
        )
    attributes = find(telemetry.spans(), "chat gpt-4o").attributes
    assert json.loads(attributes[semconv.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "tool_call", "name": "weather", "id": "c1"}
    ]
    assert json.loads(attributes[semconv.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert semconv.GEN_AI_INPUT_MESSAGES in attributes
    assert len(telemetry.events(semconv.EVENT_INFERENCE_DETAILS)) == 1
    telemetry.assert_conformant()


def test_content_survives_the_otlp_encoding(telemetry: Telemetry, restore_settings: None) -> None:
    """What OTLP cannot carry (an integer beyond 64 bits, a lone surrogate, nesting past the
    decoders' depth limit) would make the exporter drop the attribute, or refuse the batch."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    threadline.configure(capture_content="SPAN_AND_EVENT")
    nested: dict[str, object] = {}
    level = nested
    for _ in range(60):
        level["child"] = {"list": [{}]}
        level = level["child"]["list"][0]  # type: ignore[index]
    surrogate = b"caf\xe9".decode("utf-8", "surrogateescape")
    with threadline.inference(
        "m",
        provider="openai",
        input_messages=[
            text_input("user", surrogate),
            InputMessage(
                "assistant",
                [ToolCallRequestPart("pay", arguments={"wei": 150 * 10**18, "deep": nested})],
            ),
        ],
    ):
        pass
    (span,) = encode_spans(telemetry.span_exporter.get_finished_spans()).resource_spans
    keys = {kv.key for kv in span.scope_spans[0].spans[0].attributes}
    assert semconv.GEN_AI_INPUT_MESSAGES in keys
    request = encode_logs(telemetry.event_exporter.get_finished_logs())
    # the receiving side decodes it within the default depth limit
    decoded = ExportLogsServiceRequest.FromString(request.SerializeToString())
    (record,) = decoded.resource_logs[0].scope_logs[0].log_records
    assert semconv.GEN_AI_INPUT_MESSAGES in {kv.key for kv in record.attributes}
    messages = json.loads(
        find(telemetry.spans(), "chat m").attributes[semconv.GEN_AI_INPUT_MESSAGES]
    )
    assert messages[0]["parts"][0]["content"] == "caf\ufffd"
    assert messages[1]["parts"][0]["arguments"]["wei"] == str(150 * 10**18)


def test_retrieval_documents_from_a_store_match_the_schema(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Stores hand over int ids and numpy-like scores; the schema takes a string and a number."""

    class Float32:  # what numpy.float32 offers: __float__, no JSON encoding
        def __float__(self) -> float:
            return 0.5

    threadline.configure(capture_content="SPAN_ONLY")
    with threadline.retrieval(data_source_id="kb") as retrieval:
        retrieval.update(
            documents=[
                RetrievalDocument(id=7, score=Float32(), content="a"),  # type: ignore[arg-type]
                RetrievalDocument(id="d2", score="n/a"),  # type: ignore[arg-type]
            ]
        )
    span = find(telemetry.spans(), "retrieval kb")
    assert json.loads(span.attributes[semconv.GEN_AI_RETRIEVAL_DOCUMENTS]) == [
        {"id": "7", "score": 0.5, "content": "a"},
        {"id": "d2"},
    ]
    telemetry.assert_conformant()


def test_names_and_ids_with_lone_surrogates_survive_the_exporter(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Text decoded with ``surrogateescape`` (a tool call id, a tool's name) becomes U+FFFD in
    names and ids as in text: the OTLP exporter cannot encode a lone surrogate and would drop
    the whole attribute."""
    threadline.configure(capture_content="SPAN_ONLY")
    bad = json.loads('"call_\\ud83d"')
    with threadline.inference(
        "gpt-4o",
        provider="openai",
        tool_definitions=[FunctionToolDefinition(f"tool_{bad}", None, None)],
    ) as run:
        run.update(
            output_messages=[
                OutputMessage(
                    [ToolCallRequestPart(f"name_{bad}", bad, "{}")], finish_reason=f"stop{bad}"
                )
            ]
        )
    with threadline.retrieval("kb") as retrieval:
        retrieval.update(documents=[RetrievalDocument(bad, 0.5, "text")])
    for span in telemetry.spans():
        for _key, value in span.attributes.items():
            if isinstance(value, str):
                value.encode("utf-8")  # raises on a lone surrogate
    chat = find(telemetry.spans(), "chat gpt-4o").attributes
    (message,) = json.loads(chat[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert message["parts"][0]["id"] == "call_\ufffd"
    assert message["finish_reason"] == "stopcall_\ufffd"
    (tool,) = json.loads(chat[semconv.GEN_AI_TOOL_DEFINITIONS])
    assert tool["name"] == "tool_call_\ufffd"


def test_a_redactor_that_raises_loses_only_its_item(
    telemetry: Telemetry, restore_settings: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's redactor failing on one part leaves that part out (never unredacted) and
    keeps the rest of the run's content; the log names the redactor, not threadline."""

    def redact(item: Redactable) -> Redactable | None:
        if isinstance(item, TextPart) and "boom" in item.content:
            raise RuntimeError("redactor bug")
        return item

    threadline.configure(capture_content="SPAN_ONLY", redactor=redact)
    with caplog.at_level(logging.WARNING, logger="threadline"):
        with threadline.inference(
            "gpt-4o",
            provider="openai",
            input_messages=[text_input("user", "boom"), text_input("user", "fine")],
        ) as run:
            run.update(output_messages=[OutputMessage([TextPart("answer")])])
    chat = find(telemetry.spans(), "chat gpt-4o").attributes
    assert json.loads(chat[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": []},
        {"role": "user", "parts": [{"type": "text", "content": "fine"}]},
    ]
    assert json.loads(chat[semconv.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "answer"}
    ]
    assert "content redactor raised" in caplog.text
    assert "internal error" not in caplog.text


def test_tool_arguments_nested_past_the_json_parser_keep_the_rest(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Arguments that look like JSON but nest deeper than the parser goes are recorded as
    text; the result is recorded all the same."""
    threadline.configure(capture_content="SPAN_ONLY", max_content_length=100)
    deep = "[" * 100_000 + "]" * 100_000
    with threadline.execute_tool("t", arguments=deep) as tool:
        tool.update(result={"ok": True})
    span = find(telemetry.spans(), "execute_tool t").attributes
    arguments = span[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]
    assert isinstance(arguments, str)
    assert arguments.startswith("[[[")
    assert arguments.endswith("…[truncated]")
    assert json.loads(span[semconv.GEN_AI_TOOL_CALL_RESULT]) == {"ok": True}


def test_a_value_that_holds_itself_or_a_long_list_keeps_a_bounded_number_of_items(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A mapping that holds itself twice would be copied out 2**20 times over (seconds, tens of
    megabytes on the span); a long list in full. Each value keeps 10,000 items in all, the rest
    of a container being one truncation mark."""
    threadline.configure(capture_content="SPAN_ONLY")
    loop: dict[str, Any] = {}
    loop["a"] = loop
    loop["b"] = loop
    with threadline.execute_tool("t", arguments=loop) as tool:
        tool.update(result=list(range(20_000)))
    span = find(telemetry.spans(), "execute_tool t").attributes
    assert span[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    arguments = span[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]
    assert len(arguments) < 200_000
    assert '"…[truncated]":"…[truncated]"' in arguments
    assert json.loads(span[semconv.GEN_AI_TOOL_CALL_RESULT]) == [*range(10_000), "…[truncated]"]


def test_event_only_content_that_was_cut_is_flagged_on_the_event(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(capture_content="EVENT_ONLY", max_content_length=5)
    with threadline.inference("m", provider="openai", input_messages=[text_input("user", "é" * 9)]):
        pass
    assert semconv.THREADLINE_CONTENT_TRUNCATED not in find(telemetry.spans(), "chat m").attributes
    [event] = telemetry.events(semconv.EVENT_INFERENCE_DETAILS)
    assert event["attributes"][semconv.THREADLINE_CONTENT_TRUNCATED] is True
    assert event["attributes"][semconv.GEN_AI_INPUT_MESSAGES][0]["parts"][0]["content"] == (
        "é" * 5 + "…[truncated]"
    )
    telemetry.assert_conformant()


def test_a_tool_schema_keeps_a_bounded_number_of_items_and_stays_a_schema(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A tool's parameter schema has the same item budget as any value: a schema that shares
    its sub-schemas (2**19 paths) or a huge enum is cut where a mapping gives way to ``{}``, so
    it stays a valid (looser) schema."""
    from jsonschema import Draft202012Validator

    threadline.configure(capture_content="SPAN_ONLY")
    shared: dict[str, object] = {"type": "string"}
    for _ in range(19):
        shared = {"type": "object", "properties": {"a": shared, "b": shared}}
    huge_enum = {"type": "string", "enum": [str(i) for i in range(200_000)]}
    with threadline.inference(
        "m",
        provider="openai",
        tool_definitions=[
            FunctionToolDefinition("shared", parameters=shared),
            FunctionToolDefinition("choice", parameters=huge_enum),
        ],
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    recorded = span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS]
    assert len(recorded) < 1_000_000
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    for definition in json.loads(recorded):
        Draft202012Validator.check_schema(definition["parameters"])
    assert "…[truncated]" not in recorded


def test_parts_missing_a_required_field_are_left_out_and_ids_are_strings(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A part lacking a field its schema requires (a streamed tool call's chunk without its
    name, media without its data) has no shape to record: it is left out, as a text part of
    None is. An int id, name or file id is recorded as its digits, as the schemas take it."""
    threadline.configure(capture_content="SPAN_AND_EVENT")
    missing: list[Any] = [
        ToolCallRequestPart(None, "c1", "{}"),  # type: ignore[arg-type]
        ServerToolCallPart(None, "s1"),  # type: ignore[arg-type]
        BlobPart("image", None),  # type: ignore[arg-type]
        BlobPart(None, b"x"),  # type: ignore[arg-type]
        UriPart("image", None),  # type: ignore[arg-type]
        FilePart("document", None),  # type: ignore[arg-type]
        GenericPart("file", {"file": {"filename": "report.pdf"}}),  # a file block without data
    ]
    with threadline.inference(
        "m",
        provider="openai",
        input_messages=[
            InputMessage(
                "user",
                [*missing, FilePart("document", 42), GenericPart("citation", {"n": 1})],  # type: ignore[arg-type]
                name=3,  # type: ignore[arg-type]
            ),
            InputMessage(None, [TextPart("no role")]),  # type: ignore[arg-type]
        ],
        tool_definitions=[
            FunctionToolDefinition(None),  # type: ignore[arg-type]
            FunctionToolDefinition("f", 5),  # type: ignore[arg-type]
        ],
    ) as run:
        run.update(output_messages=[OutputMessage([ToolCallRequestPart("f", 7)])])  # type: ignore[arg-type]
    chat = find(telemetry.spans(), "chat m").attributes
    assert json.loads(chat[semconv.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "file", "modality": "document", "file_id": "42"},
                {"type": "citation", "n": 1},  # a kind of its own: recorded as it is
            ],
            "name": "3",
        }
    ]
    assert json.loads(chat[semconv.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "tool_call", "name": "f", "id": "7"}
    ]
    assert json.loads(chat[semconv.GEN_AI_TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "f", "description": "5"}
    ]
    assert len(telemetry.events(semconv.EVENT_INFERENCE_DETAILS)) == 1
    telemetry.assert_conformant()  # each part checked against the schema of its type


def test_a_tool_schema_cut_to_the_length_limit_stays_a_valid_schema(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Under a small length limit a schema's strings are cut as any content's are, property
    names and values alike, but not its keywords or JSON type names: what is recorded is
    still a schema, and no longer than the limit allows."""
    from jsonschema import Draft7Validator

    threadline.configure(capture_content="SPAN_ONLY", max_content_length=5)
    parameters = {
        "type": "object",
        "title": "Weather request",
        "properties": {
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "description": "The unit of the answer",
                "default": "celsius",
            },
            "description": {"$ref": "#/definitions/text"},  # a property of that name
            "days": {"type": ["integer", "null"], "minimum": 1, "examples": [3, "several days"]},
        },
        "required": ["unit"],
        "definitions": {"text": {"type": "string", "pattern": "^[a-z ]+$"}},
        "x-doc": "a" * 100_000,  # an extension keyword of the server's: cut like any text
    }
    with threadline.inference(
        "m",
        provider="openai",
        tool_definitions=[FunctionToolDefinition("get_weather", parameters=parameters)],
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    (definition,) = json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    recorded = definition["parameters"]
    assert not list(Draft7Validator(Draft7Validator.META_SCHEMA).iter_errors(recorded))
    assert recorded == {
        "type": "object",
        "title": "Weath…[truncated]",
        "properties": {
            "unit": {
                "type": "string",
                "enum": ["celsi…[truncated]", "fahre…[truncated]"],
                "description": "The u…[truncated]",
                "default": "celsi…[truncated]",
            },
            "descr…[truncated]": {"$ref": "#/def…[truncated]"},
            "days": {
                "type": ["integer", "null"],
                "minimum": 1,
                "examples": [3, "sever…[truncated]"],
            },
        },
        "required": ["unit"],
        "definitions": {"text": {"type": "string", "pattern": "^[a-z…[truncated]"}},
        "x-doc": "aaaaa…[truncated]",
    }
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True
    telemetry.assert_conformant()


def test_a_cut_schema_keeps_unique_required_names_and_numeric_bounds(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Names cut to the same text are kept once where draft-07 asks for unique items
    (``required``), and a bound beyond 64 bits (a uint64's maximum) stays a number."""
    from jsonschema import Draft7Validator

    threadline.configure(capture_content="SPAN_ONLY", max_content_length=5)
    parameters = {
        "type": "object",
        "required": ["weather_a", "weather_b", "n"],
        "properties": {"n": {"type": "integer", "maximum": 2**64 - 1}},
    }
    with threadline.inference(
        "m",
        provider="openai",
        tool_definitions=[FunctionToolDefinition("get_weather", parameters=parameters)],
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    (definition,) = json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS])
    recorded = definition["parameters"]
    assert not list(Draft7Validator(Draft7Validator.META_SCHEMA).iter_errors(recorded))
    assert recorded["required"] == ["weath…[truncated]", "n"]
    assert recorded["properties"]["n"]["maximum"] == float(2**64 - 1)
    telemetry.assert_conformant()


def test_a_schema_given_as_json_text_is_recorded_as_the_schema(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Frameworks hand over a tool's parameters as JSON text at times: recorded as the schema
    it is. What is no draft-07 schema (an object or a boolean) is left out, not recorded as a
    string the schema would reject."""
    threadline.configure(capture_content="SPAN_ONLY")
    with threadline.inference(
        "m",
        provider="openai",
        tool_definitions=[
            FunctionToolDefinition("a", parameters='{"type": "object"}'),  # type: ignore[arg-type]
            FunctionToolDefinition("b", parameters="not a schema"),  # type: ignore[arg-type]
            FunctionToolDefinition("c", parameters=["x"]),  # type: ignore[arg-type]
            FunctionToolDefinition("d", parameters=True),  # type: ignore[arg-type]
        ],
    ):
        pass
    span = find(telemetry.spans(), "chat m")
    assert json.loads(span.attributes[semconv.GEN_AI_TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "a", "parameters": {"type": "object"}},
        {"type": "function", "name": "b"},
        {"type": "function", "name": "c"},
        {"type": "function", "name": "d", "parameters": True},
    ]
    telemetry.assert_conformant()


def test_a_generic_part_of_a_known_kind_takes_its_schemas_types(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """A part given by its fields (a framework's own block) whose kind the conventions define is
    recorded in that kind's shape: its string fields as strings (an int's digits), and a
    server tool call's details as an object told by its type; one that cannot be is left out."""
    threadline.configure(capture_content="SPAN_ONLY")
    parts: list[Any] = [
        GenericPart("text", {"content": 42}),
        GenericPart("reasoning", {"content": 1.5}),
        GenericPart("tool_call", {"name": 7, "id": 8, "arguments": {"x": 1}}),
        GenericPart("blob", {"modality": "image", "content": b"\x89PNG", "mime_type": None}),
        GenericPart("server_tool_call", {"name": "web_search", "server_tool_call": {"q": "x"}}),
        GenericPart("server_tool_call", {"name": "web_search", "server_tool_call": "q=x"}),
        GenericPart("server_tool_call_response", {"server_tool_call_response": {"n": 1}}),
    ]
    with threadline.inference("m", provider="openai", input_messages=[InputMessage("user", parts)]):
        pass
    span = find(telemetry.spans(), "chat m")
    (message,) = json.loads(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert message["parts"] == [
        {"type": "text", "content": "42"},
        {"type": "reasoning", "content": "1.5"},
        {"type": "tool_call", "name": "7", "id": "8", "arguments": {"x": 1}},
        {"type": "blob", "modality": "image", "content": "iVBORw==", "mime_type": None},
        {
            "type": "server_tool_call",
            "name": "web_search",
            "server_tool_call": {"q": "x", "type": "web_search"},
        },
    ]
    telemetry.assert_conformant()


def test_prompt_variables_are_redacted_capped_and_named_safely(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """``prompts/get`` arguments from the wire: each a string attribute, redacted as the text
    it is and cut to the limit; at most 32; a name that is no plain identifier is dropped."""

    def redact(part: Redactable) -> Redactable | None:
        if isinstance(part, TextPart) and "secret" in part.content:
            return None
        return part

    threadline.configure(capture_content="SPAN_ONLY", redactor=redact, max_content_length=8)
    variables: dict[Any, Any] = {
        "city": "Oslo",
        "days": 3,  # serialised: a variable's value is a string
        "note": "a long note",
        "password": "secret",
        "bad name": "x",
        "x" * 65: "x",
        7: "x",
        **{f"v{i}": "" for i in range(40)},
    }
    with threadline.mcp_request("prompts/get", server=False, prompt_name="brief") as run:
        run.update(prompt_variables=variables)
    span = telemetry.find("prompts/get brief")
    recorded = {
        k.removeprefix(semconv.GEN_AI_PROMPT_VARIABLE_PREFIX): v
        for k, v in span.attributes.items()
        if k.startswith(semconv.GEN_AI_PROMPT_VARIABLE_PREFIX)
    }
    assert {k: recorded[k] for k in ("city", "days", "note")} == {
        "city": "Oslo",
        "days": "3",
        "note": "a long n…[truncated]",
    }
    assert not {"password", "bad name", "x" * 65, "7"} & set(recorded)
    assert len(recorded) == 32
    assert span.attributes[semconv.THREADLINE_CONTENT_TRUNCATED] is True


def test_prompt_variables_need_capture(telemetry: Telemetry) -> None:
    with threadline.mcp_request("prompts/get", server=False, prompt_name="brief") as run:
        run.update(prompt_variables={"city": "Oslo"})
    assert not [k for k in telemetry.find("prompts/get brief").attributes if "variable" in k]
