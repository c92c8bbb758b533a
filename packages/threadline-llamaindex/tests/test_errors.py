"""Errors: the failing run and its ancestors are ERROR with error.type; the user's exception
reaches the caller unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from conftest import make_index, make_llm

from threadline.testing import Telemetry


def test_refused_chat_fails_the_query(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("rag_error.yaml"):
        index = make_index()
        telemetry.span_exporter.clear()
        engine = index.as_query_engine(llm=make_llm(), similarity_top_k=2)
        with pytest.raises(openai.AuthenticationError) as raised:
            engine.query("What is the capital of France?")
    assert raised.value.status_code == 401
    assert (
        telemetry.tree()
        == """\
invoke_workflow [INTERNAL] !ERROR error.type=openai.AuthenticationError
  retrieval SimpleVectorStore [CLIENT]
    embeddings text-embedding-3-small [CLIENT]
  chat gpt-4o-mini [CLIENT] !ERROR error.type=openai.AuthenticationError"""
    )
    chat = telemetry.find("chat gpt-4o-mini")
    assert chat.status_description is not None
    assert chat.status_description.startswith("AuthenticationError: Error code: 401")
    telemetry.assert_conformant()
    points = telemetry.metric_points("gen_ai.client.operation.duration")
    failed = [p["attributes"] for p in points if "error.type" in p["attributes"]]
    assert failed == [
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "server.address": "api.openai.com",
            "server.port": 443,
            "error.type": "openai.AuthenticationError",
        }
    ]


class Boom(Exception):
    pass


def test_async_error_is_the_same_object(telemetry: Telemetry, cassette: Any) -> None:
    boom = Boom("no")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise boom

    with cassette("rag_error.yaml"):
        index = make_index()
        telemetry.span_exporter.clear()
        retriever = index.as_retriever(similarity_top_k=2)
        retriever._retrieve = explode  # type: ignore[method-assign]
        retriever._aretrieve = explode  # type: ignore[method-assign]
        with pytest.raises(Boom) as raised:
            asyncio.run(retriever.aretrieve("question"))
    assert raised.value is boom
    assert telemetry.tree() == (
        "retrieval SimpleVectorStore [CLIENT] !ERROR error.type=test_errors.Boom"
    )
    telemetry.assert_conformant()
