"""instrument()/uninstrument(), the OpenTelemetry instrumentor entry point, and verbose mode."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from conftest import make_index, make_llm
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import ChatMessage

import threadline.llamaindex
from threadline.llamaindex import LlamaIndexInstrumentor
from threadline.llamaindex._handler import EventHandler, SpanHandler
from threadline.testing import Telemetry

MESSAGES = [ChatMessage(role="user", content="Say hello")]


def _ours() -> tuple[int, int]:
    dispatcher = get_dispatcher()
    return (
        sum(isinstance(h, SpanHandler) for h in dispatcher.span_handlers),
        sum(isinstance(h, EventHandler) for h in dispatcher.event_handlers),
    )


def test_instrument_is_idempotent_and_removable(telemetry: Telemetry, cassette: Any) -> None:
    threadline.llamaindex.instrument()
    threadline.llamaindex.instrument()
    assert _ours() == (1, 1)
    threadline.llamaindex.uninstrument()
    threadline.llamaindex.uninstrument()
    assert _ours() == (0, 0)
    assert not threadline.llamaindex.is_instrumented()
    with cassette("chat.yaml"):
        make_llm().chat(MESSAGES)
    assert telemetry.spans() == []
    threadline.llamaindex.instrument()
    with cassette("chat.yaml"):
        make_llm().chat(MESSAGES)
    assert telemetry.tree() == "chat gpt-4o-mini [CLIENT]"


def test_instrumentor_entry_point(telemetry: Telemetry, cassette: Any) -> None:
    threadline.llamaindex.uninstrument()
    (entry,) = [
        e
        for e in entry_points(group="opentelemetry_instrumentor")
        if e.name == "threadline_llamaindex"
    ]
    assert entry.load() is LlamaIndexInstrumentor
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument()
    try:
        assert _ours() == (1, 1)
        with cassette("chat.yaml"):
            make_llm().chat(MESSAGES)
    finally:
        instrumentor.uninstrument()
    assert _ours() == (0, 0)
    assert telemetry.tree() == "chat gpt-4o-mini [CLIENT]"


def test_verbose_adds_llamaindex_steps(telemetry: Telemetry, cassette: Any) -> None:
    threadline.llamaindex.uninstrument()
    threadline.llamaindex.instrument()
    threadline.llamaindex.instrument(verbose=True)  # a later call sets the option
    with cassette("rag_query.yaml"):
        index = make_index()
        telemetry.span_exporter.clear()
        index.as_query_engine(llm=make_llm(), similarity_top_k=2).query("capital of France?")
    spans = telemetry.spans()
    by_id = {span.span_id: span for span in spans}

    def parent(name: str) -> str:
        (span,) = [s for s in spans if s.name == name]
        return by_id[span.parent_span_id].name if span.parent_span_id else ""

    # LlamaIndex's own steps (their class names vary by release) sit between the GenAI spans.
    assert parent("RetrieverQueryEngine._query") == "invoke_workflow"
    assert parent("retrieval SimpleVectorStore") == "RetrieverQueryEngine._query"
    assert parent("VectorIndexRetriever._retrieve") == "retrieval SimpleVectorStore"
    assert parent("embeddings text-embedding-3-small") == "VectorIndexRetriever._retrieve"
    assert parent("chat gpt-4o-mini").endswith(".predict")
    assert any(span.name.endswith(".synthesize") for span in spans)
    steps = [span for span in spans if "gen_ai.operation.name" not in span.attributes]
    assert len(steps) == len(spans) - 4
    assert all(span.kind == "INTERNAL" and not span.attributes for span in steps)
    telemetry.assert_conformant()

    threadline.llamaindex.instrument()  # and back
    telemetry.span_exporter.clear()
    with cassette("rag_query.yaml"):
        index.as_query_engine(llm=make_llm(), similarity_top_k=2).query("capital of France?")
    assert len(telemetry.spans()) == 4
