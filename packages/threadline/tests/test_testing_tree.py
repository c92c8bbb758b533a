"""Span trees render deterministically; lookups by trace, name and parent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from threadline.testing import (
    SpanRecord,
    children,
    find,
    records,
    render_tree,
    spans_by_trace,
    trace_ids,
)

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


class Builder:
    """Spans with explicit timestamps, through a local SDK provider."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("threadline.tests")

    def start(
        self,
        name: str,
        start_ms: float,
        *,
        parent: trace.Span | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name,
            context=context,
            kind=kind,
            attributes=attributes,
            start_time=T0 + int(start_ms * MS),
        )

    @staticmethod
    def end(span: trace.Span, end_ms: float) -> None:
        span.end(end_time=T0 + int(end_ms * MS))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def build_two_traces() -> list[ReadableSpan]:
    b = Builder()
    # Trace 1 starts at 10 ms: an agent with a chat call and a failing tool.
    agent = b.start("invoke_agent planner", 10)
    chat = b.start(
        "chat gpt-4o",
        11,
        parent=agent,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.finish_reasons": ["tool_call"],
            "gen_ai.usage.output_tokens": 12,
        },
    )
    b.end(chat, 13.5)
    tool = b.start("execute_tool search", 14, parent=agent)
    mcp = b.start("tools/call search", 14.5, parent=tool, kind=SpanKind.CLIENT)
    b.end(mcp, 15)
    tool.set_attribute("error.type", "TimeoutError")
    tool.set_status(Status(StatusCode.ERROR, "timed out"))
    b.end(tool, 16)
    # Same start time as the tool: ordered by name ("chat" < "execute_tool").
    again = b.start("chat gpt-4o", 14, parent=agent, kind=SpanKind.CLIENT)
    b.end(again, 17)
    b.end(agent, 20)
    # Trace 2 starts earlier (5 ms), under a remote parent, so its server span is a root.
    remote = SpanContext(
        trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    server = b.start(
        "tools/call search",
        5,
        parent=NonRecordingSpan(remote),
        kind=SpanKind.SERVER,
        attributes={"gen_ai.tool.name": "search"},
    )
    inner = b.start("execute_tool search", 6, parent=server)
    b.end(inner, 7)
    b.end(server, 8)
    # A second root in trace 2, starting later.
    lone = b.start("tools/list", 9, parent=NonRecordingSpan(remote), kind=SpanKind.SERVER)
    b.end(lone, 9.25)
    return b.spans()


def test_render_tree_nested_multi_trace() -> None:
    spans = build_two_traces()
    assert render_tree(spans) == (
        "tools/call search [SERVER]\n"
        "  execute_tool search [INTERNAL]\n"
        "tools/list [SERVER]\n"
        "---\n"
        "invoke_agent planner [INTERNAL]\n"
        "  chat gpt-4o [CLIENT]\n"
        "  chat gpt-4o [CLIENT]\n"
        "  execute_tool search [INTERNAL] !ERROR error.type=TimeoutError\n"
        "    tools/call search [CLIENT]"
    )


def test_render_tree_with_attributes_and_durations() -> None:
    spans = build_two_traces()
    rendered = render_tree(
        spans,
        attributes=("gen_ai.request.model", "gen_ai.response.finish_reasons", "gen_ai.tool.name"),
        durations=True,
        show_kind=False,
    )
    assert rendered == (
        "tools/call search gen_ai.tool.name=search (3.0 ms)\n"
        "  execute_tool search (1.0 ms)\n"
        "tools/list (0.2 ms)\n"
        "---\n"
        "invoke_agent planner (10.0 ms)\n"
        "  chat gpt-4o gen_ai.request.model=gpt-4o gen_ai.response.finish_reasons=['tool_call']"
        " (2.5 ms)\n"
        "  chat gpt-4o (3.0 ms)\n"
        "  execute_tool search !ERROR error.type=TimeoutError (2.0 ms)\n"
        "    tools/call search (0.5 ms)"
    )


def test_render_tree_is_independent_of_input_order_and_shape() -> None:
    spans = build_two_traces()
    mixed: list[Any] = [
        [s, SpanRecord.from_span(s), SpanRecord.from_span(s).to_json()][i % 3]
        for i, s in enumerate(reversed(spans))
    ]
    assert render_tree(mixed) == render_tree(spans)


def test_render_tree_edge_cases() -> None:
    assert render_tree([]) == ""
    with pytest.raises(TypeError):
        render_tree([], attributes="gen_ai.request.model")
    error = SpanRecord("boom", status_code="ERROR")
    assert render_tree([error]) == "boom [INTERNAL] !ERROR"
    # A parent cycle has no root; its spans are still shown.
    a = SpanRecord("a", trace_id="1" * 32, span_id="a" * 16, parent_span_id="b" * 16, start_ns=1)
    b = SpanRecord("b", trace_id="1" * 32, span_id="b" * 16, parent_span_id="a" * 16, start_ns=2)
    assert render_tree([a, b]) == "a [INTERNAL]\n  b [INTERNAL]"


def test_trace_ids_and_spans_by_trace() -> None:
    spans = build_two_traces()
    ids = trace_ids(spans)
    assert len(ids) == 2
    assert f"{0xABC:032x}" in ids
    groups = spans_by_trace(spans)
    assert next(iter(groups)) == f"{0xABC:032x}"  # the trace that started first
    assert [s.name for s in groups[f"{0xABC:032x}"]] == [
        "tools/call search",
        "execute_tool search",
        "tools/list",
    ]
    assert sum(len(group) for group in groups.values()) == len(spans)


def test_find() -> None:
    spans = build_two_traces()
    assert find(spans, "invoke_agent planner").kind == "INTERNAL"
    with pytest.raises(AssertionError, match=r"exactly one span named 'nope', found 0"):
        find(spans, "nope")
    with pytest.raises(AssertionError, match=r"found 2; spans: \['chat gpt-4o', 'chat gpt-4o'"):
        find(spans, "chat gpt-4o")


def test_children() -> None:
    spans = build_two_traces()
    agent = find(spans, "invoke_agent planner")
    assert [c.name for c in children(spans, agent)] == [
        "chat gpt-4o",
        "chat gpt-4o",
        "execute_tool search",
    ]
    assert [c.name for c in children(spans, "tools/list")] == []
    server = next(s for s in spans if s.kind is SpanKind.SERVER and s.name == "tools/call search")
    assert [c.name for c in children(spans, server)] == ["execute_tool search"]
    assert children(spans, server)[0].trace_id == SpanRecord.from_span(server).trace_id


def test_records_rejects_single_spans_and_unknown_types() -> None:
    (span, *_) = build_two_traces()
    with pytest.raises(TypeError):
        records(span)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a ReadableSpan"):
        records([42])  # type: ignore[list-item]
