"""Each conformance rule fires on a bad span and stays quiet on conformant telemetry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from threadline import semconv
from threadline.testing import (
    KNOWN_ATTRIBUTES,
    RULE_IDS,
    ConformanceError,
    SpanRecord,
    Violation,
    assert_conformant,
    check_conformance,
    content_errors,
    is_known_attribute,
    load_schema,
)
from threadline.testing.telemetry import new_log_exporter

CLIENT, SERVER, INTERNAL = SpanKind.CLIENT, SpanKind.SERVER, SpanKind.INTERNAL

INPUT_MESSAGES = [
    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "parts": [
            {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
        ],
    },
    {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"temp_c": 21}}],
    },
]
OUTPUT_MESSAGES = [
    {
        "role": "assistant",
        "parts": [{"type": "text", "content": "21 °C and sunny."}],
        "finish_reason": "stop",
    }
]
SYSTEM_INSTRUCTIONS = [{"type": "text", "content": "You are a weather bot."}]
TOOL_DEFINITIONS = [
    {
        "type": "function",
        "name": "weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
RETRIEVAL_DOCUMENTS = [{"id": "doc-1", "score": 0.92}, {"id": "doc-2", "score": None}]


class Spans:
    """Builds finished spans with a local SDK provider (never the global one)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("threadline.tests")

    def span(
        self,
        name: str,
        kind: SpanKind = INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        *,
        status: StatusCode = StatusCode.UNSET,
        parent: trace.Span | None = None,
    ) -> ReadableSpan:
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        if status is not StatusCode.UNSET:
            span.set_status(Status(status))
        span.end()
        return self.exporter.get_finished_spans()[-1]

    def open(
        self, name: str, kind: SpanKind, attributes: Mapping[str, Any], parent: trace.Span | None
    ) -> trace.Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, kind=kind, attributes=attributes)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def emit_events(*events: Mapping[str, Any]) -> list[Any]:
    """Emits events through a local SDK LoggerProvider; returns the exported log records."""
    exporter = new_log_exporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("threadline.tests")
    for event in events:
        logger.emit(**event)
    return list(exporter.get_finished_logs())


@pytest.fixture
def spans() -> Spans:
    return Spans()


def chat_attributes(**overrides: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
        semconv.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 42,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 7,
    }
    attributes.update(overrides)
    return {k: v for k, v in attributes.items() if v is not None}


def mcp_attributes(**overrides: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.MCP_METHOD_NAME: "tools/call",
        semconv.GEN_AI_TOOL_NAME: "weather",
        semconv.GEN_AI_OPERATION_NAME: "execute_tool",
        semconv.MCP_PROTOCOL_VERSION: "2025-06-18",
        semconv.NETWORK_TRANSPORT: "pipe",
        semconv.JSONRPC_REQUEST_ID: "1",
    }
    attributes.update(overrides)
    return {k: v for k, v in attributes.items() if v is not None}


# --- one fully conformant set -------------------------------------------------------------------


