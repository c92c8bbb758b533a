"""Streaming chat: the span stays open until the stream ends and records time to first chunk."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from conftest import make_llm
from llama_index.core.llms import ChatMessage

import threadline
import threadline.llamaindex
from threadline import config
from threadline._registry import open_runs
from threadline.testing import Telemetry

MESSAGES = [ChatMessage(role="user", content="Say hello")]
ATTRIBUTES = (
    "gen_ai.request.stream",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.id",
)
STREAM_LINE = (
    "chat gpt-4o-mini [CLIENT] gen_ai.request.stream=True gen_ai.usage.input_tokens=12 "
    "gen_ai.usage.output_tokens=3 gen_ai.usage.cache_read.input_tokens=4 "
    "gen_ai.usage.reasoning.output_tokens=1 gen_ai.response.finish_reasons=['stop'] "
    "gen_ai.response.id=chatcmpl-st1"
)


def test_stream_chat_span_ends_after_last_chunk(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("stream_chat.yaml"):
        started = time.monotonic()
        stream = make_llm().stream_chat(MESSAGES)
        # LlamaIndex has already exited its own span here; ours is still open.
        assert telemetry.spans() == []
        deltas = []
        last_chunk_ns = 0
        for chunk in stream:
            assert telemetry.spans() == [], "the chat span ended before the stream did"
            deltas.append(chunk.delta)
            last_chunk_ns = time.time_ns()
        consumed = time.monotonic() - started
    assert "".join(d or "" for d in deltas) == "Hello streamed world"
    assert telemetry.tree(attributes=ATTRIBUTES) == STREAM_LINE
    span = telemetry.find("chat gpt-4o-mini")
    assert span.end_ns >= last_chunk_ns
    first_chunk = span.attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < first_chunk < consumed
    (ttfc,) = telemetry.metric_points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc["count"] == 1
    assert ttfc["sum"] == first_chunk
    # Six chunks reach LlamaIndex (role, three texts, finish, usage): five gaps between them.
    (per_chunk,) = telemetry.metric_points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk["count"] == 5
    telemetry.assert_conformant()


def test_astream_chat(telemetry: Telemetry, cassette: Any) -> None:
    async def consume() -> str:
        text = ""
        async for chunk in await make_llm().astream_chat(MESSAGES):
            assert telemetry.spans() == []
            text += chunk.delta or ""
        return text

    with cassette("stream_chat.yaml"):
        assert asyncio.run(consume()) == "Hello streamed world"
    assert telemetry.tree(attributes=ATTRIBUTES) == STREAM_LINE
    telemetry.assert_conformant()


def test_stream_closed_early_ends_the_span(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("stream_chat.yaml"):
        stream = make_llm().stream_chat(MESSAGES)
        first = next(stream)
        assert first.delta == ""
        stream.close()
    span = telemetry.find("chat gpt-4o-mini")
    assert span.status_code == "UNSET"
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_stream_never_consumed_is_reaped(telemetry: Telemetry, cassette: Any) -> None:
    previous = config.current()
    config.configure(run_ttl_seconds=5.0)
    try:
        with cassette("stream_chat.yaml"):
            stream = make_llm().stream_chat(MESSAGES)
            assert telemetry.spans() == []
            assert open_runs.reap(now=time.monotonic() + 10) == 1
    finally:
        config.restore(previous)
    assert telemetry.tree(attributes=("threadline.abandoned", "threadline.abandon_reason")) == (
        "chat gpt-4o-mini [CLIENT] threadline.abandoned=True threadline.abandon_reason=ttl"
    )
    del stream
    # The integration's bookkeeping forgot the run with it.
    tracker = threadline.llamaindex._instrument._installed[0]._tracker  # type: ignore[index]
    assert (len(tracker.runs), len(tracker.streams), tracker.nodes) == (0, 0, {})


def test_stream_complete_on_a_chat_model_is_chat(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("stream_chat.yaml"):
        text = "".join(r.delta or "" for r in make_llm().stream_complete("Say hello"))
    assert text == "Hello streamed world"
    assert telemetry.tree(attributes=ATTRIBUTES) == STREAM_LINE
    telemetry.assert_conformant()


def test_completion_model_in_process(telemetry: Telemetry) -> None:
    from llama_index.core.llms import MockLLM

    chunks = list(MockLLM(max_tokens=3).stream_complete("a b c d"))
    assert len(chunks) == 3
    assert telemetry.tree(attributes=("gen_ai.provider.name", "gen_ai.request.max_tokens")) == (
        "text_completion unknown [INTERNAL] gen_ai.provider.name=llama_index "
        "gen_ai.request.max_tokens=3"
    )
    span = telemetry.find("text_completion unknown")
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    telemetry.assert_conformant()


def test_a_model_class_named_like_a_stream_does_not_stream(telemetry: Telemetry) -> None:
    """Whether a call streams is its method's (``stream_chat``), not its class's name."""
    from llama_index.core.llms import MockLLM

    class UpstreamLLM(MockLLM):
        pass

    llm = UpstreamLLM(max_tokens=3)
    llm.complete("a b c d")
    list(llm.stream_complete("a b c d"))
    assert telemetry.tree(attributes=("gen_ai.request.stream",), show_kind=False) == (
        "text_completion unknown\n---\ntext_completion unknown gen_ai.request.stream=True"
    )


def test_async_stream_of_a_custom_llm_is_one_span(telemetry: Telemetry) -> None:
    """CustomLLM.astream_chat/astream_complete hand out a generator that calls stream_chat /
    stream_complete when iterated, after their own span has exited: still one span per call."""
    from llama_index.core.llms import MockLLM

    llm = MockLLM(max_tokens=3)

    async def main() -> tuple[int, int]:
        with threadline.invoke_agent("helper"):
            chat = [c async for c in await llm.astream_chat(MESSAGES)]
            completion = [c async for c in await llm.astream_complete("a b c d")]
        return len(chat), len(completion)

    assert asyncio.run(main()) == (3, 3)
    assert telemetry.tree() == (
        "invoke_agent helper [INTERNAL]\n"
        "  chat unknown [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]"
    )
    for name in ("chat unknown", "text_completion unknown"):
        assert telemetry.find(name).attributes["gen_ai.response.time_to_first_chunk"] > 0
    points = telemetry.metric_points("gen_ai.client.operation.time_to_first_chunk")
    assert sum(point["count"] for point in points) == 2  # one per call (chat, completion)


def test_streams_handed_out_before_they_are_read(telemetry: Telemetry) -> None:
    """Several streams of one LLM object handed out before any is read, and a sync stream the
    application calls meanwhile: a span per call, each ended once read."""
    from llama_index.core.llms import MockLLM

    llm = MockLLM(max_tokens=3)

    async def main() -> list[int]:
        first, second = await llm.astream_chat(MESSAGES), await llm.astream_chat(MESSAGES)
        direct = len(list(llm.stream_chat(MESSAGES)))  # the application's own sync stream
        return [len([c async for c in first]), len([c async for c in second]), direct]

    assert asyncio.run(main()) == [3, 3, 3]
    assert telemetry.tree().split("\n---\n") == ["chat unknown [INTERNAL]"] * 3
    assert len(open_runs) == 0


def test_native_async_streams_of_one_llm_in_parallel(telemetry: Telemetry) -> None:
    """An LLM with async streaming of its own (as the provider LLMs have): two streams in
    parallel are two spans."""
    from llama_index.core.llms import ChatResponse, CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_chat_callback

    class NativeAsync(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="native-1")

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="x")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            yield CompletionResponse(text="x", delta="x")

        @llm_chat_callback()
        async def astream_chat(self, messages: Any, **kwargs: Any) -> Any:
            async def gen() -> Any:
                for _ in range(3):
                    await asyncio.sleep(0.01)
                    yield ChatResponse(message=ChatMessage(role="assistant", content="x"))

            return gen()

    llm = NativeAsync()

    async def one() -> int:
        return len([c async for c in await llm.astream_chat(MESSAGES)])

    async def main() -> list[int]:
        return list(await asyncio.gather(one(), one()))

    assert asyncio.run(main()) == [3, 3]
    assert telemetry.tree().split("\n---\n") == ["chat native-1 [CLIENT]"] * 2


def test_stream_failing_midway_is_an_error(telemetry: Telemetry) -> None:
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

    class Flaky(CustomLLM):
        model: str = "flaky-1"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model)

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            yield CompletionResponse(text="Hel", delta="Hel")
            raise ConnectionResetError("stream cut")

    stream = Flaky().stream_chat(MESSAGES)
    assert next(stream).delta == "Hel"
    with pytest.raises(ConnectionResetError):
        next(stream)
    assert telemetry.tree() == ("chat flaky-1 [CLIENT] !ERROR error.type=ConnectionResetError")
    span = telemetry.find("chat flaky-1")
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    telemetry.assert_conformant()


@pytest.mark.parametrize("call", ["astream_chat", "astream"])
def test_async_stream_left_after_a_chunk_as_the_loop_ends(telemetry: Telemetry, call: str) -> None:
    """``break`` out of an async stream at the end of ``asyncio.run``: the loop's shutdown
    cancels the stream's finalizer, throwing a cancellation in where the stream had handed out
    its chunk. The caller stopped reading; nothing was cut off."""
    from llama_index.core import PromptTemplate
    from llama_index.core.llms import MockLLM

    llm = MockLLM()

    async def main() -> None:
        if call == "astream_chat":
            stream = await llm.astream_chat([ChatMessage(role="user", content="a b c d")])
        else:
            stream = await llm.astream(PromptTemplate("a b c {x}"), x="d")
        async for _ in stream:
            break
        if call == "astream":
            await stream.aclose()  # leaves the model's stream inside it to its finalizer

    asyncio.run(main())
    expected = "chat unknown [INTERNAL]"
    if call == "astream":
        expected = "invoke_workflow [INTERNAL]\n  text_completion unknown [INTERNAL]"
    assert telemetry.tree() == expected
    assert len(open_runs) == 0
    telemetry.assert_conformant()


def _streaming_engine() -> Any:
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    Settings.embed_model = MockEmbedding(embed_dim=4)
    index = VectorStoreIndex([TextNode(text=t) for t in ("Paris is sunny.", "Oslo is cold.")])
    return index.as_query_engine(streaming=True, llm=MockLLM(max_tokens=5))


QUERY_TREE = (
    "invoke_workflow [INTERNAL]\n"
    "  retrieval SimpleVectorStore [CLIENT]\n"
    "    embeddings unknown [CLIENT]\n"
    "  text_completion unknown [INTERNAL]"
)


def test_streamed_query_answer_is_part_of_the_query(telemetry: Telemetry) -> None:
    """A streaming query engine's model call may run only when the answer is iterated, after
    the query's LlamaIndex span exited: it still nests under the query, whose span ends with
    the answer."""
    engine = _streaming_engine()
    telemetry.span_exporter.clear()
    response = engine.query("Weather in Paris?")
    assert "".join(response.response_gen)
    assert telemetry.tree() == QUERY_TREE
    query = telemetry.find("invoke_workflow")
    assert query.end_ns >= telemetry.find("text_completion unknown").end_ns
    assert threadline.current_run() is None


def test_streamed_query_answer_async_and_closed_early(telemetry: Telemetry) -> None:
    engine = _streaming_engine()
    telemetry.span_exporter.clear()

    async def main() -> None:
        response = await engine.aquery("Weather in Paris?")
        tokens = response.response_gen
        async for _ in tokens:
            break
        await tokens.aclose()  # the caller stops reading: not an error

    asyncio.run(main())
    assert telemetry.tree() == QUERY_TREE
    assert threadline.current_run() is None


def test_an_async_answer_closed_early_ends_its_model_call_without_the_collector(
    telemetry: Telemetry,
) -> None:
    """Closing the answer ends the model call feeding it within a turn of the event loop, not
    when the garbage collector happens to run."""
    engine = _streaming_engine()
    telemetry.span_exporter.clear()

    async def main() -> list[str]:
        response = await engine.aquery("Weather in Paris?")
        tokens = response.response_gen
        async for _ in tokens:
            break
        await tokens.aclose()
        del tokens, response
        await asyncio.sleep(0.1)  # LlamaIndex's finalizer closes its generator in a task
        return [span.name for span in telemetry.spans()]

    gc.disable()
    try:
        ended = asyncio.run(main())
    finally:
        gc.enable()
    assert any(name.startswith("text_completion") for name in ended), ended


def test_custom_llm_streams_read_in_another_order_than_opened(telemetry: Telemetry) -> None:
    """Two requests share one CustomLLM and read their async streams in the other order than
    they opened them: each stream's model call is its own request's, once."""
    from llama_index.core.llms import MockLLM
    from opentelemetry import trace

    llm = MockLLM(max_tokens=3)
    tracer = trace.get_tracer("app")

    async def request(name: str, opened: asyncio.Event, wait: asyncio.Event | None) -> int:
        with tracer.start_as_current_span(name):
            stream = await llm.astream_chat(MESSAGES)
            opened.set()
            if wait is not None:
                await wait.wait()  # the other request opens and reads first
            return len([c async for c in stream])

    async def main() -> list[int]:
        first_open, second_open = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(request("req-a", first_open, second_open))
        await first_open.wait()
        second = asyncio.create_task(request("req-b", second_open, None))
        return [await first, await second]

    assert asyncio.run(main()) == [3, 3]
    assert telemetry.tree().split("\n---\n") == [
        "req-a [INTERNAL]\n  chat unknown [INTERNAL]",
        "req-b [INTERNAL]\n  chat unknown [INTERNAL]",
    ]
    assert len(open_runs) == 0


def _slow_chat_engine() -> Any:
    """A chat engine whose model streams slowly: its answer is still streaming (in LlamaIndex's
    own thread or task) when ``stream_chat``/``astream_chat`` returns."""
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.core.llms import MockLLM

    class SlowStreamLLM(MockLLM):
        def _generate_text(self, length: int) -> str:
            time.sleep(0.02)
            return super()._generate_text(length)

    return SimpleChatEngine.from_defaults(llm=SlowStreamLLM(max_tokens=4))


@pytest.mark.parametrize("use_async", [False, True])
def test_streaming_chat_engine_ends_with_its_answer(telemetry: Telemetry, use_async: bool) -> None:
    """A streaming chat engine returns while its answer streams: its span ends when the
    model's stream does, so the model call stays inside it."""
    engine = _slow_chat_engine()

    async def read_async() -> str:
        response = await engine.astream_chat("Say hello")
        return "".join([token async for token in response.async_response_gen()])

    if use_async:
        answer = asyncio.run(read_async())
    else:
        answer = "".join(engine.stream_chat("Say hello").response_gen)
    assert answer
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  chat unknown [CLIENT]"
    chat = telemetry.find("chat unknown")
    assert telemetry.find("invoke_workflow").end_ns >= chat.end_ns
    assert len(open_runs) == 0
    assert threadline.current_run() is None
    telemetry.assert_conformant()


