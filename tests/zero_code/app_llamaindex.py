"""A LlamaIndex query over a small index with MockEmbedding and MockLLM. No threadline import: run
it under ``opentelemetry-instrument`` and the ``llamaindex`` entry point traces it."""

from __future__ import annotations

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode

if __name__ == "__main__":
    nodes = [
        TextNode(text="The capital of France is Paris.", id_="d1"),
        TextNode(text="Bananas are yellow.", id_="d2"),
    ]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=1)
    response = engine.query("What is the capital of France?")
    assert str(response) == "text text text text"