def good_telemetry(spans: Spans) -> tuple[list[ReadableSpan], list[Any]]:
    """A trace touching every operation type, content on spans and events, and an MCP pair."""
    op = semconv.GEN_AI_OPERATION_NAME
    workflow = spans.open(
        "invoke_workflow trip_planner",
        INTERNAL,
        {op: "invoke_workflow", semconv.GEN_AI_WORKFLOW_NAME: "trip_planner"},
        None,
    )
    agent = spans.open(
        "invoke_agent planner",
        INTERNAL,
        {op: "invoke_agent", semconv.GEN_AI_AGENT_NAME: "planner"},
        workflow,
    )
    plan = spans.open(
        "plan planner", INTERNAL, {op: "plan", semconv.GEN_AI_AGENT_NAME: "planner"}, agent
    )
    spans.span(
        "chat gpt-4o",
        CLIENT,
        chat_attributes(
            **{
                semconv.SERVER_ADDRESS: "api.openai.com",
                semconv.SERVER_PORT: 443,
                semconv.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
                semconv.GEN_AI_INPUT_MESSAGES: json.dumps(INPUT_MESSAGES),
                semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(OUTPUT_MESSAGES),
                semconv.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps(SYSTEM_INSTRUCTIONS),
                semconv.GEN_AI_TOOL_DEFINITIONS: json.dumps(TOOL_DEFINITIONS),
                semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 0,
                "gen_ai.prompt.variable.city": "Paris",
                semconv.THREADLINE_COST_USD: 0.0012,
            }
        ),
        parent=plan,
    )
    plan.end()
    tool = spans.open(
        "execute_tool weather",
        INTERNAL,
        {
            op: "execute_tool",
            semconv.GEN_AI_TOOL_NAME: "weather",
            semconv.GEN_AI_TOOL_CALL_ID: "call_1",
            semconv.GEN_AI_TOOL_TYPE: "function",
        },
        agent,
    )
    mcp_client = spans.open(
        "tools/call weather",
        CLIENT,
        mcp_attributes(**{semconv.SERVER_ADDRESS: "localhost", semconv.SERVER_PORT: 8000}),
        tool,
    )
    spans.span(
        "tools/call weather",
        SERVER,
        mcp_attributes(**{semconv.CLIENT_ADDRESS: "127.0.0.1"}),
        parent=mcp_client,
    )
    mcp_client.end()
    spans.span(
        "resources/read",
        CLIENT,
        mcp_attributes(
            **{
                semconv.MCP_METHOD_NAME: "resources/read",
                semconv.MCP_RESOURCE_URI: "file:///forecast.md",
                semconv.GEN_AI_TOOL_NAME: None,
                semconv.GEN_AI_OPERATION_NAME: None,
            }
        ),
        parent=tool,
    )
    spans.span(
        "prompts/get trip",
        CLIENT,
        mcp_attributes(
            **{
                semconv.MCP_METHOD_NAME: "prompts/get",
                semconv.GEN_AI_PROMPT_NAME: "trip",
                "gen_ai.prompt.variable.city": "Paris",
                semconv.GEN_AI_TOOL_NAME: None,
                semconv.GEN_AI_OPERATION_NAME: None,
            }
        ),
        parent=tool,
    )
    tool.end()
    spans.span(
        "retrieval docs-index",
        CLIENT,
        {
            op: "retrieval",
            semconv.GEN_AI_DATA_SOURCE_ID: "docs-index",
            semconv.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps(RETRIEVAL_DOCUMENTS),
        },
        parent=agent,
    )
    spans.span(
        "embeddings text-embedding-3-small",
        CLIENT,
        {
            op: "embeddings",
            semconv.GEN_AI_PROVIDER_NAME: "openai",
            semconv.GEN_AI_REQUEST_MODEL: "text-embedding-3-small",
            semconv.GEN_AI_RESPONSE_MODEL: "text-embedding-3-small",
            semconv.GEN_AI_USAGE_INPUT_TOKENS: 5,
            semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: 1536,
        },
        parent=agent,
    )
    spans.span(
        "generate_content gemini-2.0-flash",
        CLIENT,
        chat_attributes(
            **{
                op: "generate_content",
                semconv.GEN_AI_PROVIDER_NAME: "gcp.gemini",
                semconv.GEN_AI_REQUEST_MODEL: "gemini-2.0-flash",
            }
        ),
        parent=agent,
    )
    spans.span(
        "text_completion local-llama",
        INTERNAL,  # an in-process model
        chat_attributes(
            **{
                op: "text_completion",
                semconv.GEN_AI_PROVIDER_NAME: "ollama",
                semconv.GEN_AI_REQUEST_MODEL: "local-llama",
            }
        ),
        parent=agent,
    )
    # A failed call: ERROR with error.type, and no response attributes to ask for.
    spans.span(
        "chat gpt-4o",
        CLIENT,
        chat_attributes(
            **{
                semconv.GEN_AI_RESPONSE_MODEL: None,
                semconv.GEN_AI_USAGE_INPUT_TOKENS: None,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: None,
                semconv.ERROR_TYPE: "RateLimitError",
            }
        ),
        status=StatusCode.ERROR,
        parent=agent,
    )
    agent.end()
    spans.span(
        "create_agent helper",
        CLIENT,
        {
            op: "create_agent",
            semconv.GEN_AI_PROVIDER_NAME: "openai",
            semconv.GEN_AI_AGENT_NAME: "helper",
            semconv.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps(SYSTEM_INSTRUCTIONS),
        },
        parent=workflow,
    )
    spans.span(
        "invoke_agent",  # remote agent without a name
        CLIENT,
        {op: "invoke_agent", semconv.GEN_AI_PROVIDER_NAME: "aws.bedrock"},
        parent=workflow,
    )
    spans.span("search_memory", CLIENT, {op: "search_memory"}, parent=workflow)
    spans.span("http GET", CLIENT, {"http.request.method": "GET"}, parent=workflow)
    workflow.end()
    events = emit_events(
        {
            "event_name": semconv.EVENT_INFERENCE_DETAILS,
            "attributes": {
                **chat_attributes(),
                semconv.GEN_AI_INPUT_MESSAGES: INPUT_MESSAGES,
                semconv.GEN_AI_OUTPUT_MESSAGES: OUTPUT_MESSAGES,
                semconv.GEN_AI_SYSTEM_INSTRUCTIONS: SYSTEM_INSTRUCTIONS,
                semconv.GEN_AI_TOOL_DEFINITIONS: TOOL_DEFINITIONS,
            },
        },
        {"event_name": "app.note", "body": {semconv.GEN_AI_INPUT_MESSAGES: INPUT_MESSAGES}},
    )
    return spans.finished(), events


