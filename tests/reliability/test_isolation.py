"""Isolation under concurrency: 1000 sessions at once across asyncio tasks and a thread pool,
with each framework, each span carrying its own session; an MCP server under 200 concurrent
calls, some with hostile ``_meta``, keeps answering every one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from apps import (
    ANSWER,
    HOSTILE_META,
    PROMPT,
    langchain_app,
    llamaindex_app,
    mcp_app,
    pydantic_ai_app,
)
from conftest import assert_clean_context

import threadline

SESSIONS = 1000


def _run_concurrent_sessions(
    one_async: Callable[[int], Awaitable[str]], one_thread: Callable[[int], str]
) -> list[str]:
    """Half the sessions as asyncio tasks of one loop, half on a thread pool, all at once."""

    async def main() -> list[str]:
        return await asyncio.gather(*(one_async(i) for i in range(SESSIONS // 2)))

    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = pool.map(one_thread, range(SESSIONS // 2))
        return asyncio.run(main()) + list(threaded)


def _assert_one_session_per_trace(spans: list[Any], names: set[str]) -> None:
    """Each call is one trace whose every span carries that call's own session and user."""
    traces: dict[int, set[tuple[Any, Any]]] = {}
    for span in spans:
        session = (span.attributes.get("session.id"), span.attributes.get("user.id"))
        traces.setdefault(span.context.trace_id, set()).add(session)
    assert len(traces) == SESSIONS
    sessions = set()
    for pairs in traces.values():
        assert len(pairs) == 1, f"one call's spans carried several sessions: {pairs}"
        ((session_id, user_id),) = pairs
        assert session_id is not None
        assert user_id == "user-" + str(session_id)[2:]
        sessions.add(session_id)
    for span in spans:  # the prompt (content capture on) names the session its call opened
        messages = span.attributes.get("gen_ai.input.messages")
        if messages is not None:
            assert f"[{span.attributes['session.id']}]" in str(messages), messages
    assert len(sessions) == SESSIONS, "a call carried another call's session"
    assert {span.name for span in spans} == names


def test_langchain_1000_concurrent_sessions(span_exporter: Any, capture_content: Any) -> None:
    app = langchain_app()
    app.instrument()
    try:
        model = app.model()  # type: ignore[attr-defined]

        async def one_async(i: int) -> str:
            with threadline.session(f"a-{i}", user_id=f"user-{i}"):
                await asyncio.sleep(0)  # interleave with the other tasks mid-session
                message = await model.ainvoke(f"{PROMPT} [a-{i}]")
                return str(message.content)

        def one_thread(i: int) -> str:
            with threadline.session(f"t-{i}", user_id=f"user-{i}"):
                return str(model.invoke(f"{PROMPT} [t-{i}]").content)

        results = _run_concurrent_sessions(one_async, one_thread)
    finally:
        app.uninstrument()
    assert results == [ANSWER] * SESSIONS
    spans = span_exporter.get_finished_spans()
    _assert_one_session_per_trace(spans, {spans[0].name})
    assert spans[0].name.startswith("chat")
    assert len(threadline.open_runs) == 0
    assert_clean_context()


def test_llamaindex_1000_concurrent_sessions(span_exporter: Any, capture_content: Any) -> None:
    app = llamaindex_app()
    app.instrument()
    try:
        from llama_index.core.llms import ChatMessage

        llm = app.llm(max_tokens=4)  # type: ignore[attr-defined]

        async def one_async(i: int) -> str:
            with threadline.session(f"a-{i}", user_id=f"user-{i}"):
                await asyncio.sleep(0)
                response = await llm.achat([ChatMessage(role="user", content=f"{PROMPT} [a-{i}]")])
                return str(response.message.content)

        def one_thread(i: int) -> str:
            with threadline.session(f"t-{i}", user_id=f"user-{i}"):
                response = llm.chat([ChatMessage(role="user", content=f"{PROMPT} [t-{i}]")])
                return str(response.message.content)

        results = _run_concurrent_sessions(one_async, one_thread)
    finally:
        app.uninstrument()
    assert results == ["text text text text"] * SESSIONS
    # MockLLM names its model "unknown"
    _assert_one_session_per_trace(span_exporter.get_finished_spans(), {"chat unknown"})
    assert len(threadline.open_runs) == 0
    assert_clean_context()


def test_pydantic_ai_1000_concurrent_sessions(span_exporter: Any, capture_content: Any) -> None:
    app = pydantic_ai_app()
    app.instrument()
    try:
        from pydantic_ai import Agent
        from pydantic_ai.models.test import TestModel

        async def get_weather(city: str) -> str:
            await asyncio.sleep(0)  # the tool yields mid-run, so runs interleave there too
            return f"sunny in {city}"

        # made after instrument(), as an application's agents are
        agent = Agent(TestModel(custom_output_text=ANSWER), name="weather", tools=[get_weather])

        async def one_async(i: int) -> str:
            with threadline.session(f"a-{i}", user_id=f"user-{i}"):
                await asyncio.sleep(0)
                return (await agent.run(f"{PROMPT} [a-{i}]")).output

        def one_thread(i: int) -> str:
            with threadline.session(f"t-{i}", user_id=f"user-{i}"):
                return asyncio.run(agent.run(f"{PROMPT} [t-{i}]")).output

        results = _run_concurrent_sessions(one_async, one_thread)
    finally:
        app.uninstrument()
    assert results == [ANSWER] * SESSIONS
    _assert_one_session_per_trace(
        span_exporter.get_finished_spans(),
        {"invoke_agent weather", "chat test", "execute_tool get_weather"},
    )
    assert len(threadline.open_runs) == 0
    assert_clean_context()


def test_mcp_server_200_concurrent_calls_with_hostile_meta(span_exporter: Any) -> None:
    app = mcp_app()
    from mcp import Client

    app.instrument()
    try:
        server = app.server  # type: ignore[attr-defined]

        async def main() -> list[Any]:
            async with Client(server) as client:

                async def call(i: int) -> Any:
                    meta = HOSTILE_META[i % len(HOSTILE_META)] if i % 3 == 0 else None
                    result = await client.call_tool("get_weather", {"city": f"city-{i}"}, meta=meta)
                    return result.is_error, result.content[0].text

                return await asyncio.gather(*(call(i) for i in range(200)))

        results = asyncio.run(main())
    finally:
        app.uninstrument()
    assert results == [(False, f"sunny in city-{i}") for i in range(200)]
    servers = [s for s in span_exporter.get_finished_spans() if s.name == "tools/call get_weather"
               and s.kind.name == "SERVER"]  # fmt: skip
    assert len(servers) == 200
    for span in servers:
        assert len(str(span.attributes.get("session.id", ""))) <= 256
    assert len(threadline.open_runs) == 0
    assert_clean_context()


@pytest.mark.parametrize("rounds", [3])
def test_sessions_never_bleed_between_sequential_calls(span_exporter: Any, rounds: int) -> None:
    """A session ends with its block: calls after it carry none."""
    app = langchain_app()
    app.instrument()
    try:
        model = app.model()  # type: ignore[attr-defined]
        for i in range(rounds):
            with threadline.session(f"s-{i}"):
                model.invoke(PROMPT)
            model.invoke(PROMPT)
    finally:
        app.uninstrument()
    spans = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat")]
    assert [s.attributes.get("session.id") for s in spans] == [
        v for i in range(rounds) for v in (f"s-{i}", None)
    ]
