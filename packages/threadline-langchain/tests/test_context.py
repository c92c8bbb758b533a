"""Context handling: concurrency, threads, generators, abandoned streams.

Every test of this package also checks (conftest.py) that OpenTelemetry never logged "Failed to
detach context", that no context is left attached and that no run records are left behind."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from agents import build_agent, get_time, get_weather, tools_sorted, two_tool_model
from conftest import ScriptedChatModel, usage
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langgraph.graph import START, StateGraph
from opentelemetry import trace
from pydantic import Field
from typing_extensions import TypedDict

import threadline
import threadline.langchain
from threadline import InferenceRun, semconv
from threadline.langchain import CallbackHandler, _handler
from threadline.testing import spans_by_trace
from threadline.testing.stalls import Stalls


class State(TypedDict):
    question: str
    answer: str


def answering_graph(model: Any) -> Any:
    async def respond(state: State) -> dict[str, Any]:
        message = await model.ainvoke(state["question"])
        return {"answer": message.content}

    graph = StateGraph(State)
    graph.add_node("respond", respond)
    graph.add_edge(START, "respond")
    return graph.compile().with_config(run_name="qa")


def hello_model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[AIMessage(content="Hello there", usage_metadata=usage(7, 2))]  # type: ignore[arg-type]
    )


def test_1000_concurrent_ainvoke_make_1000_separate_traces(
    telemetry: Any, config: dict[str, Any]
) -> None:
    graph = answering_graph(hello_model())

    async def one(i: int) -> str:
        with threadline.session(f"session-{i}"):
            result = await graph.ainvoke({"question": f"q{i}"}, config=config)
        return str(result["answer"])

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(1000)))

    answers = asyncio.run(main())
    assert answers == ["Hello there"] * 1000
    traces = spans_by_trace(telemetry.spans())
    assert len(traces) == 1000
    sessions = set()
    for spans in traces.values():
        root, chat = spans
        assert root.name == "invoke_workflow qa"
        assert root.parent_span_id is None
        assert chat.name == "chat scripted-1"
        assert chat.parent_span_id == root.span_id
        assert chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 7
        session = root.attributes[semconv.SESSION_ID]
        assert chat.attributes[semconv.SESSION_ID] == session
        sessions.add(session)
    assert len(sessions) == 1000
    telemetry.assert_conformant(strict=True)


def test_threads_keep_their_own_trees(telemetry: Any, config: dict[str, Any]) -> None:
    tracer = trace.get_tracer("test")

    def run(i: int) -> None:
        agent = build_agent(two_tool_model(), [get_weather, get_time])
        with tracer.start_as_current_span(f"request {i}"):
            agent.invoke({"messages": [("user", "Weather?")]}, config=config)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(run, range(32)))
    traces = spans_by_trace(telemetry.spans())
    assert len(traces) == 32
    for spans in traces.values():
        tree = tools_sorted(threadline.testing.render_tree(spans))
        request = spans[0].name
        assert tree == (
            f"{request} [INTERNAL]\n"
            "  invoke_agent support [INTERNAL]\n"
            "    chat scripted-1 [CLIENT]\n"
            "    execute_tool get_time [INTERNAL]\n"
            "    execute_tool get_weather [INTERNAL]\n"
            "    chat scripted-1 [CLIENT]"
        )


class Peeking(ScriptedChatModel):
    """Notes the current run while the model works (where an HTTP client would make its span)."""

    seen: list[str] = Field(default_factory=list)

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        current = threadline.current_run()
        self.seen.append(current.span.name if current else "-")  # type: ignore[attr-defined]
        return super()._generate(*args, **kwargs)


def test_model_span_is_current_while_the_model_runs(config: dict[str, Any]) -> None:
    model = Peeking(responses=[AIMessage(content="hi")])
    model.invoke("x", config=config)
    model.batch(["a", "b"], config=config)
    in_a_chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | model
    asyncio.run(in_a_chain.ainvoke({"q": "x"}, config=config))
    assert model.seen == ["chat scripted-1"] * 4
    assert threadline.current_run() is None


def test_top_level_async_call_is_current_under_the_guard(config: dict[str, Any]) -> None:
    """A top-level ``ainvoke`` cancelled by its caller sends no callback: it is made current only
    under the guard handlers put on LangChain's async entry points, which ends and detaches it
    then; without the guard (after ``uninstrument()`` removed it) it is not made current."""
    model = Peeking(responses=[AIMessage(content="hi")])
    asyncio.run(model.ainvoke("x", config=config))
    threadline.langchain.instrument()
    try:
        asyncio.run(model.ainvoke("x"))
    finally:
        threadline.langchain.uninstrument()
    asyncio.run(model.ainvoke("x", config=config))
    assert model.seen == ["chat scripted-1", "chat scripted-1", "-"]
    _handler.guard_entry_points()  # back for the tests that follow


def test_async_call_leaves_its_caller_as_it_was(telemetry: Any, config: dict[str, Any]) -> None:
    """LangChain sends an async model call's end through ``asyncio.gather``: in a task of its
    own, a copy of the caller's context where the caller's attachment cannot be undone. The
    guard undoes it in the caller when the call returns, so what the caller does next is not
    parented to the ended span (at top level, or in a graph node)."""
    model = hello_model()
    tracer = trace.get_tracer("app")

    async def node(state: State) -> dict[str, Any]:
        message = await model.ainvoke(state["question"])
        with tracer.start_as_current_span("db write"):
            pass
        return {"answer": message.content}

    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    workflow = graph.compile().with_config(run_name="wf")

    async def main() -> None:
        before = trace.get_current_span()
        await model.ainvoke("x", config=config)
        assert trace.get_current_span() is before
        with tracer.start_as_current_span("unrelated"):
            pass
        await workflow.ainvoke({"question": "q"}, config=config)

    asyncio.run(main())
    assert telemetry.tree() == "\n".join(
        [
            "chat scripted-1 [CLIENT]",
            "---",
            "unrelated [INTERNAL]",
            "---",
            "invoke_workflow wf [INTERNAL]",
            "  chat scripted-1 [CLIENT]",
            "  db write [INTERNAL]",
        ]
    )


def test_sync_call_from_async_code_is_current() -> None:
    """A sync ``invoke`` made where an event loop runs (an async web handler, a notebook cell)
    reports its end: it is made current as anywhere else."""
    model = Peeking(responses=[AIMessage(content="hi")])

    async def main() -> None:
        model.invoke("x", config={"callbacks": [CallbackHandler()]})

    asyncio.run(main())
    assert model.seen == ["chat scripted-1"]


def test_no_record_outlives_its_run(config: dict[str, Any]) -> None:
    """Runs nested in runs this handler does not see end (a handler on the model only, inside
    a chain), a retriever wrapping a retriever, and one long chain calling a model many times:
    nothing is held once each call is over (the hygiene fixture checks the maps at the end)."""
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda

    class Inner(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [Document(page_content=query)]

    class Outer(BaseRetriever):  # the shape of ContextualCompressionRetriever
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return Inner().invoke(query, config={"callbacks": run_manager.get_child()})

    Outer().invoke("q", config=config)
    model = ScriptedChatModel(responses=[AIMessage(content="hi")], callbacks=[CallbackHandler()])
    (ChatPromptTemplate.from_messages([("user", "{q}")]) | model).invoke({"q": "x"})
    held: list[int] = []

    def process(n: int) -> int:
        for _ in range(n):
            ScriptedChatModel(responses=[AIMessage(content="hi")]).invoke("x")
            held.append(sum(len(children) for children in _handler._children.values()))
        return n

    RunnableLambda(process).invoke(50, config=config)
    assert max(held) == 0  # ended runs leave their parent's map at once


# Stalling calls, and the timeouts around them that land once they stalled.
_stalls = Stalls()
_stall = _stalls.stall
_time_out = _stalls.time_out


class Stalling(ScriptedChatModel):
    """Never answers in time: the caller's timeout cancels the request."""

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        await _stall()
        raise AssertionError("not cancelled")


