"""The base of every integration's ``opentelemetry_instrumentor`` entry point.

Imported by the integrations only: they depend on ``opentelemetry-instrumentation``, the core
does not.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Final

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from threadline import config
from threadline._deferred import DeferredInstrumentation

__all__ = ["DeferredInstrumentor"]

_PROVIDER_OPTIONS: Final = ("tracer_provider", "meter_provider", "logger_provider")


class DeferredInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """An instrumentor that instruments its framework when the framework is imported (at once
    if it already is), so loading the entry point costs an application that never imports the
    framework nothing. ``instrument(**options)`` passes the options the deferred
    instrumentation names.

    ``tracer_provider``, ``meter_provider`` and ``logger_provider``, the keyword arguments of
    OpenTelemetry's instrumentors, are honoured: threadline has one configuration for every
    integration, so they apply to all of them (as :func:`threadline.configure` would). Other
    keyword arguments are ignored, as a distro may pass its own to every instrumentor."""

    deferred: ClassVar[DeferredInstrumentation]
    requirements: ClassVar[tuple[str, ...]]

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.requirements

    def _instrument(self, **kwargs: Any) -> None:
        providers = {k: kwargs[k] for k in _PROVIDER_OPTIONS if kwargs.get(k) is not None}
        if providers:
            config.configure(**providers)
        self.deferred.enable(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        self.deferred.disable()
