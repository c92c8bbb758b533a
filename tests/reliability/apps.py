"""Small applications on each framework's own fake models (no network), in two variants: one
that returns a result and one that raises a given exception object from user code.

Each app is ``App(name, instrument, uninstrument, ok, fail)``; ``ok()`` returns a comparable
result, ``fail(error)`` must raise exactly ``error`` (or, for MCP where tool errors are results,
return the error result)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# _meta a hostile MCP client may send: malformed, oversized or wrongly typed trace context.
HOSTILE_META: list[Any] = [
    {"traceparent": "00-zzzz-yyyy-01"},
    {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
    {"baggage": "session.id=" + "x" * 100_000},
    {"baggage": ",".join(f"k{i}=v" for i in range(5000))},
    {"traceparent": ["not", "a", "string"], "baggage": {"nested": True}},
    {"tracestate": "a=" + "b" * 10_000, "traceparent": 42},
    {"baggage": "session.id=%E0%A4%A, user.id=\x00\x01"},
]

PROMPT = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris."


@dataclasses.dataclass
class App:
    name: str
    instrument: Callable[[], None]
    uninstrument: Callable[[], None]
    ok: Callable[[], Any]
    fail: Callable[[BaseException], Any]
    fail_is_result: bool = False
    soak: Callable[[], Any] | None = None
    """A cheaper ``ok`` for 100k-call soaks (one event loop or connection for all calls)."""


# --- LangChain -------------------------------------------------------------------------------
def langchain_app() -> App:
    pytest.importorskip("threadline.langchain")
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.tools import tool

    import threadline.langchain

    class FakeChat(BaseChatModel):
        model_name: str = "gpt-4o-mini"
        error: Any = None

        @property
        def _llm_type(self) -> str:
            return "fake-chat"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:  # fmt: skip
            if self.error is not None:
                raise self.error
            message = AIMessage(
                content=ANSWER,
                usage_metadata={"input_tokens": 7, "output_tokens": 5, "total_tokens": 12},
                response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "stop"},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                    **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
            for word in (ANSWER.split(" ") * 5)[:20]:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"sunny in {city}"

    def ok() -> Any:
        message = FakeChat().invoke(PROMPT)
        return (message.content, get_weather.invoke({"city": "Paris"}))

    def fail(error: BaseException) -> Any:
        return FakeChat(error=error).invoke(PROMPT)

    app = App("langchain", threadline.langchain.instrument, threadline.langchain.uninstrument,
              ok, fail)  # fmt: skip
    app.model = FakeChat  # type: ignore[attr-defined]
    return app


def langchain_embeddings_app() -> App:
    """An embedding model: its calls are traced by wrapped methods, not callbacks."""
    pytest.importorskip("threadline.langchain")
    from langchain_core.embeddings import Embeddings

    import threadline.langchain

    class FakeEmbeddings(Embeddings):
        model = "text-embedding-3-small"

        def __init__(self, error: BaseException | None = None) -> None:
            self.error = error

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if self.error is not None:
                raise self.error
            return [[float(len(text)), 1.0] for text in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    def ok() -> Any:
        model = FakeEmbeddings()
        return (model.embed_query(PROMPT), asyncio.run(model.aembed_documents([ANSWER])))

    def fail(error: BaseException) -> Any:
        return FakeEmbeddings(error).embed_query(PROMPT)

    def soak() -> Any:
        return FakeEmbeddings().embed_query(PROMPT)

    return App("langchain_embeddings", threadline.langchain.instrument,
               threadline.langchain.uninstrument, ok, fail, soak=soak)  # fmt: skip


# --- LlamaIndex ------------------------------------------------------------------------------
def llamaindex_app() -> App:
    pytest.importorskip("threadline.llamaindex")
    from llama_index.core.llms import ChatMessage, MockLLM

    import threadline.llamaindex

    failure: list[BaseException] = []

    class FailingLLM(MockLLM):
        def _generate_text(self, length: int) -> str:
            raise failure[0]

    messages = [ChatMessage(role="user", content=PROMPT)]

    def ok() -> Any:
        return MockLLM(max_tokens=8).chat(messages).message.content

    def fail(error: BaseException) -> Any:
        failure[:] = [error]
        return FailingLLM(max_tokens=8).chat(messages)

    app = App("llamaindex", threadline.llamaindex.instrument, threadline.llamaindex.uninstrument,
              ok, fail)  # fmt: skip
    app.llm = MockLLM  # type: ignore[attr-defined]
    return app


# --- Pydantic AI -----------------------------------------------------------------------------
def pydantic_ai_app() -> App:
    pytest.importorskip("threadline.pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    import threadline.pydantic_ai

    failure: list[BaseException] = []

    async def get_weather(city: str) -> str:
        """Current weather in a city."""
        if failure:
            raise failure[0]
        return f"sunny in {city}"

    agent = Agent(TestModel(custom_output_text=ANSWER), name="weather", tools=[get_weather])

    def ok() -> Any:
        failure.clear()
        return asyncio.run(agent.run(PROMPT)).output

    def fail(error: BaseException) -> Any:
        failure[:] = [error]
        try:
            return asyncio.run(agent.run(PROMPT))
        finally:
            failure.clear()

    loop = asyncio.new_event_loop()
    soaked: list[Agent[None, str]] = []

    def soak() -> Any:
        # Made at the first call, after instrument(): the Tracing it is given at construction
        # serves every run (``ok``'s agent predates instrument() and gets one per run).
        if not soaked:
            soaked.append(Agent(TestModel(custom_output_text=ANSWER), name="weather",
                                tools=[get_weather]))  # fmt: skip
        return loop.run_until_complete(soaked[0].run(PROMPT)).output

    app = App("pydantic_ai", threadline.pydantic_ai.instrument,
              threadline.pydantic_ai.uninstrument, ok, fail, soak=soak)  # fmt: skip
    app.agent = agent  # type: ignore[attr-defined]
    return app


# --- MCP -------------------------------------------------------------------------------------
def mcp_app() -> App:
    pytest.importorskip("threadline.mcp")
    mcp = pytest.importorskip("mcp")
    if not hasattr(mcp, "Client"):
        pytest.skip("in-process MCP client needs mcp 2.x")
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    import threadline.mcp

    failure: list[BaseException] = []

    def get_weather(city: str) -> str:
        """Current weather in a city."""
        if failure:
            raise failure[0]
        return f"sunny in {city}"

    server = MCPServer("weather", middleware=[threadline.mcp.TracingMiddleware()])
    server.tool(name="get_weather")(get_weather)

    async def call() -> Any:
        async with Client(server) as client:
            result = await client.call_tool("get_weather", {"city": "Paris"})
            return (result.is_error, [c.text for c in result.content])

    def ok() -> Any:
        failure.clear()
        return asyncio.run(call())

    def fail(error: BaseException) -> Any:
        failure[:] = [error]
        try:
            return asyncio.run(call())
        finally:
            failure.clear()

    loop = asyncio.new_event_loop()
    client: list[Any] = []

    async def hold(ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        async with Client(server) as connected:
            ready.set_result(connected)
            await stop.wait()

    def soak() -> Any:
        # One connection for all calls: the client is opened inside a task that stays alive.
        if not client:
            ready: asyncio.Future[Any] = loop.create_future()
            stop = asyncio.Event()
            client.append(loop.create_task(hold(ready, stop)))
            client.append(stop)
            client.append(loop.run_until_complete(ready))
        result = loop.run_until_complete(client[2].call_tool("get_weather", {"city": "Paris"}))
        return (result.is_error, [c.text for c in result.content])

    app = App("mcp", threadline.mcp.instrument, threadline.mcp.uninstrument, ok, fail,
              fail_is_result=True, soak=soak)  # fmt: skip
    app.server = server  # type: ignore[attr-defined]
    return app


APPS: dict[str, Callable[[], App]] = {
    "langchain": langchain_app,
    "langchain_embeddings": langchain_embeddings_app,
    "llamaindex": llamaindex_app,
    "pydantic_ai": pydantic_ai_app,
    "mcp": mcp_app,
}