def test_async_streaming_context_chat_engine_ends_with_its_answer(telemetry: Telemetry) -> None:
    """A context chat engine's async answer may call its model only once LlamaIndex's task
    reads the answer, after ``astream_chat`` returned: the engine's span ends with that task,
    so the model call stays inside it."""
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    Settings.embed_model = MockEmbedding(embed_dim=4)
    index = VectorStoreIndex([TextNode(text=t) for t in ("Paris is sunny.", "Oslo is cold.")])
    engine = index.as_chat_engine(chat_mode="context", llm=MockLLM(max_tokens=4))
    telemetry.span_exporter.clear()

    async def main() -> str:
        response = await engine.astream_chat("Weather in Paris?")
        await asyncio.sleep(0.05)  # the answer streams on in LlamaIndex's task meanwhile
        return "".join([token async for token in response.async_response_gen()])

    assert asyncio.run(main())
    assert telemetry.tree() == (
        "invoke_workflow [INTERNAL]\n"
        "  retrieval SimpleVectorStore [CLIENT]\n"
        "    embeddings unknown [CLIENT]\n"
        "  text_completion unknown [INTERNAL]"
    )
    model = telemetry.find("text_completion unknown")
    assert telemetry.find("invoke_workflow").end_ns >= model.end_ns
    assert len(open_runs) == 0
    telemetry.assert_conformant()


