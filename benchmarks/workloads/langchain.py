"""LangChain workloads on a fake chat model (no network): a chat call, a 3-step chain
(prompt | model | parser), a 20-chunk stream and a tool-calling step (the model asks for a tool,
the tool runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from benchmarks._common import THREADLINE_CONFIGS, installed, instrument_threadline

ANSWER = "It is sunny in Paris, 21 degrees."
USAGE = {"input_tokens": 12, "output_tokens": 9, "total_tokens": 21}


class FakeChat(BaseChatModel):
    """A chat model answering instantly, with the metadata a real provider returns."""

    model_name: str = "gpt-4o-mini"
    tool_call: bool = False

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        if self.tool_call:
            message = AIMessage(
                content="",
                tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1"}],
                usage_metadata=USAGE,
                response_metadata={
                    "model_name": "gpt-4o-mini-2024-07-18",
                    "finish_reason": "tool_calls",
                },
                id="resp-1",
            )
        else:
            message = AIMessage(
                content=ANSWER,
                usage_metadata=USAGE,
                response_metadata={"model_name": "gpt-4o-mini-2024-07-18", "finish_reason": "stop"},
                id="resp-1",
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        words = (ANSWER.split(" ") * 4)[:20]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word + " ",
                    id="resp-1",
                    usage_metadata=USAGE if last else None,
                    response_metadata={
                        "model_name": "gpt-4o-mini-2024-07-18",
                        "finish_reason": "stop",
                    }
                    if last
                    else {},
                )
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.model_copy(update={"tool_call": True}).bind(tools=tools, **kwargs)


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def configs() -> list[str]:
    out = ["baseline", "floor"]
    if installed("threadline.langchain"):
        out += THREADLINE_CONFIGS
    if installed("openinference.instrumentation.langchain"):
        out.append("openinference")
    if installed("opentelemetry.instrumentation.langchain"):
        out.append("openllmetry")
    return out


def instrument(config: str) -> None:
    if config == "baseline":
        return
    if instrument_threadline(config, "langchain"):
        return
    if config == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument()
    elif config == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        LangchainInstrumentor().instrument()
    else:
        raise SystemExit(f"langchain has no configuration {config!r}")


class _Noop(BaseCallbackHandler):
    run_inline = True

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        """A no-op of its own: the base class raises NotImplementedError here, which makes
        LangChain format every message and call ``on_llm_start`` instead."""


class _NoopHook:
    handler = _Noop()

    def get(self, default: Any = None) -> Any:
        return self.handler


def noop_hook() -> None:
    """A callback handler that does nothing, installed the way threadline installs its own
    (LangChain's configure hook, inheritable)."""
    from langchain_core.tracers.context import register_configure_hook

    register_configure_hook(_NoopHook(), inheritable=True, handle_class=_Noop)  # type: ignore[arg-type]


def make_chat() -> Callable[[], Any]:
    model = FakeChat()
    return lambda: model.invoke("What is the weather in Paris?").content


def make_chain() -> Callable[[], Any]:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a weather assistant."), ("human", "What is the weather in {city}?")]
    )
    chain = prompt | FakeChat() | StrOutputParser()
    return lambda: chain.invoke({"city": "Paris"})


def make_stream() -> Callable[[], Any]:
    model = FakeChat()
    return lambda: "".join(c.content for c in model.stream("What is the weather in Paris?"))


def make_tool_step() -> Callable[[], Any]:
    model = FakeChat().bind_tools([get_weather])

    def step() -> Any:
        message = model.invoke("What is the weather in Paris?")
        return get_weather.invoke(message.tool_calls[0]).content

    return step


WORKLOADS: dict[str, Callable[[], Callable[[], Any]]] = {
    "chat": make_chat,
    "chain": make_chain,
    "stream": make_stream,
    "tool_step": make_tool_step,
}
