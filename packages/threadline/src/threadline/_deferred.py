"""Loading an integration costs nothing until the application imports its framework.

``opentelemetry-instrument`` loads every installed ``opentelemetry_instrumentor`` entry point
at startup. An integration whose package imported its framework there would make every
application pay for every framework installed, used or not (with all four, seconds of startup
and a hundred megabytes). So an integration's package exports its public names lazily
(:func:`lazy_exports`), and its instrumentor only arms a :class:`DeferredInstrumentation`,
which instruments the framework when, and if, the framework is imported.

The core package exports its own names the same way, so an entry point imports only the few
core modules it uses. The import hook is wrapt's, imported when a hook is first registered.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import Any

from threadline._failopen import report

__all__ = ["DeferredInstrumentation", "lazy_exports", "when_imported"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names live in submodules
    (PEP 562): ``exports`` maps each name to where it is defined, imported on first use:
    ``"module"`` (the same name in that module), ``"module:attribute"`` (another name), or the
    package's submodule of that name itself."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where.partition(":")
        imported = importlib.import_module(module)
        if _pending:  # the framework was first imported by that import: instrument it now
            _instrument_pending()
        value = imported if module == f"{package}.{name}" else getattr(imported, attribute or name)
        setattr(sys.modules[package], name, value)  # later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__


def when_imported(module: str, action: Callable[[ModuleType], None], *, site: str) -> None:
    """Call ``action(module)`` once ``module`` is imported: at once if it already is, else
    right after its import completes. An error in ``action`` is reported, never raised into the
    import. The hook cannot be removed: an action that may be called off checks for itself."""
    import wrapt

    def hook(imported: ModuleType) -> None:
        try:
            action(imported)
        except Exception as error:  # noqa: BLE001 - the application's import must go on
            report(site, error)

    wrapt.register_post_import_hook(hook, module)


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


class DeferredInstrumentation:
    """Instrument ``framework`` once it is imported (at once if it already is).

    ``instrument`` and ``uninstrument`` name functions as ``"module:function"``, imported only
    when called, so the module holding them may import the framework at its top. Both must be
    idempotent. Errors in them are reported, never raised into the import that triggered them.
    """

    def __init__(
        self,
        framework: str,
        *,
        instrument: str,
        uninstrument: str,
        options: Collection[str] = (),
    ) -> None:
        self.framework = framework
        self._instrument = instrument
        self._uninstrument = uninstrument
        self._option_names = frozenset(options)
        self._options: dict[str, Any] = {}
        self._enabled = False
        self._hooked = False
        self._lock = threading.Lock()

    def enable(self, options: Mapping[str, Any]) -> None:
        """Instrument the framework now if it is imported, else when it is. Of ``options``
        (an instrumentor's keyword arguments), those named at construction are passed on."""
        with self._lock:
            self._options = {k: v for k, v in options.items() if k in self._option_names}
            self._enabled = True
            first = not self._hooked
            self._hooked = True
        if first:
            # A disabled hook stays registered and does nothing.
            when_imported(self.framework, self._on_import, site=self._instrument)
        else:
            module = sys.modules.get(self.framework)
            if module is not None:
                try:
                    self._on_import(module)
                except Exception as error:  # noqa: BLE001 - never break the host application
                    report(self._instrument, error)

    def disable(self) -> None:
        """Undo :meth:`enable`: nothing happens on a later import, and a framework already
        instrumented is uninstrumented."""
        with self._lock:
            self._enabled = False
        if self.framework in sys.modules:
            try:
                _resolve(self._uninstrument)()
            except Exception as error:  # noqa: BLE001 - never break the host application
                report(self._uninstrument, error)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _on_import(self, module: ModuleType) -> None:
        with self._lock:
            if not self._enabled:
                return
            options = dict(self._options)
        try:
            instrument = _resolve(self._instrument)
        except (ImportError, AttributeError):
            # The framework's first import came from the integration's own module, still
            # being run (``from threadline.pydantic_ai import Tracing`` imports pydantic_ai):
            # its names are not defined yet. Instrument once that import is done.
            if not _initializing(self._instrument.partition(":")[0].rpartition(".")[0]):
                raise
            with _pending_lock:
                _pending[self] = None
            return
        instrument(**options)


# Deferred instrumentations whose framework was imported while their integration's module was
# still being imported (an ordered set): lazy_exports' __getattr__ runs them once it is.
_pending: dict[DeferredInstrumentation, None] = {}
_pending_lock = threading.Lock()


def _instrument_pending() -> None:
    with _pending_lock:
        pending = list(_pending)
        _pending.clear()
    for deferred in pending:
        module = sys.modules.get(deferred.framework)
        if module is None:
            continue
        try:
            deferred._on_import(module)  # still not done: pending again, for an outer import
        except Exception as error:  # noqa: BLE001 - never break the host application
            report(deferred._instrument, error)


def _initializing(package: str) -> bool:
    """Whether ``package`` or one of its modules is being imported (partly run)."""
    prefix = package + "."
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False) is True
        for name, module in list(sys.modules.items())
        if name == package or name.startswith(prefix)
    )