ENGINE_MODES = ["context", "condense_plus_context", "condense_question"]
RAG_LINES = ("retrieval SimpleVectorStore [CLIENT]", "  embeddings unknown [CLIENT]")


def _slow_rag_chat_engine(mode: str) -> Any:
    """A chat engine over a small index whose model streams slowly. On llama-index-core 0.14
    the ``context`` engines (and ``condense_question`` on both) call the model only once
    LlamaIndex's thread or task reads the answer, after ``stream_chat``/``astream_chat``
    returned."""
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    class SlowStreamLLM(MockLLM):
        def _generate_text(self, length: int) -> str:
            time.sleep(0.02)
            return super()._generate_text(length)

    Settings.embed_model = MockEmbedding(embed_dim=4)
    index = VectorStoreIndex([TextNode(text=t) for t in ("Paris is sunny.", "Oslo is cold.")])
    return index.as_chat_engine(chat_mode=mode, llm=SlowStreamLLM(max_tokens=4))


def _engine_tree(mode: str) -> str:
    # condense_question queries a query engine with the condensed question: its run nests.
    inner = ("invoke_workflow [INTERNAL]",) if mode == "condense_question" else ()
    indent = "    " if inner else "  "
    lines = (
        *(f"  {line}" for line in inner),
        *(indent + line for line in RAG_LINES),
        indent + "text_completion unknown [CLIENT]",
    )
    return "\n".join(("invoke_workflow [INTERNAL]", *lines))