def test_good_telemetry_has_no_violations(spans: Spans) -> None:
    finished, events = good_telemetry(spans)
    assert len(finished) == 18
    assert check_conformance(finished, events, strict=True) == []
    assert_conformant(finished, events, strict=True)


def test_good_telemetry_is_also_accepted_as_records_and_dicts(spans: Spans) -> None:
    finished, events = good_telemetry(spans)
    mixed: list[Any] = [
        [SpanRecord.from_span(s), SpanRecord.from_span(s).to_json(), s][i % 3]
        for i, s in enumerate(finished)
    ]
    event_dicts = [
        {
            "event_name": e.log_record.event_name,
            "attributes": dict(e.log_record.attributes or {}),
            "body": e.log_record.body,
        }
        for e in events
    ]
    assert check_conformance(mixed, event_dicts, strict=True) == []


# --- each rule fires --------------------------------------------------------------------------

Case = Callable[[Spans], tuple[list[Any], list[Any]]]


def one(build: Callable[[Spans], ReadableSpan]) -> Case:
    return lambda spans: ([build(spans)], [])


def only_events(*events: Mapping[str, Any]) -> Case:
    return lambda spans: ([], emit_events(*events))


OP = semconv.GEN_AI_OPERATION_NAME

BAD: dict[str, tuple[str, Case, bool]] = {
    "unknown operation": (
        "genai_operation_name_unknown",
        one(lambda s: s.span("chatting", CLIENT, {OP: "chatting"})),
        False,
    ),
    "name without model": (
        "genai_span_name_format",
        one(lambda s: s.span("chat", CLIENT, chat_attributes())),
        False,
    ),
    "name with wrong model": (
        "genai_span_name_format",
        one(lambda s: s.span("chat gpt-4", CLIENT, chat_attributes())),
        False,
    ),
    "name with missing agent": (
        "genai_span_name_format",
        one(lambda s: s.span("invoke_agent planner", INTERNAL, {OP: "invoke_agent"})),
        False,
    ),
    "name not the operation": (
        "genai_span_name_format",
        one(lambda s: s.span("search_memories", CLIENT, {OP: "search_memory"})),
        False,
    ),
    "mcp name without target": (
        "genai_span_name_format",
        one(lambda s: s.span("tools/call", CLIENT, mcp_attributes())),
        False,
    ),
    "mcp named like execute_tool": (
        "genai_span_name_format",
        one(lambda s: s.span("execute_tool weather", SERVER, mcp_attributes())),
        False,
    ),
    "tool span as client": (
        "genai_span_kind_unexpected",
        one(
            lambda s: s.span(
                "execute_tool weather", CLIENT, {OP: "execute_tool", "gen_ai.tool.name": "weather"}
            )
        ),
        False,
    ),
    "embeddings span as internal": (
        "genai_span_kind_unexpected",
        one(
            lambda s: s.span(
                "embeddings e5",
                INTERNAL,
                chat_attributes(**{OP: "embeddings", semconv.GEN_AI_REQUEST_MODEL: "e5"}),
            )
        ),
        False,
    ),
    "workflow span as server": (
        "genai_span_kind_unexpected",
        one(lambda s: s.span("invoke_workflow", SERVER, {OP: "invoke_workflow"})),
        False,
    ),
    "mcp span as internal": (
        "genai_span_kind_unexpected",
        one(lambda s: s.span("tools/call weather", INTERNAL, mcp_attributes())),
        False,
    ),
    "chat without provider": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "chat gpt-4o", CLIENT, chat_attributes(**{semconv.GEN_AI_PROVIDER_NAME: None})
            )
        ),
        False,
    ),
    "embeddings without model": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "embeddings",
                CLIENT,
                chat_attributes(**{OP: "embeddings", semconv.GEN_AI_REQUEST_MODEL: None}),
            )
        ),
        False,
    ),
    "tool without tool name": (
        "genai_expected_attribute_missing",
        one(lambda s: s.span("execute_tool", INTERNAL, {OP: "execute_tool"})),
        False,
    ),
    "remote agent without provider": (
        "genai_expected_attribute_missing",
        one(lambda s: s.span("invoke_agent", CLIENT, {OP: "invoke_agent"})),
        False,
    ),
    "server address without port": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "chat gpt-4o", CLIENT, chat_attributes(**{semconv.SERVER_ADDRESS: "example.com"})
            )
        ),
        False,
    ),
    "mcp tools/call without tool name": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "tools/call", CLIENT, mcp_attributes(**{semconv.GEN_AI_TOOL_NAME: None})
            )
        ),
        False,
    ),
    "mcp resources/read without uri": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "resources/read",
                SERVER,
                mcp_attributes(
                    **{
                        semconv.MCP_METHOD_NAME: "resources/read",
                        semconv.GEN_AI_TOOL_NAME: None,
                        OP: None,
                    }
                ),
            )
        ),
        False,
    ),
    "strict: chat without usage": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "chat gpt-4o",
                CLIENT,
                chat_attributes(**{semconv.GEN_AI_USAGE_OUTPUT_TOKENS: None}),
            )
        ),
        True,
    ),
    "strict: tool without call id": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "execute_tool weather",
                INTERNAL,
                {OP: "execute_tool", semconv.GEN_AI_TOOL_NAME: "weather"},
            )
        ),
        True,
    ),
    "strict: mcp without transport": (
        "genai_expected_attribute_missing",
        one(
            lambda s: s.span(
                "tools/call weather",
                CLIENT,
                mcp_attributes(**{semconv.NETWORK_TRANSPORT: None}),
            )
        ),
        True,
    ),
    "deprecated gen_ai.system": (
        "genai_attribute_unknown",
        one(
            lambda s: s.span("chat gpt-4o", CLIENT, chat_attributes(**{"gen_ai.system": "openai"}))
        ),
        False,
    ),
    "undeclared mcp attribute": (
        "genai_attribute_unknown",
        one(lambda s: s.span("tools/call weather", CLIENT, mcp_attributes(**{"mcp.tool": "x"}))),
        False,
    ),
    "undeclared attribute on an event": (
        "genai_attribute_unknown",
        only_events({"event_name": "gen_ai.note", "attributes": {"gen_ai.prompt": "hi"}}),
        False,
    ),
    "content not JSON": (
        "genai_content_schema",
        one(
            lambda s: s.span(
                "chat gpt-4o",
                CLIENT,
                chat_attributes(**{semconv.GEN_AI_INPUT_MESSAGES: "[{'role': 'user'}]"}),
            )
        ),
        False,
    ),
    "message without parts": (
        "genai_content_schema",
        one(
            lambda s: s.span(
                "chat gpt-4o",
                CLIENT,
                chat_attributes(
                    **{semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps([{"role": "assistant"}])}
                ),
            )
        ),
        False,
    ),
    "retrieval documents not a list": (
        "genai_content_schema",
        one(
            lambda s: s.span(
                "retrieval",
                CLIENT,
                {OP: "retrieval", semconv.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps({"id": "d"})},
            )
        ),
        False,
    ),
    "content as a string array on a span": (
        "genai_content_schema",
        one(
            lambda s: s.span(
                "chat gpt-4o",
                CLIENT,
                chat_attributes(**{semconv.GEN_AI_SYSTEM_INSTRUCTIONS: ["Be brief."]}),
            )
        ),
        False,
    ),
    "structured event content invalid": (
        "genai_content_schema",
        only_events(
            {
                "event_name": semconv.EVENT_INFERENCE_DETAILS,
                "attributes": {semconv.GEN_AI_INPUT_MESSAGES: [{"parts": []}]},
            }
        ),
        False,
    ),
    "event body content invalid": (
        "genai_content_schema",
        only_events(
            {
                "event_name": "app.note",
                "body": {semconv.GEN_AI_TOOL_DEFINITIONS: [{"type": "function"}]},
            }
        ),
        False,
    ),
    "status OK": (
        "span_status_ok_set_by_instrumentation",
        one(lambda s: s.span("http GET", CLIENT, {}, status=StatusCode.OK)),
        False,
    ),
    "error without error.type": (
        "error_type_missing_on_error",
        one(lambda s: s.span("db query", CLIENT, {}, status=StatusCode.ERROR)),
        False,
    ),
    "error.type without error status": (
        "error_type_without_error_status",
        one(
            lambda s: s.span(
                "chat gpt-4o", CLIENT, chat_attributes(**{semconv.ERROR_TYPE: "TimeoutError"})
            )
        ),
        False,
    ),
}


