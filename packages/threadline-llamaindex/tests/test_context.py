"""Parenting across threads and tasks, and the OpenTelemetry context around LlamaIndex calls."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import make_llm
from llama_index.core.llms import ChatMessage
from llama_index.core.query_engine import CustomQueryEngine
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline
from threadline.testing import Telemetry

MESSAGES = [ChatMessage(role="user", content="Say hello")]


class ThreadedEngine(CustomQueryEngine):
    """Hands the model call to a plain thread, which gets only the OpenTelemetry context
    (as opentelemetry-instrumentation-threading carries it), not LlamaIndex's own."""

    carry_context: bool = True

    def custom_query(self, query_str: str) -> str:
        parent = otel_context.get_current()
        answers: list[str] = []

        def work() -> None:
            token = otel_context.attach(parent) if self.carry_context else None
            try:
                for chunk in make_llm().stream_chat(MESSAGES):
                    answers.append(chunk.delta or "")
            finally:
                if token is not None:
                    otel_context.detach(token)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return "".join(answers)


_SUPPRESS = "suppress_language_model_instrumentation"


def test_plain_thread_keeps_the_parent(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("stream_chat.yaml"):
        assert str(ThreadedEngine().query("hi")) == "Hello streamed world"
    assert (
        telemetry.tree()
        == """\
invoke_workflow ThreadedEngine [INTERNAL]
  chat gpt-4o-mini [CLIENT]"""
    )
    telemetry.assert_conformant()


def test_thread_without_any_context_starts_a_new_trace(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("stream_chat.yaml"):
        ThreadedEngine(carry_context=False).query("hi")
    assert (
        telemetry.tree()
        == """\
invoke_workflow ThreadedEngine [INTERNAL]
---
chat gpt-4o-mini [CLIENT]"""
    )


def test_model_http_request_runs_inside_the_chat_span(telemetry: Telemetry, cassette: Any) -> None:
    seen: list[Any] = []

    def on_request(request: httpx.Request) -> None:
        seen.append(threadline.current_run())

    from llama_index.llms.openai import OpenAI

    llm = OpenAI(
        model="gpt-4o-mini",
        max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [on_request]}),
    )
    with cassette("chat.yaml"):
        llm.chat(MESSAGES)
    (run,) = seen
    chat = telemetry.find("chat gpt-4o-mini")
    assert isinstance(run, threadline.InferenceRun)
    assert format(run.span.get_span_context().span_id, "016x") == chat.span_id


def test_no_context_left_attached(telemetry: Telemetry, cassette: Any) -> None:
    before = otel_context.get_current()
    with cassette("stream_chat.yaml"):
        list(make_llm().stream_chat(MESSAGES))
    assert otel_context.get_current() == before
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert threadline.current_run() is None


# --- the request of a stream ----------------------------------------------------------------
# A stream sends its request when it is first read, after LlamaIndex exited the call's span: that
# step still runs in the chat span's context (its HTTP span nests there; provider SDK
# instrumentations see suppress_language_model_instrumentation), and only that step.

SUPPRESS = "suppress_language_model_instrumentation"


def _request_context(seen: list[tuple[str, Any]]) -> None:
    span = trace.get_current_span().get_span_context()
    span_id = format(span.span_id, "016x") if span.is_valid else ""
    seen.append((span_id, otel_context.get_value(SUPPRESS)))


def _streaming_openai(seen: list[tuple[str, Any]]) -> Any:
    from llama_index.llms.openai import OpenAI

    async def on_async_request(request: httpx.Request) -> None:
        _request_context(seen)

    return OpenAI(
        model="gpt-4o-mini",
        max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [lambda _: _request_context(seen)]}),
        async_http_client=httpx.AsyncClient(event_hooks={"request": [on_async_request]}),
    )


def _read_in_the_callers_context(chunks: Any, before: Any) -> str:
    text = ""
    for chunk in chunks:
        assert otel_context.get_current() == before  # the caller's code between chunks
        text += getattr(chunk, "delta", None) or ""
    return text


