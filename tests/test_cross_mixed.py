"""One request through a mix of frameworks is one trace: LangGraph nodes running Pydantic AI
agents, Pydantic AI tools running LlamaIndex RAG, LlamaIndex agents' tools running LangChain
chains, LangChain fan-outs running both, concurrent requests in sessions of their own, errors and
cancellations crossing framework boundaries, and token usage counted once.

Every framework runs its own fake model (LangChain's fake chat models, LlamaIndex's mock LLMs,
Pydantic AI's ``FunctionModel``/``TestModel``): no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from opentelemetry import context
from typing_extensions import TypedDict

import threadline
from threadline.testing import SpanRecord, Telemetry
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)
from threadline.testing.stalls import Stalls

pytest.importorskip("langgraph")
pytest.importorskip("llama_index.core.agent.workflow")
pytest.importorskip("threadline.pydantic_ai")

from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, ToolCall
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM, MockFunctionCallingLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.retrievers import BaseRetriever
from mixing import State, instrumented, one_node_graph  # noqa: F401 - instrumented: autouse
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

import threadline.langchain
import threadline.llamaindex
import threadline.pydantic_ai

USAGE = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")


class Boom(Exception):
    pass


BOOM = f"{Boom.__module__}.{Boom.__qualname__}"
CANCELLED = "asyncio.exceptions.CancelledError"


def calls_tool_then_answers(
    tool_name: str, usage: RequestUsage | None = None, model_name: str = "planner"
) -> FunctionModel:
    extra: dict[str, Any] = {} if usage is None else {"usage": usage}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name, {}, "call-1")], **extra)
        return ModelResponse(parts=[TextPart("done")], **extra)

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        if len(messages) == 1:
            yield {0: DeltaToolCall(name=tool_name, json_args="{}", tool_call_id="call-1")}
        else:
            yield "done"

    return FunctionModel(answer, stream_function=stream, model_name=model_name)


class CountingLLM(CustomLLM):
    """A LlamaIndex LLM that reports token usage in its raw response, as providers do."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="counting")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        usage = {"prompt_tokens": 7, "completion_tokens": 3}
        return CompletionResponse(text="counted", raw={"usage": usage})

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return self.complete(prompt, formatted)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def assert_one_trace_in_session(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    session: str,
    user: str | None = None,
) -> None:
    spans = telemetry.spans()
    assert len({s.trace_id for s in spans}) == 1
    assert [s.name for s in spans if s.attributes.get("session.id") != session] == []
    if user is not None:
        assert [s.name for s in spans if s.attributes.get("user.id") != user] == []
    assert_all_ended()


def assert_all_ended() -> None:
    assert len(threadline.open_runs) == 0
    assert threadline.current_run() is None


# --- a Pydantic AI agent inside a LangGraph node -------------------------------------------------

AGENT_IN_NODE = (
    "invoke_workflow flow\n"
    "  chat GenericFakeChatModel\n"
    "  invoke_agent helper\n"
    "    chat planner\n"
    "    execute_tool lookup\n"
    "      chat FakeListChatModel\n"
    "    chat planner"
)