@pytest.mark.parametrize(("rule_id", "case", "strict"), list(BAD.values()), ids=list(BAD))
def test_rule_fires_alone(spans: Spans, rule_id: str, case: Case, strict: bool) -> None:
    bad_spans, events = case(spans)
    violations = check_conformance(bad_spans, events, strict=strict)
    assert [v.rule_id for v in violations] == [rule_id], "\n".join(map(str, violations))
    with pytest.raises(ConformanceError) as raised:
        assert_conformant(bad_spans, events, strict=strict)
    assert raised.value.violations == violations


def test_every_rule_has_a_failing_case() -> None:
    assert {rule for rule, _, _ in BAD.values()} == set(RULE_IDS)


def test_strict_cases_pass_without_strict(spans: Spans) -> None:
    for rule_id, case, strict in BAD.values():
        if strict:
            bad_spans, events = case(spans)
            assert check_conformance(bad_spans, events) == [], rule_id


# --- details ------------------------------------------------------------------------------------


def test_violation_details_and_error_message(spans: Spans) -> None:
    span = spans.span("chat", CLIENT, chat_attributes(**{semconv.GEN_AI_PROVIDER_NAME: None}))
    span_id = SpanRecord.from_span(span).span_id
    violations = check_conformance([span])
    assert violations == [
        Violation(
            "genai_span_name_format",
            "chat",
            span_id,
            "expected name 'chat gpt-4o' (gen_ai.request.model is set)",
        ),
        Violation(
            "genai_expected_attribute_missing",
            "chat",
            span_id,
            "required attribute gen_ai.provider.name is missing",
        ),
    ]
    with pytest.raises(ConformanceError) as raised:
        assert_conformant([span])
    assert isinstance(raised.value, AssertionError)
    assert str(raised.value) == (
        "2 semantic-convention violation(s):\n"
        f"genai_span_name_format: span 'chat' ({span_id}): "
        "expected name 'chat gpt-4o' (gen_ai.request.model is set)\n"
        f"genai_expected_attribute_missing: span 'chat' ({span_id}): "
        "required attribute gen_ai.provider.name is missing"
    )


