"""The ``opentelemetry_instrumentor`` entry point. Loading it does not import LlamaIndex."""

from __future__ import annotations

from threadline._deferred import DeferredInstrumentation
from threadline._instrumentor import DeferredInstrumentor

__all__ = ["LlamaIndexInstrumentor"]

_deferred = DeferredInstrumentation(
    "llama_index.core",
    instrument="threadline.llamaindex._instrument:instrument",
    uninstrument="threadline.llamaindex._instrument:uninstrument",
    options=("verbose",),
)


class LlamaIndexInstrumentor(DeferredInstrumentor):
    """OpenTelemetry instrumentor entry point (``opentelemetry-instrument`` finds it through the
    ``opentelemetry_instrumentor`` entry-point group). ``instrument(verbose=True)`` passes on;
    the handlers are registered when LlamaIndex is imported (at once if it already is)."""

    deferred = _deferred
    requirements = ("llama-index-core >= 0.12",)
