"""Shared fixtures: offline OpenAI cassettes, fake models that call tools, a clean handler."""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import vcr
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from opentelemetry import context as otel_context
from opentelemetry import trace

from threadline.langchain import CallbackHandler, _handler

pytest_plugins = ["threadline.testing"]

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "langchain"
os.environ.setdefault("OPENAI_API_KEY", "test-key-not-used")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach the network: cassettes or fakes answer every call."""

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)


@pytest.fixture(autouse=True)
def _context_hygiene(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After every test: OpenTelemetry never logged "Failed to detach context", no context is
    left attached, and the handler holds no record of a finished run."""
    before = otel_context.get_current()
    with caplog.at_level(logging.DEBUG, logger="opentelemetry.context"):
        yield
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry.context")]
    assert otel_context.get_current() == before
    assert not trace.get_current_span().get_span_context().is_valid
    if _handler._chains or len(_handler._runs):
        gc.collect()  # abandoned generators are closed when collected
    assert len(_handler._chains) == 0, "chain records must go when their runs end"
    assert len(_handler._runs) == 0, "run records must go when their runs end"
    assert len(_handler._children) == 0, "open-child maps must go when their runs end"
    assert len(_handler._unsure_names) == 0, "unsure chain names must go when their runs end"


@pytest.fixture
def cassette() -> Any:
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query"],
    )
    return recorder.use_cassette


@pytest.fixture
def handler() -> CallbackHandler:
    return CallbackHandler()


@pytest.fixture
def config(handler: CallbackHandler) -> dict[str, Any]:
    return {"callbacks": [handler]}


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers with scripted messages (tool calls included) and usage.

    Streams word by word, with the usage in a final empty chunk, like OpenAI does.
    """

    model: str = "scripted-1"
    responses: list[AIMessage]
    temperature: float | None = None
    streaming: bool = False
    fail_with: str | None = None
    index: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _next(self) -> AIMessage:
        if self.fail_with:
            raise ValueError(self.fail_with)
        message = self.responses[self.index % len(self.responses)]
        self.index += 1
        return message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:  # like provider models with streaming=True
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        message = self._next()
        reason = "tool_calls" if message.tool_calls else "stop"
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=message.model_copy(
                        update={
                            "response_metadata": {
                                "model_name": f"{self.model}-2026",
                                "finish_reason": reason,
                                "id": f"resp-{self.index}",
                            }
                        }
                    ),
                    generation_info={"finish_reason": reason},
                )
            ]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next()
        words = str(message.content).split(" ") if message.content else []
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        for index, call in enumerate(message.tool_calls):
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {
                            "name": call["name"],
                            "args": json.dumps(call["args"]),
                            "id": call["id"],
                            "index": index,
                        }
                    ],
                )
            )
            if run_manager:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk
        reason = "tool_calls" if message.tool_calls else "stop"
        final = ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata={"finish_reason": reason, "model_name": f"{self.model}-2026"},
            ),
            generation_info={"finish_reason": reason},
        )
        if run_manager:
            run_manager.on_llm_new_token("", chunk=final)
        yield final


def usage(input_tokens: int, output_tokens: int, **details: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if "cache_read" in details or "cache_creation" in details:
        out["input_token_details"] = {
            k: v for k, v in details.items() if k in ("cache_read", "cache_creation")
        }
    if "reasoning" in details:
        out["output_token_details"] = {"reasoning": details["reasoning"]}
    return out


def tool_call_id_in_callbacks() -> bool:
    """Whether this langchain-core passes the tool call id to tool callbacks (1.x does,
    early 0.3 releases only put it on the resulting ToolMessage)."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tools import tool

    seen: list[Any] = []

    class Probe(BaseCallbackHandler):
        def on_tool_start(self, serialized: Any, input_str: Any, **kwargs: Any) -> None:
            seen.append(kwargs.get("tool_call_id"))

    @tool
    def probe(x: int) -> int:
        """Probe."""
        return x

    call = {"name": "probe", "args": {"x": 1}, "id": "probe-1", "type": "tool_call"}
    probe.invoke(call, config={"callbacks": [Probe()]})
    return seen == ["probe-1"]


def openai_http_module() -> Any:
    """The HTTP library this openai release uses (httpx, or httpx2 from openai 3 on)."""
    import openai._base_client as base

    return getattr(base, "httpx2", None) or base.httpx