async def _timed_out(call: Any, stalls: int = 1) -> None:
    await _time_out(call, stalls)
    assert threadline.current_run() is None, "a cancelled call left its span current"
    assert not trace.get_current_span().get_span_context().is_valid


def _stalling_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    async def slow_lookup(city: str) -> str:
        """Never answers in time."""
        await _stall()
        return city

    return slow_lookup


@pytest.mark.parametrize("through", ["instrument", "handler"])
def test_cancelled_top_level_calls_end_as_cancelled(
    telemetry: Any, config: dict[str, Any], through: str
) -> None:
    """instrument() and a handler alike guard LangChain's async entry points."""
    run_config = config if through == "handler" else None
    if through == "instrument":
        threadline.langchain.instrument()
    try:
        model = Stalling(responses=[AIMessage(content="hi")])
        asyncio.run(_timed_out(model.ainvoke("x", config=run_config)))
        asyncio.run(_timed_out(_stalling_tool().ainvoke({"city": "Paris"}, config=run_config)))
    finally:
        if through == "instrument":
            threadline.langchain.uninstrument()
            _handler.guard_entry_points()  # as the handlers of the tests that follow do
    assert [
        (s.name, s.status_code, s.attributes[semconv.ERROR_TYPE]) for s in telemetry.spans()
    ] == [
        ("chat scripted-1", "ERROR", "asyncio.exceptions.CancelledError"),
        ("execute_tool slow_lookup", "ERROR", "asyncio.exceptions.CancelledError"),
    ]
    assert len(threadline.open_runs) == 0


