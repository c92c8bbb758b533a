"""threadline integration for LangChain and LangGraph.

Either pass a handler per run::

    from threadline.langchain import CallbackHandler

    graph.invoke(inputs, config={"callbacks": [CallbackHandler()]})

or trace every run in the process::

    import threadline.langchain

    threadline.langchain.instrument()

Chat models become ``chat {model}`` spans, tools ``execute_tool {name}``, retrievers
``retrieval {source}``, agent graphs ``invoke_agent {name}`` and other LangGraph graphs
``invoke_workflow {name}``; trivial runnables make no span of their own. Under ``instrument()``
embedding models make ``embeddings {model}`` spans too.
"""

from typing import TYPE_CHECKING

from threadline._deferred import lazy_exports
from threadline.langchain._instrumentor import LangChainInstrumentor

if TYPE_CHECKING:
    from threadline.langchain._handler import CallbackHandler
    from threadline.langchain._instrument import instrument, instrumented_handler, uninstrument

__all__ = [
    "CallbackHandler",
    "LangChainInstrumentor",
    "instrument",
    "instrumented_handler",
    "uninstrument",
]

# LangChain is imported on first use of these, not by importing this package (which
# ``opentelemetry-instrument`` does at startup whether or not the application uses LangChain).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CallbackHandler": "threadline.langchain._handler",
        "instrument": "threadline.langchain._instrument",
        "instrumented_handler": "threadline.langchain._instrument",
        "uninstrument": "threadline.langchain._instrument",
    },
)