def test_event_violations_name_the_event() -> None:
    events = emit_events(
        {"event_name": "gen_ai.note", "attributes": {"gen_ai.prompt": "hi"}},
    )
    (violation,) = check_conformance([], events)
    assert violation.subject == "event"
    assert str(violation) == (
        "genai_attribute_unknown: event 'gen_ai.note' (): "
        "gen_ai.prompt is not declared by the semantic conventions"
    )


def test_spans_without_genai_attributes_get_only_status_rules(spans: Spans) -> None:
    span = spans.span("whatever", SERVER, {"gen_ai.bogus": 1, "custom": "x"})
    assert check_conformance([span]) == []


def test_ignore_skips_rules_and_rejects_unknown_ids(spans: Spans) -> None:
    span = spans.span("http GET", CLIENT, {}, status=StatusCode.OK)
    assert check_conformance([span], ignore={"span_status_ok_set_by_instrumentation"}) == []
    assert_conformant([span], ignore=["span_status_ok_set_by_instrumentation"])
    with pytest.raises(ValueError, match="rule ids"):
        check_conformance([span], ignore={"status_ok"})
    with pytest.raises(ValueError, match="rule ids"):
        check_conformance([span], ignore="span_status_ok_set_by_instrumentation")


def test_mcp_resource_uri_is_an_allowed_opt_in_target(spans: Spans) -> None:
    attributes = mcp_attributes(
        **{
            semconv.MCP_METHOD_NAME: "resources/read",
            semconv.MCP_RESOURCE_URI: "file:///a.md",
            semconv.GEN_AI_TOOL_NAME: None,
            OP: None,
        }
    )
    assert check_conformance([spans.span("resources/read file:///a.md", CLIENT, attributes)]) == []


