"""``threadline demo``: a scripted agent run, traced offline and printed as a tree.

The run is ``invoke_agent`` → ``chat`` (asks for a tool) → ``execute_tool`` → ``chat`` (answers),
inside a ``threadline.session``. Nothing touches the network unless ``--otlp URL`` is given, in
which case the spans are also exported over OTLP/HTTP.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
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


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="threadline demo", description=__doc__)
    parser.add_argument("--otlp", metavar="URL", help="also export spans over OTLP/HTTP to URL")
    parser.add_argument(
        "--content", action="store_true", help="capture prompt/response content on spans"
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from threadline.testing.tree import render_tree
    except ImportError as error:
        print(f"threadline demo needs the SDK: pip install 'threadline[sdk]' ({error})", file=out)
        return 2
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if args.otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp)))
    previous = threadline.config.current()
    threadline.configure(
        tracer_provider=provider, capture_content="SPAN_ONLY" if args.content else "NO_CONTENT"
    )
    load_prices()
    try:
        with threadline.session("demo-session", user_id="demo-user"):
            answer = scripted_agent_run()
    finally:
        threadline.config.restore(previous)
        provider.shutdown()
    spans = memory.get_finished_spans()
    print(f"answer: {answer}\n", file=out)
    print(
        render_tree(
            spans,
            attributes=(
                semconv.GEN_AI_USAGE_INPUT_TOKENS,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
                semconv.THREADLINE_COST_USD,
                semconv.SESSION_ID,
            ),
            durations=True,
        ),
        file=out,
    )
    if args.otlp:
        print(f"\nexported {len(spans)} spans to {args.otlp}", file=out)
    return 0
