"""Span trees as text, and lookups by trace, name and parent.

``render_tree`` gives a stable, readable picture of what was traced, so a test can compare the
whole shape in one assertion::

    invoke_agent planner [INTERNAL]
      chat gpt-4o [CLIENT] gen_ai.response.finish_reasons=['tool_call']
      execute_tool search [INTERNAL] !ERROR error.type=TimeoutError
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from threadline.testing.records import SpanLike, SpanRecord, records, to_record

_ERROR_TYPE = "error.type"
TRACE_SEPARATOR = "---"


def _order(span: SpanRecord) -> tuple[int, str, str]:
    return span.start_ns, span.name, span.span_id


def trace_ids(spans: Iterable[SpanLike]) -> set[str]:
    """The distinct trace ids of ``spans``."""
    return {span.trace_id for span in records(spans)}


def spans_by_trace(spans: Iterable[SpanLike]) -> dict[str, list[SpanRecord]]:
    """Spans grouped by trace id; traces and the spans in each ordered by start time."""
    groups: dict[str, list[SpanRecord]] = {}
    for span in sorted(records(spans), key=_order):
        groups.setdefault(span.trace_id, []).append(span)
    return groups


def find(spans: Iterable[SpanLike], name: str) -> SpanRecord:
    """The one span called ``name``; ``AssertionError`` (listing all names) if not exactly one."""
    every = records(spans)
    matches = [span for span in every if span.name == name]
    if len(matches) != 1:
        names = sorted(span.name for span in every)
        raise AssertionError(
            f"expected exactly one span named {name!r}, found {len(matches)}; spans: {names}"
        )
    return matches[0]


def children(spans: Iterable[SpanLike], parent: SpanLike | str) -> list[SpanRecord]:
    """Direct children of ``parent`` (a span, or the name of exactly one span), by start time."""
    every = records(spans)
    parent_record = find(every, parent) if isinstance(parent, str) else to_record(parent)
    return sorted(
        (
            span
            for span in every
            if span.parent_span_id == parent_record.span_id
            and span.trace_id == parent_record.trace_id
        ),
        key=_order,
    )


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return repr(list(value))
    return str(value)


def _line(
    span: SpanRecord,
    depth: int,
    *,
    attributes: Sequence[str],
    durations: bool,
    show_kind: bool,
) -> str:
    parts = ["  " * depth + span.name]
    if show_kind:
        parts.append(f"[{span.kind}]")
    parts.extend(
        f"{key}={_format_value(span.attributes[key])}"
        for key in attributes
        if key in span.attributes
    )
    if span.status_code == "ERROR":
        parts.append("!ERROR")
        if _ERROR_TYPE in span.attributes:
            parts.append(f"{_ERROR_TYPE}={_format_value(span.attributes[_ERROR_TYPE])}")
    if durations:
        parts.append(f"({span.duration_ns / 1e6:.1f} ms)")
    return " ".join(parts)


def render_tree(
    spans: Iterable[SpanLike],
    *,
    attributes: Sequence[str] = (),
    durations: bool = False,
    show_kind: bool = True,
) -> str:
    """One line per span, indented two spaces per level; traces separated by ``---``.

    A root is a span whose parent is not in ``spans`` (so a remote parent counts as absent).
    Siblings and roots are ordered by start time, then name. Each line is
    ``name [KIND] key=value … !ERROR error.type=… (1.2 ms)``: requested ``attributes`` that the
    span carries, the error marker for ERROR status, and the duration if ``durations``.
    """
    if isinstance(attributes, str):
        raise TypeError("attributes must be a sequence of keys, not a string")
    blocks: list[str] = []
    for trace in spans_by_trace(spans).values():
        ids = {span.span_id for span in trace}
        by_parent: dict[str | None, list[SpanRecord]] = {}
        for span in trace:
            parent = span.parent_span_id if span.parent_span_id in ids else None
            by_parent.setdefault(parent, []).append(span)
        lines: list[str] = []
        seen: set[str] = set()
        render = functools.partial(
            _line, attributes=attributes, durations=durations, show_kind=show_kind
        )
        for root in by_parent.get(None, ()):
            _walk(root, 0, by_parent, seen, lines, render)
        # Spans caught in a parent cycle have no root above them; show them rather than drop them.
        for span in trace:
            _walk(span, 0, by_parent, seen, lines, render)
        blocks.append("\n".join(lines))
    return f"\n{TRACE_SEPARATOR}\n".join(blocks)


def _walk(
    span: SpanRecord,
    depth: int,
    by_parent: Mapping[str | None, list[SpanRecord]],
    seen: set[str],
    lines: list[str],
    render: Callable[[SpanRecord, int], str],
) -> None:
    if span.span_id in seen:  # a duplicate id or a parent cycle
        return
    seen.add(span.span_id)
    lines.append(render(span, depth))
    for child in by_parent.get(span.span_id, ()):
        _walk(child, depth + 1, by_parent, seen, lines, render)
