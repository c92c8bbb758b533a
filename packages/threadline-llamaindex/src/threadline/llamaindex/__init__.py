"""threadline integration for LlamaIndex.

``instrument()`` registers a span handler and an event handler on LlamaIndex's root
instrumentation dispatcher, so every LlamaIndex call in the process is traced::

    import threadline.llamaindex

    threadline.llamaindex.instrument()

LLM calls become ``chat``/``text_completion`` spans, embeddings ``embeddings``, retrievers
``retrieval``, query and chat engines and workflows ``invoke_workflow``, agents
``invoke_agent`` with ``execute_tool`` children. Other LlamaIndex steps (node parsing,
synthesis, reranking) are left out unless ``verbose=True``, which adds them as plain INTERNAL
spans. ``uninstrument()`` removes the handlers.
"""

from typing import TYPE_CHECKING

from threadline._deferred import lazy_exports
from threadline.llamaindex._instrumentor import LlamaIndexInstrumentor

if TYPE_CHECKING:
    from threadline.llamaindex._instrument import instrument, is_instrumented, uninstrument

__all__ = ["LlamaIndexInstrumentor", "instrument", "is_instrumented", "uninstrument"]

# LlamaIndex is imported on first use of these, not by importing this package (which
# ``opentelemetry-instrument`` does at startup whether or not the application uses LlamaIndex).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "instrument": "threadline.llamaindex._instrument",
        "is_instrumented": "threadline.llamaindex._instrument",
        "uninstrument": "threadline.llamaindex._instrument",
    },
)