def test_cancelled_call_in_a_chain_ends_with_the_chain(
    telemetry: Any, config: dict[str, Any]
) -> None:
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | Stalling(
        responses=[AIMessage(content="hi")]
    )
    asyncio.run(_timed_out(chain.ainvoke({"q": "x"}, config=config)))
    cancelled = [
        (s.name, s.status_code, s.attributes[semconv.ERROR_TYPE]) for s in telemetry.spans()
    ]
    assert cancelled == [
        ("chat scripted-1", "ERROR", "asyncio.exceptions.CancelledError"),
        ("invoke_workflow", "ERROR", "asyncio.exceptions.CancelledError"),
    ]
    assert len(threadline.open_runs) == 0


def test_cancelled_top_level_call_without_the_guard(telemetry: Any, config: dict[str, Any]) -> None:
    """Without the guard (uninstrument() removes it; a handler made later puts it back) nothing
    ends the span at once; it is not current, and the reaper ends it as abandoned."""
    _handler.unguard_entry_points()
    try:
        asyncio.run(
            _timed_out(Stalling(responses=[AIMessage(content="hi")]).ainvoke("x", config=config))
        )
        asyncio.run(_timed_out(_stalling_tool().ainvoke({"city": "Paris"}, config=config)))
    finally:
        _handler.guard_entry_points()
    assert telemetry.spans() == []
    assert threadline.open_runs.reap(now=time.monotonic() + 86_400) == 2
    assert {s.name: s.attributes[semconv.THREADLINE_ABANDONED] for s in telemetry.spans()} == {
        "chat scripted-1": True,
        "execute_tool slow_lookup": True,
    }


def test_tool_span_is_current_while_the_tool_runs(config: dict[str, Any]) -> None:
    from langchain_core.tools import tool

    @tool
    def peek(x: int) -> str:
        """Report the current run."""
        current = threadline.current_run()
        return current.span.name if current else "-"  # type: ignore[attr-defined]

    assert peek.invoke({"x": 1}, config=config) == "execute_tool peek"
    assert asyncio.run(peek.ainvoke({"x": 1}, config=config)) == "execute_tool peek"


def test_stream_is_not_current_between_chunks(telemetry: Any, config: dict[str, Any]) -> None:
    model = hello_model()
    for _ in model.stream("hi", config=config):
        assert threadline.current_run() is None
    assert telemetry.tree(attributes=(semconv.GEN_AI_USAGE_OUTPUT_TOKENS,)) == (
        "chat scripted-1 [CLIENT] gen_ai.usage.output_tokens=2"
    )


def test_abandoned_stream_closed_ends_with_usage_seen(
    telemetry: Any, config: dict[str, Any]
) -> None:
    stream = hello_model().stream("hi", config=config)
    chunks = [next(stream), next(stream), next(stream)]  # the last carries the usage
    assert chunks[-1].usage_metadata is not None
    stream.close()  # the consumer stops before the end
    assert telemetry.tree(
        attributes=(semconv.GEN_AI_USAGE_INPUT_TOKENS, semconv.GEN_AI_USAGE_OUTPUT_TOKENS)
    ) == ("chat scripted-1 [CLIENT] gen_ai.usage.input_tokens=7 gen_ai.usage.output_tokens=2")


