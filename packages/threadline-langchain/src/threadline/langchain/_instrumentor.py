"""The ``opentelemetry_instrumentor`` entry point. Loading it does not import LangChain."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from threadline._deferred import DeferredInstrumentation

__all__ = ["LangChainInstrumentor"]

_deferred = DeferredInstrumentation(
    "langchain_core",
    instrument="threadline.langchain._instrument:instrument",
    uninstrument="threadline.langchain._instrument:uninstrument",
    options=("verbose", "agents", "workflows"),
)


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry instrumentor for LangChain and LangGraph (``opentelemetry-instrument``
    loads it through the ``opentelemetry_instrumentor`` entry point).

    ``LangChainInstrumentor().instrument(verbose=..., agents=..., workflows=...)`` takes the
    options of :func:`threadline.langchain.instrument`, and applies them when LangChain is
    imported (at once if it already is).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langchain-core >= 0.3",)

    def _instrument(self, **kwargs: Any) -> None:
        _deferred.enable(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        _deferred.disable()
