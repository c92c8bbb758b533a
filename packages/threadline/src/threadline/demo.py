"""``threadline demo``: one agent request across LangGraph, LlamaIndex, Pydantic AI and MCP,
traced offline and printed as a tree with a per-session summary.

Inside ``threadline.session("demo-session", user_id="demo-user")`` a LangGraph agent answers a
question by retrieving from a small LlamaIndex index, delegating to a Pydantic AI sub-agent and
calling a tool on an MCP server that runs as a stdio subprocess (see
:mod:`threadline._demo_stack`). Every model is a framework's fake model: nothing touches the
network unless ``--otlp URL`` is given, in which case both processes also export their spans over
OTLP/HTTP. The spans of both processes are written as OTLP JSON to ``--output``.

Without the frameworks installed, the demo says so in one line and shows a scripted run instead:
``invoke_agent`` -> ``chat`` (asks for a tool) -> ``execute_tool`` -> ``chat`` (answers).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import threadline
from threadline import semconv
from threadline.content import (
    FunctionToolDefinition,
    OutputMessage,
    TextPart,
    ToolCallRequestPart,
    text_input,
)
from threadline.cost import load_prices

_TOOL = FunctionToolDefinition(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def scripted_agent_run(question: str = "What's the weather in Paris?") -> str:
    """The demo's agent: two model calls around one tool call, with streamed chunks."""
    with threadline.invoke_agent("weather-assistant", description="Answers weather questions"):
        with threadline.inference(
            "gpt-4o-mini",
            provider="openai",
            server_address="api.openai.com",
            server_port=443,
            request=threadline.RequestParams(temperature=0.2, max_tokens=256),
            input_messages=[text_input("user", question)],
            tool_definitions=[_TOOL],
        ) as chat:
            time.sleep(0.012)
            chat.update(
                response_id="chatcmpl-demo-1",
                response_model="gpt-4o-mini-2024-07-18",
                finish_reasons=["tool_call"],
                usage=threadline.Usage(input_tokens=82, output_tokens=17),
                output_messages=[
                    OutputMessage(
                        parts=[ToolCallRequestPart("get_weather", "call_1", {"city": "Paris"})],
                        finish_reason="tool_call",
                    )
                ],
            )
        with threadline.execute_tool(
            "get_weather", call_id="call_1", arguments={"city": "Paris"}
        ) as tool:
            time.sleep(0.004)
            tool.update(result={"city": "Paris", "temperature_c": 18, "sky": "clear"})
        with threadline.inference(
            "gpt-4o-mini",
            provider="openai",
            server_address="api.openai.com",
            server_port=443,
            stream=True,
        ) as chat:
            answer = "It is 18 °C and clear in Paris."
            for _ in answer.split():
                time.sleep(0.002)
                chat.chunk()
            chat.update(
                response_id="chatcmpl-demo-2",
                response_model="gpt-4o-mini-2024-07-18",
                finish_reasons=["stop"],
                usage=threadline.Usage(
                    input_tokens=121, output_tokens=14, cache_read_input_tokens=64
                ),
                output_messages=[OutputMessage(parts=[TextPart(answer)], finish_reason="stop")],
            )
    return answer


DEFAULT_OUTPUT = "threadline-demo-trace.json"
SESSION_ID = "demo-session"
USER_ID = "demo-user"
TREE_ATTRIBUTES = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.THREADLINE_COST_USD,
    semconv.SESSION_ID,
)

# What the cross-framework run imports: (module, what to tell the user).
_FRAMEWORKS = (
    ("langgraph", "langgraph"),
    ("langchain_core", "langchain-core"),
    ("llama_index.core", "llama-index-core"),
    ("pydantic_ai", "pydantic-ai-slim"),
    ("mcp", "mcp"),
    ("threadline.langchain", "threadline-langchain"),
    ("threadline.llamaindex", "threadline-llamaindex"),
    ("threadline.pydantic_ai", "threadline-pydantic-ai"),
    ("threadline.mcp", "threadline-mcp"),
)


def missing_frameworks() -> list[str]:
    """The distributions the cross-framework run needs that are not installed."""
    missing = []
    for module, dist in _FRAMEWORKS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def _run_stack(server_spans: Path, otlp: str | None) -> str:
    import asyncio

    from threadline import _demo_stack

    _demo_stack.instrument()
    try:
        with threadline.session(SESSION_ID, user_id=USER_ID):
            return asyncio.run(_demo_stack.run(str(server_spans), otlp))
    finally:
        _demo_stack.uninstrument()