def test_a_chain_stream_closed_early_ends_its_model_call_as_it_streamed(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """Closing a chain's sync stream early (``break``, ``close()``): LangChain reports the
    chain's end before it closes the model's stream inside it. The model call ends with what
    it streamed, not as abandoned; async, the chain fails with GeneratorExit first, and the
    call stops early with it."""
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    for chain in (prompt | hello_model() | StrOutputParser(), prompt | hello_model()):
        stream = chain.stream({"q": "hi"}, config=config)
        next(stream)
        stream.close()

    async def leave(chain: Any) -> None:
        stream = chain.astream({"q": "hi"}, config=config)
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(leave(prompt | hello_model()))
    for span in telemetry.spans():
        assert semconv.THREADLINE_ABANDONED not in span.attributes, span.name
    assert telemetry.tree() == "\n---\n".join(
        ["invoke_workflow [INTERNAL]\n  chat scripted-1 [CLIENT]"] * 3
    )
    assert len(threadline.open_runs) == 0


def test_abandoned_stream_is_reaped_with_usage_seen(telemetry: Any, config: dict[str, Any]) -> None:
    stream = hello_model().stream("hi", config=config)
    for _ in range(3):
        next(stream)  # never exhausted: LangChain never reports the end
    assert telemetry.spans() == []
    threadline.open_runs.reap(now=time.monotonic() + 10_000)
    (span,) = telemetry.spans()
    assert span.name == "chat scripted-1"
    assert span.attributes[semconv.THREADLINE_ABANDONED] is True
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert span.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    del stream


def test_two_handlers_count_each_chunk_once(telemetry: Any) -> None:
    """One handler on the model and one in the config (both allowed): every chunk reaches both,
    and the stream's chunks and usage are counted once."""
    from threadline.langchain import CallbackHandler

    model = ScriptedChatModel(
        responses=[AIMessage(content="Hello there", usage_metadata=usage(7, 2))],
        callbacks=[CallbackHandler()],
    )
    stream = model.stream("hi", config={"callbacks": [CallbackHandler()]})
    for _ in range(3):
        next(stream)  # the third chunk carries the usage
    (run,) = (r for r in threadline.open_runs._runs.values() if isinstance(r, InferenceRun))
    assert run.chunks == 3
    threadline.open_runs.reap(now=time.monotonic() + 10_000)
    (span,) = telemetry.spans()
    assert span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    del stream


@pytest.mark.parametrize("listed", ["in_both_configs", "twice_in_one_list"])
def test_a_handler_listed_twice_counts_each_chunk_once(telemetry: Any, listed: str) -> None:
    """LangChain merges callback lists without removing repeats, so one handler can be called
    twice for every event of a run: its chunks and their timing are counted once."""
    from threadline.langchain import CallbackHandler

    handler = CallbackHandler()
    model = ScriptedChatModel(
        responses=[AIMessage(content="one two three four", usage_metadata=usage(3, 4))]
    )
    if listed == "in_both_configs":
        chunks = list(
            model.with_config(callbacks=[handler]).stream("hi", config={"callbacks": [handler]})
        )
    else:
        chunks = list(model.stream("hi", config={"callbacks": [handler, handler]}))
    (span,) = telemetry.spans()
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    [point] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert len(chunks) >= 5  # four words and the usage (and LangChain's closing chunk)
    assert point["count"] == 4  # one gap between each two chunks received
    assert len(threadline.open_runs) == 0


def test_a_run_id_used_again_is_a_new_stream_for_a_handler_that_was_second(
    telemetry: Any,
) -> None:
    """A handler that left a run's chunks to the handler that started it counts the chunks of
    the next run it starts itself, even under the same run id (an app may pass its own)."""
    from threadline.langchain import CallbackHandler

    run_id = uuid.uuid4()
    second = CallbackHandler()
    for handlers in ([CallbackHandler(), second], [second]):  # the first one starts the run
        model = ScriptedChatModel(responses=[AIMessage(content="a b c")])
        list(model.stream("hi", config={"callbacks": handlers, "run_id": run_id}))
    spans = telemetry.spans()
    assert len(spans) == 2
    assert all(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes for span in spans)


def test_abandoned_async_graph_stream(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])

    async def first_update() -> Any:
        stream = agent.astream({"messages": [("user", "Weather?")]}, config=config)
        async for update in stream:
            await stream.aclose()
            return update
        return None

    assert asyncio.run(first_update()) is not None
    tree = telemetry.tree()
    assert tree.startswith("invoke_agent support [INTERNAL]\n  chat scripted-1 [CLIENT]")
    assert "!ERROR" not in tree