def _assert_engine_ends_last(telemetry: Telemetry, mode: str) -> None:
    assert telemetry.tree() == _engine_tree(mode)
    spans = telemetry.spans()
    (engine,) = [span for span in spans if span.parent_span_id is None]
    assert spans[-1].span_id == engine.span_id, [span.name for span in spans]
    assert engine.end_ns >= max(span.end_ns for span in spans)
    assert len(open_runs) == 0
    assert threadline.current_run() is None
    telemetry.assert_conformant()


def _wait_for_no_open_runs() -> None:
    deadline = time.monotonic() + 10
    while len(open_runs) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("mode", ENGINE_MODES)
def test_streaming_rag_chat_engines_end_with_their_answer(
    telemetry: Telemetry, mode: str, use_async: bool
) -> None:
    """Whenever the model is called (in ``stream_chat``, or only once LlamaIndex's writer reads
    the answer), the engine's span ends with the writer: after the model's (and, for
    condense_question, the inner query's)."""
    engine = _slow_rag_chat_engine(mode)
    telemetry.span_exporter.clear()

    async def read_async() -> str:
        response = await engine.astream_chat("Weather in Paris?")
        return "".join([token async for token in response.async_response_gen()])

    if use_async:
        answer = asyncio.run(read_async())
    else:
        answer = "".join(engine.stream_chat("Weather in Paris?").response_gen)
    assert answer.strip()
    _assert_engine_ends_last(telemetry, mode)
    tracker = threadline.llamaindex._instrument._installed[0]._tracker  # type: ignore[index]
    assert tracker.writers == {}


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("mode", ENGINE_MODES)
def test_streaming_rag_chat_engine_answer_closed_early_or_never_read(
    telemetry: Telemetry, mode: str, use_async: bool
) -> None:
    """An answer closed after its first token, or never read: LlamaIndex's writer still reads
    it to the end, and the engine's span ends with the writer. An answer
    with no writer (the model's own stream, the context engines on 0.12) never read is ended
    by the reaper."""
    engine = _slow_rag_chat_engine(mode)

    async def close_async() -> None:
        tokens = (await engine.astream_chat("Weather in Paris?")).async_response_gen()
        assert await tokens.__anext__()
        await tokens.aclose()  # waits for the writer's task

    async def unread() -> Any:
        response = await engine.astream_chat("Weather in Paris?")
        await asyncio.sleep(0.5)  # a writer's task reads it meanwhile
        return response

    for read in ("closed early", "never read"):
        engine.reset()  # with no history, the condense engines call the model once
        telemetry.span_exporter.clear()
        if read == "closed early":
            if use_async:
                asyncio.run(close_async())
            else:
                tokens = engine.stream_chat("Weather in Paris?").response_gen
                assert next(tokens)
                tokens.close()  # joins the writer's thread (0.14; 0.12 keeps no hold of it)
                _wait_for_no_open_runs()
            _assert_engine_ends_last(telemetry, mode)
            continue
        response = asyncio.run(unread()) if use_async else engine.stream_chat("Weather?")
        if response.is_writing_to_memory:
            _wait_for_no_open_runs()  # the writer's thread or task reads it meanwhile
            _assert_engine_ends_last(telemetry, mode)
            continue
        previous = config.current()
        config.configure(run_ttl_seconds=5.0)
        try:
            assert open_runs.reap(now=time.monotonic() + 10) == 2
        finally:
            config.restore(previous)
        del response
        assert telemetry.tree() == _engine_tree(mode)
        assert len(open_runs) == 0
        assert threadline.current_run() is None