async def _aread_in_the_callers_context(chunks: Any, before: Any) -> str:
    text = ""
    async for chunk in chunks:
        assert otel_context.get_current() == before
        text += getattr(chunk, "delta", None) or ""
    return text


@pytest.mark.parametrize("method", ["stream_chat", "stream_complete"])
def test_stream_request_runs_inside_the_chat_span(
    telemetry: Telemetry, cassette: Any, method: str
) -> None:
    seen: list[tuple[str, Any]] = []
    llm = _streaming_openai(seen)
    argument = MESSAGES if method == "stream_chat" else "Say hello"
    before = otel_context.get_current()
    with cassette("stream_chat.yaml"):
        stream = getattr(llm, method)(argument)
        assert seen == []  # sent only when read
        assert _read_in_the_callers_context(stream, before) == "Hello streamed world"
    assert otel_context.get_current() == before
    assert seen == [(telemetry.find("chat gpt-4o-mini").span_id, True)]
    telemetry.assert_conformant()


@pytest.mark.parametrize("method", ["astream_chat", "astream_complete"])
def test_async_stream_request_runs_inside_the_chat_span(
    telemetry: Telemetry, cassette: Any, method: str
) -> None:
    seen: list[tuple[str, Any]] = []
    llm = _streaming_openai(seen)
    argument = MESSAGES if method == "astream_chat" else "Say hello"

    async def read() -> str:
        before = otel_context.get_current()
        stream = await getattr(llm, method)(argument)
        assert seen == []
        text = await _aread_in_the_callers_context(stream, before)
        assert otel_context.get_current() == before
        return text

    with cassette("stream_chat.yaml"):
        assert asyncio.run(read()) == "Hello streamed world"
    assert seen == [(telemetry.find("chat gpt-4o-mini").span_id, True)]
    telemetry.assert_conformant()


@pytest.mark.parametrize("use_async", [False, True])
def test_stream_never_read_or_closed_after_its_request_leaves_no_context(
    telemetry: Telemetry, cassette: Any, use_async: bool
) -> None:
    seen: list[tuple[str, Any]] = []
    llm = _streaming_openai(seen)

    async def never_read() -> None:
        await (await llm.astream_chat(MESSAGES)).aclose()

    async def closed_after_first_chunk(before: Any) -> None:
        stream = await llm.astream_chat(MESSAGES)
        await stream.__anext__()
        assert otel_context.get_current() == before
        await stream.aclose()

    before = otel_context.get_current()
    if use_async:
        asyncio.run(never_read())
    else:
        llm.stream_chat(MESSAGES).close()
    assert otel_context.get_current() == before
    assert threadline.open_runs.reap(now=time.monotonic() + 3600) == 1  # its span is reaped
    with cassette("stream_chat.yaml"):
        if use_async:
            asyncio.run(closed_after_first_chunk(otel_context.get_current()))
        else:
            stream = llm.stream_chat(MESSAGES)
            next(stream)
            assert otel_context.get_current() == before
            stream.close()
    assert otel_context.get_current() == before
    assert threadline.current_run() is None
    assert seen == [(telemetry.spans()[-1].span_id, True)]


def _streamed_answer(
    cassette: Any, use_async: bool, start: Callable[[], Any], astart: Callable[[], Any]
) -> str:
    """An engine's streamed answer read whole (``start()``, or ``await astart()``), replayed
    from the streaming cassette; the caller's context is as it was afterwards."""

    async def read_async() -> str:
        response = await astart()
        return "".join([token async for token in response.async_response_gen()])

    before = otel_context.get_current()
    with cassette("stream_chat.yaml"):
        answer = asyncio.run(read_async()) if use_async else "".join(start().response_gen)
    assert otel_context.get_current() == before
    return answer


