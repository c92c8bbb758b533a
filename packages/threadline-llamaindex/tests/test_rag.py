"""A RAG query over a VectorStoreIndex: workflow -> retrieval -> embeddings, then chat."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import make_index, make_llm

import threadline
from threadline.testing import Telemetry

QUESTION = "What is the capital of France?"
ATTRIBUTES = (
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.request.temperature",
    "gen_ai.request.top_k",
    "gen_ai.embeddings.dimension.count",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.id",
    "server.address",
    "server.port",
)
RAG_TREE = """\
invoke_workflow [INTERNAL]
  retrieval SimpleVectorStore [CLIENT] gen_ai.request.top_k=2.0
    embeddings text-embedding-3-small [CLIENT] gen_ai.provider.name=openai \
gen_ai.request.model=text-embedding-3-small gen_ai.embeddings.dimension.count=4 \
server.address=api.openai.com server.port=443
  chat gpt-4o-mini [CLIENT] gen_ai.provider.name=openai gen_ai.request.model=gpt-4o-mini \
gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.request.temperature=0.1 \
gen_ai.usage.input_tokens=120 gen_ai.usage.output_tokens=8 \
gen_ai.usage.cache_read.input_tokens=64 gen_ai.response.finish_reasons=['stop'] \
gen_ai.response.id=chatcmpl-rag1 server.address=api.openai.com server.port=443"""


def _query(telemetry: Telemetry, cassette: Any, *, use_async: bool = False) -> str:
    with cassette("rag_query.yaml"):
        index = make_index()
        telemetry.span_exporter.clear()
        engine = index.as_query_engine(llm=make_llm(), similarity_top_k=2)
        response = asyncio.run(engine.aquery(QUESTION)) if use_async else engine.query(QUESTION)
    return str(response)


def test_index_build_is_one_embeddings_span(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("rag_query.yaml"):
        make_index()
    assert telemetry.tree(attributes=("gen_ai.embeddings.dimension.count",)) == (
        "embeddings text-embedding-3-small [CLIENT] gen_ai.embeddings.dimension.count=4"
    )


def test_rag_query_tree(telemetry: Telemetry, cassette: Any) -> None:
    assert _query(telemetry, cassette) == "The capital of France is Paris."
    assert telemetry.tree(attributes=ATTRIBUTES) == RAG_TREE
    telemetry.assert_conformant()
    # Content capture is off: no content attributes, and one trace for the whole query.
    for span in telemetry.spans():
        assert not any(
            key.endswith(("messages", "documents", "query.text")) for key in span.attributes
        )
    assert len({span.trace_id for span in telemetry.spans()}) == 1


def test_rag_query_metrics(telemetry: Telemetry, cassette: Any) -> None:
    _query(telemetry, cassette)
    durations = telemetry.metric_points("gen_ai.client.operation.duration")
    assert sorted(
        (
            p["attributes"]["gen_ai.operation.name"],
            p["attributes"].get("gen_ai.request.model"),
            p["count"],
        )
        for p in durations
    ) == [
        ("chat", "gpt-4o-mini", 1),
        ("embeddings", "text-embedding-3-small", 2),  # the index build, then the question
        ("retrieval", None, 1),
    ]
    chat = next(p for p in durations if p["attributes"]["gen_ai.operation.name"] == "chat")
    assert chat["attributes"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    tokens = {
        p["attributes"]["gen_ai.token.type"]: p["sum"]
        for p in telemetry.metric_points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 120, "output": 8}
    workflows = telemetry.metric_points("gen_ai.workflow.duration")
    # LlamaIndex's own engine class is a type, not a workflow name: the metric has none.
    assert [(p["attributes"], p["count"]) for p in workflows] == [({}, 1)]


def test_async_query_same_tree(telemetry: Telemetry, cassette: Any) -> None:
    assert _query(telemetry, cassette, use_async=True) == "The capital of France is Paris."
    assert telemetry.tree(attributes=ATTRIBUTES) == RAG_TREE
    telemetry.assert_conformant()


def test_rag_query_content(telemetry: Telemetry, cassette: Any, capture_content: Any) -> None:
    _query(telemetry, cassette)
    telemetry.assert_conformant()
    retrieval = telemetry.find("retrieval SimpleVectorStore")
    assert retrieval.attributes["gen_ai.retrieval.query.text"] == QUESTION
    documents = json.loads(retrieval.attributes["gen_ai.retrieval.documents"])
    assert [(d["id"], d["content"]) for d in documents] == [
        ("d2", "The capital of France is Paris."),
        ("d1", "Threadline traces LlamaIndex queries."),
    ]
    assert documents[0]["score"] > documents[1]["score"]
    chat = telemetry.find("chat gpt-4o-mini")
    inputs = json.loads(chat.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert "The capital of France is Paris." in inputs[1]["parts"][0]["content"]
    assert json.loads(chat.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "The capital of France is Paris."}],
            "finish_reason": "stop",
        }
    ]
    # The same content goes on the inference details event.
    (event,) = telemetry.events("gen_ai.client.inference.operation.details")
    assert event["span_id"] == chat.span_id


def test_parallel_async_queries_keep_their_parents(telemetry: Telemetry, cassette: Any) -> None:
    async def both(engine: Any) -> list[Any]:
        with threadline.invoke_workflow("batch"):
            return list(await asyncio.gather(engine.aquery(QUESTION), engine.aquery(QUESTION)))

    with cassette("rag_parallel.yaml"):
        index = make_index()
        telemetry.span_exporter.clear()
        engine = index.as_query_engine(llm=make_llm(), similarity_top_k=2)
        answers = asyncio.run(both(engine))
    assert [str(a) for a in answers] == ["The capital of France is Paris."] * 2
    one = """\
  invoke_workflow [INTERNAL]
    retrieval SimpleVectorStore [CLIENT]
      embeddings text-embedding-3-small [CLIENT]
    chat gpt-4o-mini [CLIENT]"""
    assert telemetry.tree() == f"invoke_workflow batch [INTERNAL]\n{one}\n{one}"
    telemetry.assert_conformant()


def test_session_baggage_on_every_span(telemetry: Telemetry, cassette: Any) -> None:
    with threadline.session("s-42", user_id="u-7"):
        _query(telemetry, cassette)
    spans = telemetry.spans()
    assert len(spans) == 4
    for span in spans:
        assert span.attributes["session.id"] == "s-42", span.name
        assert span.attributes["user.id"] == "u-7", span.name
