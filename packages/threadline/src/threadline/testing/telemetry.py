"""One handle on everything a test run emitted: spans, metrics and events."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk._logs import export as _logs_export
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline.testing import conformance
from threadline.testing.records import SpanRecord, event_records, records
from threadline.testing.tree import find, render_tree

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

# Data point fields worth comparing in tests; which exist depends on the point type.
_POINT_FIELDS = ("value", "sum", "count", "min", "max", "bucket_counts", "explicit_bounds")


def new_log_exporter() -> InMemoryLogRecordExporter:
    """A fresh in-memory log record exporter, under whichever name this SDK version uses."""
    # Newer SDKs renamed InMemoryLogExporter, and the old name warns when instantiated.
    factory: Any = getattr(_logs_export, "InMemoryLogRecordExporter", None)
    if factory is None:
        factory = _logs_export.InMemoryLogExporter
    exporter: InMemoryLogRecordExporter = factory()
    return exporter


def _point(point: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"attributes": dict(point.attributes or {})}
    for field in _POINT_FIELDS:
        if hasattr(point, field):
            value = getattr(point, field)
            data[field] = tuple(value) if isinstance(value, (list, tuple)) else value
    return data


class Telemetry:
    """What the ``telemetry`` fixture returns: accessors over the test's exporters."""

    def __init__(
        self,
        span_exporter: InMemorySpanExporter,
        metric_reader: InMemoryMetricReader,
        event_exporter: InMemoryLogRecordExporter,
    ) -> None:
        self.span_exporter = span_exporter
        self.metric_reader = metric_reader
        self.event_exporter = event_exporter

    def spans(self) -> list[SpanRecord]:
        """Spans finished so far, in the order they ended."""
        return records(self.span_exporter.get_finished_spans())

    def find(self, name: str) -> SpanRecord:
        """The one finished span called ``name`` (``AssertionError`` otherwise)."""
        return find(self.spans(), name)

    def tree(
        self,
        *,
        attributes: Sequence[str] = (),
        durations: bool = False,
        show_kind: bool = True,
    ) -> str:
        """:func:`render_tree` of the finished spans."""
        return render_tree(
            self.spans(), attributes=attributes, durations=durations, show_kind=show_kind
        )

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Metric name → data points collected now (cumulative).

        Each point is a dict with ``attributes`` plus whichever of ``value``, ``sum``,
        ``count``, ``min``, ``max``, ``bucket_counts`` and ``explicit_bounds`` it has.
        """
        result: dict[str, list[dict[str, Any]]] = {}
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return result
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = result.setdefault(metric.name, [])
                    points.extend(_point(point) for point in metric.data.data_points)
        return result

    def metric_points(self, name: str) -> list[dict[str, Any]]:
        """The data points of metric ``name``; ``AssertionError`` if it was never recorded."""
        metrics = self.metrics()
        if name not in metrics:
            raise AssertionError(f"no metric named {name!r}; recorded: {sorted(metrics)}")
        return metrics[name]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Emitted events (log records) as dicts, optionally only those called ``name``.

        Keys: ``event_name``, ``attributes``, ``body``, ``trace_id``, ``span_id``,
        ``severity_number``, ``timestamp``.
        """
        events = event_records(self.event_exporter.get_finished_logs())
        return [e for e in events if name is None or e["event_name"] == name]

    def assert_conformant(self, strict: bool = False, *, ignore: Collection[str] = ()) -> None:
        """:func:`assert_conformant` over the finished spans and emitted events."""
        conformance.assert_conformant(self.spans(), self.events(), strict=strict, ignore=ignore)
