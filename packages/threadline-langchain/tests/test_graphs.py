"""Graphs, chains, retrievers, errors and LangGraph control flow."""

from __future__ import annotations

import asyncio
import json
import operator
from typing import Annotated, Any

import pytest
from conftest import ScriptedChatModel, tool_call_id_in_callbacks, usage
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, ToolCall
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from typing_extensions import TypedDict

import threadline
from threadline import semconv
from threadline.langchain import CallbackHandler


class State(TypedDict):
    question: str
    answer: str
    log: Annotated[list[str], operator.add]


def hello_model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[AIMessage(content="Hello there", usage_metadata=usage(7, 2))]  # type: ignore[arg-type]
    )


def workflow(model: Any) -> Any:
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | model | StrOutputParser()

    def prepare(state: State) -> dict[str, Any]:
        return {"log": ["prepare"]}

    def respond(state: State) -> dict[str, Any]:
        return {"answer": chain.invoke({"question": state["question"]}), "log": ["respond"]}

    graph = StateGraph(State)
    graph.add_node("prepare", prepare)
    graph.add_node("respond", respond)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "respond")
    graph.add_edge("respond", END)
    return graph.compile().with_config(run_name="qa")


def test_graph_is_a_workflow_and_nodes_make_no_spans(
    telemetry: Any, config: dict[str, Any]
) -> None:
    result = workflow(hello_model()).invoke({"question": "hi", "log": []}, config=config)
    assert result["answer"] == "Hello there"
    assert telemetry.tree(attributes=(semconv.GEN_AI_WORKFLOW_NAME,)) == (
        "invoke_workflow qa [INTERNAL] gen_ai.workflow.name=qa\n  chat scripted-1 [CLIENT]"
    )
    (duration,) = telemetry.metric_points(semconv.METRIC_WORKFLOW_DURATION)
    assert duration["attributes"] == {semconv.GEN_AI_WORKFLOW_NAME: "qa"}
    telemetry.assert_conformant(strict=True)


