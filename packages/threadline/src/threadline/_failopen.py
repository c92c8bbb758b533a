"""Fail-open: a bug inside threadline is logged once per site and never reaches the user's code."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger("threadline")

_P = ParamSpec("_P")
_R = TypeVar("_R")

_reported: set[str] = set()
_reported_lock = threading.Lock()


def report(site: str, error: BaseException) -> None:
    """Log an internal error: a warning with traceback the first time per site, debug after."""
    with _reported_lock:
        first = site not in _reported
        _reported.add(site)
    if first:
        logger.warning(
            "threadline: internal error in %s; telemetry for this call may be incomplete "
            "(further errors here are logged at debug level)",
            site,
            exc_info=error,
        )
    else:
        logger.debug("threadline: internal error in %s", site, exc_info=error)


def reported_sites() -> frozenset[str]:
    with _reported_lock:
        return frozenset(_reported)


def guarded(
    default: Any = None, *, site: str | None = None
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a hook so an ``Exception`` inside it is reported and ``default`` returned.

    Only ``Exception`` is caught: ``KeyboardInterrupt``/``SystemExit``/cancellation pass through.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        name = site or f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - fail-open is the point
                report(name, error)
                return default  # type: ignore[no-any-return]

        return wrapper

    return decorate
