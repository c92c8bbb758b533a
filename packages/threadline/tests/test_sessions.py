"""Sessions: baggage on every span, across tasks and threads, never crossing between sessions."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline
from threadline import config, semconv
from threadline.testing import Telemetry, find


def test_session_attributes_on_every_threadline_span(telemetry: Telemetry) -> None:
    with threadline.session("s-1", user_id="u-1", conversation_id="c-1"):
        with threadline.invoke_agent("a"):
            with threadline.inference("m", provider="openai"):
                pass
            with threadline.retrieval("kb"):
                pass
    spans = telemetry.spans()
    for span in spans:
        assert span.attributes[semconv.SESSION_ID] == "s-1"
        assert span.attributes[semconv.USER_ID] == "u-1"
    assert find(spans, "chat m").attributes[semconv.GEN_AI_CONVERSATION_ID] == "c-1"
    assert find(spans, "invoke_agent a").attributes[semconv.GEN_AI_CONVERSATION_ID] == "c-1"
    assert semconv.GEN_AI_CONVERSATION_ID not in find(spans, "retrieval kb").attributes
    assert threadline.current_session() == {}


def test_conversation_only_on_the_span_types_that_have_it(telemetry: Telemetry) -> None:
    """inference, execute_tool, invoke_agent and invoke_workflow (and an MCP tools/call, an
    execute_tool); not create_agent, embeddings, retrieval or other MCP requests."""
    with threadline.session("s-1", conversation_id="c-1"):
        with threadline.create_agent("builder", provider="openai", model="gpt-4o"):
            pass
        with threadline.invoke_agent("outer", conversation_id="c-2"):
            threadline.create_agent("inner", provider="openai").end()  # nor from its parent
        with threadline.invoke_workflow("flow"):
            threadline.execute_tool("t").end()
            threadline.embeddings("e", provider="openai").end()
        for method, tool in (("tools/call", "t"), ("tools/list", None), ("initialize", None)):
            threadline.mcp_request(method, server=True, tool_name=tool).end()
    carried = sorted(
        s.name for s in telemetry.spans() if semconv.GEN_AI_CONVERSATION_ID in s.attributes
    )
    assert carried == [
        "execute_tool t",
        "invoke_agent outer",
        "invoke_workflow flow",
        "tools/call t",
    ]
    assert all(s.attributes[semconv.SESSION_ID] == "s-1" for s in telemetry.spans())


def test_decorator_sync_and_async(telemetry: Telemetry) -> None:
    @threadline.session("sync-session")
    def handle() -> dict[str, str]:
        return threadline.current_session()

    @threadline.session("async-session", user_id="u")
    async def ahandle() -> dict[str, str]:
        await asyncio.sleep(0)
        return threadline.current_session()

    assert handle() == {"session.id": "sync-session"}
    assert handle() == {"session.id": "sync-session"}  # reusable
    assert asyncio.run(ahandle()) == {"session.id": "async-session", "user.id": "u"}
    assert threadline.current_session() == {}


def test_async_context_manager() -> None:
    async def main() -> dict[str, str]:
        async with threadline.session("s-async"):
            return threadline.current_session()

    assert asyncio.run(main()) == {"session.id": "s-async"}


def test_extra_keys_need_the_allow_list(telemetry: Telemetry) -> None:
    previous = config.current()
    try:
        with threadline.session("s", feature="search"), threadline.execute_tool("t"):
            pass
        assert "feature" not in telemetry.spans()[0].attributes
        threadline.configure(baggage_allowlist=[*semconv.SESSION_BAGGAGE_KEYS, "feature"])
        with threadline.session("s", feature="search"), threadline.execute_tool("t2"):
            pass
        assert find(telemetry.spans(), "execute_tool t2").attributes["feature"] == "search"
    finally:
        config.restore(previous)


def test_baggage_the_app_set_that_no_exporter_takes_stays_off_spans(telemetry: Telemetry) -> None:
    """Baggage set with the OpenTelemetry API is unchecked: a value with a lone surrogate (text
    decoded with surrogateescape) or a control character is left off the spans, which the
    exporter would otherwise fail to encode."""
    from opentelemetry import baggage

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(threadline.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for bad in ("bad\udcff", "line\nbreak"):
        ctx = baggage.set_baggage(semconv.SESSION_ID, bad)
        ctx = baggage.set_baggage(semconv.USER_ID, "u-1", ctx)
        token = otel_context.attach(ctx)
        try:
            assert threadline.current_session() == {semconv.USER_ID: "u-1"}
            with threadline.invoke_agent("a"):
                pass
            with provider.get_tracer("http").start_as_current_span("GET /"):
                pass
        finally:
            otel_context.detach(token)
    for span in [*telemetry.spans(), *exporter.get_finished_spans()]:
        attributes = dict(span.attributes or {})
        assert semconv.SESSION_ID not in attributes
        assert attributes[semconv.USER_ID] == "u-1"


def test_session_span_processor_stamps_other_spans() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(threadline.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("http-client")
    with threadline.session("s-9", user_id="u-9"), tracer.start_as_current_span("GET /weather"):
        pass
    with tracer.start_as_current_span("outside"):
        pass
    stamped, outside = exporter.get_finished_spans()
    assert dict(stamped.attributes or {}) == {"session.id": "s-9", "user.id": "u-9"}
    assert not outside.attributes


def test_thousand_concurrent_sessions_never_cross_talk(telemetry: Telemetry) -> None:
    async def one(i: int) -> None:
        async with threadline.session(f"session-{i}", user_id=f"user-{i}"):
            with threadline.invoke_agent(f"agent-{i}"):
                await asyncio.sleep(0)  # interleave with the other 999
                with threadline.inference("m", provider="openai"):
                    await asyncio.sleep(0)
                with threadline.execute_tool("t"):
                    await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(1000)))

    asyncio.run(main())
    spans = telemetry.spans()
    assert len(spans) == 3000
    by_span_id = {s.span_id: s for s in spans}
    traces: dict[str, set[str]] = {}
    for span in spans:
        root = span
        while root.parent_span_id in by_span_id:
            root = by_span_id[root.parent_span_id]
        index = root.name.removeprefix("invoke_agent agent-")
        assert span.attributes[semconv.SESSION_ID] == f"session-{index}", span
        assert span.attributes[semconv.USER_ID] == f"user-{index}"
        traces.setdefault(span.trace_id, set()).add(index)
    assert len(traces) == 1000
    assert all(len(indexes) == 1 for indexes in traces.values())


def test_thread_pool_with_copied_context(telemetry: Telemetry) -> None:
    def work(i: int) -> str:
        with threadline.session(f"s-{i}"):
            ctx = contextvars.copy_context()
        # the session is carried by the copied context into the worker thread
        return ctx.run(lambda: threadline.current_session()[semconv.SESSION_ID])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(200))) == [f"s-{i}" for i in range(200)]


def test_bad_session_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        threadline.session(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.256"):
        threadline.session("")
    with pytest.raises(ValueError, match=r"1\.\.256"):
        threadline.session("x" * 257)
    with pytest.raises(ValueError, match="not a valid baggage key"):
        threadline.session("s", **{"bad key": "v"})
    # what no receiver would keep: control characters, a lone surrogate (no UTF-8 form)
    with pytest.raises(ValueError, match="printable"):
        threadline.session("tab\there")
    with pytest.raises(ValueError, match="printable"):
        threadline.session("s-1", user_id="u\udcff")


def test_session_leaves_context_clean() -> None:
    before = otel_context.get_current()
    with pytest.raises(RuntimeError), threadline.session("s"):
        raise RuntimeError
    assert otel_context.get_current() == before
    assert (
        trace.get_current_span() is trace.INVALID_SPAN
        or not trace.get_current_span().is_recording()
    )


def test_session_span_processor_keeps_what_the_span_has(telemetry: Telemetry) -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(threadline.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = config.current()
    threadline.configure(tracer_provider=provider)
    try:
        with threadline.session("s-1", conversation_id="from-baggage"):
            with threadline.inference("m", provider="openai", conversation_id="explicit"):
                pass
            with threadline.retrieval("kb"):
                pass
            with provider.get_tracer("http-client").start_as_current_span("GET /x"):
                pass
    finally:
        config.restore(previous)
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert spans["chat m"][semconv.GEN_AI_CONVERSATION_ID] == "explicit"
    assert semconv.GEN_AI_CONVERSATION_ID not in spans["retrieval kb"]
    assert spans["GET /x"] == {"session.id": "s-1"}


def test_one_session_object_entered_by_concurrent_tasks() -> None:
    shared = threadline.session("s-1")
    seen: list[dict[str, str]] = []

    async def visit(delay: float) -> None:
        async with shared:
            await asyncio.sleep(delay)
            seen.append(threadline.current_session())
        seen.append(threadline.current_session())  # this task's own enter is undone

    async def main() -> None:
        # the first task exits while the second is still inside: each exit detaches its own
        await asyncio.gather(visit(0.0), visit(0.01))
        assert threadline.current_session() == {}

    asyncio.run(main())
    assert seen == [{semconv.SESSION_ID: "s-1"}, {}, {semconv.SESSION_ID: "s-1"}, {}]
    assert threadline.current_session() == {}


def test_one_session_object_entered_by_threads() -> None:
    shared = threadline.session("s-1")

    def visit(i: int) -> tuple[bool, bool]:
        with shared:
            inside = threadline.current_session() == {semconv.SESSION_ID: "s-1"}
        return inside, threadline.current_session() == {}

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(visit, range(400))) == {(True, True)}
    assert shared._tokens == []


def test_decorated_generators_have_the_session_during_their_steps_only() -> None:
    @threadline.session("s-gen")
    def numbers() -> Iterator[tuple[int, dict[str, str]]]:
        for i in range(3):
            received = yield i, threadline.current_session()
            assert received in (None, "ping")
        return None

    @threadline.session("s-agen")
    async def letters() -> AsyncIterator[dict[str, str]]:
        for _ in range(2):
            yield threadline.current_session()

    generator = numbers()
    assert next(generator) == (0, {semconv.SESSION_ID: "s-gen"})
    assert threadline.current_session() == {}  # not attached in the consumer between items
    assert generator.send("ping") == (1, {semconv.SESSION_ID: "s-gen"})
    with pytest.raises(KeyError):
        generator.throw(KeyError("into the generator"))  # the generator does not catch it
    assert threadline.current_session() == {}

    async def consume() -> list[dict[str, str]]:
        items = []
        async for item in letters():
            items.append(item)
            assert threadline.current_session() == {}
        return items

    assert asyncio.run(consume()) == [{semconv.SESSION_ID: "s-agen"}] * 2
    assert threadline.current_session() == {}


def test_session_block_that_leaves_a_context_attached_is_undone() -> None:
    """Re-entered (nested) and left with a context of the block's own attached (a generator
    that opened a span, partly consumed): each exit still undoes its own enter."""
    shared = threadline.session("s-1")
    tracer = TracerProvider().get_tracer("test")

    def spans() -> Iterator[int]:
        with tracer.start_as_current_span("open"):
            yield 1
            yield 2

    before = otel_context.get_current()
    with shared:
        with shared:
            next(spans())  # leaves its span current
        assert threadline.current_session() == {semconv.SESSION_ID: "s-1"}
    assert threadline.current_session() == {}
    assert otel_context.get_current() == before
    assert shared._tokens == []


def test_decorated_generator_keeps_its_own_context_between_steps(telemetry: Telemetry) -> None:
    """A run a decorated generator opens around its yields stays the parent of what it does
    after them, and is never current in the consumer's code."""

    @threadline.session("s-gen")
    def answer() -> Iterator[str]:
        with threadline.invoke_agent("streamer"):
            yield "first"
            with threadline.inference("m", provider="openai"):
                pass
            yield "second"

    @threadline.session("s-agen")
    async def answer_async() -> AsyncIterator[str]:
        with threadline.invoke_agent("async-streamer"):
            yield "first"
            with threadline.inference("m2", provider="openai"):
                pass
            yield "second"

    for item in answer():
        assert threadline.current_run() is None, item

    async def consume() -> None:
        async for item in answer_async():
            assert threadline.current_run() is None, item

    asyncio.run(consume())
    assert telemetry.tree() == (
        "invoke_agent streamer [INTERNAL]\n  chat m [CLIENT]\n---\n"
        "invoke_agent async-streamer [INTERNAL]\n  chat m2 [CLIENT]"
    )
    assert {s.attributes[semconv.SESSION_ID] for s in telemetry.spans()} == {"s-gen", "s-agen"}
    assert threadline.current_session() == {}


