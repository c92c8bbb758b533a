"""The pytest plugin: fixtures capture spans, metrics and events and restore settings after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import threadline.testing
from threadline import config, semconv
from threadline.config import ContentCapture
from threadline.testing import ConformanceError, Telemetry

SRC = Path(threadline.testing.__file__).resolve().parents[2]


def _meter_provider() -> Any:
    provider = config.current().meter_provider
    assert provider is not None
    return provider


def _logger_provider() -> Any:
    provider = config.current().logger_provider
    assert provider is not None
    return provider


def test_telemetry_collects_spans_metrics_and_events(
    telemetry: Telemetry, capture_content: ContentCapture
) -> None:
    assert capture_content is ContentCapture.SPAN_AND_EVENT
    assert config.current().capture_content is ContentCapture.SPAN_AND_EVENT
    tracer = trace.get_tracer("threadline.tests")
    attributes = {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
    }
    with (
        tracer.start_as_current_span("invoke_agent", attributes={"gen_ai.operation.name": "x"}),
        tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span,
    ):
        span.set_attributes(attributes)
        _logger_provider().get_logger("threadline.tests").emit(
            event_name=semconv.EVENT_INFERENCE_DETAILS,
            attributes={
                **attributes,
                semconv.GEN_AI_OUTPUT_MESSAGES: [
                    {"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}
                ],
            },
        )
    meter = _meter_provider().get_meter("threadline.tests")
    meter.create_histogram(semconv.METRIC_CLIENT_OPERATION_DURATION, unit="s").record(
        0.5, {semconv.GEN_AI_OPERATION_NAME: "chat"}
    )
    meter.create_counter("requests").add(2, {"route": "/"})

    assert telemetry.tree() == "invoke_agent [INTERNAL]\n  chat gpt-4o [CLIENT]"
    assert [s.name for s in telemetry.spans()] == ["chat gpt-4o", "invoke_agent"]
    chat = telemetry.find("chat gpt-4o")

    (event,) = telemetry.events(semconv.EVENT_INFERENCE_DETAILS)
    assert event["trace_id"] == chat.trace_id
    assert event["span_id"] == chat.span_id
    assert event["attributes"][semconv.GEN_AI_OUTPUT_MESSAGES][0]["role"] == "assistant"
    assert telemetry.events("other") == []

    (duration,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["attributes"] == {semconv.GEN_AI_OPERATION_NAME: "chat"}
    assert (duration["count"], duration["sum"], duration["min"], duration["max"]) == (
        1,
        0.5,
        0.5,
        0.5,
    )
    assert sum(duration["bucket_counts"]) == 1
    assert len(duration["explicit_bounds"]) + 1 == len(duration["bucket_counts"])
    assert telemetry.metrics()["requests"] == [{"attributes": {"route": "/"}, "value": 2}]
    with pytest.raises(AssertionError, match="no metric named 'nope'; recorded: "):
        telemetry.metric_points("nope")

    # The outer span has an unknown operation, so only it is reported.
    with pytest.raises(ConformanceError) as raised:
        telemetry.assert_conformant(strict=False)
    assert [v.span_name for v in raised.value.violations] == ["invoke_agent"]
    telemetry.assert_conformant(ignore={"genai_operation_name_unknown"})


def test_span_exporter_is_the_global_providers_and_starts_empty(
    span_exporter: InMemorySpanExporter,
) -> None:
    assert span_exporter.get_finished_spans() == ()
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    with trace.get_tracer("threadline.tests").start_as_current_span("one") as span:
        span.set_status(Status(StatusCode.OK))
    assert [s.name for s in span_exporter.get_finished_spans()] == ["one"]


def test_metric_reader_and_event_exporter_alone(metric_reader: Any, event_exporter: Any) -> None:
    _meter_provider().get_meter("t").create_counter("c").add(1)
    _logger_provider().get_logger("t").emit(event_name="e")
    data = metric_reader.get_metrics_data()
    assert data.resource_metrics[0].scope_metrics[0].metrics[0].name == "c"
    assert len(event_exporter.get_finished_logs()) == 1


# --- as a plugin, in a separate pytest run ------------------------------------------------------

CONFTEST_PLAIN = 'pytest_plugins = ["threadline.testing"]\n'
CONFTEST_SDK_ALREADY_SET = textwrap.dedent(
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    APP_PROVIDER = TracerProvider()
    trace.set_tracer_provider(APP_PROVIDER)

    pytest_plugins = ["threadline.testing"]
    """
)
TESTS = textwrap.dedent(
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from threadline import config
    from threadline.config import ContentCapture

    BEFORE = config.current()


    def test_first(telemetry, capture_content):
        assert config.current().meter_provider is not None
        assert config.current().logger_provider is not None
        assert config.current().capture_content is ContentCapture.SPAN_AND_EVENT
        with trace.get_tracer("t").start_as_current_span("first"):
            pass
        assert telemetry.tree() == "first [INTERNAL]"


    def test_second_sees_restored_settings_and_no_old_spans(span_exporter):
        assert config.current() == BEFORE
        assert span_exporter.get_finished_spans() == ()
        with trace.get_tracer("t").start_as_current_span("second"):
            pass
        assert [s.name for s in span_exporter.get_finished_spans()] == ["second"]


    def test_global_provider_is_kept_if_already_sdk(span_exporter):
        import conftest

        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        assert provider is getattr(conftest, "APP_PROVIDER", provider)
    """
)


@pytest.mark.parametrize(
    "conftest", [CONFTEST_PLAIN, CONFTEST_SDK_ALREADY_SET], ids=["plain", "sdk-provider-set"]
)
def test_plugin_in_a_fresh_pytest_run(tmp_path: Path, conftest: str) -> None:
    (tmp_path / "conftest.py").write_text(conftest, encoding="utf-8")
    (tmp_path / "test_app.py").write_text(TESTS, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "THREADLINE_", "PYTEST_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_importing_the_kit_does_not_import_pytest() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import threadline.testing\n"
        "from threadline.testing import install_jsonl_exporter, check_conformance\n"
        "assert 'threadline.testing.fixtures' not in sys.modules\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
