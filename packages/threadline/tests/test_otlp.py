"""The demo's spans reach a real OTLP/HTTP receiver whole (protobuf over HTTP on 127.0.0.1)."""

from __future__ import annotations

import io

import pytest

from threadline.demo import main
from threadline.testing.otlp import otlp_receiver

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


def test_demo_exports_one_whole_trace_over_otlp() -> None:
    with otlp_receiver() as receiver:
        assert main(["--scripted", "--output", "", "--otlp", receiver.url], out=io.StringIO()) == 0
        spans = [span for _, span in receiver.spans(scope="threadline")]
    assert sorted(span.name for span in spans) == [
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "execute_tool get_weather",
        "invoke_agent weather-assistant",
    ]
    assert len({span.trace_id for span in spans}) == 1
    root = next(span for span in spans if span.name.startswith("invoke_agent"))
    assert all(span.parent_span_id == root.span_id for span in spans if span is not root)
    chat = next(span for span in spans if span.name.startswith("chat"))
    attributes = {kv.key: kv.value for kv in chat.attributes}
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["session.id"].string_value == "demo-session"
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0
