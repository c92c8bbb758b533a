"""Reliability suite: fault injection, cancellation, callback fuzzing, isolation and soak.

The fast part runs in CI (``nox -s cross`` runs everything under ``tests/``). Tests marked
``soak`` (100k runs per integration, the RSS soak) run only with ``THREADLINE_RELIABILITY_FULL=1``,
which ``nox -s reliability`` sets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline
from threadline import config
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    capture_content,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)

FULL = os.environ.get("THREADLINE_RELIABILITY_FULL") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: long soak/memory test; runs with THREADLINE_RELIABILITY_FULL=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    skip = pytest.mark.skip(
        reason="soak test: set THREADLINE_RELIABILITY_FULL=1 (nox -s reliability)"
    )
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def assert_clean_context() -> None:
    """Nothing of ours (or any span) is left attached in the current context."""
    ctx = otel_context.get_current()
    assert not trace.get_current_span(ctx).get_span_context().is_valid, dict(ctx)
    assert threadline.current_run(ctx) is None


def drain_open_runs() -> int:
    """End whatever runs are still open (as the reaper would); returns how many were open."""
    left = len(threadline.open_runs)
    threadline.open_runs.reap(now=time.monotonic() + 10**9)
    return left


def stuck_runs() -> list[threadline.Run]:
    """Runs that ended but are still tracked as open: nothing can remove them but capacity
    eviction (the reaper skips ended runs)."""
    tracker = threadline.open_runs
    with tracker._lock:
        return [run for run in tracker._runs.values() if run.ended]


def forget_stuck_runs() -> None:
    tracker = threadline.open_runs
    with tracker._lock:
        for run in [r for r in tracker._runs.values() if r.ended]:
            tracker._runs.pop(id(run), None)


@pytest.fixture(autouse=True)
def _isolated_settings() -> Iterator[None]:
    previous = config.current()
    yield
    config.restore(previous)
    drain_open_runs()
    forget_stuck_runs()  # a test that left some has failed already; keep the next one clean
    assert_clean_context()
