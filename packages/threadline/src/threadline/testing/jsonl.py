"""Spans as JSON lines in a file, for telemetry produced in another process.

A test starts a subprocess (an MCP server, say) that calls :func:`install_jsonl_exporter`, then
reads what it traced with :func:`read_spans_jsonl` and checks it like in-memory spans.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from threadline.testing.records import SpanRecord

_Path = str | os.PathLike[str]


class JsonLinesSpanExporter(SpanExporter):
    """Appends one :meth:`SpanRecord.to_json` line per span to ``path``.

    Each export is one append that is flushed before returning, so a process killed mid-run
    still leaves every span exported so far. Several exporters (or processes) may share a file.
    """

    def __init__(self, path: _Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped:
            return SpanExportResult.FAILURE
        text = "".join(
            json.dumps(SpanRecord.from_span(span).to_json(), separators=(",", ":")) + "\n"
            for span in spans
        )
        with self._lock:
            try:
                # Opened per export: O_APPEND keeps lines whole when processes share the file.
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._stopped = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def read_spans_jsonl(path: _Path) -> list[SpanRecord]:
    """The spans in a JSON-lines file, in file order; ``[]`` if the file does not exist yet.

    A torn last line (the writer was killed mid-write) is skipped; a bad line elsewhere raises
    ``ValueError``.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return []
    spans: list[SpanRecord] = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            spans.append(SpanRecord.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            if number == last:
                break
            raise ValueError(f"{path}:{number + 1}: not a span record: {error}") from error
    return spans


def install_jsonl_exporter(path: _Path, *, resource: Resource | None = None) -> TracerProvider:
    """Send every span of this process to ``path`` and return the SDK tracer provider used.

    Sets a new global SDK ``TracerProvider`` (or, if the global one already is an SDK provider,
    adds the exporter to it) with a ``SimpleSpanProcessor``, so spans are written as they end.
    """
    processor = SimpleSpanProcessor(JsonLinesSpanExporter(path))
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(processor)
        return current
    provider = TracerProvider(resource=resource) if resource else TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider
