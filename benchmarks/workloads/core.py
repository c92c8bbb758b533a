"""The run API on its own: what an application pays for ``threadline.inference(...)`` and
friends around a call that does no real work, against the raw SDK emitting the same spans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import threadline
from benchmarks._common import THREADLINE_CONFIGS, configure_threadline
from threadline.content import (
    OutputMessage,
    TextPart,
    text_input,
)

PROMPT = "What is the weather in Paris today?"
ANSWER = "It is sunny in Paris, 21 degrees."


def configs() -> list[str]:
    return ["baseline", "floor", *THREADLINE_CONFIGS]


def instrument(config: str) -> None:
    if config in THREADLINE_CONFIGS:
        configure_threadline(config)
    elif config != "baseline":
        raise SystemExit(f"core has no configuration {config!r}")
    global _INSTRUMENTED
    _INSTRUMENTED = config != "baseline"


def noop_hook() -> None:
    """The core has no hook: the floor is the replay alone."""


_INSTRUMENTED = False


def _model(prompt: str) -> dict[str, Any]:
    return {"id": "resp-1", "model": "gpt-4o-mini-2024-07-18", "text": ANSWER, "in": 12, "out": 9}


def _chat(parent: threadline.Run | None = None) -> dict[str, Any]:
    if not _INSTRUMENTED:
        return _model(PROMPT)
    capture = threadline.capture_enabled()
    run = threadline.inference(
        "gpt-4o-mini",
        provider="openai",
        parent=parent,
        request=threadline.RequestParams(max_tokens=256, temperature=0.2),
        input_messages=[text_input("user", PROMPT)] if capture else None,
    )
    response = _model(PROMPT)
    run.update(
        response_id=response["id"],
        response_model=response["model"],
        finish_reasons=["stop"],
        usage=threadline.Usage(input_tokens=response["in"], output_tokens=response["out"]),
        output_messages=[OutputMessage(parts=[TextPart(ANSWER)], finish_reason="stop")]
        if capture
        else None,
    )
    run.end()
    return response


def make_chat() -> Callable[[], Any]:
    return _chat


def make_stream() -> Callable[[], Any]:
    chunks = ANSWER.split(" ")
    chunks = (chunks * 4)[:20]

    def stream() -> str:
        if not _INSTRUMENTED:
            return "".join(chunks)
        run = threadline.inference("gpt-4o-mini", provider="openai", stream=True)
        out = []
        for chunk in chunks:
            run.chunk()
            out.append(chunk)
        run.update(
            finish_reasons=["stop"], usage=threadline.Usage(input_tokens=12, output_tokens=20)
        )
        run.end()
        return "".join(out)

    return stream


def _weather(city: str) -> str:
    return f"sunny in {city}"


def make_agent() -> Callable[[], Any]:
    """invoke_agent > chat, execute_tool, chat: one tool-calling agent turn."""

    def agent() -> str:
        if not _INSTRUMENTED:
            _model(PROMPT)
            result = _weather("Paris")
            _model(result)
            return result
        capture = threadline.capture_enabled()
        with threadline.invoke_agent("weather", model="gpt-4o-mini", provider="openai") as run:
            _chat(run)
            tool = threadline.execute_tool(
                "get_weather",
                parent=run,
                call_id="call-1",
                arguments={"city": "Paris"} if capture else None,
            )
            result = _weather("Paris")
            tool.update(result=result if capture else None)
            tool.end()
            _chat(run)
        return result

    return agent


WORKLOADS: dict[str, Callable[[], Callable[[], Any]]] = {
    "chat": make_chat,
    "stream": make_stream,
    "agent": make_agent,
}
