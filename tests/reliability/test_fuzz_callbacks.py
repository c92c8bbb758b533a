"""Callbacks out of order, duplicated or missing (hypothesis stateful tests): the handlers never
raise, and once the reaper has run nothing is left open, held or attached."""

from __future__ import annotations

import inspect
import logging
import uuid
from typing import Any

import pytest
from conftest import assert_clean_context, drain_open_runs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from opentelemetry import context as otel_context
from opentelemetry.context import Context

import threadline

FUZZ = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
IDS = 6  # a small pool, so starts, ends and parents collide often


def _reset_context() -> None:
    """Start the next example from an empty context, whatever this one left."""
    otel_context._RUNTIME_CONTEXT._current_context.set(Context())  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture, span_exporter: Any) -> None:
    caplog.set_level(logging.CRITICAL, logger="threadline")


# --- LangChain -------------------------------------------------------------------------------
def langchain_machine() -> type[RuleBasedStateMachine]:
    pytest.importorskip("threadline.langchain")
    from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult

    from threadline.langchain import CallbackHandler
    from threadline.langchain import _handler as handler_module

    run_ids = [uuid.UUID(int=i + 1) for i in range(IDS)]
    ids = st.sampled_from(run_ids)
    parents = st.one_of(st.none(), ids)
    chain_names = st.sampled_from(["RunnableSequence", "LangGraph", "agent", "AgentExecutor"])
    tags = st.one_of(st.none(), st.just(["graph:step:1"]), st.just(["seq:step:2"]))
    result = LLMResult(
        generations=[[ChatGeneration(message=AIMessage(content="hi", usage_metadata={
            "input_tokens": 3, "output_tokens": 1, "total_tokens": 4}))]],
        llm_output={"model_name": "gpt-4o"},
    )  # fmt: skip
    serialized_model = {"id": ["langchain", "chat_models", "openai", "ChatOpenAI"],
                        "kwargs": {"model_name": "gpt-4o"}}  # fmt: skip

    class LangChainCallbacks(RuleBasedStateMachine):
        check_context = False

        def __init__(self) -> None:
            super().__init__()
            self.handler = CallbackHandler(verbose=True, agents=["agent"])
            # Runs an earlier fault-injection test left registered are not this machine's to
            # account for.
            entries = handler_module._runs._entries
            for key, run in list(entries.items()):
                if run.ended:
                    entries.pop(key, None)
            # Chain records an earlier example left (their ends never came) hold tokens of a
            # context the teardown replaced; run ids repeat across examples, so they would
            # tie this example to the previous ones.
            handler_module._chains.clear()

        @rule(run_id=ids, parent=parents, name=chain_names, tag=tags,
              thread=st.sampled_from([None, "t1"]))  # fmt: skip
        def chain_start(self, run_id: Any, parent: Any, name: str, tag: Any, thread: Any) -> None:
            metadata = {"thread_id": thread} if thread else {}
            self.handler.on_chain_start({"name": name}, {"input": "x"}, run_id=run_id,
                parent_run_id=parent, tags=tag, metadata=metadata, name=name)  # fmt: skip

        @rule(run_id=ids, error=st.booleans())
        def chain_end(self, run_id: Any, error: bool) -> None:
            if error:
                self.handler.on_chain_error(ValueError("x"), run_id=run_id)
            else:
                self.handler.on_chain_end({"output": "y"}, run_id=run_id)

        @rule(run_id=ids, parent=parents, stream=st.booleans())
        def chat_start(self, run_id: Any, parent: Any, stream: bool) -> None:
            self.handler.on_chat_model_start(serialized_model, [[HumanMessage(content="hi")]],
                run_id=run_id, parent_run_id=parent, metadata={"ls_provider": "openai"},
                invocation_params={"stream": stream, "model": "gpt-4o"})  # fmt: skip

        @rule(run_id=ids)
        def llm_start(self, run_id: Any) -> None:
            self.handler.on_llm_start(serialized_model, ["hi"], run_id=run_id)

        @rule(run_id=ids, with_chunk=st.booleans())
        def token(self, run_id: Any, with_chunk: bool) -> None:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content="t")) if with_chunk else None
            self.handler.on_llm_new_token("t", chunk=chunk, run_id=run_id)

        @rule(run_id=ids, error=st.sampled_from([None, ValueError("x"), KeyboardInterrupt()]))
        def llm_end(self, run_id: Any, error: BaseException | None) -> None:
            if error is None:
                self.handler.on_llm_end(result, run_id=run_id)
            else:
                self.handler.on_llm_error(error, run_id=run_id)

        @rule(run_id=ids, parent=parents)
        def tool_start(self, run_id: Any, parent: Any) -> None:
            self.handler.on_tool_start({"name": "get_weather"}, "Paris", run_id=run_id,
                parent_run_id=parent, inputs={"city": "Paris"})  # fmt: skip

        @rule(run_id=ids, error=st.booleans())
        def tool_end(self, run_id: Any, error: bool) -> None:
            if error:
                self.handler.on_tool_error(RuntimeError("tool"), run_id=run_id)
            else:
                self.handler.on_tool_end("sunny", run_id=run_id)

        @rule(run_id=ids, parent=parents)
        def retriever(self, run_id: Any, parent: Any) -> None:
            self.handler.on_retriever_start({"name": "docs"}, "q", run_id=run_id,
                                            parent_run_id=parent)  # fmt: skip
            self.handler.on_retriever_end([], run_id=run_id)

        @invariant()
        def bounded(self) -> None:
            assert len(threadline.open_runs) <= 4 * IDS

        def teardown(self) -> None:
            try:
                drain_open_runs()
                # Whatever callbacks went missing, the reaper leaves nothing behind.
                assert len(handler_module._runs) == 0
                assert len(threadline.open_runs) == 0
                remembered = getattr(handler_module, "_chains", None)
                if remembered is not None:
                    assert len(remembered) <= 4 * IDS
                if self.check_context:
                    assert_clean_context()
            finally:
                _reset_context()

    return LangChainCallbacks


