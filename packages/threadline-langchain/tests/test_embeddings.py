"""Embedding models: ``instrument()`` gives their calls ``embeddings`` spans (LangChain sends no
callbacks for them), nested under the retrieval that made them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from opentelemetry import trace

import threadline
import threadline.langchain
from threadline import _failopen, semconv


@pytest.fixture(autouse=True)
def _instrumented() -> Iterator[None]:
    threadline.langchain.instrument()
    yield
    threadline.langchain.uninstrument()


class RemoteEmbeddings(Embeddings):
    """A provider-style model (defined before instrument() runs): ``embed_query`` goes through
    ``embed_documents``, and there is no async method of its own."""

    model = "text-embedding-3-small"
    base_url = "https://embeddings.example.com:8443/v1"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("embedding service unavailable")
        return [[float(len(text))] * 4 for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class ListStore(VectorStore):
    """The smallest vector store: a list, searched by dot product."""

    def __init__(self, embedding: Embeddings) -> None:
        self.embedding = embedding
        self.rows: list[tuple[list[float], Document]] = []

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def add_texts(self, texts: Any, metadatas: Any = None, **kwargs: Any) -> list[str]:
        texts = list(texts)
        vectors = self.embedding.embed_documents(texts)
        self.rows += [(v, Document(page_content=t)) for v, t in zip(vectors, texts, strict=True)]
        return [str(i) for i in range(len(texts))]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        q = self.embedding.embed_query(query)
        ranked = sorted(self.rows, key=lambda row: -_dot(q, row[0]))
        return [document for _, document in ranked[:k]]

    @classmethod
    def from_texts(cls, texts: Any, embedding: Embeddings, **kwargs: Any) -> ListStore:
        store = cls(embedding)
        store.add_texts(texts)
        return store


def test_one_span_per_call(telemetry: Any) -> None:
    model = RemoteEmbeddings()
    assert model.embed_query("Paris") == [5.0] * 4  # through embed_documents: still one span
    model.embed_documents(["Paris", "Oslo"])
    first, second = telemetry.spans()
    assert first.name == second.name == "embeddings text-embedding-3-small"
    assert first.kind == "CLIENT"
    assert first.status_code == "UNSET"
    assert first.attributes == {
        semconv.GEN_AI_OPERATION_NAME: "embeddings",
        semconv.GEN_AI_PROVIDER_NAME: "remote",  # from the class name, outside a partner package
        semconv.GEN_AI_REQUEST_MODEL: "text-embedding-3-small",
        semconv.SERVER_ADDRESS: "embeddings.example.com",
        semconv.SERVER_PORT: 8443,
        semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: 4,
    }
    assert model.calls == 2
    telemetry.assert_conformant()  # no usage or response model: LangChain returns vectors only


def test_class_defined_after_instrument(telemetry: Any) -> None:
    class LocalEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [1.0, 0.0]

        async def aembed_query(self, text: str) -> list[float]:
            return [0.0, 1.0]

    model = LocalEmbeddings()
    model.embed_query("Paris")
    assert asyncio.run(model.aembed_query("Paris")) == [0.0, 1.0]
    spans = telemetry.spans()
    assert [(s.name, s.attributes[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT]) for s in spans] == [
        ("embeddings", 2),
        ("embeddings", 2),
    ]


@pytest.mark.parametrize(
    ("module", "name", "provider", "address"),
    [
        ("langchain_openai.embeddings.base", "OpenAIEmbeddings", "openai", "api.openai.com"),
        ("langchain_openai.embeddings.azure", "AzureOpenAIEmbeddings", "azure.ai.openai", None),
        ("langchain_google_genai.embeddings", "GoogleGenerativeAIEmbeddings", "gcp.gemini", None),
        ("langchain_aws.embeddings.bedrock", "BedrockEmbeddings", "aws.bedrock", None),
        ("langchain_community.embeddings.ollama", "OllamaEmbeddings", "ollama", None),
        ("langchain_core.embeddings.fake", "FakeEmbeddings", "langchain", None),
    ],
)
def test_provider_and_default_endpoint(
    module: str, name: str, provider: str, address: str | None
) -> None:
    from threadline.langchain._convert import EmbeddingsModel

    cls = type(name, (), {"__module__": module})
    described = EmbeddingsModel(cls())
    assert (described.provider, described.server_address) == (provider, address)


def test_async_default_runs_the_sync_method_in_an_executor(telemetry: Any) -> None:
    async def main() -> list[float]:
        with threadline.invoke_agent("researcher"):
            return await RemoteEmbeddings().aembed_query("Paris")

    assert asyncio.run(main()) == [5.0] * 4
    embeddings, agent = telemetry.spans()
    assert embeddings.name == "embeddings text-embedding-3-small"
    assert embeddings.parent_span_id == agent.span_id
    assert not trace.get_current_span().get_span_context().is_valid


def test_error_keeps_the_users_exception(telemetry: Any) -> None:
    model = RemoteEmbeddings(fail=True)
    with pytest.raises(ConnectionError) as raised:
        model.embed_query("Paris")
    (span,) = telemetry.spans()
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == "ConnectionError"
    assert str(raised.value) == "embedding service unavailable"
    assert raised.traceback[-1].name == "embed_documents"  # raised where the model raised it


def test_retrieval_embeds_the_query_inside_its_span(telemetry: Any, config: Any) -> None:
    store = ListStore.from_texts(["Paris is sunny.", "Oslo is cold."], RemoteEmbeddings())
    documents = store.as_retriever(search_kwargs={"k": 1}).invoke("Paris?", config=config)
    assert len(documents) == 1
    asyncio.run(store.as_retriever().ainvoke("Oslo?", config=config))
    assert telemetry.tree().split("\n---\n") == [
        "embeddings text-embedding-3-small [CLIENT]",  # add_texts, outside any run
        "retrieval ListStore [CLIENT]\n  embeddings text-embedding-3-small [CLIENT]",
        "retrieval ListStore [CLIENT]\n  embeddings text-embedding-3-small [CLIENT]",
    ]
    telemetry.assert_conformant()  # no usage or response model: LangChain returns vectors only


def test_uninstrument_restores_the_methods(telemetry: Any) -> None:
    wrapped = RemoteEmbeddings.embed_documents
    threadline.langchain.uninstrument()
    assert RemoteEmbeddings.embed_documents is wrapped.__wrapped__  # type: ignore[attr-defined]
    assert "__init_subclass__" not in Embeddings.__dict__
    RemoteEmbeddings().embed_query("Paris")
    assert telemetry.spans() == []
    threadline.langchain.instrument()
    RemoteEmbeddings().embed_query("Paris")
    assert len(telemetry.spans()) == 1


def test_an_internal_error_never_reaches_the_caller(
    telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadline.langchain import _convert

    def broken(embedder: Any) -> None:
        raise RuntimeError("bug in threadline")

    monkeypatch.setattr(_convert, "EmbeddingsModel", broken)
    assert RemoteEmbeddings().embed_query("Paris") == [5.0] * 4
    assert telemetry.spans() == []
    assert "langchain.embeddings" in _failopen.reported_sites()


def test_model_wrapping_another_nests_its_call(telemetry: Any) -> None:
    class CachedEmbeddings(Embeddings):
        """Like LangChain's CacheBackedEmbeddings: answers from a cache, else asks ``inner``."""

        def __init__(self, inner: Embeddings) -> None:
            self.inner = inner
            self.cache: dict[str, list[float]] = {}

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            missing = [t for t in texts if t not in self.cache]
            if missing:
                self.cache.update(zip(missing, self.inner.embed_documents(missing), strict=True))
            return [self.cache[t] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    cached = CachedEmbeddings(RemoteEmbeddings())
    cached.embed_query("Paris")
    cached.embed_query("Paris")  # from the cache: no call to the remote model
    assert telemetry.tree().split("\n---\n") == [
        "embeddings [CLIENT]\n  embeddings text-embedding-3-small [CLIENT]",
        "embeddings [CLIENT]",
    ]