def test_streaming_chat_engine_whose_writer_never_runs_is_reaped(telemetry: Telemetry) -> None:
    """An async answer whose loop closed before LlamaIndex's writer task ran: the engine's
    run, left waiting for it, is ended by the reaper."""
    engine = _slow_rag_chat_engine("context")
    telemetry.span_exporter.clear()
    loop = asyncio.new_event_loop()
    try:
        response = loop.run_until_complete(engine.astream_chat("Weather in Paris?"))
    finally:
        loop.close()
    previous = config.current()
    config.configure(run_ttl_seconds=5.0)
    try:
        assert open_runs.reap(now=time.monotonic() + 10) >= 1
    finally:
        config.restore(previous)
    assert len(open_runs) == 0
    engine_span = telemetry.find("invoke_workflow")
    assert engine_span.attributes["threadline.abandoned"] is True
    assert engine_span.end_ns >= max(span.end_ns for span in telemetry.spans())
    assert threadline.current_run() is None
    del response


def test_streams_read_in_turn_keep_their_own_chunk_facts(telemetry: Telemetry) -> None:
    """Without a meter timing every chunk, a stream's chunks are looked at only until they
    have told their time to first chunk and the provider's finish reason. One stream done with
    that (a mock's chunks carry no provider response) leaves another, read in turn with it,
    still looked at: its finish reason comes before its last chunk (OpenAI's usage chunk)."""
    from llama_index.core.base.llms.types import ChatResponse, LLMMetadata
    from llama_index.core.llms import ChatMessage, CustomLLM, MockLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from opentelemetry.metrics import NoOpMeterProvider

    class Provider(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="provider-model", is_chat_model=True)

        @llm_chat_callback()
        def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
            def chunks() -> Any:
                raws = [
                    {"choices": [{"finish_reason": None}]},
                    {"choices": [{"finish_reason": "length"}]},
                    {"choices": [], "usage": {}},
                ]
                for text, raw in zip("abc", raws, strict=True):
                    yield ChatResponse(
                        message=ChatMessage(role="assistant", content=text), delta=text, raw=raw
                    )

            return chunks()

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    threadline.configure(meter_provider=NoOpMeterProvider())
    provider = iter(Provider().stream_chat(MESSAGES))
    mock = iter(MockLLM(max_tokens=3).stream_chat(MESSAGES))
    assert next(provider).delta == "a"
    assert next(mock).delta  # no provider response: this stream is looked at no more
    assert [chunk.delta for chunk in provider] == ["b", "c"]
    assert len(list(mock)) == 2
    assert telemetry.tree(attributes=("gen_ai.response.finish_reasons",), show_kind=False) == (
        "chat provider-model gen_ai.response.finish_reasons=['length']\n---\nchat unknown"
    )
    for span in telemetry.spans():
        assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    installed = threadline.llamaindex._instrument._installed
    assert installed is not None
    tracker = installed[0]._tracker
    assert (tracker.watched, len(tracker.streams)) == (set(), 0)