def test_a_graph_stream_left_open_closes_quietly_at_the_loops_shutdown(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A graph's ``astream`` the consumer never closes: the loop's shutdown closes every async
    generator left open, the graph's own stream possibly before the guard around it. The
    guard then leaves it to that close: no "already running" error for the loop to log."""
    agent = build_agent(two_tool_model(), [get_weather, get_time])

    async def abandon() -> list[BaseException]:
        stream = agent.astream({"messages": [("user", "Weather?")]}, config=config)
        await stream.__anext__()
        guard = stream._stream  # the guard, as ConsumerStream hands it out
        inner = guard.ag_frame.f_locals["stream"]  # the graph's own, inside the guard
        # the shutdown's order made certain: the graph's stream first, then the guard
        return await asyncio.gather(inner.aclose(), stream.aclose(), return_exceptions=True)

    assert asyncio.run(abandon()) == [None, None]
    assert "!ERROR" not in telemetry.tree()
    assert threadline.current_run() is None


def test_leaving_a_token_stream_early_is_no_failure(telemetry: Any, config: dict[str, Any]) -> None:
    """Leaving ``astream(stream_mode="messages")`` at the first token cancels the model call in
    flight. The agent ends normally, and so does the cancelled call: nothing failed."""
    agent = build_agent(two_tool_model(streaming=True), [get_weather, get_time])

    async def first_token() -> None:
        stream = agent.astream(
            {"messages": [("user", "Weather?")]}, config=config, stream_mode="messages"
        )
        async for _token in stream:
            break
        await stream.aclose()

    asyncio.run(first_token())
    tree = telemetry.tree()
    # LangGraph 0.2 finishes the step before it stops; newer releases cancel the call.
    assert tree.startswith("invoke_agent support [INTERNAL]\n  chat scripted-1 [CLIENT]")
    assert "!ERROR" not in tree
    chat = next(s for s in telemetry.spans() if s.name == "chat scripted-1")
    assert chat.end_ns <= telemetry.find("invoke_agent support").end_ns
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_leaving_an_event_stream_early_is_no_failure(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """astream_events runs the agent in a task of its own and cancels it when its consumer
    closes the stream: that cancellation is how the run stopped, not a failure."""
    agent = build_agent(two_tool_model(streaming=True), [get_weather, get_time])

    async def first_token() -> None:
        events = agent.astream_events(
            {"messages": [("user", "Weather?")]}, config=config, version="v2"
        )
        async for event in events:
            if event["event"] == "on_chat_model_stream":
                break
        await events.aclose()
        assert threadline.current_run() is None

    asyncio.run(first_token())
    tree = telemetry.tree()
    assert tree.startswith("invoke_agent support [INTERNAL]\n  chat scripted-1 [CLIENT]")
    assert "!ERROR" not in tree
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("events_read", [1, 2, 3])
def test_an_event_stream_closed_at_its_start_leaves_no_record(
    telemetry: Any, config: dict[str, Any], events_read: int
) -> None:
    """Closed after its first events, astream_events cancels the graph's task before LangChain
    sends the end of the runs started so far (the graph's, a node's): their records go with
    the stream, not at the record cap."""

    class Step(TypedDict):
        text: str

    graph = StateGraph(Step)
    graph.add_node("echo", lambda state: {"text": state["text"]})
    graph.add_edge(START, "echo")
    app = graph.compile().with_config(run_name="echo_flow")

    async def leave_early() -> None:
        events = app.astream_events({"text": "hi"}, config=config, version="v2")
        read = 0
        async for _event in events:
            read += 1
            if read == events_read:
                break
        await events.aclose()

    asyncio.run(leave_early())
    assert len(_handler._chains) == 0
    assert len(threadline.open_runs) == 0
    assert "!ERROR" not in telemetry.tree()


class Progress(TypedDict):
    log: Annotated[list[str], operator.add]


def _graph_with_a_call_in_flight() -> Any:
    """Two parallel nodes: one reports at once, while the other awaits a model that never
    answers (sync nodes: both answer at once)."""

    async def fast(state: Progress) -> dict[str, Any]:
        return {"log": ["fast"]}

    async def slow(state: Progress) -> dict[str, Any]:
        await Stalling(responses=[AIMessage(content="hi")]).ainvoke("hi")
        return {"log": ["slow"]}

    def fast_sync(state: Progress) -> dict[str, Any]:
        return {"log": ["fast"]}

    def slow_sync(state: Progress) -> dict[str, Any]:
        ScriptedChatModel(responses=[AIMessage(content="hi")]).invoke("hi")
        return {"log": ["slow"]}

    graph = StateGraph(Progress)
    graph.add_node("fast", RunnableLambda(fast_sync, afunc=fast))
    graph.add_node("slow", RunnableLambda(slow_sync, afunc=slow))
    graph.add_edge(START, "fast")
    graph.add_edge(START, "slow")
    return graph.compile().with_config(run_name="flow")


async def _consume_graph_stream(app: Any, config: Any, api: str, where: str) -> None:
    """Read a graph's stream, closing it as the consumer leaves: at the first item
    (``stop``), or as a timeout around the consumer lands in its own code (``handling``) or
    while it awaits the next item (``awaiting``)."""
    if api == "astream":
        async with contextlib.aclosing(app.astream({"log": []}, config=config)) as updates:
            async for _update in updates:
                if where == "stop":
                    break
                if where == "handling":
                    await _stall()
    else:
        with contextlib.closing(app.stream({"log": []}, config=config)) as sync_updates:
            for _update in sync_updates:
                if where == "stop":
                    break
                await _stall()  # between two items: the only place a timeout lands


@pytest.mark.parametrize(
    ("api", "where"), [("astream", "handling"), ("astream", "awaiting"), ("stream", "handling")]
)
def test_a_timeout_around_a_graph_streams_consumer_fails_the_graph(
    telemetry: Any, config: dict[str, Any], api: str, where: str
) -> None:
    """A timeout around the consumer of a graph's stream cuts the graph short wherever it
    lands: while the consumer awaits the next item, or in its own code between two items (it
    then leaves through ``aclose()``, or ``close()``, as a consumer that stops early does). The
    graph fails, and so does the model call in flight in a node."""
    app = _graph_with_a_call_in_flight()
    # the model call in the slow node stalls too: the timeout lands once both are under way
    stalls = 2 if (api, where) == ("astream", "handling") else 1
    asyncio.run(_timed_out(_consume_graph_stream(app, config, api, where), stalls))
    failed = {
        s.name: (s.status_code, s.attributes.get(semconv.ERROR_TYPE)) for s in telemetry.spans()
    }
    cancelled = ("ERROR", "asyncio.exceptions.CancelledError")
    assert failed["invoke_workflow flow"] == cancelled
    if api == "astream":
        assert failed["chat scripted-1"] == cancelled
    else:  # sync nodes are not cancelled: the call was over before the first item
        assert failed["chat scripted-1"] == ("UNSET", None)
    assert len(threadline.open_runs) == 0


def test_a_timeout_in_the_code_of_a_consumer_that_never_closes_the_stream_fails_the_graph(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """As above, with a plain ``async for`` that neither ``aclosing`` nor ``aclose()`` closes:
    the timeout lands in the consumer's own code between two items, and the event loop closes
    the dropped stream later, in a task of its own. The stream handed out notes the
    cancellation as it is dropped."""
    app = _graph_with_a_call_in_flight()

    async def consume() -> None:
        async for _update in app.astream({"log": []}, config=config):
            await _stall()

    async def main() -> None:
        await _time_out(consume(), stalls=2)
        await asyncio.sleep(0.05)  # the event loop closes the dropped stream

    asyncio.run(main())
    failed = {
        s.name: (s.status_code, s.attributes.get(semconv.ERROR_TYPE)) for s in telemetry.spans()
    }
    cancelled = ("ERROR", "asyncio.exceptions.CancelledError")
    assert failed["invoke_workflow flow"] == cancelled
    assert failed["chat scripted-1"] == cancelled
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("api", ["astream", "stream"])
def test_a_graph_stream_its_consumer_closes_early_is_no_failure(
    telemetry: Any, config: dict[str, Any], api: str
) -> None:
    """Closing a graph's stream after its first item, with a model call in flight in a node,
    without being cancelled itself, is the consumer stopping early: nothing failed."""
    app = _graph_with_a_call_in_flight()
    asyncio.run(_consume_graph_stream(app, config, api, "stop"))
    tree = telemetry.tree()
    assert tree.startswith("invoke_workflow flow [INTERNAL]")
    assert "chat scripted-1" in tree
    assert "!ERROR" not in tree
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("close", ["aclose", "drop"])
def test_graph_stream_leaves_its_consumer_its_own_context(
    telemetry: Any, config: dict[str, Any], close: str
) -> None:
    """Between items the consumer runs in its own context (a graph runs its nodes in the
    consumer's task), and a stream dropped without closing leaves nothing current."""
    import gc

    agent = build_agent(two_tool_model(), [get_weather, get_time])

    async def first_update() -> None:
        stream = agent.astream({"messages": [("user", "Weather?")]}, config=config)
        async for _update in stream:
            assert threadline.current_run() is None
            break
        if close == "aclose":
            await stream.aclose()
        else:
            del stream
            gc.collect()
            await asyncio.sleep(0.01)  # the event loop closes the dropped stream
        assert threadline.current_run() is None
        assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(first_update())
    assert "!ERROR" not in telemetry.tree()


def test_timed_out_agent_fails_with_its_model_call(telemetry: Any, config: dict[str, Any]) -> None:
    """A timeout around the agent cancels the model call too: both fail."""
    agent = build_agent(Stalling(responses=[AIMessage(content="hi")]), [get_weather])
    asyncio.run(_timed_out(agent.ainvoke({"messages": [("user", "Weather?")]}, config=config)))
    assert [
        (s.name, s.status_code, s.attributes[semconv.ERROR_TYPE]) for s in telemetry.spans()
    ] == [
        ("chat scripted-1", "ERROR", "asyncio.exceptions.CancelledError"),
        ("invoke_agent support", "ERROR", "asyncio.exceptions.CancelledError"),
    ]
    assert len(threadline.open_runs) == 0


def test_timed_out_agent_inside_a_run_of_the_app(telemetry: Any, config: dict[str, Any]) -> None:
    """The app's own run around a timed-out agent carries on: the agent and its model call
    still failed, and the app's context is as it was before the call."""
    from opentelemetry import context as otel_context

    agent = build_agent(Stalling(responses=[AIMessage(content="hi")]), [get_weather])

    async def app() -> None:
        with threadline.invoke_workflow("app"):
            before = otel_context.get_current()
            await _time_out(agent.ainvoke({"messages": [("user", "Weather?")]}, config=config))
            assert otel_context.get_current() is before
        assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(app())
    assert [(s.name, s.status_code) for s in telemetry.spans()] == [
        ("chat scripted-1", "ERROR"),
        ("invoke_agent support", "ERROR"),
        ("invoke_workflow app", "UNSET"),
    ]
    assert len(threadline.open_runs) == 0


def test_call_timed_out_inside_a_tool_fails(telemetry: Any, config: dict[str, Any]) -> None:
    """A tool gives its model call 50 ms, then answers otherwise: the call failed (at the
    timeout, not when the tool ends), the tool and the agent did not."""
    from langchain_core.messages import ToolCall
    from langchain_core.tools import tool

    slow = Stalling(responses=[AIMessage(content="hi")], model="slow-model")

    @tool
    async def lookup(city: str) -> str:
        """Looks a city up, with a deadline."""
        try:
            async with _stalls.timeout():
                return str((await slow.ainvoke(city)).content)
        except TimeoutError:
            await asyncio.sleep(0.2)
            return "unknown"

    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="", tool_calls=[ToolCall(name="lookup", args={"city": "x"}, id="c1")]
            ),
            AIMessage(content="Unknown."),
        ]
    )
    agent = build_agent(model, [lookup])
    asyncio.run(agent.ainvoke({"messages": [("user", "Where?")]}, config=config))
    chat = telemetry.find("chat slow-model")
    assert chat.attributes[semconv.ERROR_TYPE] == "asyncio.exceptions.CancelledError"
    assert semconv.THREADLINE_ABANDONED not in chat.attributes
    assert chat.end_ns - chat.start_ns < 150e6  # ended at the timeout
    assert telemetry.find("execute_tool lookup").status_code == "UNSET"
    assert len(threadline.open_runs) == 0


