"""Isolation under concurrency: 1000 sessions at once across asyncio tasks and a thread pool,
each span carrying its own session; an MCP server under 200 concurrent calls, some with hostile
``_meta``, keeps answering every one."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from apps import ANSWER, HOSTILE_META, PROMPT, langchain_app, mcp_app
from conftest import assert_clean_context

import threadline

SESSIONS = 1000


def test_langchain_1000_concurrent_sessions(span_exporter: Any) -> None:
    app = langchain_app()
    app.instrument()
    try:
        model = app.model()  # type: ignore[attr-defined]

        async def one_async(i: int) -> str:
            with threadline.session(f"a-{i}", user_id=f"user-{i}"):
                await asyncio.sleep(0)  # interleave with the other tasks mid-session
                message = await model.ainvoke(f"{PROMPT} #{i}")
                return str(message.content)

        def one_thread(i: int) -> str:
            with threadline.session(f"t-{i}", user_id=f"user-{i}"):
                return str(model.invoke(f"{PROMPT} #{i}").content)

        async def main() -> list[str]:
            return await asyncio.gather(*(one_async(i) for i in range(SESSIONS // 2)))

        with ThreadPoolExecutor(max_workers=16) as pool:
            threaded = pool.map(one_thread, range(SESSIONS // 2))
            results = asyncio.run(main()) + list(threaded)
    finally:
        app.uninstrument()
    assert results == [ANSWER] * SESSIONS
    spans = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat")]
    assert len(spans) == SESSIONS
    sessions = [s.attributes.get("session.id") for s in spans]
    assert len(set(sessions)) == SESSIONS, "a span carried another call's session"
    for span in spans:  # each span's user matches its own session
        assert span.attributes["user.id"] == "user-" + span.attributes["session.id"][2:]
    assert len({s.context.trace_id for s in spans}) == SESSIONS
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
