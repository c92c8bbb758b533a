"""Process-wide instrumentation: LangChain's configure hook gives every run the handler; embedding
models, which send no callbacks, have their ``embed_*`` methods wrapped; and the async entry points
that send no callback when cancelled are guarded, so their spans end and never stay current."""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any, cast

from threadline._failopen import report
from threadline.langchain._embeddings import instrument_embeddings, uninstrument_embeddings
from threadline.langchain._handler import CallbackHandler, guard_entry_points, unguard_entry_points

__all__ = ["instrument", "instrumented_handler", "uninstrument"]


class _HookVar:
    """What LangChain's configure hook reads: it only calls ``.get()``.

    A real ``ContextVar`` cannot be switched off for threads that already exist (their copies
    keep the old value, and new threads see its default), so the hook reads this switch instead:
    every callback manager created while it returns a handler gets that handler (inheritable,
    so nested runs too); after :func:`uninstrument` new runs get nothing and cost nothing.
    """

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: CallbackHandler | None = None

    def get(self, default: Any = None) -> CallbackHandler | None:
        return self.handler


_hook = _HookVar()
_registered = False
_lock = threading.Lock()


def instrument(
    *,
    verbose: bool = False,
    agents: Collection[str] = (),
    workflows: Collection[str] = (),
) -> CallbackHandler:
    """Trace every LangChain/LangGraph run in this process, and every call of an embedding
    model. Idempotent; calling it again only replaces the options. Returns the handler in use.

    A :class:`CallbackHandler` passed explicitly in a run's callbacks takes precedence over the
    global one (LangChain adds the hook's handler only when no handler of that class is present).
    """
    global _registered
    handler = CallbackHandler(verbose=verbose, agents=agents, workflows=workflows)
    with _lock:
        if not _registered:
            from langchain_core.tracers.context import register_configure_hook

            register_configure_hook(
                cast("ContextVar[Any]", _hook), inheritable=True, handle_class=CallbackHandler
            )
            _registered = True
        _hook.handler = handler
    try:
        instrument_embeddings()
    except Exception as error:  # noqa: BLE001 - runs are traced even if embeddings are not
        report("langchain.instrument_embeddings", error)
    guard_entry_points()  # the handler did already; explicit, as instrument() promises it
    return handler


def uninstrument() -> None:
    """Stop tracing runs started from now on (LangChain has no way to remove a configure hook,
    so the hook stays registered but hands out nothing); embedding models get their own
    methods back. Idempotent."""
    _hook.handler = None
    try:
        uninstrument_embeddings()
        unguard_entry_points()
    except Exception as error:  # noqa: BLE001
        report("langchain.uninstrument", error)


def instrumented_handler() -> CallbackHandler | None:
    """The handler :func:`instrument` installed, or None."""
    return _hook.handler
