"""Pydantic AI's own instrumentation on as well: threadline defers, with one warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
from pai_helpers import V2, scripted, text, tool_calls
from pydantic_ai import Agent

import threadline.pydantic_ai
from threadline.pydantic_ai import DuplicateTelemetryWarning, Tracing
from threadline.testing import Telemetry


def make_agent(**kwargs: object) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("ping", {}, "call_1"), input_tokens=2, output_tokens=1),
            text("pong", input_tokens=3, output_tokens=1),
            name="m",
        ),
        name="dup",
        **kwargs,  # type: ignore[arg-type]
    )

    @agent.tool_plain
    def ping() -> str:
        return "pong"

    return agent


def _instrument_all() -> Agent[None, str]:
    Agent.instrument_all(True)
    return make_agent(capabilities=[Tracing()])


def _per_agent() -> Agent[None, str]:
    if V2:
        agent = make_agent(capabilities=[Tracing()])
        agent.instrument = True
        return agent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return make_agent(capabilities=[Tracing()], instrument=True)


def _capability() -> Agent[None, str]:
    from pydantic_ai.capabilities import Instrumentation

    return make_agent(capabilities=[Instrumentation(), Tracing()])


def _with_instrument() -> Agent[None, str]:
    threadline.pydantic_ai.instrument()
    Agent.instrument_all(True)
    return make_agent()


WAYS: list[Callable[[], Agent[None, str]]] = [_instrument_all, _per_agent, _with_instrument]
if V2:
    WAYS.append(_capability)


@pytest.mark.parametrize("enable", WAYS, ids=lambda fn: fn.__name__.strip("_"))
def test_native_instrumentation_on_threadline_defers(
    telemetry: Telemetry, enable: Callable[[], Agent[None, str]]
) -> None:
    agent = enable()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.run_sync("ping?")
        agent.run_sync("ping?")

    duplicates = [w for w in caught if w.category is DuplicateTelemetryWarning]
    assert len(duplicates) == 1  # one warning, not one per run
    assert "defers to it" in str(duplicates[0].message)
    spans = telemetry.spans()
    assert spans, "Pydantic AI's own spans are exported"
    assert {span.scope for span in spans} == {"pydantic-ai"}  # none of threadline's
    names = {span.name for span in spans}
    assert "chat m" in names
    assert len([s for s in spans if s.name == "chat m"]) == 4  # one per request, not two


def test_native_off_again_threadline_records(telemetry: Telemetry) -> None:
    agent = _instrument_all()
    with pytest.warns(DuplicateTelemetryWarning):
        agent.run_sync("ping?")
    Agent.instrument_all(False)
    telemetry.span_exporter.clear()
    agent.run_sync("ping?")
    assert {span.scope for span in telemetry.spans()} == {"threadline"}
