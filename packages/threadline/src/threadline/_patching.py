"""Replacing a framework's functions where it offers no hook, in a way that can be undone."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
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
            replacement = make(original)
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
