"""Shared pieces of the benchmark workers: the tracer provider every configuration uses, the
no-op exporter, and the "floor": a replay of exactly the spans threadline emits for one call,
made with the raw OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

# Every configuration of a workload, in the order the tables list them.
CONFIG_ORDER = (
    "baseline",
    "floor",
    "threadline",
    "threadline_content",
    "openinference",
    "openllmetry",
    "native",
)
CONFIG_LABELS = {
    "baseline": "uninstrumented",
    "floor": "floor (no-op hook + raw SDK replay)",
    "threadline": "threadline (content off)",
    "threadline_content": "threadline (content on)",
    "openinference": "OpenInference",
    "openllmetry": "OpenLLMetry (traceloop)",
    "native": "native instrumentation",
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (a configuration exists only where its
    instrumentation is installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


THREADLINE_CONFIGS = ("threadline", "threadline_content")


def configure_threadline(config: str) -> None:
    """Content capture as the configuration asks: on the span for ``threadline_content``, off
    (threadline's default) for ``threadline``."""
    import threadline

    threadline.configure(capture_content="SPAN_ONLY" if config == "threadline_content" else False)


def instrument_threadline(config: str, integration: str) -> bool:
    """For a threadline configuration, set its content capture and call
    ``threadline.<integration>.instrument()``; False (nothing done) for any other."""
    if config not in THREADLINE_CONFIGS:
        return False
    configure_threadline(config)
    importlib.import_module(f"threadline.{integration}").instrument()
    return True


class NoopExporter(SpanExporter):
    """Drops spans; counts them so a run can report how many spans each call produced."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# Set for a worker counting instructions, and so for the processes it starts: see Telemetry.
CLOCKLESS_ENV = "BENCH_CLOCKLESS"


class Telemetry:
    """The OpenTelemetry setup of one worker process: a global SDK ``TracerProvider`` with a
    ``BatchSpanProcessor`` to a no-op exporter (the setup an application would run), and
    optionally an in-memory exporter to record a span template."""

    def __init__(self, *, record: bool = False, clockless: bool = False) -> None:
        self.exporter = NoopExporter()
        self.provider = TracerProvider()
        # Large enough that no configuration drops spans during a timed loop. ``clockless``
        # (counting instructions): the export thread wakes for full batches and flushes only,
        # not every 5 s, so what it does between the calls does not follow the host's clock.
        self.processor = BatchSpanProcessor(
            self.exporter,
            max_queue_size=65_536,
            schedule_delay_millis=3_600_000 if clockless else None,
        )
        self.provider.add_span_processor(self.processor)
        self.memory: InMemorySpanExporter | None = None
        if record:
            self.memory = InMemorySpanExporter()
            self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        trace.set_tracer_provider(self.provider)

    def flush(self) -> int:
        self.provider.force_flush()
        return self.exporter.exported


# --------------------------------------------------------------------------------- templates
def span_template(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Spans of one call as plain data, parents before children, for :class:`Replay`."""
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    index = {s.context.span_id: i for i, s in enumerate(ordered) if s.context is not None}
    out: list[dict[str, Any]] = []
    for span in ordered:
        parent = index.get(span.parent.span_id) if span.parent is not None else None
        out.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "parent": parent,
                "attributes": {k: _jsonable(v) for k, v in (span.attributes or {}).items()},
                "events": [
                    {"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events
                ],
                "error": span.status.status_code is StatusCode.ERROR,
                "links": len(span.links),
            }
        )
    return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def write_template(path: Path, spans: Sequence[ReadableSpan]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(span_template(spans), indent=1))


class Replay:
    """Emits a recorded span template with the raw SDK: start every span with its attributes
    under its parent, add its events, end children before parents. The least work any
    instrumentation must do to produce the same spans."""

    def __init__(self, template: list[dict[str, Any]], provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer("benchmarks.floor")
        self.spans = [
            (
                s["name"],
                SpanKind[s["kind"]],
                s["parent"],
                {k: tuple(v) if isinstance(v, list) else v for k, v in s["attributes"].items()},
                [(e["name"], e["attributes"]) for e in s["events"]],
                s["error"],
            )
            for s in template
        ]

    def __call__(self, parent_context: Context | None = None) -> None:
        """Emit the spans; root spans get ``parent_context`` (a remote parent) as parent."""
        for span in reversed(self._start(parent_context)):
            span.end()

    def around(self, call: Callable[[Context], Any]) -> Any:
        """Start the spans, run ``call`` with the first span's context (what a cross-process
        call must propagate), then end them."""
        started = self._start(None)
        try:
            return call(trace.set_span_in_context(started[0]))
        finally:
            for span in reversed(started):
                span.end()

    def _start(self, parent_context: Context | None) -> list[trace.Span]:
        tracer = self.tracer
        started: list[trace.Span] = []
        for name, kind, parent, attributes, events, error in self.spans:
            ctx = parent_context if parent is None else trace.set_span_in_context(started[parent])
            span = tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)
            for event_name, event_attributes in events:
                span.add_event(event_name, event_attributes)
            if error:
                span.set_status(Status(StatusCode.ERROR))
            started.append(span)
        return started


def with_floor(call: Callable[[], Any], replay: Replay) -> Callable[[], Any]:
    def floor_call() -> Any:
        result = call()
        replay()
        return result

    return floor_call