@pytest.mark.parametrize("use_async", [False, True])
def test_streaming_chat_engine_request_runs_inside_the_chat_span(
    telemetry: Telemetry, cassette: Any, use_async: bool
) -> None:
    """A streaming chat engine's answer is read by LlamaIndex's own thread or task."""
    from llama_index.core.chat_engine import SimpleChatEngine

    seen: list[tuple[str, Any]] = []
    engine = SimpleChatEngine.from_defaults(llm=_streaming_openai(seen))
    answer = _streamed_answer(
        cassette,
        use_async,
        lambda: engine.stream_chat("Say hello"),
        lambda: engine.astream_chat("Say hello"),
    )
    assert answer == "Hello streamed world"
    assert seen == [(telemetry.find("chat gpt-4o-mini").span_id, True)]
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  chat gpt-4o-mini [CLIENT]"


@pytest.mark.parametrize("use_async", [False, True])
def test_streaming_query_engine_request_runs_inside_the_chat_span(
    telemetry: Telemetry, cassette: Any, use_async: bool
) -> None:
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.schema import TextNode

    seen: list[tuple[str, Any]] = []
    Settings.embed_model = MockEmbedding(embed_dim=4)
    index = VectorStoreIndex([TextNode(text=t) for t in ("Paris is sunny.", "Oslo is cold.")])
    engine = index.as_query_engine(streaming=True, llm=_streaming_openai(seen))
    answer = _streamed_answer(
        cassette, use_async, lambda: engine.query("Weather?"), lambda: engine.aquery("Weather?")
    )
    assert answer == "Hello streamed world"
    assert seen == [(telemetry.find("chat gpt-4o-mini").span_id, True)]


def test_custom_llm_stream_runs_its_first_step_in_the_span(telemetry: Telemetry) -> None:
    """A CustomLLM's streams (its async ones call its sync ones when read) likewise."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    seen: list[tuple[str, Any]] = []

    class Recording(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="m")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="x")

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            def gen() -> Any:
                _request_context(seen)
                yield CompletionResponse(text="x", delta="x")
                _request_context(seen)  # the second step: the caller's context again
                yield CompletionResponse(text="xy", delta="y")

            return gen()

    async def read_async() -> str:
        return "".join([c.delta async for c in await Recording().astream_complete("hi")])

    assert "".join(c.delta for c in Recording().stream_complete("hi")) == "xy"
    assert asyncio.run(read_async()) == "xy"
    first, second = sorted(telemetry.spans(), key=lambda span: span.start_ns)
    assert seen == [(first.span_id, True), ("", None), (second.span_id, True), ("", None)]


@pytest.mark.parametrize("use_async", [False, True])
def test_a_first_chunk_yielded_inside_the_models_own_span_leaves_nothing_attached(
    telemetry: Telemetry, use_async: bool
) -> None:
    """A model whose generator yields its first chunk inside a span of its own covers the chat
    span's context then: that is undone once the model's own span has gone, not left in the
    caller between the later chunks."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    tracer = trace.get_tracer("model-sdk")

    def gen() -> Any:
        with tracer.start_as_current_span("sdk"):
            yield CompletionResponse(text="a", delta="a")
        yield CompletionResponse(text="ab", delta="b")
        yield CompletionResponse(text="abc", delta="c")

    async def agen() -> Any:
        for chunk in gen():
            yield chunk

    class Covering(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="m")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="x")

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return gen()

        @llm_completion_callback()
        async def astream_complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> Any:
            return agen()

    seen: list[object] = []

    def note() -> None:
        seen.append((threadline.current_run(), otel_context.get_value(_SUPPRESS)))

    async def read_async() -> None:
        async for _ in await Covering().astream_complete("hi"):
            note()

    before = otel_context.get_current()
    if use_async:
        asyncio.run(read_async())
    else:
        for _ in Covering().stream_complete("hi"):
            note()
    assert seen[1:] == [(None, None), (None, None)]  # after the model's own span is gone
    assert otel_context.get_current() == before
    assert len(threadline.open_runs) == 0


