"""Faults injected into the telemetry pipeline and into threadline itself. Each is a context
manager factory taking pytest's ``monkeypatch``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

import threadline
import threadline._context
import threadline._runs


class Injected(RuntimeError):
    """The error every injected fault raises."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected fault")


@contextlib.contextmanager
def _processor(
    processor: SpanProcessor, before_shutdown: Callable[[], object] = lambda: None
) -> Iterator[None]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    multi = provider._active_span_processor
    before = multi._span_processors
    provider.add_span_processor(processor)
    try:
        yield
    finally:
        multi._span_processors = before
        before_shutdown()
        processor.shutdown()


class _RaisingProcessor(SpanProcessor):
    def __init__(self, *, start: bool) -> None:
        self.start = start

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.start:
            raise Injected("processor on_start")

    def on_end(self, span: ReadableSpan) -> None:
        raise Injected("processor on_end")


class _RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise Injected("exporter")


class HangingExporter(SpanExporter):
    """Blocks every export until released (a collector that stopped answering)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@contextlib.contextmanager
def processor_raises(monkeypatch: Any) -> Iterator[None]:
    """A span processor raising in on_start and on_end (the SDK lets both propagate)."""
    with _processor(_RaisingProcessor(start=True)):
        yield


@contextlib.contextmanager
def processor_end_raises(monkeypatch: Any) -> Iterator[None]:
    """A span processor raising only in on_end: spans start fine, span.end() raises."""
    with _processor(_RaisingProcessor(start=False)):
        yield


@contextlib.contextmanager
def exporter_raises(monkeypatch: Any) -> Iterator[None]:
    with _processor(SimpleSpanProcessor(_RaisingExporter())):
        yield


@contextlib.contextmanager
def exporter_hangs(monkeypatch: Any) -> Iterator[None]:
    exporter = HangingExporter()
    processor = BatchSpanProcessor(
        exporter, max_queue_size=16, max_export_batch_size=4, schedule_delay_millis=1
    )
    try:
        with _processor(processor, before_shutdown=exporter.release.set):
            yield
    finally:
        exporter.release.set()


@contextlib.contextmanager
def span_start_raises(monkeypatch: Any) -> Iterator[None]:
    monkeypatch.setattr(threadline._runs, "resolved", _boom)
    yield


@contextlib.contextmanager
def update_raises(monkeypatch: Any) -> Iterator[None]:
    monkeypatch.setattr(threadline._runs.Usage, "attributes", _boom)
    monkeypatch.setattr(threadline._runs.Run, "set_attributes", threadline.guarded()(_boom))
    yield


@contextlib.contextmanager
def end_raises(monkeypatch: Any) -> Iterator[None]:
    monkeypatch.setattr(threadline._runs.Run, "_finish", _boom)
    yield


@contextlib.contextmanager
def factories_raise(monkeypatch: Any) -> Iterator[None]:
    """Every run factory raises: the integration's own guard must keep the call going."""
    for name in ("inference", "embeddings", "retrieval", "execute_tool", "invoke_agent",
                 "invoke_workflow", "step", "mcp_request"):  # fmt: skip
        monkeypatch.setattr(threadline, name, _boom)
        monkeypatch.setattr(threadline._factories, name, _boom, raising=False)
    yield


@contextlib.contextmanager
def attach_raises(monkeypatch: Any) -> Iterator[None]:
    monkeypatch.setattr(threadline._context, "attach", _boom)
    yield


@contextlib.contextmanager
def content_raises(monkeypatch: Any) -> Iterator[None]:
    threadline.configure(capture_content="SPAN_AND_EVENT")
    for name in ("messages_json", "tool_payload_json", "documents_json", "dumps"):
        monkeypatch.setattr(threadline._runs, name, _boom, raising=False)
    yield


FAULTS: dict[str, Callable[[Any], contextlib.AbstractContextManager[None]]] = {
    "processor_raises": processor_raises,
    "processor_end_raises": processor_end_raises,
    "exporter_raises": exporter_raises,
    "exporter_hangs": exporter_hangs,
    "span_start_raises": span_start_raises,
    "update_raises": update_raises,
    "end_raises": end_raises,
    "factories_raise": factories_raise,
    "attach_raises": attach_raises,
    "content_raises": content_raises,
}
