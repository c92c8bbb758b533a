"""Fault injection: whatever breaks in the telemetry path, the user's call returns the same
result or raises the same exception object, and no context is left attached."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from apps import APPS, App
from conftest import assert_clean_context, drain_open_runs, stuck_runs
from faults import FAULTS

import threadline


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "returned", fn(*args)
    except BaseException as error:  # noqa: BLE001 - we compare whatever comes out
        return "raised", error


def raised_object(result: tuple[str, Any]) -> BaseException | None:
    """The exception raised, unwrapped from an exception group a framework may add."""
    kind, value = result
    if kind != "raised":
        return None
    group = getattr(builtins, "BaseExceptionGroup", ())  # Python 3.11+
    while isinstance(value, group) and len(value.exceptions) == 1:
        value = value.exceptions[0]
    return value


@pytest.fixture(scope="module", params=list(APPS))
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    app = APPS[request.param]()
    # What the call gives without any instrumentation, and with it but without faults.
    app.uninstrument()
    app.reference_ok = outcome(app.ok)  # type: ignore[attr-defined]
    app.instrument()
    yield app
    app.uninstrument()


class UserError(Exception):
    """Raised by the user's own code; must reach the caller as the same object."""


@pytest.mark.parametrize("fault", list(FAULTS))
def test_user_call_is_untouched(
    app: App,
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    span_exporter: Any,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="threadline")
    reference_fail = outcome(app.fail, UserError("reference")) if app.fail_is_result else None
    with FAULTS[fault](monkeypatch):
        started = time.monotonic()
        ok = outcome(app.ok)
        error = UserError("from the user's code")
        failed = outcome(app.fail, error)
        elapsed = time.monotonic() - started
        assert_clean_context()
    assert ok == app.reference_ok, f"{app.name} under {fault}: result changed"  # type: ignore[attr-defined]
    if app.fail_is_result:
        assert failed[0] == "returned"
        assert reference_fail is not None
        assert failed[1][0] is True, failed  # still the tool's error result
        expected = [t.replace("reference", "from the user's code") for t in reference_fail[1][1]]
        assert failed == (reference_fail[0], (True, expected))
    else:
        assert raised_object(failed) is error, f"{app.name} under {fault}: got {failed!r}"
    # A hanging exporter must not hold the caller up (spans are dropped instead).
    assert elapsed < 20, f"{app.name} under {fault} took {elapsed:.1f}s"
    drain_open_runs()
    assert_clean_context()
    assert all(run.ended for run in threadline.open_runs._runs.values())


STUCK_FAULTS = [f for f in FAULTS if f != "end_raises"]


@pytest.mark.parametrize("fault", STUCK_FAULTS)
def test_no_run_stays_tracked(
    app: App,
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    span_exporter: Any,
) -> None:
    """After faults, every run is either ended and forgotten, or still open for the reaper:
    none is ended yet still held (``end_raises`` removes our own end path, so it is left out)."""
    caplog.set_level(logging.CRITICAL, logger="threadline")
    with FAULTS[fault](monkeypatch):
        outcome(app.ok)
        outcome(app.fail, UserError("user"))
    drain_open_runs()
    assert stuck_runs() == []
    assert len(threadline.open_runs) == 0
