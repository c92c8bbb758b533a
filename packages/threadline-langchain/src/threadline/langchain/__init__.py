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

from threadline.langchain._handler import CallbackHandler
from threadline.langchain._instrument import (
    LangChainInstrumentor,
    instrument,
    instrumented_handler,
    uninstrument,
)

__all__ = [
    "CallbackHandler",
    "LangChainInstrumentor",
    "instrument",
    "instrumented_handler",
    "uninstrument",
]
