"""The ``opentelemetry_instrumentor`` entry point. Loading it does not import LangChain."""

from __future__ import annotations

from threadline._deferred import DeferredInstrumentation
from threadline._instrumentor import DeferredInstrumentor

__all__ = ["LangChainInstrumentor"]

_deferred = DeferredInstrumentation(
    "langchain_core",
    instrument="threadline.langchain._instrument:instrument",
    uninstrument="threadline.langchain._instrument:uninstrument",
    options=("verbose", "agents", "workflows"),
)


class LangChainInstrumentor(DeferredInstrumentor):
    """OpenTelemetry instrumentor for LangChain and LangGraph (``opentelemetry-instrument``
    loads it through the ``opentelemetry_instrumentor`` entry point).

    ``LangChainInstrumentor().instrument(verbose=..., agents=..., workflows=...)`` takes the
    options of :func:`threadline.langchain.instrument`, and applies them when LangChain is
    imported (at once if it already is).
    """

    deferred = _deferred
    requirements = ("langchain-core >= 0.3",)