def _undecorated_llm(fail: bool) -> Any:
    """A model whose stream methods lack LlamaIndex's callback decorators: LlamaIndex still
    spans each call, but the stream it returns is the model's own and fires no end event."""
    from llama_index.core.llms import ChatResponse, CompletionResponse, MockLLM

    def chunk(kind: str, text: str) -> Any:
        if kind == "chat":
            return ChatResponse(message=ChatMessage(role="assistant", content=text), delta=text)
        return CompletionResponse(text=text, delta=text)

    class Undecorated(MockLLM):
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return self._chunks("completion")

        def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
            return self._chunks("chat")

        async def astream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            return self._achunks("completion")

        async def astream_chat(self, messages: Any, **kwargs: Any) -> Any:
            return self._achunks("chat")

        def _chunks(self, kind: str) -> Any:
            yield chunk(kind, "a")
            time.sleep(0.02)
            if fail:
                raise ConnectionResetError("stream cut")
            yield chunk(kind, "b")

        async def _achunks(self, kind: str) -> Any:
            yield chunk(kind, "a")
            await asyncio.sleep(0.02)
            if fail:
                raise ConnectionResetError("stream cut")
            yield chunk(kind, "b")

    return Undecorated()


@pytest.mark.parametrize("fail", [False, True], ids=["read", "raising"])
@pytest.mark.parametrize(
    "call", ["stream_complete", "stream_chat", "astream_complete", "astream_chat"]
)
def test_stream_method_without_the_callback_decorator_ends_with_its_stream(
    telemetry: Telemetry, call: str, fail: bool
) -> None:
    """No end event comes for such a stream: its span ends as the stream is released, right
    after the loop that read it (or the handling of the error it raised), and lasts as long as
    the stream did, not until the reaper. An error it raised cannot be told from a close: the
    span ends without it."""
    llm = _undecorated_llm(fail)
    argument: Any = "a b" if call.endswith("complete") else MESSAGES

    def read() -> list[str]:
        try:
            return [chunk.delta for chunk in getattr(llm, call)(argument)]
        except ConnectionResetError:
            return ["cut"]

    async def read_async() -> list[str]:
        try:
            return [chunk.delta async for chunk in await getattr(llm, call)(argument)]
        except ConnectionResetError:
            return ["cut"]

    started = time.time_ns()
    deltas = asyncio.run(read_async()) if call.startswith("a") else read()
    read_ns = time.time_ns()
    assert deltas == (["cut"] if fail else ["a", "b"])
    name = "chat unknown" if call.endswith("chat") else "text_completion unknown"
    assert telemetry.tree(attributes=("gen_ai.request.stream", "threadline.abandoned")) == (
        f"{name} [CLIENT] gen_ai.request.stream=True"
    )
    span = telemetry.find(name)
    assert span.status_code == "UNSET"
    assert started <= span.start_ns
    assert span.duration_ns >= 20_000_000  # the stream's, not the call's
    assert span.end_ns <= read_ns
    assert len(open_runs) == 0
    installed = threadline.llamaindex._instrument._installed
    assert installed is not None
    tracker = installed[0]._tracker
    assert (tracker.watched, len(tracker.streams)) == (set(), 0)  # no chunk events to wait for
    telemetry.assert_conformant()