def _color(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="threadline demo",
        description="Trace one agent request across LangGraph, LlamaIndex, Pydantic AI and MCP "
        "(offline, fake models) and print it as a tree.",
    )
    parser.add_argument("--otlp", metavar="URL", help="also export spans over OTLP/HTTP to URL")
    parser.add_argument(
        "--content", action="store_true", help="capture prompt/response content on spans"
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        default=DEFAULT_OUTPUT,
        help=f"write the spans as OTLP JSON to PATH (default: {DEFAULT_OUTPUT}; '' to skip)",
    )
    parser.add_argument(
        "--scripted",
        action="store_true",
        help="show the scripted single-process run even if the frameworks are installed",
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from threadline import _demo_report
        from threadline.testing.jsonl import read_spans_jsonl
        from threadline.testing.records import SpanRecord, records
        from threadline.testing.tree import render_tree, trace_ids
    except ImportError as error:
        print(
            f"threadline demo needs the SDK and test kit: pip install 'threadline[sdk,testing]' "
            f"({error})",
            file=out,
        )
        return 2
    missing = [] if args.scripted else missing_frameworks()
    full = not args.scripted and not missing
    if missing:
        print(
            f"note: the cross-framework demo needs {', '.join(missing)} "
            "(pip install 'threadline[all]' langgraph); showing the scripted run instead",
            file=out,
        )
    provider = TracerProvider(resource=Resource.create({"service.name": "threadline-demo"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otlp: _demo_report.CountingExporter | None = None
    if args.otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        otlp = _demo_report.CountingExporter(OTLPSpanExporter(endpoint=args.otlp, timeout=5))
        provider.add_span_processor(BatchSpanProcessor(otlp))
    previous = threadline.config.current()
    threadline.configure(
        tracer_provider=provider, capture_content="SPAN_ONLY" if args.content else "NO_CONTENT"
    )
    load_prices()
    server_spans: list[SpanRecord] = []
    try:
        if full:
            from threadline._demo_stack import QUESTION

            print(
                "threadline demo: a LangGraph agent retrieves from a LlamaIndex index, asks a "
                "Pydantic AI sub-agent and calls an MCP server (stdio subprocess); fake models, "
                "offline\n",
                file=out,
            )
            print(f"question: {QUESTION}", file=out)
            with tempfile.TemporaryDirectory(prefix="threadline-demo-") as tmp:
                jsonl = Path(tmp) / "mcp-server-spans.jsonl"
                env_capture = os.environ.get(threadline.config.ENV_CAPTURE_CONTENT)
                if args.content:  # the server process reads its capture mode from here
                    os.environ[threadline.config.ENV_CAPTURE_CONTENT] = "SPAN_ONLY"
                try:
                    answer = _run_stack(jsonl, args.otlp)
                finally:
                    if args.content:
                        if env_capture is None:
                            os.environ.pop(threadline.config.ENV_CAPTURE_CONTENT, None)
                        else:
                            os.environ[threadline.config.ENV_CAPTURE_CONTENT] = env_capture
                server_spans = read_spans_jsonl(jsonl)
        else:
            with threadline.session(SESSION_ID, user_id=USER_ID):
                answer = scripted_agent_run()
    finally:
        threadline.config.restore(previous)
        provider.shutdown()
    local_spans = records(memory.get_finished_spans())
    spans = local_spans + server_spans
    print(f"answer: {answer}\n", file=out)
    traces = trace_ids(spans)
    processes = "2 processes" if server_spans else "1 process"
    trace_label = next(iter(traces)) if len(traces) == 1 else f"{len(traces)} traces"
    print(f"trace {trace_label}: {len(spans)} spans from {processes}", file=out)
    tree = render_tree(spans, attributes=TREE_ATTRIBUTES, durations=True)
    print(_demo_report.highlight_errors(tree, color=_color(out)), file=out)
    print("", file=out)
    print(_demo_report.session_summaries(spans), file=out)
    print("", file=out)
    if args.output:
        path = _demo_report.write_otlp_json(spans, args.output)
        print(f"wrote {len(spans)} spans as OTLP JSON to {path}", file=out)
    if otlp is not None:
        if otlp.failed:
            print(
                f"could not export {otlp.failed} of {otlp.failed + otlp.exported} spans to "
                f"{args.otlp} (is a collector listening there?)",
                file=out,
            )
        else:
            print(f"exported {otlp.exported} spans to {args.otlp}", file=out)
        if server_spans:
            print(
                f"the MCP server process exports its {len(server_spans)} spans there itself",
                file=out,
            )
    return 0
