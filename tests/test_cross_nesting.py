"""Frameworks nested inside each other: every span under the span that called it.

A framework's own parent ids (LangChain's ``parent_run_id``, LlamaIndex's active span) pass
through code it does not see, so a LangChain model called from a Pydantic AI tool inside a
LangGraph node still names the node as its parent. The span that called it is the tool's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import threadline
from threadline.testing import Telemetry
from threadline.testing.fixtures import (  # noqa: F401 - fixtures, registered by import
    _threadline_session_span_exporter,
    event_exporter,
    metric_reader,
    span_exporter,
    telemetry,
)

pytest.importorskip("langgraph")
pytest.importorskip("llama_index.core.workflow")
pytest.importorskip("threadline.pydantic_ai")

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph
from llama_index.core.llms import MockLLM
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
from mixing import State, instrumented, one_node_graph  # noqa: F401 - instrumented: autouse
from opentelemetry import trace
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import threadline.langchain
import threadline.llamaindex
import threadline.pydantic_ai


def calls_tool_then_answers(tool: str) -> FunctionModel:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool, {}, "call-1")])
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(answer, model_name="planner")


def test_langchain_inside_a_pydantic_ai_tool_inside_a_langgraph_node(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    model = FakeListChatModel(responses=["inner"] * 4)
    inner = one_node_graph("inner", lambda state: {"out": [model.invoke("x").content]})
    agent = Agent(calls_tool_then_answers("lookup"), name="helper")

    @agent.tool_plain
    async def lookup() -> str:
        await model.ainvoke("called from the tool")
        return str(await inner.ainvoke({"out": []}))

    async def outer_node(state: State) -> dict[str, list[str]]:
        await agent.run("go")
        return {"out": ["outer"]}

    asyncio.run(one_node_graph("outer", outer_node).ainvoke({"out": []}))
    assert telemetry.tree(show_kind=False) == (
        "invoke_workflow outer\n"
        "  invoke_agent helper\n"
        "    chat planner\n"
        "    execute_tool lookup\n"
        "      chat FakeListChatModel\n"
        "      invoke_workflow inner\n"
        "        chat FakeListChatModel\n"
        "    chat planner"
    )
    assert threadline.current_run() is None


def test_llamaindex_inside_a_pydantic_ai_tool_inside_a_workflow_step(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    agent = Agent(calls_tool_then_answers("summarize"), name="helper")

    @agent.tool_plain
    async def summarize() -> str:
        return (await MockLLM(max_tokens=2).acomplete("called from the tool")).text

    class Summary(Workflow):
        @step
        async def run_agent(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=(await agent.run("go")).output)

    async def main() -> None:
        await Summary(timeout=10).run()

    asyncio.run(main())
    tree = telemetry.tree(show_kind=False)
    assert tree.splitlines()[:5] == [
        "invoke_workflow Summary",
        "  invoke_agent helper",
        "    chat planner",
        "    execute_tool summarize",
        "      text_completion unknown",
    ], tree


def test_an_app_span_or_session_inside_a_node_holds_what_runs_in_it(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    model = FakeListChatModel(responses=["a", "b", "c"])
    tracer = trace.get_tracer("app")

    def node(state: State) -> dict[str, list[str]]:
        with tracer.start_as_current_span("app.step"):
            model.invoke("inside the app's span")
        with threadline.session("s-7"):
            model.invoke("inside a session opened in the node")
        return {"out": ["done"]}

    one_node_graph("flow", node).invoke({"out": []})
    assert telemetry.tree(show_kind=False) == (
        "invoke_workflow flow\n  app.step\n    chat FakeListChatModel\n  chat FakeListChatModel"
    )
    chats = [s for s in telemetry.spans() if s.name.startswith("chat")]
    assert [s.attributes.get("session.id") for s in chats] == [None, "s-7"]


@pytest.mark.parametrize("inside", ["pydantic_ai_tool", "llamaindex_step"])
def test_a_langgraph_interrupt_inside_another_framework_is_no_failure(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    inside: str,
) -> None:
    """``interrupt()`` pauses the graph for a human, from inside a Pydantic AI tool or a
    LlamaIndex step that a node runs: every span it passes through ends without error, as
    LangGraph's own do, and the resumed run completes in a trace of its own."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    agent = Agent(calls_tool_then_answers("approve"), name="helper")

    @agent.tool_plain
    async def approve() -> str:
        return str(interrupt("ok to proceed?"))

    class Approval(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=str(interrupt("ok?")))

    async def node(state: State) -> dict[str, list[str]]:
        if inside == "pydantic_ai_tool":
            await agent.run("go")
        else:
            await Approval(timeout=10).run()
        return {"out": ["done"]}

    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    app = graph.compile(name="outer", checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-1"}}

    async def main() -> None:
        paused = await app.ainvoke({"out": []}, config)
        assert "__interrupt__" in paused
        assert (await app.ainvoke(Command(resume="yes"), config))["out"] == ["done"]

    asyncio.run(main())
    spans = telemetry.spans()
    assert [s.name for s in spans if s.status_code == "ERROR"] == []
    assert not any("error.type" in s.attributes for s in spans)
    assert len({s.trace_id for s in spans}) == 2  # the pause and the resumed run
    inner = "execute_tool approve" if inside == "pydantic_ai_tool" else "invoke_workflow Approval"
    assert sum(s.name == inner for s in spans) == 2  # paused once, run again on resume
    assert threadline.current_run() is None


def test_a_model_adapter_over_another_frameworks_model_is_one_call(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """A LangChain chat model whose ``_generate`` calls a LlamaIndex LLM, and a LlamaIndex LLM
    whose ``complete`` calls a LangChain chat model, are one model call each: the outer one
    records it, as it does a provider SDK's, so its tokens count once on the agent and in the
    token metric."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}

    class Counting(CustomLLM):
        """A LlamaIndex LLM, which calls a LangChain model when given one."""

        inner: Any = None

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="counting-1")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            if self.inner is not None:
                self.inner.invoke(prompt)
            tokens = {"prompt_tokens": 7, "completion_tokens": 3}
            return CompletionResponse(text="ok", raw={"model": "counting-1", "usage": tokens})

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    class Adapter(BaseChatModel):
        """The LangChain face of the LlamaIndex LLM."""

        @property
        def _llm_type(self) -> str:
            return "adapter"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
            text = Counting().complete(str(messages[-1].content)).text
            message = AIMessage(text, usage_metadata=usage)  # type: ignore[arg-type]
            return ChatResult(generations=[ChatGeneration(message=message)])

    answers = iter([AIMessage("ok", usage_metadata=usage)])  # type: ignore[arg-type]
    calls = {
        "lc": lambda: Adapter().invoke("hi"),
        "li": lambda: Counting(inner=GenericFakeChatModel(messages=answers)).complete("hi"),
    }
    for name, call in calls.items():
        agent = Agent(calls_tool_then_answers("ask"), name=name)
        agent.tool_plain(call, name="ask")
        agent.run_sync("go")
    trees = telemetry.tree(attributes=("gen_ai.usage.input_tokens",), show_kind=False)
    model_lines = [
        line.strip()
        for line in trees.splitlines()
        if line.strip().startswith(("chat", "text_completion")) and "planner" not in line
    ]
    assert model_lines == [
        "chat Adapter gen_ai.usage.input_tokens=7",
        "text_completion counting-1 gen_ai.usage.input_tokens=7",
    ]
    for tree in trees.split("\n---\n"):
        lines = tree.splitlines()
        planner = sum(int(line.rsplit("=", 1)[1]) for line in lines if "chat planner" in line)
        assert lines[0].endswith(f"gen_ai.usage.input_tokens={planner + 7}")
    counted = [
        (point["attributes"]["gen_ai.token.type"], point["sum"])
        for point in telemetry.metric_points("gen_ai.client.token.usage")
        if point["attributes"]["gen_ai.request.model"] != "planner"
    ]
    assert sorted(counted) == [("input", 7), ("input", 7), ("output", 3), ("output", 3)]


def test_a_tool_adapted_from_another_framework_is_one_call(
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
) -> None:
    """Pydantic AI running a LangChain tool (``tool_from_langchain``, ``LangChainToolset``)
    is one tool call: LangChain's run of it inside Pydantic AI's records no second span."""
    from langchain_core.tools import tool
    from pydantic_ai.ext.langchain import LangChainToolset, tool_from_langchain

    @tool
    def lookup() -> str:
        """Look the answer up."""
        return "found"

    Agent(
        calls_tool_then_answers("lookup"), name="one", tools=[tool_from_langchain(lookup)]
    ).run_sync("go")
    Agent(
        calls_tool_then_answers("lookup"), name="set", toolsets=[LangChainToolset([lookup])]
    ).run_sync("go")
    assert telemetry.tree(show_kind=False) == "\n---\n".join(
        f"invoke_agent {name}\n  chat planner\n  execute_tool lookup\n  chat planner"
        for name in ("one", "set")
    )
