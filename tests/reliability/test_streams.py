"""Streams abandoned half-way: a generator closed early, a task cancelled mid-stream
(``asyncio.CancelledError``). The call's span must end (not wait for the reaper), the user sees
exactly what they would without instrumentation, and no context stays attached."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
from apps import PROMPT, langchain_app, llamaindex_app, pydantic_ai_app
from conftest import assert_clean_context

import threadline

CHUNKS_BEFORE_STOP = 3


@pytest.fixture
def traced(span_exporter: Any) -> Any:
    return span_exporter


def _ended_names(exporter: Any) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def _assert_all_ended(exporter: Any, expect: str) -> None:
    gc.collect()
    assert len(threadline.open_runs) == 0, "a run was left for the reaper"
    names = _ended_names(exporter)
    assert any(name.startswith(expect) for name in names), names
    assert_clean_context()


async def _cancel_after(agen_factory: Any, chunks: int) -> list[Any]:
    seen: list[Any] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for item in agen_factory():
            seen.append(item)
            if len(seen) == chunks:
                stop.set()
                await asyncio.sleep(3600)  # cancelled here, mid-stream

    task = asyncio.ensure_future(consume())
    await stop.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The abandoned async generator is finalized by the running loop (asyncio's asyncgen
    # hooks schedule its aclose()): give the loop a few turns, as a live application would.
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    return seen


# --- LangChain -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lc() -> Iterator[Any]:
    app = langchain_app()
    app.instrument()
    yield app
    app.uninstrument()


def test_langchain_stream_closed_early(lc: Any, traced: Any) -> None:
    stream = lc.model().stream(PROMPT)
    taken = [next(stream) for _ in range(CHUNKS_BEFORE_STOP)]
    stream.close()
    assert len(taken) == CHUNKS_BEFORE_STOP
    _assert_all_ended(traced, "chat")


def test_langchain_astream_cancelled(lc: Any, traced: Any) -> None:
    seen = asyncio.run(_cancel_after(lambda: lc.model().astream(PROMPT), CHUNKS_BEFORE_STOP))
    assert len(seen) == CHUNKS_BEFORE_STOP
    _assert_all_ended(traced, "chat")


def test_langchain_stream_abandoned_without_close(lc: Any, traced: Any) -> None:
    stream = lc.model().stream(PROMPT)
    next(stream)
    del stream  # dropped, never closed: the generator's finalizer runs on collection
    _assert_all_ended(traced, "chat")


# --- LlamaIndex ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def li() -> Iterator[Any]:
    app = llamaindex_app()
    app.instrument()
    yield app
    app.uninstrument()


def _li_messages() -> Any:
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="user", content=PROMPT)]


def test_llamaindex_stream_closed_early(li: Any, traced: Any) -> None:
    stream = li.llm(max_tokens=20).stream_chat(_li_messages())
    taken = [next(stream) for _ in range(CHUNKS_BEFORE_STOP)]
    stream.close()
    assert len(taken) == CHUNKS_BEFORE_STOP
    _assert_all_ended(traced, "chat")


def test_llamaindex_astream_cancelled(li: Any, traced: Any) -> None:
    async def stream() -> Any:
        async for chunk in await li.llm(max_tokens=20).astream_chat(_li_messages()):
            yield chunk

    seen = asyncio.run(_cancel_after(stream, CHUNKS_BEFORE_STOP))
    assert len(seen) == CHUNKS_BEFORE_STOP
    _assert_all_ended(traced, "chat")


# --- Pydantic AI -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pai() -> Iterator[Any]:
    app = pydantic_ai_app()
    app.instrument()
    yield app
    app.uninstrument()


def test_pydantic_ai_run_stream_cancelled(pai: Any, traced: Any) -> None:
    async def stream() -> Any:
        async with pai.agent.run_stream(PROMPT) as result:
            async for text in result.stream_text(delta=True, debounce_by=None):
                yield text

    seen = asyncio.run(_cancel_after(stream, 1))
    assert len(seen) == 1
    _assert_all_ended(traced, "invoke_agent")


def test_pydantic_ai_run_stream_left_early(pai: Any, traced: Any) -> None:
    async def main() -> Any:
        async with pai.agent.run_stream(PROMPT) as result:
            async for text in result.stream_text(delta=True, debounce_by=None):
                return text  # leaves the stream (and the run) after the first delta
        return None

    assert asyncio.run(main()) is not None
    _assert_all_ended(traced, "invoke_agent")


# --- MCP -------------------------------------------------------------------------------------
def test_mcp_call_cancelled_in_flight(span_exporter: Any) -> None:
    """A client call cancelled while the server's tool is still working: the client span ends,
    and the server keeps answering later calls on the same connection."""
    pytest.importorskip("threadline.mcp")
    mcp = pytest.importorskip("mcp")
    if not hasattr(mcp, "Client"):
        pytest.skip("in-process MCP client needs mcp 2.x")
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    import threadline.mcp

    started = asyncio.Event()

    async def slow(city: str) -> str:
        started.set()
        await asyncio.sleep(3600)
        return city

    def fast(city: str) -> str:
        return f"sunny in {city}"

    server = MCPServer("weather", middleware=[threadline.mcp.TracingMiddleware()])
    server.tool(name="slow")(slow)
    server.tool(name="get_weather")(fast)
    threadline.mcp.instrument()
    try:

        async def main() -> Any:
            async with Client(server) as client:
                call = asyncio.ensure_future(client.call_tool("slow", {"city": "Oslo"}))
                await started.wait()
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                after = await client.call_tool("get_weather", {"city": "Paris"})
                return after.content[0].text

        assert asyncio.run(main()) == "sunny in Paris"
    finally:
        threadline.mcp.uninstrument()
    names = _ended_names(span_exporter)
    assert "tools/call slow" in names, names  # the cancelled call's span ended
    assert len(threadline.open_runs) == 0
    assert_clean_context()
