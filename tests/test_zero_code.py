"""Zero-code instrumentation: ``opentelemetry-instrument python app.py`` traces each framework
through threadline's ``opentelemetry_instrumentor`` entry points.

Each app in ``zero_code/`` uses its framework's fake model and never imports threadline. It runs
in a subprocess under ``opentelemetry-instrument`` with the console exporter (spans as JSON on
stdout, batched and flushed at exit). The control run disables that framework's entry point
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``) and must lose the threadline spans, so the spans are
the entry point's doing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from threadline.testing import SpanRecord, render_tree

APPS = Path(__file__).with_name("zero_code")
INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
ATTRIBUTES = (
    "gen_ai.operation.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.tool.name",
    "mcp.method.name",
)

# framework -> (entry point name, threadline distribution, expected tree)
CASES = {
    "langchain": (
        "threadline_langchain",
        "threadline-langchain",
        """\
invoke_agent weather-agent [INTERNAL] gen_ai.operation.name=invoke_agent \
gen_ai.usage.input_tokens=60 gen_ai.usage.output_tokens=12
  chat ToolCallingFakeModel [CLIENT] gen_ai.operation.name=chat gen_ai.usage.input_tokens=20 \
gen_ai.usage.output_tokens=5
  execute_tool get_weather [INTERNAL] gen_ai.operation.name=execute_tool \
gen_ai.tool.name=get_weather
  chat ToolCallingFakeModel [CLIENT] gen_ai.operation.name=chat gen_ai.usage.input_tokens=40 \
gen_ai.usage.output_tokens=7""",
    ),
    "llamaindex": (
        "threadline_llamaindex",
        "threadline-llamaindex",
        """\
embeddings unknown [CLIENT] gen_ai.operation.name=embeddings
---
invoke_workflow [INTERNAL] gen_ai.operation.name=invoke_workflow
  retrieval SimpleVectorStore [CLIENT] gen_ai.operation.name=retrieval
    embeddings unknown [CLIENT] gen_ai.operation.name=embeddings
  text_completion unknown [INTERNAL] gen_ai.operation.name=text_completion""",
    ),
    "pydantic_ai": (
        "threadline_pydantic_ai",
        "threadline-pydantic-ai",
        """\
invoke_agent support [INTERNAL] gen_ai.operation.name=invoke_agent
  chat test [CLIENT] gen_ai.operation.name=chat
  execute_tool get_weather [INTERNAL] gen_ai.operation.name=execute_tool \
gen_ai.tool.name=get_weather
  chat test [CLIENT] gen_ai.operation.name=chat""",
    ),
    "mcp": (
        "threadline_mcp",
        "threadline-mcp",
        """\
server/discover [CLIENT] mcp.method.name=server/discover
---
tools/call get_weather [CLIENT] gen_ai.operation.name=execute_tool gen_ai.tool.name=get_weather \
mcp.method.name=tools/call
---
tools/list [CLIENT] mcp.method.name=tools/list""",
    ),
}


def _console_spans(stdout: str) -> list[SpanRecord]:
    """The ConsoleSpanExporter's output: one pretty-printed ``span.to_json()`` after another."""
    decoder = json.JSONDecoder()
    spans: list[SpanRecord] = []
    index = 0
    while True:
        while index < len(stdout) and stdout[index].isspace():
            index += 1
        if index >= len(stdout):
            return spans
        data, index = decoder.raw_decode(stdout, index)
        spans.append(SpanRecord.from_json(data))


def _instrument_env(service: str, **env: str) -> dict[str, str]:
    """This process's environment without its OTEL_ settings: spans to the console exporter,
    no metrics or logs, and ``service`` as the service name; ``env`` on top."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": service,
        **env,
    }


def _run_instrumented(app: str, **env: str) -> list[SpanRecord]:
    environment = _instrument_env(f"zero-code-{app}", **env)
    result = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(APPS / f"app_{app}.py")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return _console_spans(result.stdout)


def test_every_integration_registers_an_instrumentor_entry_point() -> None:
    found = {
        ep.name: ep.dist.name if ep.dist else None
        for ep in entry_points(group="opentelemetry_instrumentor")
    }
    for name, dist, _ in CASES.values():
        assert found.get(name) == dist


STARTUP = """
import json
import sys

from threadline.langchain import LangChainInstrumentor
from threadline.llamaindex import LlamaIndexInstrumentor
from threadline.mcp import MCPInstrumentor
from threadline.pydantic_ai import PydanticAIInstrumentor

frameworks = {"langchain_core", "langgraph", "llama_index", "pydantic_ai", "mcp"}
print(json.dumps({
    "imported": sorted({m.split(".")[0] for m in sys.modules} & frameworks),
    "instrumented": [
        cls()._is_instrumented_by_opentelemetry
        for cls in (LangChainInstrumentor, LlamaIndexInstrumentor, MCPInstrumentor,
                    PydanticAIInstrumentor)
    ],
}))
"""


def test_startup_imports_no_framework() -> None:
    """Every integration is loaded and enabled at startup, and none imports its framework
    before the application does (the apps above show each one instruments it when it does)."""
    result = subprocess.run(
        [str(INSTRUMENT), sys.executable, "-c", STARTUP],
        capture_output=True,
        text=True,
        env=_instrument_env("zero-code-startup"),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"imported": [], "instrumented": [True] * 4}


# Apps whose first import of their framework is threadline's module that imports it: the
# framework's import hook fires while that module is half run.
FIRST_IMPORT_THROUGH_THREADLINE = {
    "pydantic_ai": """
