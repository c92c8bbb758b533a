"""``instrument()`` and the ``opentelemetry_instrumentor`` entry point. Loading this module does
not import Pydantic AI: agents are instrumented when it is imported (at once if it already is)."""

from __future__ import annotations

from threadline._deferred import DeferredInstrumentation
from threadline._instrumentor import DeferredInstrumentor

__all__ = ["PydanticAIInstrumentor", "instrument", "uninstrument"]

_deferred = DeferredInstrumentation(
    "pydantic_ai",
    instrument="threadline.pydantic_ai._instrument:instrument_agents",
    uninstrument="threadline.pydantic_ai._instrument:uninstrument_agents",
)


class PydanticAIInstrumentor(DeferredInstrumentor):
    """OpenTelemetry instrumentor: every Pydantic AI agent run gets
    :class:`threadline.pydantic_ai.Tracing`."""

    deferred = _deferred
    requirements = ("pydantic-ai-slim >= 1.71.0",)


def instrument() -> None:
    """Trace every agent run, including agents created before this call. Idempotent."""
    instrumentor = PydanticAIInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def uninstrument() -> None:
    """Undo :func:`instrument` (agents given ``Tracing()`` explicitly keep it). Idempotent."""
    instrumentor = PydanticAIInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
