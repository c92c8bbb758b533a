"""threadline integration for LlamaIndex.

``instrument()`` registers a span handler and an event handler on LlamaIndex's root
instrumentation dispatcher, so every LlamaIndex call in the process is traced::

    import threadline.llamaindex

    threadline.llamaindex.instrument()

LLM calls become ``chat``/``text_completion`` spans, embeddings ``embeddings``, retrievers
``retrieval``, query and chat engines and workflows ``invoke_workflow``, agents
``invoke_agent`` with ``execute_tool`` children. Other LlamaIndex steps (node parsing,
synthesis, reranking) are left out unless ``verbose=True``, which adds them as plain INTERNAL
spans. ``uninstrument()`` removes the handlers.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from threadline.llamaindex._handler import EventHandler, SpanHandler, Tracker

__all__ = ["LlamaIndexInstrumentor", "instrument", "is_instrumented", "uninstrument"]

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


class LlamaIndexInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry instrumentor entry point (``opentelemetry-instrument`` finds it through the
    ``opentelemetry_instrumentor`` entry-point group). ``instrument(verbose=True)`` passes on."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("llama-index-core >= 0.12",)

    def _instrument(self, **kwargs: Any) -> None:
        instrument(verbose=bool(kwargs.get("verbose", False)))

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
