"""Test kit for GenAI telemetry: span snapshots, tree rendering, conformance checks, fixtures.

As a pytest plugin (``pytest`` and ``jsonschema`` come with the ``threadline[testing]`` extra)::

    # conftest.py
    pytest_plugins = ["threadline.testing"]

    # test_app.py
    def test_chat(telemetry, capture_content):
        run_my_app()
        assert telemetry.tree() == "invoke_agent planner [INTERNAL]\\n  chat gpt-4o [CLIENT]"
        telemetry.assert_conformant()

Fixtures: ``span_exporter``, ``metric_reader``, ``event_exporter``, ``capture_content`` and
``telemetry`` (all function scoped). The helpers work without pytest too.
"""

from __future__ import annotations

from threadline.testing.conformance import (
    RULE_IDS,
    ConformanceError,
    Violation,
    assert_conformant,
    check_conformance,
)
from threadline.testing.content_schema import content_errors, load_schema
from threadline.testing.jsonl import JsonLinesSpanExporter, install_jsonl_exporter, read_spans_jsonl
from threadline.testing.records import (
    SpanLike,
    SpanRecord,
    event_record,
    event_records,
    records,
    to_record,
)
from threadline.testing.registry import KNOWN_ATTRIBUTES, is_known_attribute
from threadline.testing.telemetry import Telemetry
from threadline.testing.tree import children, find, render_tree, spans_by_trace, trace_ids

# Naming this package in ``pytest_plugins`` loads the fixtures too; pytest is imported only then.
pytest_plugins = ["threadline.testing.fixtures"]

__all__ = [
    "KNOWN_ATTRIBUTES",
    "RULE_IDS",
    "ConformanceError",
    "JsonLinesSpanExporter",
    "SpanLike",
    "SpanRecord",
    "Telemetry",
    "Violation",
    "assert_conformant",
    "check_conformance",
    "children",
    "content_errors",
    "event_record",
    "event_records",
    "find",
    "install_jsonl_exporter",
    "is_known_attribute",
    "load_schema",
    "read_spans_jsonl",
    "records",
    "render_tree",
    "spans_by_trace",
    "to_record",
    "trace_ids",
]
