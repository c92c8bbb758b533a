"""Timeouts that land once the call under test has stalled.

A test of a timeout around a call wants the timeout to land while the call is under way. A
fixed timeout from the start can, on a busy host, land before the call even began: the test
then tests something else, or fails. Here the stalling code says when it stalls
(:meth:`Stalls.stall`), and the timeout lands a moment after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["Stalls"]

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - the tests run on Python 3.11 and later

    def _timeout(delay: float | None) -> Any:
        raise RuntimeError("Stalls needs asyncio.timeout (Python 3.11)")


class Stalls:
    """Calls that stall until cancelled, and timeouts that land ``delay`` seconds after they
    stalled (``fallback`` seconds at the latest, so a call that never stalls still ends)."""

    def __init__(self, delay: float = 0.05, fallback: float = 30.0) -> None:
        self.delay = delay
        self.fallback = fallback
        self._watchers: list[Callable[[], None]] = []

    def stalled(self) -> None:
        """Note that a call stalls now. Safe to call from any thread."""
        for watcher in list(self._watchers):
            watcher()

    async def stall(self, seconds: float = 60.0) -> None:
        """Stall: note it, then wait ``seconds`` (longer than any test waits)."""
        self.stalled()
        await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def timeout(self, stalls: int = 1) -> AsyncIterator[None]:
        """A timeout around the block that lands ``delay`` after the ``stalls``-th stall noted
        while the block runs. Raises ``TimeoutError`` as ``asyncio.timeout`` does."""
        loop = asyncio.get_running_loop()
        seen = 0
        armed = True
        async with _timeout(self.fallback) as deadline:

            def land() -> None:
                if armed:  # the block may have ended before the loop ran this
                    deadline.reschedule(loop.time() + self.delay)

            def watcher() -> None:
                nonlocal seen
                seen += 1
                if seen == stalls:
                    loop.call_soon_threadsafe(land)

            self._watchers.append(watcher)
            try:
                yield
            finally:
                armed = False
                self._watchers.remove(watcher)

    async def time_out(self, call: Awaitable[Any], stalls: int = 1) -> None:
        """Await ``call`` under :meth:`timeout`; its ``TimeoutError`` is expected."""
        with contextlib.suppress(TimeoutError):
            async with self.timeout(stalls):
                await call