def test_a_graphs_checkpoint_reads_and_writes_are_in_its_trace(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """LangGraph reads and writes checkpoints in the context the graph was called in, or in its
    executor's copy of it, never in a node: the spans the checkpointer's database client makes
    there nest under the graph, sync or async, invoked or streamed, and the consumer of a
    stream still has nothing current."""
    from langgraph.checkpoint.memory import MemorySaver

    tracer = trace.get_tracer("app")

    class TracedSaver(MemorySaver):  # as a database client's own instrumentation would
        def get_tuple(self, config: Any) -> Any:
            with tracer.start_as_current_span("db.read"):
                return super().get_tuple(config)

        def put(self, *args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("db.write"):
                return super().put(*args, **kwargs)

        def put_writes(self, *args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("db.write"):
                return super().put_writes(*args, **kwargs)

        async def aget_tuple(self, config: Any) -> Any:
            with tracer.start_as_current_span("db.read"):
                return self.get_tuple(config)

        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            return self.put(*args, **kwargs)

        async def aput_writes(self, *args: Any, **kwargs: Any) -> Any:
            return self.put_writes(*args, **kwargs)

    graph = StateGraph(State)
    graph.add_node("respond", lambda state: {"answer": hello_model().invoke("hi").content})
    graph.add_edge(START, "respond")
    graph.add_edge("respond", END)
    app = graph.compile(checkpointer=TracedSaver()).with_config(run_name="qa")

    def thread(name: str) -> dict[str, Any]:
        return {**config, "configurable": {"thread_id": name}}

    app.invoke({"question": "hi", "log": []}, config=thread("a"))
    for _ in app.stream({"question": "hi", "log": []}, config=thread("b")):
        assert not trace.get_current_span().get_span_context().is_valid

    async def run_async() -> None:
        await app.ainvoke({"question": "hi", "log": []}, config=thread("c"))
        async for _ in app.astream({"question": "hi", "log": []}, config=thread("d")):
            assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(run_async())
    assert not trace.get_current_span().get_span_context().is_valid
    traces = telemetry.tree().split("\n---\n")
    assert len(traces) == 4, telemetry.tree()
    for tree in traces:
        lines = tree.splitlines()
        assert lines[0] == "invoke_workflow qa [INTERNAL]"
        assert "  chat scripted-1 [CLIENT]" in lines
        assert "  db.read [INTERNAL]" in lines  # the loop's entry
        assert lines.count("  db.write [INTERNAL]") >= 3  # input, the node's writes, the end


def test_verbose_emits_nodes_and_trivial_runnables(telemetry: Any) -> None:
    config = {"callbacks": [CallbackHandler(verbose=True)]}
    workflow(hello_model()).invoke({"question": "hi", "log": []}, config=config)
    tree = telemetry.tree()
    assert tree.startswith(
        "invoke_workflow qa [INTERNAL]\n  prepare [INTERNAL]\n  respond [INTERNAL]"
    )
    assert "      ChatPromptTemplate [INTERNAL]" in tree
    assert "      chat scripted-1 [CLIENT]" in tree
    assert "      StrOutputParser [INTERNAL]" in tree
    assert "    RunnableSequence [INTERNAL]" in tree
    telemetry.assert_conformant(strict=True)


def test_plain_chain_reparents_to_nearest_emitted_ancestor(
    telemetry: Any, config: dict[str, Any]
) -> None:
    model = hello_model()
    prompt = ChatPromptTemplate.from_messages([("user", "{question}")])

    def nested(inputs: dict[str, Any]) -> str:
        # no config passed: LangChain still links the run to its parent
        return str((prompt | model | StrOutputParser()).invoke(inputs))

    chain = RunnableLambda(nested) | StrOutputParser()
    assert chain.invoke({"question": "hi"}, config=config) == "Hello there"
    # under an ambient span the root chain adds nothing: the calls are in its trace already
    with trace.get_tracer("app").start_as_current_span("request"):
        chain.invoke({"question": "hi"}, config=config)
    assert telemetry.tree() == "\n".join(
        [
            "invoke_workflow [INTERNAL]",
            "  chat scripted-1 [CLIENT]",
            "---",
            "request [INTERNAL]",
            "  chat scripted-1 [CLIENT]",
        ]
    )


def test_named_chain_as_agent_and_workflow(telemetry: Any) -> None:
    model = hello_model()
    support = (ChatPromptTemplate.from_messages([("user", "{q}")]) | model).with_config(
        run_name="support"
    )
    pipeline = RunnableLambda(lambda q: support.invoke({"q": q})).with_config(run_name="pipeline")
    handler = CallbackHandler(agents=["support"], workflows=["pipeline"])
    pipeline.invoke("hi", config={"callbacks": [handler]})
    assert telemetry.tree() == (
        "invoke_workflow pipeline [INTERNAL]\n"
        "  invoke_agent support [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]"
    )
    telemetry.assert_conformant(strict=True)


def test_subgraph_is_a_nested_workflow(telemetry: Any, config: dict[str, Any]) -> None:
    inner = StateGraph(State)
    inner.add_node("ask", lambda s: {"answer": hello_model().invoke(s["question"]).content})
    inner.add_edge(START, "ask")
    inner_graph = inner.compile().with_config(run_name="inner")

    outer = StateGraph(State)
    outer.add_node("start", lambda s: {"log": ["start"]})
    outer.add_node("delegate", inner_graph)
    outer.add_edge(START, "start")
    outer.add_edge("start", "delegate")
    outer.compile().with_config(run_name="outer").invoke(
        {"question": "hi", "log": []}, config=config
    )
    assert telemetry.tree() == (
        "invoke_workflow outer [INTERNAL]\n"
        "  invoke_workflow inner [INTERNAL]\n"
        "    chat scripted-1 [CLIENT]"
    )


def test_an_unnamed_subgraph_goes_by_its_nodes_name(telemetry: Any, config: dict[str, Any]) -> None:
    """A graph the app left unnamed (LangGraph calls it "LangGraph"), added as a node or called
    in one, is the workflow the app named that node for."""
    inner = StateGraph(State)
    inner.add_node("ask", lambda s: {"answer": hello_model().invoke(s["question"]).content})
    inner.add_edge(START, "ask")
    inner_graph = inner.compile()

    outer = StateGraph(State)
    outer.add_node("delegate", inner_graph)
    outer.add_node("call", lambda s: inner_graph.invoke(s))
    outer.add_edge(START, "delegate")
    outer.add_edge("delegate", "call")
    outer.compile().with_config(run_name="outer").invoke(
        {"question": "hi", "log": []}, config=config
    )
    inner_graph.invoke({"question": "hi", "log": []}, config=config)
    assert telemetry.tree(attributes=(semconv.GEN_AI_WORKFLOW_NAME,)) == (
        "invoke_workflow outer [INTERNAL] gen_ai.workflow.name=outer\n"
        "  invoke_workflow delegate [INTERNAL] gen_ai.workflow.name=delegate\n"
        "    chat scripted-1 [CLIENT]\n"
        "  invoke_workflow call [INTERNAL] gen_ai.workflow.name=call\n"
        "    chat scripted-1 [CLIENT]\n"
        "---\n"
        "invoke_workflow [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]"
    )
    telemetry.assert_conformant(strict=True)


@tool
def boom(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no weather for {city}")


def test_tool_error_marks_tool_and_graph(telemetry: Any, config: dict[str, Any]) -> None:
    from langgraph.prebuilt import ToolNode

    class Messages(TypedDict):
        messages: Annotated[list[Any], operator.add]

    graph = StateGraph(Messages)
    graph.add_node("tools", ToolNode([boom], handle_tool_errors=False))
    graph.add_edge(START, "tools")
    call = AIMessage(content="", tool_calls=[ToolCall(name="boom", args={"city": "Oslo"}, id="b1")])
    with pytest.raises(ValueError, match="no weather for Oslo") as raised:
        graph.compile().with_config(run_name="tooling").invoke({"messages": [call]}, config=config)
    assert type(raised.value) is ValueError  # the user's exception, untouched
    call_id = " gen_ai.tool.call.id=b1" if tool_call_id_in_callbacks() else ""
    assert telemetry.tree(attributes=(semconv.GEN_AI_TOOL_CALL_ID,)) == (
        "invoke_workflow tooling [INTERNAL] !ERROR error.type=ValueError\n"
        f"  execute_tool boom [INTERNAL]{call_id} !ERROR error.type=ValueError"
    )
    tool_span = telemetry.find("execute_tool boom")
    assert tool_span.status_description == "ValueError: no weather for Oslo"
    (tool_duration,) = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert tool_duration["attributes"][semconv.ERROR_TYPE] == "ValueError"
    # without the call id (old langchain-core), only the recommended attribute is missing
    telemetry.assert_conformant(strict=bool(call_id))


def test_tool_error_handled_by_langchain_marks_the_tool(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A tool with ``handle_tool_error`` turns its ToolException into a ToolMessage with status
    "error", sent through on_tool_end: the tool failed, the caller goes on."""
    from langchain_core.tools import ToolException

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        raise ToolException("orders backend unavailable")

    lookup_order.handle_tool_error = True
    call = {"name": "lookup_order", "args": {"order_id": "42"}, "id": "c1", "type": "tool_call"}
    message = lookup_order.invoke(call, config=config)
    assert message.status == "error"
    (span,) = telemetry.spans()
    assert (span.name, span.status_code) == ("execute_tool lookup_order", "ERROR")
    assert span.attributes[semconv.ERROR_TYPE] == "tool_error"
    telemetry.assert_conformant()


@pytest.mark.parametrize("error", ["tool", "validation"])
@pytest.mark.parametrize("mode", ["sync", "async", "async def"])
def test_tool_error_handled_by_langchain_without_a_call_id_marks_the_tool(
    telemetry: Any, config: dict[str, Any], error: str, mode: str
) -> None:
    """Called with plain arguments, a tool whose error LangChain handles returns the handler's
    text as is: no ToolMessage carries the status, so its run's tells."""
    from langchain_core.callbacks.manager import AsyncCallbackManagerForToolRun
    from langchain_core.tools import ToolException

    if mode == "async def" and hasattr(AsyncCallbackManagerForToolRun.on_tool_end, "__wrapped__"):
        pytest.skip("langchain-core 0.3 reports an async tool's end from a shielded task")

    @tool
    def lookup_order(order_id: int) -> str:
        """Look up an order."""
        raise ToolException("orders backend unavailable")

    @tool("lookup_order")
    async def lookup_order_async(order_id: int) -> str:
        """Look up an order."""
        raise ToolException("orders backend unavailable")

    called = lookup_order_async if mode == "async def" else lookup_order
    called.handle_tool_error = called.handle_validation_error = True
    args = {"order_id": "42" if error == "tool" else "not a number"}
    if mode == "sync":
        output = called.invoke(args, config=config)
    else:
        output = asyncio.run(called.ainvoke(args, config=config))
    assert isinstance(output, str)
    (span,) = telemetry.spans()
    assert (span.name, span.status_code) == ("execute_tool lookup_order", "ERROR")
    assert span.attributes[semconv.ERROR_TYPE] == "tool_error"
    # a tool that succeeds with plain arguments is no failure
    telemetry.span_exporter.clear()
    assert _echo.invoke({"text": "fine"}, config=config) == "fine"
    (span,) = telemetry.spans()
    assert span.status_code == "UNSET"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tool_result_with_an_error_status_field_is_no_failure(
    telemetry: Any, config: dict[str, Any], mode: str
) -> None:
    """Only a ToolMessage's status tells a handled failure: a tool's own result, returned as is
    when called with plain arguments, may have a ``status`` (or ``tool_call_id``) of its own."""

    class Job:
        status = "error"  # the job's state, which the tool reports successfully
        tool_call_id = "not-a-call-id"

    @tool
    def job_status(job_id: int) -> Any:
        """Look up a job."""
        return Job()

    if mode == "sync":
        output = job_status.invoke({"job_id": 1}, config=config)
    else:
        output = asyncio.run(job_status.ainvoke({"job_id": 1}, config=config))
    assert isinstance(output, Job)
    (span,) = telemetry.spans()
    assert (span.name, span.status_code) == ("execute_tool job_status", "UNSET")
    assert semconv.ERROR_TYPE not in span.attributes
    assert semconv.GEN_AI_TOOL_CALL_ID not in span.attributes


@tool
def _echo(text: str) -> str:
    """Echo the text."""
    return text


def test_model_error(telemetry: Any, config: dict[str, Any]) -> None:
    model = ScriptedChatModel(responses=[], fail_with="quota exceeded")
    with pytest.raises(ValueError, match="quota exceeded"):
        workflow(model).invoke({"question": "hi", "log": []}, config=config)
    assert telemetry.tree() == (
        "invoke_workflow qa [INTERNAL] !ERROR error.type=ValueError\n"
        "  chat scripted-1 [CLIENT] !ERROR error.type=ValueError"
    )
    telemetry.assert_conformant(strict=True)


def _interrupting_graph() -> Any:
    from langgraph.checkpoint.memory import MemorySaver

    try:
        from langgraph.types import interrupt
    except ImportError:  # langgraph < 0.2.57: raise NodeInterrupt, resume after update_state
        from langgraph.errors import NodeInterrupt

        def ask(state: State) -> dict[str, Any]:
            if not state.get("answer"):
                raise NodeInterrupt("need an answer")
            return {"log": ["answered"]}

    else:

        def ask(state: State) -> dict[str, Any]:
            return {"answer": interrupt("need an answer"), "log": ["answered"]}

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_node("respond", lambda s: {"log": [hello_model().invoke(s["answer"]).content]})
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "respond")
    return graph.compile(checkpointer=MemorySaver()).with_config(run_name="review")


def test_interrupt_and_resume_are_not_errors(telemetry: Any, handler: CallbackHandler) -> None:
    app = _interrupting_graph()
    config: dict[str, Any] = {"callbacks": [handler], "configurable": {"thread_id": "thread-9"}}
    app.invoke({"question": "hi", "log": []}, config=config)
    try:
        from langgraph.types import Command
    except ImportError:
        app.update_state(config, {"answer": "yes"})
        final = app.invoke(None, config=config)
    else:
        final = app.invoke(Command(resume="yes"), config=config)
    assert final["log"][-1] == "Hello there"
    attrs = (semconv.GEN_AI_CONVERSATION_ID,)
    assert telemetry.tree(attributes=attrs) == (
        "invoke_workflow review [INTERNAL] gen_ai.conversation.id=thread-9\n"
        "---\n"
        "invoke_workflow review [INTERNAL] gen_ai.conversation.id=thread-9\n"
        "  chat scripted-1 [CLIENT] gen_ai.conversation.id=thread-9"
    )
    assert all(span.status_code != "ERROR" for span in telemetry.spans())
    telemetry.assert_conformant(strict=True)


def test_interrupt_inside_a_tool_is_not_an_error(telemetry: Any, handler: CallbackHandler) -> None:
    types = pytest.importorskip("langgraph.types")
    if not hasattr(types, "interrupt"):
        pytest.skip("interrupt() needs langgraph >= 0.2.57")
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.prebuilt import ToolNode

    @tool
    def approve(amount: int) -> str:
        """Ask a human to approve a payment."""
        return f"approved: {types.interrupt(f'approve {amount}?')}"

    class Messages(TypedDict):
        messages: Annotated[list[Any], operator.add]

    graph = StateGraph(Messages)
    graph.add_node("tools", ToolNode([approve]))
    graph.add_edge(START, "tools")
    app = graph.compile(checkpointer=MemorySaver()).with_config(run_name="payments")
    config: dict[str, Any] = {"callbacks": [handler], "configurable": {"thread_id": "p1"}}
    call = AIMessage(content="", tool_calls=[ToolCall(name="approve", args={"amount": 5}, id="a1")])
    app.invoke({"messages": [call]}, config=config)
    result = app.invoke(types.Command(resume="yes"), config=config)
    assert result["messages"][-1].content == "approved: yes"
    assert telemetry.tree() == (
        "invoke_workflow payments [INTERNAL]\n"
        "  execute_tool approve [INTERNAL]\n"
        "---\n"
        "invoke_workflow payments [INTERNAL]\n"
        "  execute_tool approve [INTERNAL]"
    )


def test_parent_command_is_not_an_error(telemetry: Any, config: dict[str, Any]) -> None:
    types = pytest.importorskip("langgraph.types")
    if not hasattr(types, "Command") or not hasattr(types.Command, "PARENT"):
        pytest.skip("Command.PARENT needs a newer langgraph")

    inner = StateGraph(State)
    inner.add_node("hop", lambda s: types.Command(graph=types.Command.PARENT, goto="done"))
    inner.add_edge(START, "hop")

    outer = StateGraph(State)
    outer.add_node("child", inner.compile(), destinations=("done",))
    outer.add_node("done", lambda s: {"answer": hello_model().invoke("hi").content})
    outer.add_edge(START, "child")
    result = (
        outer.compile()
        .with_config(run_name="router")
        .invoke({"question": "q", "log": []}, config=config)
    )
    assert result["answer"] == "Hello there"
    assert telemetry.tree() == (
        "invoke_workflow router [INTERNAL]\n"
        "  invoke_workflow child [INTERNAL]\n"
        "  chat scripted-1 [CLIENT]"
    )


class CapitalsRetriever(BaseRetriever):
    """Keyword search over a few documents."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        words = {w.strip(".?") for w in query.lower().split()}
        return [
            d
            for d in self.documents
            if words & {w.strip(".?") for w in d.page_content.lower().split()}
        ][:1]


def _retriever() -> Any:
    return CapitalsRetriever(
        documents=[
            Document(
                page_content="Paris is the capital of France.", id="d1", metadata={"score": 0.9}
            ),
            Document(page_content="Oslo is the capital of Norway.", id="d2"),
        ]
    )


def test_retriever_in_a_chain(telemetry: Any, config: dict[str, Any]) -> None:
    retriever = _retriever()
    prompt = ChatPromptTemplate.from_messages([("user", "{context}\n\n{question}")])
    chain = (
        {
            "context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
            "question": lambda q: q,
        }
        | prompt
        | hello_model()
    )
    chain.invoke("capital of France?", config=config)
    # one trace: the root chain (started where no span is current) holds both calls
    assert telemetry.tree(attributes=(semconv.GEN_AI_DATA_SOURCE_ID,)) == "\n".join(
        [
            "invoke_workflow [INTERNAL]",
            "  retrieval CapitalsRetriever [CLIENT] gen_ai.data_source.id=CapitalsRetriever",
            "  chat scripted-1 [CLIENT]",
        ]
    )
    retrieval = telemetry.find("retrieval CapitalsRetriever")
    assert semconv.GEN_AI_RETRIEVAL_DOCUMENTS not in retrieval.attributes
    telemetry.assert_conformant(strict=True)


def test_retriever_documents_with_capture(
    telemetry: Any, config: dict[str, Any], capture_content: Any
) -> None:
    docs = _retriever().invoke("France", config=config)
    retrieval = telemetry.find("retrieval CapitalsRetriever")
    recorded = json.loads(retrieval.attributes[semconv.GEN_AI_RETRIEVAL_DOCUMENTS])
    assert recorded == [{"id": "d1", "score": 0.9, "content": "Paris is the capital of France."}]
    assert [d.id for d in docs] == ["d1"]
    assert retrieval.attributes[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] == "France"
    telemetry.assert_conformant(strict=True)


def test_thread_id_that_is_no_string(telemetry: Any, handler: CallbackHandler) -> None:
    """LangGraph takes an int as a thread id: it is still the conversation."""
    config = {"callbacks": [handler], "configurable": {"thread_id": 42}}
    workflow(hello_model()).invoke({"question": "hi", "log": []}, config=config)
    span = telemetry.find("invoke_workflow qa")
    assert span.attributes[semconv.GEN_AI_CONVERSATION_ID] == "42"


def test_a_root_chain_that_calls_no_model_is_no_workflow(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A prompt or a parser run on its own makes no GenAI span: a root chain is a workflow only
    for the spans beneath it. A named one (``workflows``) always is."""
    ChatPromptTemplate.from_messages([("user", "{q}")]).invoke({"q": "hi"}, config=config)
    StrOutputParser().invoke("text", config=config)
    list(ChatPromptTemplate.from_messages([("user", "{q}")]).stream({"q": "hi"}, config=config))
    # LangChain's own runnables that call it the way it calls an app's function
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    prompt.with_retry().invoke({"q": "hi"}, config=config)
    list((prompt | RunnablePassthrough()).stream({"q": "hi"}, config=config))
    assert telemetry.spans() == []
    named = {"callbacks": [CallbackHandler(workflows=["tidy"])]}
    StrOutputParser().with_config(run_name="tidy").invoke("text", config=named)
    assert [s.name for s in telemetry.spans()] == ["invoke_workflow tidy"]
    # A lambda LangChain names after its type names no workflow either.
    RunnableLambda(lambda q: hello_model().invoke(q)).invoke("hi", config=config)
    workflow = telemetry.spans()[-1]
    assert workflow.name == "invoke_workflow"
    assert semconv.GEN_AI_WORKFLOW_NAME not in workflow.attributes


def test_a_run_id_of_another_uuid_type_is_the_same_run(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """The run id an app gives in its config need not be the standard library's UUID
    (``uuid_utils``' has the same ``int``): the chain is found by it all the same, and the
    app's function runs under the chain's span."""
    uuid_utils = pytest.importorskip("uuid_utils")
    tracer = trace.get_tracer("app")

    def work(value: Any) -> Any:
        with tracer.start_as_current_span("app.work"):
            return value

    job = RunnableLambda(work).with_config(run_name="job")
    assert job.invoke(1, config={**config, "run_id": uuid_utils.uuid4()}) == 1
    assert telemetry.tree() == "invoke_workflow job [INTERNAL]\n  app.work [INTERNAL]"


def test_spans_and_sessions_the_apps_function_opens_nest_in_the_chain(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """A RunnableLambda runs the app's code: the chain's span is current while it runs, so a
    span or session opened there holds the model call made inside, in the chain's trace, and
    a function that calls no model still has the workflow its spans belong to."""
    tracer = trace.get_tracer("app")
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])

    def lookup(value: Any) -> Any:
        with tracer.start_as_current_span("db.lookup"):
            return value

    def answer(prompt_value: Any) -> Any:
        with tracer.start_as_current_span("app.answer"), threadline.session("s-1", user_id="u"):
            return hello_model().invoke(prompt_value)

    async def aanswer(prompt_value: Any) -> Any:
        with tracer.start_as_current_span("app.answer"), threadline.session("s-1", user_id="u"):
            return await hello_model().ainvoke(prompt_value)

    (prompt | RunnableLambda(answer)).invoke({"q": "hi"}, config=config)
    RunnableLambda(lookup).invoke("x", config=config)
    with tracer.start_as_current_span("request"):  # the root chain is no span: the app's is
        (prompt | RunnableLambda(answer)).invoke({"q": "hi"}, config=config)
    asyncio.run((prompt | RunnableLambda(aanswer)).ainvoke({"q": "hi"}, config=config))

    async def root_lambda_leaves_nothing_current() -> None:
        await RunnableLambda(aanswer).ainvoke("hi", config=config)
        assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(root_lambda_leaves_nothing_current())

    def echo(inputs: dict[str, str]) -> Any:  # LangChain's own placeholder, sent by a user
        with tracer.start_as_current_span("app.echo"):
            return hello_model().invoke(inputs["input"] or "(empty)")

    RunnableLambda(echo).invoke({"input": ""}, config=config)

    # Streamed, the function runs between the consumer's reads: only the function's own
    # context holds the chain's span, never the consumer's.
    for _ in (prompt | RunnableLambda(answer)).stream({"q": "hi"}, config=config):
        assert not trace.get_current_span().get_span_context().is_valid

    async def consume() -> None:
        async for _ in (prompt | RunnableLambda(aanswer)).astream({"q": "hi"}, config=config):
            assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(consume())
    assert not trace.get_current_span().get_span_context().is_valid
    assert telemetry.tree(attributes=("session.id",)) == "\n".join(
        [
            "invoke_workflow [INTERNAL]",
            "  app.answer [INTERNAL]",
            "    chat scripted-1 [CLIENT] session.id=s-1",
            "---",
            "invoke_workflow lookup [INTERNAL]",
            "  db.lookup [INTERNAL]",
            "---",
            "request [INTERNAL]",
            "  app.answer [INTERNAL]",
            "    chat scripted-1 [CLIENT] session.id=s-1",
            "---",
            "invoke_workflow [INTERNAL]",
            "  app.answer [INTERNAL]",
            "    chat scripted-1 [CLIENT] session.id=s-1",
            "---",
            "invoke_workflow aanswer [INTERNAL]",
            "  app.answer [INTERNAL]",
            "    chat scripted-1 [CLIENT] session.id=s-1",
            "---",
            "invoke_workflow echo [INTERNAL]",
            "  app.echo [INTERNAL]",
            "    chat scripted-1 [CLIENT]",
            *[
                "---",
                "invoke_workflow [INTERNAL]",
                "  app.answer [INTERNAL]",
                "    chat scripted-1 [CLIENT] session.id=s-1",
            ]
            * 2,
        ]
    )


def test_the_apps_own_runnable_in_a_streamed_root_chain_nests_under_the_workflow(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """LangChain streams a root chain in one copy of the caller's context and calls the
    ``transform`` of a Runnable class of the app's there directly, with no run of its own. The
    chain's span is pending in that copy: a span or session the code opens is made under the
    workflow (made then), and a chain whose code opens nothing and calls no model is still no
    workflow. (Invoked, each step gets a copy of its own, and such code no scope.)"""
    from langchain_core.runnables import Runnable

    tracer = trace.get_tracer("app")

    class Answer(Runnable[Any, Any]):
        def invoke(self, value: Any, config: Any = None, **kwargs: Any) -> Any:
            return hello_model().invoke(value, config)

        def transform(self, chunks: Any, config: Any = None, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("app.answer"), threadline.session("s-2"):
                for chunk in chunks:
                    yield hello_model().invoke(chunk, config)

        async def atransform(self, chunks: Any, config: Any = None, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("app.answer"), threadline.session("s-2"):
                async for chunk in chunks:
                    yield await hello_model().ainvoke(chunk, config)

    class Relay(Runnable[Any, Any]):
        def invoke(self, value: Any, config: Any = None, **kwargs: Any) -> Any:
            return value

        def transform(self, chunks: Any, config: Any = None, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("app.relay"):
                yield from chunks

    for _ in (Answer() | StrOutputParser()).stream("hi", config=config):
        assert not trace.get_current_span().get_span_context().is_valid

    async def consume() -> None:
        async for _ in (Answer() | StrOutputParser()).astream("hi", config=config):
            assert not trace.get_current_span().get_span_context().is_valid

    asyncio.run(consume())
    for _ in (RunnablePassthrough() | Relay() | hello_model()).stream("hi", config=config):
        assert not trace.get_current_span().get_span_context().is_valid
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    for _ in (prompt | Relay()).stream({"q": "hi"}, config=config):  # a span, no model
        assert not trace.get_current_span().get_span_context().is_valid
    for _ in (RunnablePassthrough() | StrOutputParser()).stream("hi", config=config):  # no span
        pass
    assert not trace.get_current_span().get_span_context().is_valid
    answered = "invoke_workflow [INTERNAL]\n  app.answer [INTERNAL]\n" + (
        "    chat scripted-1 [CLIENT] session.id=s-2"
    )
    assert telemetry.tree(attributes=("session.id",)) == "\n---\n".join(
        [
            answered,
            answered,
            "invoke_workflow [INTERNAL]\n  app.relay [INTERNAL]\n  chat scripted-1 [CLIENT]",
            "invoke_workflow [INTERNAL]\n  app.relay [INTERNAL]",
        ]
    )


def test_the_apps_code_gets_its_root_chains_run_from_current_run(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """``threadline.current_run()`` in the app's code inside a root chain is the chain's run:
    a RunnableLambda's (made as the function starts), or a streamed chain's whose span is still
    pending (made by asking, as a child span would make it). A streamed chain whose code does
    not ask, and calls nothing, makes no span."""
    from langchain_core.runnables import Runnable

    def tag(value: Any) -> Any:
        run = threadline.current_run()
        assert run is not None
        run.set_attributes({"app.tag": "sync"})
        return value

    async def atag(value: Any) -> Any:
        run = threadline.current_run()
        assert run is not None
        run.set_attributes({"app.tag": "async"})
        return value

    class Tag(Runnable[Any, Any]):
        def __init__(self, ask: bool) -> None:
            self.ask = ask

        def invoke(self, value: Any, config: Any = None, **kwargs: Any) -> Any:
            return value

        def _tag(self, value: str) -> None:
            if self.ask:
                run = threadline.current_run()
                assert run is not None
                run.set_attributes({"app.tag": value})

        def transform(self, chunks: Any, config: Any = None, **kwargs: Any) -> Any:
            self._tag("streamed")
            yield from chunks

        async def atransform(self, chunks: Any, config: Any = None, **kwargs: Any) -> Any:
            self._tag("astreamed")
            async for chunk in chunks:
                yield chunk

    RunnableLambda(tag).invoke("x", config=config)
    asyncio.run(RunnableLambda(atag).ainvoke("x", config=config))
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])

    async def consume(ask: bool) -> None:
        async for _ in (prompt | Tag(ask)).astream({"q": "hi"}, config=config):
            pass

    for ask in (True, False):
        for _ in (prompt | Tag(ask)).stream({"q": "hi"}, config=config):
            pass
        asyncio.run(consume(ask))
    assert not trace.get_current_span().get_span_context().is_valid
    assert telemetry.tree(attributes=("app.tag",)) == "\n---\n".join(
        [
            "invoke_workflow tag [INTERNAL] app.tag=sync",
            "invoke_workflow atag [INTERNAL] app.tag=async",
            "invoke_workflow [INTERNAL] app.tag=streamed",
            "invoke_workflow [INTERNAL] app.tag=astreamed",
        ]
    )
    telemetry.assert_conformant(strict=True)


def test_a_batch_is_one_trace_per_input(telemetry: Any, config: dict[str, Any]) -> None:
    """LangChain starts every input of a batch in the caller's context before running any:
    none of them is made current for the others."""
    hello_model().with_retry().batch(["x", "y"], config=config)
    RunnableLambda(lambda q: hello_model().invoke(q)).with_retry().batch(["x", "y"], config=config)
    traces = telemetry.tree().split("\n---\n")
    assert len(traces) == 4
    for calls in traces:
        assert calls.startswith("invoke_workflow ")
        assert calls.endswith("[INTERNAL]\n  chat scripted-1 [CLIENT]")


def test_retries_and_fallbacks_are_one_trace(telemetry: Any, config: dict[str, Any]) -> None:
    """LangChain reports a fallback, called with callbacks given as a list, as a new root run:
    its attempts still belong to the fallbacks chain's trace."""
    down = ScriptedChatModel(responses=[AIMessage(content="-")], fail_with="down")
    resilient = down.with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    resilient = resilient.with_fallbacks([hello_model()])
    assert resilient.invoke("hi", config=config).content == "Hello there"
    assert asyncio.run(resilient.ainvoke("hi", config=config)).content == "Hello there"
    tree = "\n".join(
        [
            "invoke_workflow [INTERNAL]",
            "  chat scripted-1 [CLIENT] !ERROR error.type=ValueError",
            "  chat scripted-1 [CLIENT] !ERROR error.type=ValueError",
            "  chat scripted-1 [CLIENT]",
        ]
    )
    assert telemetry.tree() == f"{tree}\n---\n{tree}"


def test_workflow_names_are_the_apps_not_langchains_types(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """gen_ai.workflow.name is a name the app gave; the type LangChain names an unnamed
    runnable after ("RunnableSequence", "RunnableParallel<a,b>", "LangGraph") is no name."""
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | hello_model()
    chain.invoke({"q": "hi"}, config=config)
    chain.with_config(run_name="greeter").invoke({"q": "hi"}, config=config)
    unnamed, named = (s for s in telemetry.spans() if s.name.startswith("invoke_workflow"))
    assert unnamed.name == "invoke_workflow"
    assert semconv.GEN_AI_WORKFLOW_NAME not in unnamed.attributes
    assert named.name == "invoke_workflow greeter"
    assert named.attributes[semconv.GEN_AI_WORKFLOW_NAME] == "greeter"
    points = telemetry.metric_points(semconv.METRIC_WORKFLOW_DURATION)
    assert sorted(p["attributes"].get(semconv.GEN_AI_WORKFLOW_NAME, "-") for p in points) == [
        "-",
        "greeter",
    ]


def test_a_retried_model_is_no_workflow_named_after_its_class(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """``model.with_retry()`` is a root chain LangChain names after the model's class
    (``ChatOpenAI``): its retries share one trace, under an ``invoke_workflow`` with no name.
    A name the app gives (``run_name``, the wrapped runnable's own) is the workflow's."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    def retried() -> Any:
        return GenericFakeChatModel(messages=iter([AIMessage(content="hi")] * 2)).with_retry()

    retried().invoke("x", config=config)
    asyncio.run(retried().ainvoke("x", config=config))
    retried().batch(["x", "y"], config=config)
    retried().with_config(run_name="greeter").invoke("x", config=config)
    retried().invoke("x", config={**config, "run_name": "asker"})
    RunnableLambda(lambda q: hello_model().invoke(q), name="ask").with_retry().invoke(
        "x", config=config
    )
    workflows = [s for s in telemetry.spans() if s.name.startswith("invoke_workflow")]
    assert [(s.name, s.attributes.get(semconv.GEN_AI_WORKFLOW_NAME)) for s in workflows] == [
        ("invoke_workflow", None),
        ("invoke_workflow", None),
        ("invoke_workflow", None),
        ("invoke_workflow", None),
        ("invoke_workflow greeter", "greeter"),
        ("invoke_workflow asker", "asker"),
        ("invoke_workflow ask", "ask"),
    ]
    assert len(telemetry.tree().split("\n---\n")) == 7
    points = telemetry.metric_points(semconv.METRIC_WORKFLOW_DURATION)
    names = {p["attributes"].get(semconv.GEN_AI_WORKFLOW_NAME, "-") for p in points}
    assert names == {"-", "greeter", "asker", "ask"}
    telemetry.assert_conformant()


def test_a_retried_model_batched_async_is_no_workflow_named_after_its_class(
    telemetry: Any, config: dict[str, Any]
) -> None:
    """``abatch`` starts each input's run in a task of its own (``asyncio.gather``), out of
    reach of the frame that tells the wrapper: the model call beneath tells it instead. The
    app's names stay the workflow's."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    def retried() -> Any:
        return GenericFakeChatModel(messages=iter([AIMessage(content="hi")] * 2)).with_retry()

    async def main() -> None:
        await retried().abatch(["x", "y"], config=config)
        await retried().with_config(run_name="greeter").abatch(["x"], config=config)
        await RunnableLambda(lambda q: hello_model().invoke(q), name="ask").abatch(
            ["x"], config=config
        )

    asyncio.run(main())
    workflows = [s for s in telemetry.spans() if s.name.startswith("invoke_workflow")]
    assert sorted(
        (s.name, s.attributes.get(semconv.GEN_AI_WORKFLOW_NAME, "-")) for s in workflows
    ) == [
        ("invoke_workflow", "-"),
        ("invoke_workflow", "-"),
        ("invoke_workflow ask", "ask"),
        ("invoke_workflow greeter", "greeter"),
    ]
    assert len(telemetry.tree().split("\n---\n")) == 4
    telemetry.assert_conformant()