def test_decorated_generator_stepped_from_other_threads(caplog: pytest.LogCaptureFixture) -> None:
    """As Starlette's iterate_in_threadpool steps a sync generator: each next() in a thread
    with a fresh copy of the context. The generator's own span stays its own, and no
    "Failed to detach context" is logged."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    @threadline.session("s-thread")
    def items() -> Iterator[str]:
        with tracer.start_as_current_span("stream"):
            yield "a"
            with tracer.start_as_current_span("more"):
                assert threadline.current_session() == {semconv.SESSION_ID: "s-thread"}
            yield "b"

    generator = items()
    with caplog.at_level("DEBUG", logger="opentelemetry.context"), ThreadPoolExecutor(2) as pool:
        got = [pool.submit(contextvars.copy_context().run, next, generator).result()]
        got.append(pool.submit(contextvars.copy_context().run, next, generator).result())
        with pytest.raises(StopIteration):
            pool.submit(contextvars.copy_context().run, next, generator).result()
    assert got == ["a", "b"]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["more"].parent is not None
    assert spans["more"].parent.span_id == spans["stream"].context.span_id
    assert not [r for r in caplog.records if r.name == "opentelemetry.context"]


def test_exit_never_takes_another_tasks_enter() -> None:
    """A task's block that leaves attached the context its parent entered: its exit cannot
    undo the parent's enter (another context's), and the parent's exit still undoes it."""
    shared = threadline.session("s-1")

    async def child(parent_ctx: otel_context.Context) -> None:
        with shared:
            otel_context.attach(parent_ctx)  # leaked by the block

    async def main() -> None:
        before = otel_context.get_current()
        with shared:
            await asyncio.create_task(child(otel_context.get_current()))
        assert threadline.current_session() == {}
        assert otel_context.get_current() == before

    asyncio.run(main())


def test_a_decorated_async_generator_left_open_closes_quietly_at_the_loops_shutdown() -> None:
    """The loop's shutdown closes every async generator left open, the app's own possibly
    before the session's wrapper around it: the wrapper leaves it to that close (a second
    ``aclose()`` of a generator still closing would raise for the loop to log)."""

    @threadline.session("s-1")
    async def numbers() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)  # a close that takes a step of the loop

    async def abandon() -> list[object]:
        wrapper = numbers()
        assert await wrapper.__anext__() == 1
        inner = wrapper.ag_frame.f_locals["generator"]
        return await asyncio.gather(inner.aclose(), wrapper.aclose(), return_exceptions=True)

    assert asyncio.run(abandon()) == [None, None]