@pytest.mark.parametrize(
    ("call", "drive"),
    [
        ("run_sync", "invoke"),
        ("run_sync", "stream_messages"),
        ("run_sync", "ainvoke"),
        ("run", "ainvoke"),
        ("run", "astream_messages"),
        ("run_stream", "ainvoke"),
        ("run_stream", "astream_messages"),
        ("iter", "astream_messages"),
    ],
)
def test_a_pydantic_ai_agent_in_a_langgraph_node_is_a_child_of_the_graph(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    call: str,
    drive: str,
) -> None:
    """A sync node (run in LangGraph's executor) calling ``run_sync``, or an async node calling
    ``run``/``run_stream``/``iter``; the graph invoked or streamed with ``stream_mode="messages"``:
    the agent's span is a child of the graph's, with the LangChain model the node streams and the
    one the agent's tool calls, in one trace and the caller's session; nothing is left current."""
    streamed = GenericFakeChatModel(messages=iter([AIMessage("a b c")]))
    from_tool = FakeListChatModel(responses=["from the tool"])
    agent = Agent(calls_tool_then_answers("lookup"), name="helper")

    @agent.tool_plain
    async def lookup() -> str:
        return str((await from_tool.ainvoke("x")).content)

    def sync_node(state: State) -> dict[str, list[str]]:
        for _ in streamed.stream("hi"):
            pass
        return {"out": [agent.run_sync("go").output]}

    async def async_node(state: State) -> dict[str, list[str]]:
        async for _ in streamed.astream("hi"):
            pass
        if call == "run":
            return {"out": [(await agent.run("go")).output]}
        if call == "run_stream":
            async with agent.run_stream("go") as result:
                return {"out": [await result.get_output()]}
        async with agent.iter("go") as run:
            async for _ in run:
                pass
        return {"out": ["iterated"]}

    graph = one_node_graph("flow", sync_node if call == "run_sync" else async_node)
    before = context.get_current()

    async def main() -> list[Any]:
        with threadline.session("s-node", user_id="u-node"):
            if drive == "ainvoke":
                return [await graph.ainvoke({"out": []})]
            chunks = [c async for c in graph.astream({"out": []}, stream_mode="messages")]
        assert context.get_current() == before
        return chunks

    with threadline.session("s-node", user_id="u-node"):
        if drive == "invoke":
            graph.invoke({"out": []})
        elif drive == "stream_messages":
            assert list(graph.stream({"out": []}, stream_mode="messages"))
    if drive.startswith("a"):
        asyncio.run(main())
    assert context.get_current() == before
    assert telemetry.tree(show_kind=False) == AGENT_IN_NODE
    graph_span = telemetry.find("invoke_workflow flow")
    assert telemetry.find("invoke_agent helper").parent_span_id == graph_span.span_id
    assert_one_trace_in_session(telemetry, "s-node", "u-node")
    telemetry.assert_conformant()


def test_a_langgraph_send_fan_out_runs_one_agent_per_branch_under_the_graph(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    from langgraph.types import Send

    agent = Agent(TestModel(custom_output_text="hi"), name="worker")

    class Fan(TypedDict):
        items: list[str]
        out: Annotated[list[str], operator.add]

    async def work(state: dict[str, Any]) -> dict[str, list[str]]:
        return {"out": [(await agent.run(state["item"])).output]}

    graph = StateGraph(Fan)
    graph.add_node("work", work)
    graph.add_conditional_edges(
        START, lambda state: [Send("work", {"item": i}) for i in state["items"]], ["work"]
    )
    graph.add_edge("work", END)
    app = graph.compile(name="fan")

    async def main() -> None:
        with threadline.session("s-fan"):
            await app.ainvoke({"items": ["a", "b", "c"], "out": []})

    asyncio.run(main())
    fan = telemetry.find("invoke_workflow fan")
    agents = [s for s in telemetry.spans() if s.name == "invoke_agent worker"]
    assert len(agents) == 3
    assert {s.parent_span_id for s in agents} == {fan.span_id}
    assert_one_trace_in_session(telemetry, "s-fan")


# --- LlamaIndex RAG inside a Pydantic AI tool ----------------------------------------------------


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [Document(text="Paris has shared bikes."), Document(text="Lyon has them too.")],
        embed_model=MockEmbedding(embed_dim=8),
    )


@pytest.mark.parametrize("tool_kind", ["sync", "async"])
def test_a_llamaindex_query_in_a_pydantic_ai_tool_is_under_execute_tool(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    index: VectorStoreIndex,
    tool_kind: str,
) -> None:
    """A sync tool runs in a worker thread, an async one in the run's task: either way the query
    engine's retrieval (with its query embedding) and model call nest under ``execute_tool``."""
    engine = index.as_query_engine(llm=MockLLM(max_tokens=4))
    agent = Agent(calls_tool_then_answers("search"), name="rag")

    if tool_kind == "sync":

        @agent.tool_plain
        def search() -> str:
            return str(engine.query("bikes"))

    else:

        @agent.tool_plain
        async def search() -> str:
            return str(await engine.aquery("bikes"))

    async def main() -> None:
        with threadline.session("s-rag"):
            await agent.run("where can I ride?")

    asyncio.run(main())
    assert telemetry.tree() == (
        "invoke_agent rag [INTERNAL]\n"
        "  chat planner [CLIENT]\n"
        "  execute_tool search [INTERNAL]\n"
        "    invoke_workflow [INTERNAL]\n"
        "      retrieval SimpleVectorStore [CLIENT]\n"
        "        embeddings unknown [CLIENT]\n"
        "      text_completion unknown [INTERNAL]\n"
        "  chat planner [CLIENT]"
    )
    assert_one_trace_in_session(telemetry, "s-rag")