from threadline.pydantic_ai import Tracing
from pydantic_ai import Agent

Agent("test", name="support").run_sync("hi")
""",
    "langchain": """
from threadline.langchain import CallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

GenericFakeChatModel(messages=iter([AIMessage("hello")])).invoke("hi")
""",
}


@pytest.mark.parametrize("app", sorted(FIRST_IMPORT_THROUGH_THREADLINE))
def test_a_framework_first_imported_through_threadline_is_traced(app: str) -> None:
    result = subprocess.run(
        [str(INSTRUMENT), sys.executable, "-c", FIRST_IMPORT_THROUGH_THREADLINE[app]],
        capture_output=True,
        text=True,
        env=_instrument_env(f"zero-code-first-import-{app}"),
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stderr
    names = {span.name for span in _console_spans(result.stdout)}
    assert names >= (
        {"invoke_agent support", "chat test"}
        if app == "pydantic_ai"
        else {"chat GenericFakeChatModel"}
    )


@pytest.mark.parametrize("app", sorted(CASES))
def test_opentelemetry_instrument_traces_the_app(app: str) -> None:
    _, _, expected = CASES[app]
    spans = _run_instrumented(app)
    # TestModel estimates its usage from the prompt: check tokens are there, not their count.
    attributes = ATTRIBUTES if app != "pydantic_ai" else ATTRIBUTES[:1] + ATTRIBUTES[3:]
    assert render_tree(spans, attributes=attributes) == expected
    for span in spans:
        if span.name.startswith(("chat ", "invoke_agent ")):
            assert span.attributes["gen_ai.usage.input_tokens"] > 0
            assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert {span.resource.get("service.name") for span in spans} == {f"zero-code-{app}"}


@pytest.mark.parametrize("app", sorted(CASES))
def test_without_the_entry_point_the_app_is_not_traced_by_threadline(app: str) -> None:
    entry_point, _, _ = CASES[app]
    spans = _run_instrumented(app, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=entry_point)
    # What is left is the framework's own telemetry, if any (mcp 2.x's "MCP send ..." spans).
    assert not [span for span in spans if "gen_ai.operation.name" in span.attributes]
    assert all(span.name.startswith("MCP send ") for span in spans)


def _serve_and_call(tmp_path: Path, **env: str) -> tuple[list[SpanRecord], str]:
    """Run ``mcp_weather_http_server.py`` under ``opentelemetry-instrument``, call its tool once
    from this process inside a span of ours (the mcp 2.x client sends that span's context in
    ``_meta``), stop the server and return its spans and the caller's trace id."""
    import signal
    import time

    import anyio
    from mcp import Client
    from opentelemetry.sdk.trace import TracerProvider

    port_file = tmp_path / "port"
    environment = _instrument_env("zero-code-mcp-server", **env)
    server = subprocess.Popen(
        [str(INSTRUMENT), sys.executable, str(APPS / "mcp_weather_http_server.py"), str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/mcp"

        async def call() -> str:
            async with Client(url) as client:
                tracer = TracerProvider().get_tracer("test")
                with tracer.start_as_current_span("caller") as span:
                    result = await client.call_tool("get_weather", {"city": "Paris"})
                    assert not result.is_error
                    return format(span.get_span_context().trace_id, "032x")

        caller = anyio.run(call)
    finally:
        server.send_signal(signal.SIGINT)  # uvicorn shuts down; the SDK flushes at exit
        stdout, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    return _console_spans(stdout), caller


def test_opentelemetry_instrument_traces_an_mcp_server(tmp_path: Path) -> None:
    """mcp 2.x: a server with no middleware of its own, under ``opentelemetry-instrument``, gets
    threadline's SERVER spans (in place of the SDK's), joined to the caller's trace."""
    pytest.importorskip("mcp.server.mcpserver")
    spans, caller = _serve_and_call(tmp_path)
    calls = [s for s in spans if s.name == "tools/call get_weather"]
    assert len(calls) == 1, [s.name for s in spans]  # ours only: the SDK's span was replaced
    (call,) = calls
    assert call.kind == "SERVER"
    # In the caller's trace (under the caller, or under a client span of whatever instruments
    # this test process).
    assert call.trace_id == caller
    assert call.parent_span_id is not None
    # What the SDK's own span does not record: the transport and the peer.
    assert call.attributes["network.transport"] == "tcp"
    assert call.attributes["client.address"] == "127.0.0.1"
    assert call.attributes["gen_ai.tool.name"] == "get_weather"


def test_without_the_entry_point_the_mcp_server_keeps_the_sdk_spans(tmp_path: Path) -> None:
    pytest.importorskip("mcp.server.mcpserver")
    spans, caller = _serve_and_call(
        tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="threadline_mcp"
    )
    (call,) = [s for s in spans if s.name == "tools/call get_weather"]
    assert call.trace_id == caller
    assert "network.transport" not in call.attributes