def test_sync_graph_generator_abandoned(telemetry: Any, config: dict[str, Any]) -> None:
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    for _update in agent.stream({"messages": [("user", "Weather?")]}, config=config):
        break
    assert "!ERROR" not in telemetry.tree()


def test_astream_events(telemetry: Any, config: dict[str, Any]) -> None:
    """The FastAPI-style event stream: same tree, nothing left attached, no detach errors."""
    agent = build_agent(two_tool_model(streaming=True), [get_weather, get_time])

    async def consume() -> list[str]:
        return [
            event["event"]
            async for event in agent.astream_events(
                {"messages": [("user", "Weather?")]}, config=config, version="v2"
            )
        ]

    events = asyncio.run(consume())
    assert "on_chat_model_stream" in events
    assert tools_sorted(telemetry.tree()) == (
        "invoke_agent support [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]\n"
        "  execute_tool get_time [INTERNAL]\n"
        "  execute_tool get_weather [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]"
    )


def _graph_with_own_spans() -> Any:
    """A graph whose nodes make spans of their own (as any other library would), one sync and
    one async node, running in parallel."""
    tracer = trace.get_tracer("app")

    def lookup(state: State) -> dict[str, Any]:
        with tracer.start_as_current_span("db query"):
            pass
        return {"answer": "found"}

    async def notify(state: State) -> dict[str, Any]:
        with threadline.execute_tool("send_email"):
            pass
        return {"question": state["question"]}

    graph = StateGraph(State)
    graph.add_node("lookup", lookup)
    graph.add_node("notify", notify)
    graph.add_edge(START, "lookup")
    graph.add_edge(START, "notify")
    return graph.compile().with_config(run_name="pipeline")