def test_propagation_context_crosses_a_process_boundary(
    telemetry: Telemetry, cassette: Any
) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    if not hasattr(dispatcher, "capture_propagation_context"):
        pytest.skip("this LlamaIndex has no propagation hooks")
    with threadline.invoke_workflow("caller"):
        carrier = json.loads(json.dumps(dispatcher.capture_propagation_context()))
    assert set(carrier["threadline"]) == {"traceparent"}

    def other_process() -> None:
        # A fresh context: no LlamaIndex parent, no OpenTelemetry context.
        assert threadline.current_run() is None
        dispatcher.restore_propagation_context(carrier)
        make_llm().chat(MESSAGES)

    with cassette("chat.yaml"):
        contextvars.Context().run(other_process)
    assert (
        telemetry.tree()
        == """\
invoke_workflow caller [INTERNAL]
  chat gpt-4o-mini [CLIENT]"""
    )


def test_a_tool_reaped_while_running_leaves_nothing_current(telemetry: Telemetry) -> None:
    """The reaper ends a tool that outlived the TTL from its own thread, where it cannot
    detach; the tool's end then finds no run, and must still leave the caller's context clean."""
    from llama_index.core.tools import FunctionTool

    def slow(city: str) -> str:
        """Weather of a city."""
        run = threadline.current_run()
        assert run is not None
        reaper = threading.Thread(target=run.abandon, args=("ttl",))  # as the reaper does
        reaper.start()
        reaper.join()
        return "sunny"

    assert FunctionTool.from_defaults(slow).call(city="Oslo").content == "sunny"
    assert not trace.get_current_span().get_span_context().is_valid
    with trace.get_tracer("app").start_as_current_span("after"):
        pass
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["execute_tool slow"].attributes["threadline.abandon_reason"] == "ttl"
    assert spans["after"].parent_span_id is None


def test_another_span_handler_between_a_chat_and_its_complete_makes_no_second_span(
    telemetry: Telemetry,
) -> None:
    """Another instrumentation that makes each LlamaIndex span current sits between a chat and
    the ``complete()`` it is implemented with: still one inference span for the one call."""
    import llama_index.core.instrumentation as instrumentation
    from llama_index.core.instrumentation.span import SimpleSpan
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
    from llama_index.core.llms import MockLLM

    tracer = trace.get_tracer("other-instrumentation")
    open_spans: dict[str, Any] = {}

    class Other(BaseSpanHandler[SimpleSpan]):
        def new_span(  # type: ignore[override]
            self, id_: str, *args: Any, parent_span_id: Any = None, **_: Any
        ) -> SimpleSpan:
            span = tracer.start_span(id_.partition("-")[0])
            open_spans[id_] = (span, otel_context.attach(trace.set_span_in_context(span)))
            return SimpleSpan(id_=id_, parent_id=parent_span_id)

        def _close(self, id_: str) -> None:
            span, token = open_spans.pop(id_)
            otel_context.detach(token)
            span.end()

        def prepare_to_exit_span(self, id_: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            self._close(id_)

        def prepare_to_drop_span(self, id_: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            self._close(id_)

    dispatcher = instrumentation.get_dispatcher()
    other = Other()
    dispatcher.span_handlers.insert(0, other)
    try:
        MockLLM(max_tokens=3).chat([ChatMessage(role="user", content="hi")])
    finally:
        dispatcher.span_handlers.remove(other)
    ours = [s.name for s in telemetry.spans() if s.scope == "threadline"]
    assert ours == ["chat unknown"]


# --- a request whose outermost LlamaIndex call makes no span --------------------------------


def _refine(**kwargs: Any) -> Any:
    from llama_index.core.llms import MockLLM
    from llama_index.core.response_synthesizers import get_response_synthesizer

    return get_response_synthesizer(llm=MockLLM(max_tokens=2), response_mode="refine", **kwargs)


def _nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    texts = ("Paris is in France.", "Berlin is in Germany.", "Rome is in Italy.")
    return [NodeWithScore(node=TextNode(text=text), score=1.0) for text in texts]


def test_skipped_root_is_one_trace(telemetry: Telemetry) -> None:
    """A synthesizer called directly makes no span of its own: its model calls, one per node,
    share an ``invoke_workflow`` span made for the request, not a trace each."""
    _refine().synthesize("Which cities?", _nodes())
    assert (
        telemetry.tree()
        == """\
invoke_workflow [INTERNAL]
  text_completion unknown [INTERNAL]
  text_completion unknown [INTERNAL]
  text_completion unknown [INTERNAL]"""
    )
    assert len({span.trace_id for span in telemetry.spans()}) == 1
    workflow = telemetry.find("invoke_workflow")
    assert all(span.start_ns >= workflow.start_ns for span in telemetry.spans())
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


def test_skipped_roots_run_concurrently_are_a_trace_each(telemetry: Telemetry) -> None:
    async def both() -> None:
        synthesizer = _refine()
        await asyncio.gather(
            synthesizer.asynthesize("Which cities?", _nodes()[:2]),
            synthesizer.asynthesize("Which countries?", _nodes()[:2]),
        )

    asyncio.run(both())
    by_trace: dict[str, list[str]] = {}
    for span in telemetry.spans():
        by_trace.setdefault(span.trace_id, []).append(span.name)
    assert (
        sorted(sorted(names) for names in by_trace.values())
        == [["invoke_workflow", "text_completion unknown", "text_completion unknown"]] * 2
    )
    telemetry.assert_conformant()


def test_ingestion_pipeline_is_one_trace(telemetry: Telemetry) -> None:
    from llama_index.core import Document
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.extractors import TitleExtractor
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.llms import MockLLM
    from llama_index.core.node_parser import SentenceSplitter

    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(),
            TitleExtractor(llm=MockLLM(max_tokens=2), nodes=1, show_progress=False),
            MockEmbedding(embed_dim=4),
        ]
    )
    pipeline.run(documents=[Document(text="Paris is in France."), Document(text="Rome.")])
    spans = telemetry.spans()
    assert len(spans) > 2
    assert len({span.trace_id for span in spans}) == 1
    assert telemetry.tree().startswith("invoke_workflow [INTERNAL]\n  ")
    assert len(threadline.open_runs) == 0


