"""Plain, comparable snapshots of finished spans and emitted events.

Every helper in ``threadline.testing`` accepts SDK ``ReadableSpan`` objects, :class:`SpanRecord`
objects or their JSON dicts, so spans from memory, from a JSON-lines file written by another
process, or written by hand in a test all go through the same checks.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Union

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_span_id, format_trace_id

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

SpanLike = Union[ReadableSpan, "SpanRecord", Mapping[str, Any]]
"""Anything the helpers accept as a span."""


def _attribute_value(value: Any) -> Any:
    # Attribute sequences compare as tuples whatever their source (SDK, JSON, a test's list).
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k): _attribute_value(v) for k, v in (attributes or {}).items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _enum_name(value: Any) -> str:
    # "SpanKind.CLIENT", "client" and SpanKind.CLIENT all mean CLIENT.
    return str(getattr(value, "name", value)).rsplit(".", 1)[-1].upper()


def _hex_id(value: Any, width: int) -> str:
    # Accept ints and the SDK's "0x…" strings as well as bare hex.
    if isinstance(value, int):
        return format(value, f"0{width}x")
    text = str(value).lower()
    return text[2:] if text.startswith("0x") else text


@dataclasses.dataclass(frozen=True)
class SpanRecord:
    """One finished span, reduced to plain values (ids as lower-case hex strings).

    Every field but ``name`` has a default (ids are fresh random ones), so a test can write a
    partial record by hand.
    """

    name: str
    kind: str = "INTERNAL"
    """``INTERNAL``, ``CLIENT``, ``SERVER``, ``PRODUCER`` or ``CONSUMER``."""
    trace_id: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    span_id: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))
    parent_span_id: str | None = None
    start_ns: int = 0
    end_ns: int = 0
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Sequence values are tuples."""
    status_code: str = "UNSET"
    """``UNSET``, ``OK`` or ``ERROR``."""
    status_description: str | None = None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    links: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    resource: dict[str, Any] = dataclasses.field(default_factory=dict)
    scope: str = ""
    """Instrumentation scope name."""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @classmethod
    def from_span(cls, span: ReadableSpan) -> SpanRecord:
        context = span.get_span_context()
        if context is None:
            raise ValueError(f"span {span.name!r} has no span context")
        return cls(
            name=span.name,
            kind=span.kind.name,
            trace_id=format_trace_id(context.trace_id),
            span_id=format_span_id(context.span_id),
            parent_span_id=format_span_id(span.parent.span_id) if span.parent else None,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
            attributes=_attributes(span.attributes),
            status_code=span.status.status_code.name,
            status_description=span.status.description,
            events=tuple((e.name, _attributes(e.attributes)) for e in span.events),
            links=tuple(
                (
                    format_trace_id(link.context.trace_id),
                    format_span_id(link.context.span_id),
                    _attributes(link.attributes),
                )
                for link in span.links
            ),
            resource=_attributes(span.resource.attributes),
            scope=span.instrumentation_scope.name if span.instrumentation_scope else "",
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        """Read :meth:`to_json` output, or the SDK's ``ReadableSpan.to_json()`` shape.

        The SDK shape has microsecond times and no scope. Missing fields take the dataclass
        defaults, so hand-written dicts may be partial.
        """
        if "context" in data:
            return cls._from_sdk_json(data)
        fields: dict[str, Any] = {"name": data["name"]}
        for key in ("kind", "status_code"):
            if data.get(key) is not None:
                fields[key] = _enum_name(data[key])
        if data.get("scope") is not None:
            fields["scope"] = str(data["scope"])
        for key, width in (("trace_id", 32), ("span_id", 16)):
            if data.get(key) is not None:
                fields[key] = _hex_id(data[key], width)
        if data.get("parent_span_id") is not None:
            fields["parent_span_id"] = _hex_id(data["parent_span_id"], 16)
        for key in ("start_ns", "end_ns"):
            if data.get(key) is not None:
                fields[key] = int(data[key])
        if data.get("status_description") is not None:
            fields["status_description"] = str(data["status_description"])
        fields["attributes"] = _attributes(data.get("attributes"))
        fields["resource"] = _attributes(data.get("resource"))
        fields["events"] = tuple(
            (_event_name(e), _attributes(_event_attributes(e))) for e in data.get("events") or ()
        )
        fields["links"] = tuple(_link(link) for link in data.get("links") or ())
        return cls(**fields)

    @classmethod
    def _from_sdk_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        def ns(stamp: str | None) -> int:
            if not stamp:
                return 0
            delta = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - _EPOCH
            # Integer arithmetic: a float timestamp can round up into the next second.
            return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000

        context = data["context"]
        status = data.get("status") or {}
        resource = data.get("resource") or {}
        return cls(
            name=data["name"],
            kind=_enum_name(data.get("kind", "INTERNAL")),
            trace_id=_hex_id(context["trace_id"], 32),
            span_id=_hex_id(context["span_id"], 16),
            parent_span_id=_hex_id(data["parent_id"], 16) if data.get("parent_id") else None,
            start_ns=ns(data.get("start_time")),
            end_ns=ns(data.get("end_time")),
            attributes=_attributes(data.get("attributes")),
            status_code=_enum_name(status.get("status_code", "UNSET")),
            status_description=status.get("description"),
            events=tuple(
                (_event_name(e), _attributes(_event_attributes(e))) for e in data.get("events", ())
            ),
            links=tuple(_link(link) for link in data.get("links", ())),
            resource=_attributes(resource.get("attributes", resource)),
        )  # that shape carries no instrumentation scope

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (sequences as lists) that :meth:`from_json` reads back."""
        return {
            "name": self.name,
            "kind": self.kind,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "attributes": _json_value(self.attributes),
            "status_code": self.status_code,
            "status_description": self.status_description,
            "events": [{"name": n, "attributes": _json_value(a)} for n, a in self.events],
            "links": [
                {"trace_id": t, "span_id": s, "attributes": _json_value(a)}
                for t, s, a in self.links
            ],
            "resource": _json_value(self.resource),
            "scope": self.scope,
        }


def _event_name(event: Any) -> str:
    if isinstance(event, Mapping):
        return str(event["name"])
    return str(event[0])


def _event_attributes(event: Any) -> Mapping[str, Any] | None:
    if isinstance(event, Mapping):
        attributes: Mapping[str, Any] | None = event.get("attributes")
        return attributes
    return dict(event[1]) if len(event) > 1 else None


def _link(link: Any) -> tuple[str, str, dict[str, Any]]:
    if isinstance(link, Mapping):
        context = link.get("context", link)
        return (
            _hex_id(context["trace_id"], 32),
            _hex_id(context["span_id"], 16),
            _attributes(link.get("attributes")),
        )
    trace_id, span_id, *rest = link
    return _hex_id(trace_id, 32), _hex_id(span_id, 16), _attributes(rest[0] if rest else None)


def to_record(span: SpanLike) -> SpanRecord:
    """One span of any accepted shape as a :class:`SpanRecord`."""
    if isinstance(span, SpanRecord):
        return span
    if isinstance(span, ReadableSpan):
        return SpanRecord.from_span(span)
    if isinstance(span, Mapping):
        return SpanRecord.from_json(span)
    raise TypeError(f"expected a ReadableSpan, SpanRecord or dict; got {type(span).__name__}")


def records(spans: Iterable[SpanLike]) -> list[SpanRecord]:
    """Spans of any accepted shape (mixed freely) as :class:`SpanRecord` objects, order kept."""
    if isinstance(spans, (SpanRecord, ReadableSpan, Mapping)):
        raise TypeError("records() takes an iterable of spans, not a single span")
    return [to_record(span) for span in spans]


# --- events (log records) ---------------------------------------------------------------------


def _plain(value: Any) -> Any:
    # Structured event values come back from the SDK as nested tuples; JSON-shaped lists
    # compare equal to what tests write and validate against the JSON schemas.
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def event_record(event: Any) -> dict[str, Any]:
    """One emitted event as a dict.

    Accepts an SDK log record (``ReadableLogRecord``, ``LogData`` or an API ``LogRecord``) or a
    dict. Keys: ``event_name``, ``attributes``, ``body``, ``trace_id``, ``span_id`` (hex or
    ``None``), ``severity_number`` and ``timestamp`` (int or ``None``); structured values are
    lists and dicts.
    """
    if isinstance(event, Mapping):
        attributes = _plain(event.get("attributes") or {})
        return {
            "event_name": event.get("event_name") or attributes.get("event.name"),
            "attributes": attributes,
            "body": _plain(event.get("body")),
            "trace_id": _optional_hex(event.get("trace_id"), 32),
            "span_id": _optional_hex(event.get("span_id"), 16),
            "severity_number": event.get("severity_number"),
            "timestamp": event.get("timestamp"),
        }
    record = getattr(event, "log_record", event)
    attributes = _plain(dict(getattr(record, "attributes", None) or {}))
    severity = getattr(record, "severity_number", None)
    return {
        # Older SDKs carry the name only as the ``event.name`` attribute.
        "event_name": getattr(record, "event_name", None) or attributes.get("event.name"),
        "attributes": attributes,
        "body": _plain(getattr(record, "body", None)),
        "trace_id": _optional_hex(getattr(record, "trace_id", None), 32),
        "span_id": _optional_hex(getattr(record, "span_id", None), 16),
        "severity_number": getattr(severity, "value", severity),
        "timestamp": getattr(record, "timestamp", None),
    }


def _optional_hex(value: Any, width: int) -> str | None:
    if value is None or value == 0 or value == "":
        return None
    text = _hex_id(value, width)
    return None if set(text) <= {"0"} else text


def event_records(events: Iterable[Any]) -> list[dict[str, Any]]:
    """:func:`event_record` for each event, order kept."""
    return [event_record(event) for event in events]