def test_spans_made_inside_nodes_nest_under_the_graph(
    telemetry: Any, config: dict[str, Any]
) -> None:
    graph = _graph_with_own_spans()
    asyncio.run(graph.ainvoke({"question": "q"}, config=config))
    expected = (
        "invoke_workflow pipeline [INTERNAL]\n"
        "  db query [INTERNAL]\n"
        "  execute_tool send_email [INTERNAL]"
    )
    assert "\n".join(sorted(telemetry.tree().split("\n"))) == "\n".join(
        sorted(expected.split("\n"))
    )
    telemetry.span_exporter.clear()
    with_verbose = {"callbacks": [threadline.langchain.CallbackHandler(verbose=True)]}
    asyncio.run(graph.ainvoke({"question": "q"}, config=with_verbose))
    tree = telemetry.tree()
    assert "  lookup [INTERNAL]\n    db query [INTERNAL]" in tree
    assert "  notify [INTERNAL]\n    execute_tool send_email [INTERNAL]" in tree


def _graph_with_a_node_that_never_ends(handler: threadline.langchain.CallbackHandler) -> Any:
    """Callbacks of a graph whose node starts and never ends (the node's own end is lost)."""
    import uuid

    graph_id, node_id = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "LangGraph"}, {}, run_id=graph_id, name="LangGraph")
    handler.on_chain_start(
        {"name": "respond"}, {}, run_id=node_id, parent_run_id=graph_id,
        tags=["graph:step:1"], name="respond",
    )  # fmt: skip
    assert trace.get_current_span().is_recording()  # the node runs under the graph's span
    return graph_id