def test_mcp_tool_call_is_judged_by_mcp_rules(spans: Spans) -> None:
    # execute_tool on an MCP span: CLIENT/SERVER kind and "tools/call {tool}" name are right.
    for kind in (CLIENT, SERVER):
        span = spans.span("tools/call weather", kind, mcp_attributes())
        assert check_conformance([span], strict=True) == []


def test_mcp_server_port_is_only_recommended(spans: Spans) -> None:
    span = spans.span(
        "tools/call weather", CLIENT, mcp_attributes(**{semconv.SERVER_ADDRESS: "localhost"})
    )
    assert check_conformance([span]) == []
    assert [v.detail for v in check_conformance([span], strict=True)] == [
        "recommended attribute server.port is missing (server.address is set)"
    ]


def test_internal_agent_needs_no_provider(spans: Spans) -> None:
    assert check_conformance([spans.span("invoke_agent", INTERNAL, {OP: "invoke_agent"})]) == []


def test_hand_written_dicts_are_checked() -> None:
    violations = check_conformance(
        [{"name": "execute_tool", "kind": "CLIENT", "attributes": {OP: "execute_tool"}}]
    )
    assert {v.rule_id for v in violations} == {
        "genai_span_kind_unexpected",
        "genai_expected_attribute_missing",
    }


# --- registry and schemas -----------------------------------------------------------------------