def test_skipped_root_that_makes_no_span_is_none(telemetry: Telemetry) -> None:
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    assert SentenceSplitter().get_nodes_from_documents([Document(text="Paris is in France.")])
    assert telemetry.spans() == []
    assert len(threadline.open_runs) == 0


def test_skipped_root_under_the_apps_span_makes_none(telemetry: Telemetry) -> None:
    with trace.get_tracer("app").start_as_current_span("request"):
        _refine().synthesize("Which cities?", _nodes()[:2])
    assert (
        telemetry.tree()
        == """\
request [INTERNAL]
  text_completion unknown [INTERNAL]
  text_completion unknown [INTERNAL]"""
    )


def test_skipped_root_that_returns_a_stream_ends_with_it(telemetry: Telemetry) -> None:
    """``llm.stream`` returns the token stream before the model's stream is read: the
    request's span ends when the stream does, not before its model call."""
    from llama_index.core import PromptTemplate
    from llama_index.core.llms import MockLLM

    tokens = MockLLM(max_tokens=3).stream(PromptTemplate("Capital of {country}?"), country="Italy")
    assert telemetry.spans() == []
    assert "".join(tokens)
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  text_completion unknown [INTERNAL]"
    workflow = telemetry.find("invoke_workflow")
    assert workflow.end_ns >= telemetry.find("text_completion unknown").end_ns
    assert len(threadline.open_runs) == 0


try:
    from llama_index.core.llms.mock import MockFunctionCallingLLM
except ImportError:  # pragma: no cover - later LlamaIndex releases have it
    MockFunctionCallingLLM = None


@pytest.mark.skipif(MockFunctionCallingLLM is None, reason="no MockFunctionCallingLLM")
def test_predict_and_call_is_one_trace(telemetry: Telemetry) -> None:
    from llama_index.core.tools import FunctionTool

    def get_weather(city: str = "Paris") -> str:  # the mock calls with default arguments
        """The weather in a city."""
        return f"sunny in {city}"

    llm = MockFunctionCallingLLM()
    llm.predict_and_call([FunctionTool.from_defaults(get_weather)], "Weather in Paris?")
    assert (
        telemetry.tree()
        == """\
invoke_workflow [INTERNAL]
  chat unknown [INTERNAL]
  execute_tool get_weather [INTERNAL]"""
    )
    telemetry.assert_conformant()