def test_node_without_its_end_is_detached_when_the_graph_ends(telemetry: Any) -> None:
    handler = threadline.langchain.CallbackHandler()
    graph_id = _graph_with_a_node_that_never_ends(handler)
    handler.on_chain_end({}, run_id=graph_id)
    assert not trace.get_current_span().get_span_context().is_valid
    assert [s.name for s in telemetry.spans()] == ["invoke_workflow"]
    _forget_lost_records()


def test_node_without_its_end_is_detached_when_the_graph_is_reaped(telemetry: Any) -> None:
    handler = threadline.langchain.CallbackHandler()
    _graph_with_a_node_that_never_ends(handler)
    threadline.open_runs.reap(now=time.monotonic() + 10**9)  # the reaper, in this context
    assert not trace.get_current_span().get_span_context().is_valid
    assert threadline.current_run() is None
    (span,) = telemetry.spans()
    assert span.attributes[semconv.THREADLINE_ABANDONED] is True
    _forget_lost_records()


def test_a_tool_reaped_while_running_leaves_nothing_current(telemetry: Any) -> None:
    """The reaper ends a tool that outlived the TTL from its own thread, where it cannot
    detach; the tool's end then finds no run, and must still leave the caller's context clean."""
    from langchain_core.tools import tool

    @tool
    def slow(city: str) -> str:
        """Weather of a city."""
        run = threadline.current_run()
        reaper = threading.Thread(target=run.abandon, args=("ttl",))  # type: ignore[union-attr]
        reaper.start()
        reaper.join()
        return "sunny"

    assert slow.invoke({"city": "Oslo"}, config={"callbacks": [CallbackHandler()]}) == "sunny"
    assert threadline.current_run() is None
    with trace.get_tracer("app").start_as_current_span("after"):
        pass
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["execute_tool slow"].attributes[semconv.THREADLINE_ABANDON_REASON] == "ttl"
    assert spans["after"].parent_span_id is None


def test_a_long_graph_keeps_no_ended_runs_in_its_guard(telemetry: Any) -> None:
    """The guard around ``Pregel.ainvoke`` sees every model call of a sync node (run in a worker
    thread): the ended ones are dropped as the graph goes on, not held until it returns."""
    threadline.langchain.instrument()
    model = hello_model()
    held: list[int] = []

    def node(state: State) -> dict[str, Any]:
        for _ in range(300):
            model.invoke(state["question"])
        held.append(len(_handler.guarded_calls.get() or {}))
        return {"answer": "done"}

    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    try:
        asyncio.run(graph.compile().with_config(run_name="long").ainvoke({"question": "q"}))
    finally:
        threadline.langchain.uninstrument()
    assert held[0] <= _handler._GUARD_PRUNE_EVERY
    spans = telemetry.spans()
    (graph_span,) = (s for s in spans if s.name == "invoke_workflow long")
    chats = [s for s in spans if s.name.startswith("chat")]
    assert len(chats) == 300
    assert {s.parent_span_id for s in chats} == {graph_span.span_id}


def _forget_lost_records() -> None:
    # Records of chain runs whose end never arrives stay until the record cap evicts them.
    from threadline.langchain import _handler

    _handler._chains.clear()
