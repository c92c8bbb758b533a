"""The ``opentelemetry_instrumentor`` entry point. Loading it does not import LlamaIndex."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from threadline._deferred import DeferredInstrumentation

__all__ = ["LlamaIndexInstrumentor"]

_deferred = DeferredInstrumentation(
    "llama_index.core",
    instrument="threadline.llamaindex._instrument:instrument",
    uninstrument="threadline.llamaindex._instrument:uninstrument",
    options=("verbose",),
)


class LlamaIndexInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry instrumentor entry point (``opentelemetry-instrument`` finds it through the
    ``opentelemetry_instrumentor`` entry-point group). ``instrument(verbose=True)`` passes on;
    the handlers are registered when LlamaIndex is imported (at once if it already is)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("llama-index-core >= 0.12",)

    def _instrument(self, **kwargs: Any) -> None:
        _deferred.enable(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        _deferred.disable()
