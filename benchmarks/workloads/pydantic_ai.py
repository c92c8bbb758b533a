"""Pydantic AI workload on ``TestModel`` (no network): an agent run in which the model calls a
tool once and then answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.models.test import TestModel

from benchmarks._common import THREADLINE_CONFIGS, installed, instrument_threadline

_loop = asyncio.new_event_loop()


def configs() -> list[str]:
    out = ["baseline", "floor"]
    if installed("threadline.pydantic_ai"):
        out += THREADLINE_CONFIGS
    out.append("native")
    if installed("openinference.instrumentation.pydantic_ai"):
        out.append("openinference")
    return out


def instrument(config: str) -> None:
    if config == "baseline":
        return
    if instrument_threadline(config, "pydantic_ai"):
        return
    if config in ("native", "openinference"):
        # Pydantic AI's own OpenTelemetry instrumentation (global tracer provider; content on,
        # its default). OpenInference for Pydantic AI is a span processor that rewrites those
        # spans into its own schema; it must run before the exporter's processor.
        Agent.instrument_all()
        if config == "openinference":
            from openinference.instrumentation.pydantic_ai import OpenInferenceSpanProcessor
            from opentelemetry import trace

            multi = trace.get_tracer_provider()._active_span_processor  # type: ignore[attr-defined]
            multi._span_processors = (OpenInferenceSpanProcessor(), *multi._span_processors)
    else:
        raise SystemExit(f"pydantic_ai has no configuration {config!r}")


class _Noop(AbstractCapability[Any]):
    """Pass-through versions of the hooks threadline's capability implements."""

    async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
        return await handler()

    async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> Any:
        return await handler(request_context)

    async def wrap_tool_execute(self, ctx: Any, *, call: Any, tool_def: Any, args: Any,
                                handler: Any) -> Any:  # fmt: skip
        return await handler(args)


def noop_hook() -> None:
    """The pass-through capability, installed the way ``threadline.pydantic_ai.instrument()``
    installs its own: among the capabilities of an agent made afterwards (``Agent.__init__``),
    else per run through ``Agent.iter``'s ``capabilities``."""
    original_init = Agent.__dict__["__init__"]
    original_iter = Agent.__dict__["iter"]
    noop = _Noop()
    with_noop: set[int] = set()

    def init_with_noop(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["capabilities"] = [*(kwargs.get("capabilities") or ()), _Noop()]
        original_init(self, *args, **kwargs)
        with_noop.add(id(self))

    def iter_with_noop(self: Any, *args: Any, **kwargs: Any) -> Any:
        if id(self) not in with_noop:
            kwargs["capabilities"] = [*(kwargs.get("capabilities") or ()), noop]
        return original_iter(self, *args, **kwargs)

    Agent.__init__ = init_with_noop  # type: ignore[method-assign]
    Agent.iter = iter_with_noop  # type: ignore[method-assign]


async def get_weather(city: str) -> str:
    """Current weather in a city (async: a sync tool would run in a worker thread)."""
    return f"sunny in {city}"


def make_agent_tool() -> Callable[[], Any]:
    agent = Agent(
        TestModel(custom_output_text="It is sunny in Paris."),
        name="weather",
        instructions="You are a weather assistant.",
        tools=[get_weather],
    )

    def run() -> Any:
        return _loop.run_until_complete(agent.run("What is the weather in Paris?")).output

    return run


WORKLOADS: dict[str, Callable[[], Callable[[], Any]]] = {"agent_tool": make_agent_tool}
