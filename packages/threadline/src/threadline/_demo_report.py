"""What ``threadline demo`` shows and writes: the per-session summary, the highlighted tree and
the spans as an OTLP JSON file. Works on :class:`threadline.testing.SpanRecord` objects, so spans
from this process and from the demo's MCP server process (read back from JSON lines) mix freely.
"""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from threadline import semconv
from threadline.testing.records import SpanRecord

_RED = "\x1b[1;31m"
_RESET = "\x1b[0m"
_ERROR_MARK = " !ERROR"
_NO_SESSION = "(no session)"

# OTLP's SpanKind and StatusCode numbers.
_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}

_TOKEN_TYPES = (
    ("input", semconv.GEN_AI_USAGE_INPUT_TOKENS),
    ("cache read", semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache write", semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS),
    ("output", semconv.GEN_AI_USAGE_OUTPUT_TOKENS),
    ("reasoning", semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
)
_MCP_METHOD = "mcp.method.name"


class CountingExporter(SpanExporter):
    """Passes spans on to ``exporter`` and counts how many it exported and how many failed."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:  # noqa: BLE001 - an exporter that raises failed to export
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def highlight_errors(tree: str, *, color: bool) -> str:
    """Paint the lines of failed spans red when ``color`` (they carry ``!ERROR`` either way)."""
    if not color:
        return tree
    return "\n".join(
        f"{_RED}{line}{_RESET}" if _ERROR_MARK in line else line for line in tree.split("\n")
    )


def _int(span: SpanRecord, key: str) -> int:
    value = span.attributes.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _count(label: str, n: int) -> str:
    return f"{n} {label}" if n == 1 else f"{n} {label}s"


def session_summaries(spans: Sequence[SpanRecord]) -> str:
    """One block per session: calls by kind, tokens by type, time to first token, cost, errors.

    Model and embeddings spans carry the tokens (agent spans only repeat their sum, so they are
    not counted again). MCP requests are counted once, on the client side; an MCP ``tools/call``
    is an MCP request, not another tool call.
    """
    by_session: dict[str, list[SpanRecord]] = {}
    for span in spans:
        session = span.attributes.get(semconv.SESSION_ID)
        by_session.setdefault(str(session) if session else _NO_SESSION, []).append(span)
    return "\n\n".join(_summary(session, group) for session, group in by_session.items())


def _summary(session: str, spans: list[SpanRecord]) -> str:
    operations: dict[str, int] = {}
    mcp_requests: dict[str, int] = {}
    tokens = dict.fromkeys((label for label, _ in _TOKEN_TYPES), 0)
    first_chunks: list[float] = []
    cost = 0.0
    users = sorted(
        {str(s.attributes[semconv.USER_ID]) for s in spans if semconv.USER_ID in s.attributes}
    )
    for span in spans:
        method = span.attributes.get(_MCP_METHOD)
        if method is not None:
            if span.kind == "CLIENT":
                mcp_requests[str(method)] = mcp_requests.get(str(method), 0) + 1
            continue
        operation = span.attributes.get(semconv.GEN_AI_OPERATION_NAME)
        if not isinstance(operation, str):
            continue
        operations[operation] = operations.get(operation, 0) + 1
        if operation in semconv.INFERENCE_OPERATIONS or operation == semconv.OP_EMBEDDINGS:
            for label, key in _TOKEN_TYPES:
                tokens[label] += _int(span, key)
            price = span.attributes.get(semconv.THREADLINE_COST_USD)
            if isinstance(price, (int, float)):
                cost += float(price)
        first = span.attributes.get(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        if isinstance(first, (int, float)):
            first_chunks.append(float(first))

    header = f"session {session}"
    if users:
        header += f" (user {', '.join(users)})"
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    rows: list[tuple[str, str]] = [("duration", f"{(end - start) / 1e9:.2f} s")]

    model_calls = sum(n for op, n in operations.items() if op in semconv.INFERENCE_OPERATIONS)
    calls = [_count("model call", model_calls)] if model_calls else []
    for operation, label in (
        (semconv.OP_EMBEDDINGS, "embeddings call"),
        (semconv.OP_RETRIEVAL, "retrieval"),
        (semconv.OP_EXECUTE_TOOL, "tool call"),
        (semconv.OP_INVOKE_AGENT, "agent run"),
        (semconv.OP_INVOKE_WORKFLOW, "workflow run"),
    ):
        if operations.get(operation):
            calls.append(_count(label, operations[operation]))
    if mcp_requests:
        methods = ", ".join(f"{method} {n}" for method, n in sorted(mcp_requests.items()))
        calls.append(f"{_count('MCP request', sum(mcp_requests.values()))} ({methods})")
    rows.append(("calls", ", ".join(calls) or "none"))

    total = tokens["input"] + tokens["output"]
    token_text = f"{total} total = {tokens['input']} input"
    details = [f"{tokens[t]} {t}" for t in ("cache read", "cache write") if tokens[t]]
    if details:
        token_text += f" ({', '.join(details)})"
    token_text += f" + {tokens['output']} output"
    if tokens["reasoning"]:
        token_text += f" ({tokens['reasoning']} reasoning)"
    rows.append(("tokens", token_text))

    if first_chunks:
        rows.append(
            (
                "time to first token",
                f"median {_ms(statistics.median(first_chunks))} over "
                f"{_count('streamed response', len(first_chunks))} "
                f"(min {_ms(min(first_chunks))}, max {_ms(max(first_chunks))})",
            )
        )
    if cost:
        rows.append(("cost", f"${cost:.6f} (estimated)"))
    errors = [span for span in spans if span.status_code == "ERROR"]
    if errors:
        names = ", ".join(
            f"{span.name} ({span.attributes.get('error.type', 'error')}, {span.kind.lower()})"
            for span in errors
        )
        rows.append(("errors", f"{len(errors)}: {names}"))
    else:
        rows.append(("errors", "none"))
    width = max(len(label) for label, _ in rows)
    return "\n".join([header, *(f"  {label:<{width}}  {text}" for label, text in rows)])


# --- OTLP JSON -----------------------------------------------------------------------------------


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _key_values(value)}}
    return {"stringValue": str(value)}


def _key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(key), "value": _any_value(value)} for key, value in attributes.items()]


def _otlp_span(span: SpanRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": _KINDS.get(span.kind, 1),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": _key_values(span.attributes),
        "status": {"code": _STATUS.get(span.status_code, 0)},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.status_description:
        out["status"]["message"] = span.status_description
    if span.events:
        # Span records keep no event times: the span's start stands in for them.
        out["events"] = [
            {"timeUnixNano": str(span.start_ns), "name": name, "attributes": _key_values(attrs)}
            for name, attrs in span.events
        ]
    if span.links:
        out["links"] = [
            {"traceId": trace_id, "spanId": span_id, "attributes": _key_values(attrs)}
            for trace_id, span_id, attrs in span.links
        ]
    return out


def otlp_json(spans: Iterable[SpanRecord]) -> dict[str, Any]:
    """The spans as an OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, string nanos), grouped
    by resource and instrumentation scope — the body an OTLP/HTTP JSON endpoint accepts."""
    resources: dict[str, tuple[dict[str, Any], dict[str, list[SpanRecord]]]] = {}
    for span in spans:
        key = json.dumps(span.resource, sort_keys=True, default=str)
        _, scopes = resources.setdefault(key, (span.resource, {}))
        scopes.setdefault(span.scope, []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _key_values(resource)},
                "scopeSpans": [
                    {
                        "scope": {"name": scope},
                        "spans": [_otlp_span(s) for s in sorted(group, key=lambda s: s.start_ns)],
                    }
                    for scope, group in scopes.items()
                ],
            }
            for resource, scopes in resources.values()
        ]
    }


def write_otlp_json(spans: Iterable[SpanRecord], path: str | Path) -> Path:
    target = Path(path)
    target.write_text(json.dumps(otlp_json(spans), indent=1) + "\n", encoding="utf-8")
    return target
