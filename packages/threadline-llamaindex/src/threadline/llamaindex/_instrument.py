"""Registering threadline's handlers on LlamaIndex's root instrumentation dispatcher."""

from __future__ import annotations

import threading

from threadline.llamaindex._handler import EventHandler, SpanHandler, Tracker

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()
_installed: tuple[SpanHandler, EventHandler] | None = None


def instrument(*, verbose: bool = False) -> None:
    """Register threadline's handlers on LlamaIndex's root dispatcher. Idempotent: once
    registered, a call only sets ``verbose``."""
    global _installed
    from llama_index.core.instrumentation import get_dispatcher

    with _lock:
        if _installed is not None:
            tracker = _installed[0]._tracker
            if tracker.verbose != verbose:
                tracker.verbose = verbose
                tracker.kinds.clear()  # spans are classified by it
            return
        tracker = Tracker(verbose=verbose)
        span_handler, event_handler = SpanHandler(tracker), EventHandler(tracker)
        dispatcher = get_dispatcher()
        dispatcher.add_span_handler(span_handler)
        dispatcher.add_event_handler(event_handler)
        _installed = (span_handler, event_handler)


def uninstrument() -> None:
    """Remove the handlers :func:`instrument` registered. Runs still open end on their own
    (threadline's reaper ends abandoned ones)."""
    global _installed
    from llama_index.core.instrumentation import get_dispatcher

    with _lock:
        if _installed is None:
            return
        span_handler, event_handler = _installed
        _installed = None
        dispatcher = get_dispatcher()
        dispatcher.span_handlers[:] = [h for h in dispatcher.span_handlers if h is not span_handler]
        dispatcher.event_handlers[:] = [
            h for h in dispatcher.event_handlers if h is not event_handler
        ]


def is_instrumented() -> bool:
    return _installed is not None
