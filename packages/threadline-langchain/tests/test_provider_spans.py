"""A provider SDK's own instrumentation beside threadline (OpenLLMetry's OpenAI instrumentor):
a LangChain model call is one span, not ours plus the provider's with the tokens again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import openai_http_module
from langchain_openai import ChatOpenAI

import threadline
from threadline import config as threadline_config
from threadline import semconv

pytest.importorskip("opentelemetry.instrumentation.openai")

_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Sunny."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}


@pytest.fixture
def openllmetry_openai() -> Iterator[None]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


def _model() -> ChatOpenAI:
    http = openai_http_module()
    body = json.dumps(_COMPLETION).encode()
    client = http.Client(
        transport=http.MockTransport(
            lambda request: http.Response(
                200, headers={"content-type": "application/json"}, content=body
            )
        )
    )
    return ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0, http_client=client)


def _tokens(telemetry: Any) -> list[tuple[str, Any]]:
    return [
        (span.name, span.attributes.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
        for span in telemetry.spans()
    ]


def test_a_provider_instrumentation_adds_no_second_span_of_a_model_call(
    telemetry: Any, config: dict[str, Any], openllmetry_openai: None
) -> None:
    assert _model().invoke("Weather?", config=config).content == "Sunny."
    assert telemetry.tree() == "chat gpt-4o-mini [CLIENT]"
    assert _tokens(telemetry) == [("chat gpt-4o-mini", 9)]


def test_the_provider_span_is_back_when_the_setting_is_off(
    telemetry: Any, config: dict[str, Any], openllmetry_openai: None
) -> None:
    """The instrumentor does trace the call when asked to (so the test above shows the
    suppression, not an instrumentor that never ran)."""
    previous = threadline_config.current()
    try:
        threadline.configure(suppress_provider_spans=False)
        _model().invoke("Weather?", config=config)
    finally:
        threadline_config.restore(previous)
    # (the instrumentor traces langchain-openai's raw-response call and the call it makes)
    root, *provider = telemetry.tree().splitlines()
    assert root == "chat gpt-4o-mini [CLIENT]"
    assert provider
    assert all(line.strip() == "openai.chat [CLIENT]" for line in provider)
    assert ("openai.chat", 9) in _tokens(telemetry)
