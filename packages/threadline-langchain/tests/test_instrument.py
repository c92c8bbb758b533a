"""Process-wide instrumentation: instrument()/uninstrument(), the instrumentor entry point, and
`opentelemetry-instrument` zero-code start-up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from agents import build_agent, get_time, get_weather, tools_sorted, two_tool_model
from conftest import ScriptedChatModel
from langchain_core.messages import AIMessage
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline.config
import threadline.langchain
from threadline.langchain import CallbackHandler, LangChainInstrumentor


@pytest.fixture(autouse=True)
def _uninstrument_after() -> Iterator[None]:
    yield
    threadline.langchain.uninstrument()


def model() -> ScriptedChatModel:
    return ScriptedChatModel(responses=[AIMessage(content="hi")])


def test_instrument_traces_every_run(telemetry: Any) -> None:
    model().invoke("before")
    assert telemetry.spans() == []
    handler = threadline.langchain.instrument()
    assert isinstance(handler, CallbackHandler)
    assert threadline.langchain.instrumented_handler() is handler
    model().invoke("during")
    asyncio.run(model().ainvoke("during, async"))
    worker = threading.Thread(target=lambda: model().invoke("during, new thread"))
    worker.start()
    worker.join()
    assert len(telemetry.spans()) == 3
    threadline.langchain.uninstrument()
    threadline.langchain.uninstrument()  # idempotent
    assert threadline.langchain.instrumented_handler() is None
    model().invoke("after")
    assert len(telemetry.spans()) == 3


def test_instrument_is_idempotent_and_never_duplicates(
    telemetry: Any, config: dict[str, Any]
) -> None:
    threadline.langchain.instrument()
    threadline.langchain.instrument()
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    agent.invoke({"messages": [("user", "Weather?")]})  # global handler only
    agent.invoke({"messages": [("user", "Weather?")]}, config=config)  # explicit one as well
    # a handler given to one model, inside a run the global handler traces
    agent_with_local = build_agent(
        two_tool_model(callbacks=[CallbackHandler()]), [get_weather, get_time]
    )
    agent_with_local.invoke({"messages": [("user", "Weather?")]})
    one = (
        "invoke_agent support [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]\n"
        "  execute_tool get_time [INTERNAL]\n"
        "  execute_tool get_weather [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]"
    )
    trees = [tools_sorted(tree) for tree in telemetry.tree().split("\n---\n")]
    assert trees == [one, one, one]


def test_instrumentor_takes_a_tracer_provider(telemetry: Any) -> None:
    # The instrumentor keyword of every OpenTelemetry instrumentor: threadline's spans go to
    # that provider instead of the global one, until the configuration is restored.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = threadline.config.current()
    try:
        LangChainInstrumentor().instrument(tracer_provider=provider, not_an_option=1)
        model().invoke("hi")
    finally:
        LangChainInstrumentor().uninstrument()
        threadline.config.restore(previous)
    assert [s.name for s in exporter.get_finished_spans()] == ["chat scripted-1"]
    assert telemetry.spans() == []


def test_instrument_options(telemetry: Any) -> None:
    threadline.langchain.instrument(agents=["helper"])
    model().with_config(run_name="helper").invoke("x")
    # chains that are not graphs make no span unless named
    assert telemetry.tree() == "chat scripted-1 [CLIENT]"
    telemetry.span_exporter.clear()
    from langchain_core.runnables import RunnableLambda

    RunnableLambda(lambda x: model().invoke(x)).with_config(run_name="helper").invoke("x")
    assert telemetry.tree() == "invoke_agent helper [INTERNAL]\n  chat scripted-1 [CLIENT]"


def test_entry_point_loads_the_instrumentor(telemetry: Any) -> None:
    (entry,) = [
        ep
        for ep in entry_points(group="opentelemetry_instrumentor")
        if ep.name == "threadline_langchain"
    ]
    instrumentor_class = entry.load()
    assert instrumentor_class is LangChainInstrumentor
    assert issubclass(instrumentor_class, BaseInstrumentor)
    instrumentor = instrumentor_class()
    instrumentor.instrument()
    try:
        model().invoke("x")
    finally:
        instrumentor.uninstrument()
    model().invoke("y")
    assert telemetry.tree() == "chat scripted-1 [CLIENT]"


APP = """
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

model = GenericFakeChatModel(messages=iter([AIMessage(content="zero code")]))
print("ANSWER", model.invoke("hi").content)
"""


def test_opentelemetry_instrument_zero_code(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    if not command.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-app",
    }
    done = subprocess.run(
        [str(command), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "ANSWER zero code" in done.stdout
    decoder = json.JSONDecoder()
    text = done.stdout[done.stdout.index("{") :]
    spans = []
    while text.strip():
        span, end = decoder.raw_decode(text.strip())
        spans.append(span)
        text = text.strip()[end:]
    (span,) = spans
    assert span["name"] == "chat GenericFakeChatModel"
    assert span["kind"] == "SpanKind.CLIENT"
    assert span["attributes"]["gen_ai.operation.name"] == "chat"
    assert span["resource"]["attributes"]["service.name"] == "zero-code-app"


LATE_LANGGRAPH = """
import sys

from threadline.langchain import LangChainInstrumentor

LangChainInstrumentor().instrument()
assert "langchain_core" not in sys.modules  # deferred: nothing imported yet

from langchain_core.tracers import event_stream  # LangChain first: instrumented now
from threadline.langchain import _handler

assert "langgraph" not in sys.modules
from langgraph.pregel import Pregel  # LangGraph later: guarded when it arrives
from langchain_core.runnables import base

guards = _handler._guards
print("pregel", Pregel.__dict__["ainvoke"] in guards, Pregel.__dict__["astream"] in guards)
events = event_stream._astream_events_implementation_v2
# langchain-core 0.3 imports it inside the method that calls it
reexported = getattr(base, "_astream_events_implementation_v2", events)
print("events", events in guards, reexported in guards)
print("wrapped once", events.__wrapped__ not in guards)
LangChainInstrumentor().uninstrument()
print("undone", Pregel.__dict__["ainvoke"] not in guards, not guards)
"""


def test_guards_follow_frameworks_imported_after_instrumenting(tmp_path: Path) -> None:
    """The instrumentor waits for LangChain, and guards LangGraph's entry points whenever
    LangGraph is imported; an entry point one module re-exports from another is wrapped once."""
    app = tmp_path / "app.py"
    app.write_text(LATE_LANGGRAPH)
    done = subprocess.run(
        [sys.executable, str(app)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "pregel True True",
        "events True True",
        "wrapped once True",
        "undone True True",
    ]
