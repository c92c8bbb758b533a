"""instrument() / uninstrument() and the OpenTelemetry instrumentor entry point."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pytest
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from pai_helpers import agent_span, scripted, text, tool_calls
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

import threadline.pydantic_ai
from threadline import _failopen
from threadline.pydantic_ai import PydanticAIInstrumentor, Tracing, _instrument
from threadline.testing import Telemetry


def plain_agent(name: str = "early", **kwargs: object) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(
        scripted(
            tool_calls(("ping", {}, "call_1"), input_tokens=2, output_tokens=1),
            text("pong", input_tokens=3, output_tokens=1),
            name="m",
        ),
        name=name,
        **kwargs,  # type: ignore[arg-type]
    )

    @agent.tool_plain
    def ping() -> str:
        return "pong"

    return agent


EXPECTED = "\n".join(
    [
        "invoke_agent early [INTERNAL]",
        "  chat m [CLIENT]",
        "  execute_tool ping [INTERNAL]",
        "  chat m [CLIENT]",
    ]
)


def test_agents_created_before_the_call_are_traced(telemetry: Telemetry) -> None:
    agent = plain_agent()  # created before instrument()
    agent.run_sync("ping?")
    assert telemetry.spans() == []

    threadline.pydantic_ai.instrument()
    assert agent.run_sync("ping?").output == "pong"
    assert telemetry.tree() == EXPECTED
    telemetry.assert_conformant()


def test_instrument_is_idempotent(telemetry: Telemetry) -> None:
    original = Agent.__dict__["iter"]
    threadline.pydantic_ai.instrument()
    threadline.pydantic_ai.instrument()
    plain_agent().run_sync("ping?")
    assert telemetry.tree() == EXPECTED

    threadline.pydantic_ai.uninstrument()
    threadline.pydantic_ai.uninstrument()
    assert Agent.__dict__["iter"] is original
    telemetry.span_exporter.clear()
    plain_agent().run_sync("ping?")
    assert telemetry.spans() == []


@pytest.fixture
def instrument_recording(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], list[dict[str, Any]]]:
    """Turns instrument() on, and returns the keyword arguments of every call it then passes on
    to ``Agent.iter``."""

    def start() -> list[dict[str, Any]]:
        threadline.pydantic_ai.instrument()
        calls: list[dict[str, Any]] = []
        original = _instrument._original_iter

        def recording(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(_instrument, "_original_iter", recording)
        return calls

    return start


def test_agents_created_after_instrument_carry_tracing_themselves(
    telemetry: Telemetry, instrument_recording: Callable[[], list[dict[str, Any]]]
) -> None:
    iter_calls = instrument_recording()
    agent = plain_agent()
    agent.run_sync("ping?")
    agent.run_sync("ping?")

    assert telemetry.tree() == "\n---\n".join([EXPECTED, EXPECTED])
    # One Tracing, given at construction: no run adds its own (or an override, on 1.x).
    assert [kwargs.get("capabilities") for kwargs in iter_calls] == [None, None]
    assert _instrument._has_tracing(agent._root_capability)


def test_agents_made_while_instrumented_go_quiet_after_uninstrument(
    telemetry: Telemetry,
) -> None:
    threadline.pydantic_ai.instrument()
    agent = plain_agent()
    threadline.pydantic_ai.uninstrument()
    assert agent.run_sync("ping?").output == "pong"
    assert telemetry.spans() == []

    threadline.pydantic_ai.instrument()  # records again, once
    agent.run_sync("ping?")
    assert telemetry.tree() == EXPECTED


def test_wrappers_kept_past_uninstrument_pass_calls_on_unchanged(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another library wrapped ours, and puts our wrappers back after uninstrument().
    threadline.pydantic_ai.instrument()
    kept_init, kept_iter = Agent.__dict__["__init__"], Agent.__dict__["iter"]
    threadline.pydantic_ai.uninstrument()
    monkeypatch.setattr(Agent, "__init__", kept_init)
    monkeypatch.setattr(Agent, "iter", kept_iter)

    assert plain_agent().run_sync("ping?").output == "pong"
    assert telemetry.spans() == []
    assert not {"threadline.pydantic_ai.init", "threadline.pydantic_ai.iter"} & set(
        _failopen.reported_sites()
    )


@pytest.mark.parametrize("bad", [{"bogus": 1}, {"capabilities": 7}])
def test_a_bad_agent_argument_reaches_the_caller_unchanged(
    telemetry: Telemetry, bad: dict[str, Any]
) -> None:
    def error() -> tuple[type[BaseException], str]:
        try:
            Agent(TestModel(), **bad)
        except Exception as raised:  # noqa: BLE001
            return type(raised), str(raised)
        raise AssertionError("the bad argument was accepted")

    uninstrumented = error()
    threadline.pydantic_ai.instrument()
    assert error() == uninstrumented
    assert "threadline.pydantic_ai.init" not in _failopen.reported_sites()


def test_explicit_tracing_and_instrument_do_not_double(telemetry: Telemetry) -> None:
    threadline.pydantic_ai.instrument()
    plain_agent(capabilities=[Tracing()]).run_sync("ping?")
    per_run = [Tracing()]
    plain_agent().run_sync("ping?", **({"capabilities": per_run} if _run_capabilities() else {}))

    assert telemetry.tree() == "\n---\n".join(
        [EXPECTED.replace("invoke_agent early", agent_span("early")), EXPECTED]
    )


def _run_capabilities() -> bool:
    import inspect

    return "capabilities" in inspect.signature(Agent.run_sync).parameters


def test_streamed_and_iterated_runs(telemetry: Telemetry) -> None:
    threadline.pydantic_ai.instrument()
    agent: Agent[None, str] = Agent(TestModel(), name="early")

    @agent.tool_plain
    def ping() -> str:
        return "pong"

    async def drive() -> None:
        async with agent.run_stream("ping?") as stream:
            await stream.get_output()
        async with agent.iter("ping?") as run:
            async for _node in run:
                pass

    asyncio.run(drive())
    expected = EXPECTED.replace("chat m", "chat test")
    assert telemetry.tree() == "\n---\n".join([expected, expected])


def test_a_bad_argument_reaches_the_caller_unchanged(
    telemetry: Telemetry, instrument_recording: Callable[[], list[dict[str, Any]]]
) -> None:
    agent = plain_agent()  # made before instrument(): Tracing is added to each run
    iter_calls = instrument_recording()

    async def drive() -> None:
        async with agent.iter("ping?", bogus=1):  # type: ignore[call-overload]
            pass

    with pytest.raises(TypeError, match="bogus"):
        asyncio.run(drive())
    assert len(iter_calls) == 1  # the user's call is made once, not retried by us
    if _run_capabilities():  # ... with Tracing added to the run
        assert any(isinstance(cap, Tracing) for cap in iter_calls[0]["capabilities"])
    assert "threadline.pydantic_ai.iter" not in _failopen.reported_sites()
    assert telemetry.spans() == []


def test_instrumentor_entry_point() -> None:
    (entry,) = entry_points(group="opentelemetry_instrumentor", name="threadline_pydantic_ai")
    cls = entry.load()
    assert cls is PydanticAIInstrumentor
    instrumentor = cls()
    assert isinstance(instrumentor, BaseInstrumentor)
    assert instrumentor.instrumentation_dependencies() == ("pydantic-ai-slim >= 1.71.0",)
    instrumentor.instrument()
    assert instrumentor.is_instrumented_by_opentelemetry
    assert Agent.__dict__["iter"].__module__ == "threadline.pydantic_ai._instrument"
    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