def _run(machine: Any, *, check_context: bool) -> None:
    machine.check_context = check_context
    machine.TestCase.settings = FUZZ
    machine.TestCase().runTest()


def test_langchain_callbacks_in_any_order() -> None:
    """Never raises; every run ends (reaped at worst); the registry empties."""
    _run(langchain_machine(), check_context=False)


def test_langchain_callbacks_in_any_order_leave_no_context() -> None:
    _run(langchain_machine(), check_context=True)


# --- LlamaIndex ------------------------------------------------------------------------------
def llamaindex_machine() -> type[RuleBasedStateMachine]:
    pytest.importorskip("threadline.llamaindex")
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.instrumentation.events.exception import ExceptionEvent
    from llama_index.core.instrumentation.events.llm import (
        LLMChatEndEvent,
        LLMChatInProgressEvent,
    )
    from llama_index.core.llms import MockLLM

    from threadline.llamaindex._handler import EventHandler, SpanHandler, Tracker

    llm, embed = MockLLM(), MockEmbedding(embed_dim=4)
    messages = [ChatMessage(role="user", content="hi")]
    chat_args = inspect.signature(MockLLM.chat).bind(llm, messages)
    embed_args = inspect.signature(MockEmbedding.get_text_embedding).bind(embed, "hi")
    ids = st.sampled_from([f"MockLLM.chat-{i}" for i in range(IDS // 2)]
                          + [f"MockEmbedding.get_text_embedding-{i}" for i in range(IDS // 2)]
                          + ["BaseQueryEngine.query-0"])  # fmt: skip
    parents = st.one_of(st.none(), ids)
    response = ChatResponse(message=ChatMessage(role="assistant", content="yo"))

    def target(id_: str) -> tuple[Any, Any]:
        return (llm, chat_args) if id_.startswith("MockLLM") else (embed, embed_args)

    class LlamaIndexCallbacks(RuleBasedStateMachine):
        check_context = False

        def __init__(self) -> None:
            super().__init__()
            self.tracker = Tracker(verbose=True)
            self.spans = SpanHandler(self.tracker)
            self.events = EventHandler(self.tracker)

        @rule(id_=ids, parent=parents)
        def enter(self, id_: str, parent: str | None) -> None:
            instance, args = target(id_)
            self.spans.span_enter(id_, args, instance=instance, parent_id=parent)

        @rule(id_=ids, stream=st.booleans())
        def exit(self, id_: str, stream: bool) -> None:
            instance, args = target(id_)
            result: Any = (x for x in [response]) if stream else response
            self.spans.span_exit(id_, args, instance=instance, result=result)

        @rule(id_=ids, error=st.sampled_from([None, ValueError("x"), GeneratorExit()]))
        def drop(self, id_: str, error: BaseException | None) -> None:
            instance, args = target(id_)
            self.spans.span_drop(id_, args, instance=instance, err=error)

        @rule(id_=ids, kind=st.sampled_from(["progress", "end", "exception"]))
        def event(self, id_: str, kind: str) -> None:
            if kind == "progress":
                event: Any = LLMChatInProgressEvent(messages=messages, response=response,
                                                    span_id=id_)  # fmt: skip
            elif kind == "end":
                event = LLMChatEndEvent(messages=messages, response=response, span_id=id_)
            else:
                event = ExceptionEvent(exception=ValueError("x"), span_id=id_)
            self.events.handle(event)

        @invariant()
        def bounded(self) -> None:
            tracker = self.tracker
            assert len(tracker.runs) <= IDS + 1
            assert len(tracker.nodes) <= IDS + 1
            assert len(tracker.stream_finish) <= IDS + 1
            assert len(tracker.tool_errors) <= IDS + 1

        def teardown(self) -> None:
            try:
                drain_open_runs()
                assert len(self.tracker.runs) == 0
                assert len(self.tracker.streams) == 0
                assert len(threadline.open_runs) == 0
                if self.check_context:
                    assert_clean_context()
            finally:
                _reset_context()

    return LlamaIndexCallbacks


def test_llamaindex_callbacks_in_any_order() -> None:
    """Never raises; every run ends (reaped at worst); the tracker's maps stay bounded."""
    _run(llamaindex_machine(), check_context=False)


def test_llamaindex_callbacks_in_any_order_leave_no_context() -> None:
    _run(llamaindex_machine(), check_context=True)
