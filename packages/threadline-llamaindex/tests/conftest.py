"""Fixtures for the LlamaIndex integration tests: instrumentation, offline cassettes, an index.

Every model call replays from ``cassettes/llamaindex/`` (vcrpy, ``record_mode="none"``); the
socket layer is blocked so a request that misses its cassette fails instead of going out.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import vcr

import threadline.llamaindex

pytest_plugins = ["threadline.testing"]

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "llamaindex"

TEXTS = {
    "d1": "Threadline traces LlamaIndex queries.",
    "d2": "The capital of France is Paris.",
    "d3": "Bananas are yellow.",
}

_recorder = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path", "query"],
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    threadline.llamaindex.instrument()
    yield
    threadline.llamaindex.uninstrument()


@pytest.fixture
def cassette() -> Callable[[str], AbstractContextManager[Any]]:
    """``with cassette("rag_query.yaml"): ...`` replays that file; every interaction must play."""

    def use(name: str) -> AbstractContextManager[Any]:
        return _recorder.use_cassette(name, allow_playback_repeats=False)

    return use


def make_llm() -> Any:
    from llama_index.llms.openai import OpenAI

    return OpenAI(model="gpt-4o-mini", temperature=0.1, max_retries=0)


def make_index() -> Any:
    """A VectorStoreIndex over three text nodes (embeds them: the first cassette request)."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.openai import OpenAIEmbedding

    embed_model = OpenAIEmbedding(model="text-embedding-3-small", max_retries=0)
    nodes = [TextNode(text=text, id_=node_id) for node_id, text in TEXTS.items()]
    return VectorStoreIndex(nodes, embed_model=embed_model)
