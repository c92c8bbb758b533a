"""Fail-open: threadline's own bugs never reach the user; the user's errors pass untouched."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import context as otel_context

import threadline
from threadline import _failopen, _runs
from threadline.testing import Telemetry


class Boom(Exception):
    pass


def test_failing_span_start_returns_an_inert_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, telemetry: Telemetry
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise Boom("tracer broke")

    monkeypatch.setattr(_runs, "resolved", explode)
    caplog.set_level(logging.DEBUG, logger="threadline")
    before = otel_context.get_current()
    for _ in range(3):
        with threadline.inference("m", provider="openai") as run:
            run.chunk()
            run.update(usage=threadline.Usage(1, 1))
        with threadline.execute_tool("t") as tool:
            tool.update(result="ok")
    assert otel_context.get_current() == before
    assert telemetry.spans() == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.getMessage().split(" in ")[1].split(";")[0] for r in warnings} == {
        "threadline.inference",
        "threadline.execute_tool",
    }  # one warning per site, later ones at debug level


def test_user_exception_passes_through_even_when_recording_fails(
    monkeypatch: pytest.MonkeyPatch, telemetry: Telemetry
) -> None:
    def broken_before_end(self: Any, error_type: str | None) -> None:
        raise Boom("our bug")

    monkeypatch.setattr(_runs.InferenceRun, "_before_end", broken_before_end)
    error = KeyError("user's own")
    with pytest.raises(KeyError) as raised, threadline.inference("m", provider="openai"):
        raise error
    assert raised.value is error
    # the span still ended, with the error recorded
    [span] = telemetry.spans()
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == "KeyError"


def test_guarded_reports_once_and_returns_default(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    @threadline.guarded(default="fallback", site="test.hook")
    def hook(x: int) -> str:
        calls.append(x)
        raise Boom("bug")

    caplog.set_level(logging.DEBUG, logger="threadline")
    assert hook(1) == "fallback"
    assert hook(2) == "fallback"
    assert calls == [1, 2]
    assert "test.hook" in _failopen.reported_sites()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


def test_guarded_lets_base_exceptions_through() -> None:
    @threadline.guarded()
    def hook() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hook()


def test_exporter_failure_does_not_reach_user(telemetry: Telemetry) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    class RaisingExporter(SpanExporter):
        def export(self, spans: Any) -> Any:
            raise Boom("collector down")

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    previous = threadline.config.current()
    threadline.configure(tracer_provider=provider)
    try:
        with threadline.inference("m", provider="openai") as run:
            run.update(usage=threadline.Usage(1, 2))
        result = "user result"
    finally:
        threadline.config.restore(previous)
    assert result == "user result"
