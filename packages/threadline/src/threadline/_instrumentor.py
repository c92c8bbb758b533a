"""The base of every integration's ``opentelemetry_instrumentor`` entry point.

Imported by the integrations only: they depend on ``opentelemetry-instrumentation``, the core
does not.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from threadline._deferred import DeferredInstrumentation

__all__ = ["DeferredInstrumentor"]


class DeferredInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """An instrumentor that instruments its framework when the framework is imported (at once
    if it already is), so loading the entry point costs an application that never imports the
    framework nothing. ``instrument(**options)`` passes the options the deferred
    instrumentation names."""

    deferred: ClassVar[DeferredInstrumentation]
    requirements: ClassVar[tuple[str, ...]]

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.requirements

    def _instrument(self, **kwargs: Any) -> None:
        self.deferred.enable(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        self.deferred.disable()