def test_every_semconv_attribute_constant_is_known() -> None:
    constants = {
        value
        for name, value in vars(semconv).items()
        if name.startswith(("GEN_AI_", "MCP_")) and isinstance(value, str) and "." in value
    }
    assert constants
    assert not {key for key in constants if not is_known_attribute(key)}


def test_known_attributes() -> None:
    assert "gen_ai.usage.cache_write.input_tokens" in KNOWN_ATTRIBUTES
    assert "mcp.method.name" in KNOWN_ATTRIBUTES
    assert is_known_attribute("gen_ai.prompt.variable.user_name")
    assert is_known_attribute("http.request.method")
    assert not is_known_attribute("gen_ai.system")
    assert not is_known_attribute("gen_ai.usage.prompt_tokens")


@pytest.mark.parametrize("file_name", sorted(set(semconv.CONTENT_SCHEMAS.values())))
def test_shipped_schemas_load_and_are_valid(file_name: str) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(load_schema(file_name))


def test_content_errors() -> None:
    key = semconv.GEN_AI_INPUT_MESSAGES
    assert content_errors(key, json.dumps(INPUT_MESSAGES)) == []
    assert content_errors(key, INPUT_MESSAGES, structured=True) == []
    assert content_errors(key, tuple(INPUT_MESSAGES), structured=True) == []
    assert content_errors("gen_ai.tool.call.arguments", "not json") == []
    (error,) = content_errors(key, json.dumps([{"role": "user", "parts": "hi"}]))
    assert error.startswith(f"{key} fails gen-ai-input-messages.json at $[0].parts: ")
    (error,) = content_errors(key, "{")
    assert error.startswith(f"{key} is not valid JSON: ")


@pytest.mark.parametrize(
    ("attribute", "document", "where"),
    [
        (
            semconv.GEN_AI_OUTPUT_MESSAGES,
            [{"role": "assistant", "parts": [{"type": "tool_call", "name": None}]}],
            "$[0].parts[0].name",
        ),
        (
            semconv.GEN_AI_OUTPUT_MESSAGES,
            [{"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "id": 7}]}],
            "$[0].parts[0].id",
        ),
        (
            semconv.GEN_AI_INPUT_MESSAGES,
            [{"role": "user", "parts": [{"type": "blob", "modality": "image", "content": None}]}],
            "$[0].parts[0].content",
        ),
        (
            semconv.GEN_AI_INPUT_MESSAGES,
            [{"role": "user", "parts": [{"type": "file", "modality": "image", "file_id": None}]}],
            "$[0].parts[0].file_id",
        ),
        (semconv.GEN_AI_SYSTEM_INSTRUCTIONS, [{"type": "uri", "modality": "image"}], "$[0]"),
        (
            semconv.GEN_AI_TOOL_DEFINITIONS,
            [{"type": "function", "name": "f", "parameters": {"type": "objec…[truncated]"}}],
            "$[0].parameters",
        ),
    ],
)
def test_content_errors_checks_each_part_against_the_kind_its_type_names(
    attribute: str, document: list[Any], where: str
) -> None:
    """The schemas' catch-all parts (any type, any fields) would take a malformed part of a
    kind the conventions define; it is checked against that kind's own definition."""
    errors = content_errors(attribute, json.dumps(document))
    assert errors
    assert any(f" at {where}" in error for error in errors), errors
    # parts of kinds the conventions leave open stay valid
    assert content_errors(attribute, json.dumps([])) == []
    assert (
        content_errors(
            semconv.GEN_AI_INPUT_MESSAGES,
            json.dumps([{"role": "user", "parts": [{"type": "custom", "anything": None}]}]),
        )
        == []
    )
    assert (
        content_errors(
            semconv.GEN_AI_TOOL_DEFINITIONS, json.dumps([{"type": "web_search", "name": "w"}])
        )
        == []
    )


@pytest.fixture(autouse=True)
def _no_global_provider_changes() -> Iterator[None]:
    # These tests build spans with local providers only.
    before = trace.get_tracer_provider()
    yield
    assert trace.get_tracer_provider() is before
