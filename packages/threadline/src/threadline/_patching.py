"""Replacing a framework's functions where it offers no hook, in a way that can be undone."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import threading
import warnings
from collections.abc import Callable
from types import CodeType
from typing import Any


class Patches:
    """Attribute replacements (functions of classes or modules) that can be undone exactly.

    :meth:`undo` puts an attribute back only while it still holds the replacement, so a patch
    someone applied on top of ours is left in place. Thread-safe.
    """

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any, Any]] = []
        self._lock = threading.Lock()

    def replace(self, target: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Set ``target.name`` to ``make(original)``."""
        with self._lock:
            original = getattr(target, name)
            replacement = _keeping_deprecation(original, make)
            setattr(target, name, replacement)
            self._done.append((target, name, original, replacement))

    def replace_in(
        self, module: str, owner: str | None, name: str, make: Callable[[Any], Any]
    ) -> None:
        """:meth:`replace` on ``module.owner`` (or on the module itself when ``owner`` is None)."""
        target: Any = importlib.import_module(module)
        if owner is not None:
            target = getattr(target, owner)
        self.replace(target, name, make)

    def undo(self) -> None:
        """Put every replaced attribute back, latest first."""
        with self._lock:
            while self._done:
                target, name, original, replacement = self._done.pop()
                if getattr(target, name, None) is replacement:
                    setattr(target, name, original)

    def __len__(self) -> int:
        return len(self._done)


def _deprecated_wrapper_codes() -> set[CodeType]:
    """The code of the wrapper that PEP 702's ``@deprecated`` puts around a function
    (typing_extensions', and warnings' from Python 3.13), where either is loaded: one code
    object for every function it marks."""
    codes: set[CodeType] = set()
    for module in ("typing_extensions", "warnings"):
        deprecated = getattr(sys.modules.get(module), "deprecated", None)
        try:
            codes.add(deprecated("probe")(lambda: None).__code__)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - absent, or a form we do not know
            continue
    return codes


def _keeping_deprecation(original: Any, make: Callable[[Any], Any]) -> Any:
    """``make(original)``, but for a function marked ``@deprecated`` (mcp 1.x's websocket
    transports): that one warns from its wrapper, naming its caller, which would be our
    replacement, and the default filters hide a DeprecationWarning that is not the app's. So
    ``make`` gets the function inside, and the replacement warns as the wrapper did, naming the
    app's line. Only a plain function is unwrapped (not a bound method, nor a deprecated
    class's ``__new__``), and only from the decorator's own wrapper."""
    if not inspect.isfunction(original) or original.__code__ not in _deprecated_wrapper_codes():
        return make(original)
    inner = getattr(original, "__wrapped__", None)
    if not callable(inner) or inspect.iscoroutinefunction(inner):
        return make(original)
    cells = dict(zip(original.__code__.co_freevars, original.__closure__ or (), strict=False))
    try:
        message = cells["msg"].cell_contents
        category = cells["category"].cell_contents
        level = cells["stacklevel"].cell_contents + 1
    except (KeyError, ValueError, TypeError):  # a @deprecated we do not know: leave it whole
        return make(original)
    replaced = make(inner)

    @functools.wraps(replaced)
    def warning_first(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(message, category=category, stacklevel=level)
        return replaced(*args, **kwargs)

    warning_first.__deprecated__ = message  # type: ignore[attr-defined]
    return warning_first
