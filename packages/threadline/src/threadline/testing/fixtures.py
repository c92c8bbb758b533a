"""pytest fixtures: in-memory spans, metrics and events for each test.

Loaded through ``pytest_plugins = ["threadline.testing"]``; this is the only module of
``threadline.testing`` that imports pytest.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import config
from threadline.config import ContentCapture
from threadline.testing.telemetry import Telemetry, new_log_exporter

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter


def _install_span_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(processor)
        return exporter
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        # The global was already set to a non-SDK provider and cannot be replaced, so at least
        # threadline's own spans are routed to the exporter.
        warnings.warn(
            "threadline.testing: the global tracer provider is not an SDK TracerProvider; "
            "only spans made through threadline are captured",
            stacklevel=2,
        )
        config.configure(tracer_provider=provider)
    return exporter


@pytest.fixture(scope="session")
def _threadline_session_span_exporter() -> InMemorySpanExporter:
    # The global tracer provider can be set once per process, so it is installed per session.
    return _install_span_exporter()


@pytest.fixture
def span_exporter(_threadline_session_span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The in-memory exporter behind the global tracer provider, emptied for this test."""
    _threadline_session_span_exporter.clear()
    return _threadline_session_span_exporter


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    """A fresh in-memory reader on a ``MeterProvider`` that threadline uses for this test."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    previous = config.current()
    config.configure(meter_provider=provider)
    try:
        yield reader
    finally:
        config.restore(previous)
        provider.shutdown()


@pytest.fixture
def event_exporter() -> Iterator[InMemoryLogRecordExporter]:
    """A fresh in-memory log exporter on a ``LoggerProvider`` that threadline uses for this test."""
    exporter = new_log_exporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    previous = config.current()
    config.configure(logger_provider=provider)
    try:
        yield exporter
    finally:
        config.restore(previous)
        provider.shutdown()


@pytest.fixture
def capture_content() -> Iterator[ContentCapture]:
    """Content capture on spans and events (``SPAN_AND_EVENT``) for this test."""
    previous = config.current()
    settings = config.configure(capture_content=ContentCapture.SPAN_AND_EVENT)
    try:
        yield settings.capture_content
    finally:
        config.restore(previous)


@pytest.fixture
def telemetry(
    span_exporter: InMemorySpanExporter,
    metric_reader: InMemoryMetricReader,
    event_exporter: InMemoryLogRecordExporter,
) -> Telemetry:
    """Spans, metrics and events of this test behind one object (see :class:`Telemetry`)."""
    return Telemetry(span_exporter, metric_reader, event_exporter)