# --- a LangChain chain inside a LlamaIndex FunctionAgent tool ------------------------------------


def test_langchain_chains_in_llamaindex_function_agent_tools(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """The agent's LLM calls every tool: a sync one invoking a chain, an async one awaiting it
    and one streaming it. Each chain's model call is under its tool's span (a chain under a span
    makes none of its own)."""
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    chain = prompt | FakeListChatModel(responses=["chain answer"] * 3) | StrOutputParser()

    def ask_sync(q: str = "bikes") -> str:
        """Ask the chain."""
        return chain.invoke({"q": q})

    async def ask_async(q: str = "bikes") -> str:
        """Ask the chain, async."""
        return await chain.ainvoke({"q": q})

    async def ask_streamed(q: str = "bikes") -> str:
        """Stream the chain."""
        return "".join([chunk async for chunk in chain.astream({"q": q})])

    agent = FunctionAgent(
        name="li-agent", tools=[ask_sync, ask_async, ask_streamed], llm=MockFunctionCallingLLM()
    )

    async def main() -> None:
        with threadline.session("s-li"):
            await agent.run(user_msg="go")

    asyncio.run(main())
    assert telemetry.tree(show_kind=False) == (
        "invoke_agent li-agent\n"
        "  chat unknown\n"
        "  execute_tool ask_sync\n"
        "    chat FakeListChatModel\n"
        "  execute_tool ask_async\n"
        "    chat FakeListChatModel\n"
        "  execute_tool ask_streamed\n"
        "    chat FakeListChatModel\n"
        "  chat unknown"
    )
    assert_one_trace_in_session(telemetry, "s-li")


def test_four_frameworks_deep_is_one_trace(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """A LangGraph node runs a LlamaIndex agent, whose tool runs a Pydantic AI agent, whose tool
    runs a LangChain chain and a LlamaIndex workflow of parallel steps calling LangChain."""
    from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

    model = FakeListChatModel(responses=["lc"] * 8)
    chain = (RunnableLambda(lambda q: f"about {q}") | model).with_config(run_name="leaf")

    class Item(Event):
        i: int

    class Done(Event):
        text: str

    class Fan(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item | None:
            for i in range(2):
                ctx.send_event(Item(i=i))
            return None

        @step(num_workers=2)
        async def work(self, ev: Item) -> Done:
            return Done(text=str((await model.ainvoke(str(ev.i))).content))

        @step
        async def collect(self, ctx: Context, ev: Done) -> StopEvent | None:
            done = ctx.collect_events(ev, [Done] * 2)
            return None if done is None else StopEvent(result=len(done))

    inner = Agent(calls_tool_then_answers("lookup"), name="pai")

    @inner.tool_plain
    async def lookup() -> str:
        await chain.ainvoke("bikes")
        return str(await Fan(timeout=10).run())

    async def ask_pai(q: str = "bikes") -> str:
        """Ask the Pydantic AI agent."""
        return (await inner.run(q)).output

    async def node(state: State) -> dict[str, list[str]]:
        agent = FunctionAgent(name="li", tools=[ask_pai], llm=MockFunctionCallingLLM())
        return {"out": [str(await agent.run(user_msg="go"))]}

    async def main() -> None:
        with threadline.session("s-deep"):
            await one_node_graph("flow", node).ainvoke({"out": []})

    asyncio.run(main())
    assert telemetry.tree(show_kind=False) == (
        "invoke_workflow flow\n"
        "  invoke_agent li\n"
        "    chat unknown\n"
        "    execute_tool ask_pai\n"
        "      invoke_agent pai\n"
        "        chat planner\n"
        "        execute_tool lookup\n"
        "          chat FakeListChatModel\n"
        "          invoke_workflow Fan\n"
        "            chat FakeListChatModel\n"
        "            chat FakeListChatModel\n"
        "        chat planner\n"
        "    chat unknown"
    )
    assert_one_trace_in_session(telemetry, "s-deep")
    telemetry.assert_conformant()


# --- fan-outs, threads and concurrent requests ---------------------------------------------------


def fan_out(agent: Agent[None, str], barrier: threading.Barrier | None = None) -> Any:
    """A root ``RunnableParallel``: a LlamaIndex call, a Pydantic AI run and a LangChain model."""
    llm = MockLLM(max_tokens=2)

    def li_sync(q: str) -> str:
        if barrier is not None:
            barrier.wait(timeout=5)
        return llm.complete(q).text

    async def li_async(q: str) -> str:
        return (await llm.acomplete(q)).text

    def pai_sync(q: str) -> str:
        if barrier is not None:
            barrier.wait(timeout=5)
        return agent.run_sync(q).output

    async def pai_async(q: str) -> str:
        return (await agent.run(q)).output

    return RunnableParallel(
        li=RunnableLambda(li_sync, afunc=li_async),
        pai=RunnableLambda(pai_sync, afunc=pai_async),
        lc=FakeListChatModel(responses=["lc"] * 4),
    ).with_config(run_name="fanout")


def fanout_children(spans: list[SpanRecord]) -> list[str]:
    root = next(s for s in spans if s.name == "invoke_workflow fanout")
    return sorted(s.name for s in spans if s.parent_span_id == root.span_id)


@pytest.mark.parametrize("drive", ["invoke", "ainvoke", "stream"])
def test_runnable_parallel_branches_calling_llamaindex_and_pydantic_ai(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    drive: str,
) -> None:
    """Started where no span is current, the parallel is the request's root span; branches in
    LangChain's threads (``invoke``, ``stream``, where two wait for each other so their first
    spans start together) or tasks (``ainvoke``) all hang under it."""
    agent = Agent(TestModel(custom_output_text="pai"), name="helper")
    parallel = fan_out(agent, threading.Barrier(2) if drive != "ainvoke" else None)
    with threadline.session("s-par"):
        if drive == "invoke":
            parallel.invoke("q")
        elif drive == "stream":
            list(parallel.stream("q"))
        else:
            asyncio.run(parallel.ainvoke("q"))
    spans = telemetry.spans()
    assert fanout_children(spans) == [
        "chat FakeListChatModel",
        "invoke_agent helper",
        "text_completion unknown",
    ]
    assert len(spans) == 5  # and the agent's chat test
    assert_one_trace_in_session(telemetry, "s-par")


def test_a_batch_is_one_trace_per_input(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    agent = Agent(TestModel(custom_output_text="pai"), name="helper")
    with threadline.session("s-batch"):
        fan_out(agent).batch(["q1", "q2"])
    traces: dict[str, list[SpanRecord]] = {}
    for span in telemetry.spans():
        traces.setdefault(span.trace_id, []).append(span)
    assert len(traces) == 2
    for spans in traces.values():
        assert len(spans) == 5
        assert len(fanout_children(spans)) == 3
    assert {s.attributes.get("session.id") for s in telemetry.spans()} == {"s-batch"}
    assert_all_ended()


def test_sessions_opened_in_parallel_branches_stay_on_their_branch(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    agent = Agent(TestModel(custom_output_text="pai"), name="helper")
    barrier = threading.Barrier(3)

    def branch(i: int) -> Any:
        def run(q: str) -> str:
            barrier.wait(timeout=5)
            with threadline.session(f"branch-{i}"):
                return agent.run_sync(q).output

        return RunnableLambda(run)

    RunnableParallel({f"b{i}": branch(i) for i in range(3)}).with_config(run_name="fanout").invoke(
        "q"
    )
    spans = telemetry.spans()
    assert len({s.trace_id for s in spans}) == 1
    assert "session.id" not in telemetry.find("invoke_workflow fanout").attributes
    agents = [s for s in spans if s.name == "invoke_agent helper"]
    assert sorted(s.attributes["session.id"] for s in agents) == [
        "branch-0",
        "branch-1",
        "branch-2",
    ]
    for agent_span in agents:
        (chat,) = [s for s in spans if s.parent_span_id == agent_span.span_id]
        assert chat.attributes["session.id"] == agent_span.attributes["session.id"]
    assert_all_ended()


def mixed_request_parts() -> tuple[Any, Any]:
    """A LangGraph graph whose node runs a Pydantic AI agent whose tool calls LangChain and
    LlamaIndex, and a LlamaIndex agent factory whose tool runs that graph."""
    model = FakeListChatModel(responses=["lc"] * 64)
    llm = MockLLM(max_tokens=2)
    agent = Agent(calls_tool_then_answers("lookup"), name="pai")

    @agent.tool_plain
    async def lookup() -> str:
        await asyncio.sleep(0.005)
        await model.ainvoke("from the tool")
        return (await llm.acomplete("x")).text

    async def node(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(0.005)
        return {"out": [(await agent.run("go")).output]}

    graph = one_node_graph("flow", node)

    async def run_graph(q: str = "x") -> str:
        """Run the graph."""
        return str(await graph.ainvoke({"out": []}))

    def li_agent(i: int) -> Any:
        return FunctionAgent(name=f"li-{i}", tools=[run_graph], llm=MockFunctionCallingLLM())

    return graph, li_agent


def test_concurrent_mixed_requests_keep_their_own_trace_and_session(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """``asyncio.gather`` of six requests, each in a session of its own: half a LangGraph graph
    running a Pydantic AI agent, half a LlamaIndex agent whose tool runs that graph."""
    graph, li_agent = mixed_request_parts()

    async def request(i: int) -> None:
        with threadline.session(f"s-{i}", user_id=f"u-{i}"):
            if i % 2:
                await graph.ainvoke({"out": []})
            else:
                await li_agent(i).run(user_msg="go")

    async def main() -> None:
        await asyncio.gather(*(request(i) for i in range(6)))

    asyncio.run(main())
    traces: dict[str, list[SpanRecord]] = {}
    for span in telemetry.spans():
        traces.setdefault(span.trace_id, []).append(span)
    assert len(traces) == 6
    for spans in traces.values():
        (root,) = [s for s in spans if s.parent_span_id is None]
        i = int(root.attributes["session.id"].removeprefix("s-"))
        assert {(s.attributes["session.id"], s.attributes["user.id"]) for s in spans} == {
            (f"s-{i}", f"u-{i}")
        }
        if i % 2:
            assert root.name == "invoke_workflow flow"
            assert len(spans) == 7
        else:
            assert root.name == f"invoke_agent li-{i}"
            assert len(spans) == 11
    assert_all_ended()


def test_mixed_requests_in_threads_keep_their_own_trace_and_session(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    graph, _ = mixed_request_parts()

    def request(i: int) -> None:
        with threadline.session(f"t-{i}"):
            asyncio.run(graph.ainvoke({"out": []}))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(request, range(4)))
    sessions: dict[str, set[str]] = {}
    for span in telemetry.spans():
        sessions.setdefault(span.trace_id, set()).add(span.attributes["session.id"])
    assert sorted(sessions.values(), key=sorted) == [{f"t-{i}"} for i in range(4)]
    assert len(telemetry.spans()) == 4 * 7
    assert_all_ended()


# --- errors crossing frameworks ------------------------------------------------------------------


def failed(telemetry: Telemetry) -> dict[str, str]:  # noqa: F811 - the fixture imported above
    """Name → error.type of each failed span (no name twice)."""
    result: dict[str, str] = {}
    for span in telemetry.spans():
        if span.status_code == "ERROR" or "error.type" in span.attributes:
            assert span.status_code == "ERROR", span.name
            assert span.name not in result, span.name
            result[span.name] = span.attributes["error.type"]
    return result


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_an_error_in_a_pydantic_ai_tool_fails_each_span_up_to_the_graph(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    sync: bool,
) -> None:
    error = Boom("the tool failed")
    agent = Agent(calls_tool_then_answers("lookup"), name="helper")

    @agent.tool_plain
    def lookup() -> str:
        raise error

    def sync_node(state: State) -> dict[str, list[str]]:
        agent.run_sync("go")
        return {"out": []}

    async def async_node(state: State) -> dict[str, list[str]]:
        await agent.run("go")
        return {"out": []}

    graph = one_node_graph("flow", sync_node if sync else async_node)

    def run() -> None:
        if sync:
            graph.invoke({"out": []})
        else:
            asyncio.run(graph.ainvoke({"out": []}))

    with pytest.raises(Boom) as raised:
        run()
    assert raised.value is error
    assert failed(telemetry) == {
        "invoke_workflow flow": BOOM,
        "invoke_agent helper": BOOM,
        "execute_tool lookup": BOOM,
    }
    assert telemetry.find("chat planner").status_code == "UNSET"
    assert len({s.trace_id for s in telemetry.spans()}) == 1
    assert_all_ended()
    (point,) = telemetry.metric_points("gen_ai.invoke_agent.duration")
    assert point["attributes"]["error.type"] == BOOM


def test_a_retriever_error_deep_in_a_mix_fails_each_span_it_crosses(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """LangGraph node → Pydantic AI agent → tool → LlamaIndex query engine → retriever raises."""
    from llama_index.core.query_engine import RetrieverQueryEngine

    error = Boom("the vector store is down")

    class Down(BaseRetriever):
        def _retrieve(self, query_bundle: Any) -> Any:
            raise error

        async def _aretrieve(self, query_bundle: Any) -> Any:
            raise error

    engine = RetrieverQueryEngine.from_args(Down(), llm=MockLLM())
    agent = Agent(calls_tool_then_answers("search"), name="rag")

    @agent.tool_plain
    async def search() -> str:
        return str(await engine.aquery("bikes"))

    async def node(state: State) -> dict[str, list[str]]:
        await agent.run("go")
        return {"out": []}

    with pytest.raises(Boom) as raised:
        asyncio.run(one_node_graph("flow", node).ainvoke({"out": []}))
    assert raised.value is error
    assert telemetry.tree(show_kind=False) == (
        f"invoke_workflow flow !ERROR error.type={BOOM}\n"
        f"  invoke_agent rag !ERROR error.type={BOOM}\n"
        "    chat planner\n"
        f"    execute_tool search !ERROR error.type={BOOM}\n"
        f"      invoke_workflow !ERROR error.type={BOOM}\n"
        f"        retrieval Down !ERROR error.type={BOOM}"
    )
    failed(telemetry)  # each failed once
    assert_all_ended()


def test_an_error_caught_on_the_way_fails_only_the_spans_below_the_catch(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """A LangChain model fails in a Pydantic AI tool; the agent's node catches the error, the
    graph goes on. A LlamaIndex agent whose tool runs a failing Pydantic AI agent hands the error
    to its model as the tool's result, and goes on too."""
    error = Boom("the model failed")

    class Failing(FakeListChatModel):
        def _call(self, *args: Any, **kwargs: Any) -> str:
            raise error

    agent = Agent(calls_tool_then_answers("lookup"), name="helper")

    @agent.tool_plain
    async def lookup() -> str:
        return str((await Failing(responses=["x"]).ainvoke("x")).content)

    async def node(state: State) -> dict[str, list[str]]:
        try:
            await agent.run("go")
        except Boom as caught:
            caught_errors.append(caught)
        return {"out": ["recovered"]}

    caught_errors: list[BaseException] = []
    assert asyncio.run(one_node_graph("flow", node).ainvoke({"out": []})) == {"out": ["recovered"]}
    assert caught_errors == [error]
    assert caught_errors[0] is error
    assert failed(telemetry) == {
        "invoke_agent helper": BOOM,
        "execute_tool lookup": BOOM,
        "chat Failing": BOOM,
    }
    span_exporter_spans = telemetry.spans()
    telemetry.span_exporter.clear()

    async def ask(q: str = "x") -> str:
        """Ask the failing agent."""
        return (await agent.run(q)).output

    async def main() -> str:
        li = FunctionAgent(name="li", tools=[ask], llm=MockFunctionCallingLLM())
        return str(await li.run(user_msg="go"))

    assert asyncio.run(main()) == "Tool calls complete."
    assert failed(telemetry) == {
        "execute_tool ask": BOOM,
        "invoke_agent helper": BOOM,
        "execute_tool lookup": BOOM,
        "chat Failing": BOOM,
    }
    assert telemetry.find("invoke_agent li").status_code == "UNSET"
    assert len({s.trace_id for s in span_exporter_spans}) == 1
    assert len({s.trace_id for s in telemetry.spans()}) == 1
    assert_all_ended()


# --- a graph left or cancelled while a Pydantic AI run is in flight in a node --------------------


@pytest.mark.parametrize(
    "how",
    [
        "left",
        "timed_out_awaiting",
        "timed_out_handling",
    ],
)
def test_a_graph_stream_stopped_while_an_agent_runs_in_a_node(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    how: str,
) -> None:
    """Leaving ``graph.astream`` early (``aclose()``) cancels the node, whose agent is in a tool
    call: the consumer stopping is no failure, for the graph nor the agent nor the tool. A
    timeout around the consumer fails them all with the cancellation, wherever it lands in the
    consumer. Either way every span ends at once, in one trace."""
    in_tool = threading.Event()
    stalls = Stalls()
    agent = Agent(calls_tool_then_answers("lookup"), name="slow")

    @agent.tool_plain
    async def lookup() -> str:
        in_tool.set()
        get_stream_writer()({"progress": "in the tool"})
        await stalls.stall(30)
        return "never"

    async def node(state: State) -> dict[str, list[str]]:
        await agent.run("go")
        return {"out": []}

    graph = one_node_graph("flow", node)

    async def consume() -> None:
        async with contextlib.aclosing(graph.astream({"out": []}, stream_mode="custom")) as stream:
            async for _ in stream:
                assert in_tool.is_set()
                if how == "left":
                    break
                if how == "timed_out_handling":
                    await stalls.stall(30)  # the timeout lands in the consumer's own code

    async def main() -> None:
        if how == "left":
            await asyncio.wait_for(consume(), 5)
        else:
            # the tool stalls first, then (handling) the consumer
            await stalls.time_out(consume(), stalls=2 if how == "timed_out_handling" else 1)
        assert len(threadline.open_runs) == 0  # at once, not at the loop's end

    asyncio.run(main())
    mark = "" if how == "left" else f" !ERROR error.type={CANCELLED}"
    assert telemetry.tree(show_kind=False) == (
        f"invoke_workflow flow{mark}\n"
        f"  invoke_agent slow{mark}\n"
        "    chat planner\n"
        f"    execute_tool lookup{mark}"
    )
    assert_all_ended()


@pytest.mark.parametrize("in_flight", ["pydantic_ai", "langchain"])
def test_a_timeout_around_an_event_stream_fails_whatever_framework_is_in_flight(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    in_flight: str,
) -> None:
    """``astream_events`` runs the graph in a task of its own; a timeout around its consumer
    fails the graph and the call in flight in its node, be it a Pydantic AI run or a LangChain
    model call."""
    started = threading.Event()
    stalls = Stalls()

    class Stalling(FakeListChatModel):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            started.set()
            await stalls.stall(30)
            raise AssertionError("never answers")

        async def _astream(self, *args: Any, **kwargs: Any) -> Any:  # an event stream streams
            started.set()
            await stalls.stall(30)
            raise AssertionError("never answers")
            yield

    agent = Agent(calls_tool_then_answers("lookup"), name="slow")

    @agent.tool_plain
    async def lookup() -> str:
        started.set()
        await stalls.stall(30)
        return "never"

    async def node(state: State) -> dict[str, list[str]]:
        if in_flight == "langchain":
            await Stalling(responses=["x"]).ainvoke("hi")
        else:
            await agent.run("go")
        return {"out": []}

    graph = one_node_graph("flow", node)

    async def main() -> None:
        with contextlib.suppress(TimeoutError):
            async with stalls.timeout():
                events = graph.astream_events({"out": []}, version="v2")
                async with contextlib.aclosing(events) as stream:
                    async for _ in stream:
                        pass
        assert started.is_set()
        assert len(threadline.open_runs) == 0

    asyncio.run(main())
    mark = f" !ERROR error.type={CANCELLED}"
    inner = (
        f"  chat Stalling{mark}"
        if in_flight == "langchain"
        else f"  invoke_agent slow{mark}\n    chat planner\n    execute_tool lookup{mark}"
    )
    assert telemetry.tree(show_kind=False) == f"invoke_workflow flow{mark}\n{inner}"
    assert_all_ended()


# --- token usage ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_token_usage_is_counted_once_across_frameworks(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """A LangGraph ReAct agent's tool runs a Pydantic AI agent, whose tool calls a LangChain model
    and a LlamaIndex LLM. Usage is on model calls and agents only; each model call counts toward
    its nearest agent alone, so the agents' usage adds up to the model calls' (and so do the
    token metrics)."""
    from langgraph.prebuilt import create_react_agent

    class ToolCallingFake(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    def lc_message(content: str, tokens: int, **kwargs: Any) -> AIMessage:
        usage = {"input_tokens": tokens, "output_tokens": 2, "total_tokens": tokens + 2}
        return AIMessage(content, usage_metadata=usage, **kwargs)  # type: ignore[arg-type]

    in_tool = GenericFakeChatModel(messages=iter([lc_message("lc", 100)]))
    pai = Agent(
        calls_tool_then_answers("lookup", RequestUsage(input_tokens=1000, output_tokens=200)),
        name="pai",
    )

    @pai.tool_plain
    async def lookup() -> str:
        await in_tool.ainvoke("x")
        return (await CountingLLM().acomplete("x")).text

    @tool
    async def ask_pai() -> str:
        """Ask the Pydantic AI agent."""
        return (await pai.run("go")).output

    react = create_react_agent(
        ToolCallingFake(
            messages=iter(
                [
                    lc_message("", 10, tool_calls=[ToolCall(name="ask_pai", args={}, id="t1")]),
                    lc_message("final", 11),
                ]
            )
        ),
        [ask_pai],
        name="lc-agent",
    )
    asyncio.run(react.ainvoke({"messages": [("human", "hi")]}))
    assert telemetry.tree(show_kind=False, attributes=USAGE) == (
        "invoke_agent lc-agent gen_ai.usage.input_tokens=21 gen_ai.usage.output_tokens=4\n"
        "  chat ToolCallingFake gen_ai.usage.input_tokens=10 gen_ai.usage.output_tokens=2\n"
        "  execute_tool ask_pai\n"
        "    invoke_agent pai gen_ai.usage.input_tokens=2107 gen_ai.usage.output_tokens=405\n"
        "      chat planner gen_ai.usage.input_tokens=1000 gen_ai.usage.output_tokens=200\n"
        "      execute_tool lookup\n"
        "        chat GenericFakeChatModel gen_ai.usage.input_tokens=100"
        " gen_ai.usage.output_tokens=2\n"
        "        text_completion counting gen_ai.usage.input_tokens=7"
        " gen_ai.usage.output_tokens=3\n"
        "      chat planner gen_ai.usage.input_tokens=1000 gen_ai.usage.output_tokens=200\n"
        "  chat ToolCallingFake gen_ai.usage.input_tokens=11 gen_ai.usage.output_tokens=2"
    )
    spans = telemetry.spans()
    calls = [s for s in spans if s.name.startswith(("chat ", "text_completion "))]
    agents = [s for s in spans if s.name.startswith("invoke_agent ")]
    for span in spans:
        if span not in calls and span not in agents:
            assert not any(k.startswith("gen_ai.usage.") for k in span.attributes), span.name
    for key in USAGE:
        assert sum(s.attributes[key] for s in agents) == sum(s.attributes[key] for s in calls)
    tokens = telemetry.metric_points("gen_ai.client.token.usage")
    by_type = {"input": 0, "output": 0}
    for point in tokens:
        by_type[point["attributes"]["gen_ai.token.type"]] += point["sum"]
    assert by_type == {
        "input": sum(s.attributes[USAGE[0]] for s in calls),
        "output": sum(s.attributes[USAGE[1]] for s in calls),
    }
    assert_all_ended()