def test_stream_method_without_the_callback_decorator_closed_early(telemetry: Telemetry) -> None:
    llm = _undecorated_llm(fail=False)
    for _ in llm.stream_chat(MESSAGES):
        break
    assert telemetry.tree() == "chat unknown [CLIENT]"
    assert telemetry.find("chat unknown").status_code == "UNSET"
    assert len(open_runs) == 0


def test_llm_stream_over_a_stream_method_without_the_callback_decorator(
    telemetry: Telemetry,
) -> None:
    """``llm.stream`` returns a generator of its own over the model's: its request span ends
    once the model's stream is released with it."""
    from llama_index.core import PromptTemplate

    tokens = list(_undecorated_llm(fail=False).stream(PromptTemplate("a {x}"), x="b"))
    assert tokens == ["a", "b"]
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  text_completion unknown [CLIENT]"
    assert len(open_runs) == 0


def test_a_stream_ending_on_one_thread_keeps_the_hooks_of_one_opened_on_another() -> None:
    """Streams open and end on any thread (a streaming chat response reads its model's stream
    in a thread of its own). The last open stream's end clears the event hooks; a stream
    opened on another thread at that moment keeps the hooks its end and chunk events need."""
    import threading

    from llama_index.core.instrumentation.events.llm import (
        LLMChatEndEvent,
        LLMChatInProgressEvent,
    )

    from threadline.llamaindex._handler import Tracker

    about_to_clear, opened = threading.Event(), threading.Event()

    class Hooks(dict[type, Any]):
        def clear(self) -> None:
            about_to_clear.set()
            opened.wait(0.5)  # the other thread's stream opens here, if nothing keeps it out
            super().clear()

    tracker = Tracker()
    tracker.events = Hooks()
    first, second = threadline.inference("m", provider="p"), threadline.inference("m", provider="p")
    tracker._open_stream("first", first)

    def open_second() -> None:
        about_to_clear.wait(5)
        tracker._open_stream("second", second)
        tracker._watch("second")
        opened.set()

    other = threading.Thread(target=open_second)
    other.start()
    tracker._close_stream("first")
    other.join(5)
    assert "second" in tracker.stream_entries
    assert LLMChatEndEvent in tracker.events
    assert LLMChatInProgressEvent in tracker.events
    first.end()
    second.end()
