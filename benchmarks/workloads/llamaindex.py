"""LlamaIndex workloads on ``MockLLM``/``MockEmbedding`` (no network): an LLM chat call, a
streamed chat of 20 chunks, and a RAG query over a small in-memory vector index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.llms import ChatMessage, MockLLM

from benchmarks._common import THREADLINE_CONFIGS, installed, instrument_threadline

Settings.llm = MockLLM(max_tokens=16)
Settings.embed_model = MockEmbedding(embed_dim=16)

DOCS = [
    "Paris is the capital of France. It is sunny in Paris in summer.",
    "Berlin is the capital of Germany. It rains often in Berlin.",
    "Madrid is the capital of Spain. Madrid is hot in July.",
    "Rome is the capital of Italy. Rome has mild winters.",
]


def configs() -> list[str]:
    out = ["baseline", "floor"]
    if installed("threadline.llamaindex"):
        out += THREADLINE_CONFIGS
    if installed("openinference.instrumentation.llama_index"):
        out.append("openinference")
    if installed("opentelemetry.instrumentation.llamaindex"):
        out.append("openllmetry")
    return out


def instrument(config: str) -> None:
    if config == "baseline":
        return
    if instrument_threadline(config, "llamaindex"):
        return
    if config == "openinference":
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

        LlamaIndexInstrumentor().instrument()
    elif config == "openllmetry":
        from opentelemetry.instrumentation.llamaindex import LlamaIndexInstrumentor as Ollm

        Ollm().instrument()
    else:
        raise SystemExit(f"llamaindex has no configuration {config!r}")


class _NoopSpans(BaseSpanHandler):  # type: ignore[type-arg]
    """Does nothing at each span enter/exit/drop (skipping LlamaIndex's own span bookkeeping,
    as threadline's handler does)."""

    @classmethod
    def class_name(cls) -> str:
        return "NoopSpanHandler"

    def span_enter(self, *args: Any, **kwargs: Any) -> None:
        pass

    def span_exit(self, *args: Any, **kwargs: Any) -> None:
        pass

    def span_drop(self, *args: Any, **kwargs: Any) -> None:
        pass

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _NoopEvents(BaseEventHandler):
    @classmethod
    def class_name(cls) -> str:
        return "NoopEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        pass


def noop_hook() -> None:
    """No-op span and event handlers on the root dispatcher, where threadline registers."""
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(_NoopSpans())
    dispatcher.add_event_handler(_NoopEvents())


def make_llm() -> Callable[[], Any]:
    llm = MockLLM(max_tokens=16)
    messages = [
        ChatMessage(role="system", content="You are a weather assistant."),
        ChatMessage(role="user", content="What is the weather in Paris?"),
    ]
    return lambda: llm.chat(messages).message.content


def make_stream() -> Callable[[], Any]:
    # MockLLM streams one chunk per generated word.
    llm = MockLLM(max_tokens=20)
    messages = [ChatMessage(role="user", content="What is the weather in Paris?")]

    def call() -> int:
        return sum(1 for _ in llm.stream_chat(messages))

    return call


def make_rag() -> Callable[[], Any]:
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
    engine = index.as_query_engine(similarity_top_k=2)
    return lambda: str(engine.query("What is the weather in Paris?"))


WORKLOADS: dict[str, Callable[[], Callable[[], Any]]] = {
    "llm": make_llm,
    "stream": make_stream,
    "rag": make_rag,
}
