"""Attaching and detaching OpenTelemetry contexts without ever leaving one attached or logging
"Failed to detach context".

``opentelemetry.context.detach`` logs an error when a token is reset from another thread or
task (the token belongs to the ``contextvars.Context`` it was created in). Callback-driven
frameworks end runs wherever they like, so threadline resets the token itself and treats a
foreign context as "nothing to undo here".

The runtime context is looked up on every call, never kept: other libraries replace
``opentelemetry.context._RUNTIME_CONTEXT`` after import (Sentry's OpenTelemetry integration
does), and a token must be reset in the runtime context that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from threadline._failopen import report


def attach(ctx: Context) -> Token[Context]:
    """Make ``ctx`` current; undo with :func:`detach` (exposed as
    ``threadline.attach_context``)."""
    return otel_context._RUNTIME_CONTEXT.attach(ctx)  # what otel_context.attach does


def detach(token: Token[Context]) -> bool:
    """Reset ``token``; returns False (silently) when it belongs to another context or was
    already used (exposed as ``threadline.detach_context``)."""
    try:
        otel_context._RUNTIME_CONTEXT.detach(token)
    except (ValueError, RuntimeError):
        return False
    return True


def task_cancelling() -> bool | None:
    """Whether the current asyncio task is being cancelled; None where Python cannot tell
    (3.10 has no ``Task.cancelling``) or outside a task. Integrations use it to tell a consumer
    that stopped reading a stream from one that a timeout cut short."""
    task = asyncio.current_task() if asyncio._get_running_loop() is not None else None
    cancelling = getattr(task, "cancelling", None)
    return cancelling() > 0 if callable(cancelling) else None


def every_task_cancelled() -> bool:
    """Whether every other task of the running loop is being cancelled too, as ``asyncio.run``
    cancels the tasks left when its main coroutine returns: a cancellation of this task that
    no consumer asked for, though :func:`task_cancelling` alone cannot tell it from one. Only
    for a task known to be cancelling (it looks at every task). A consumer that is being
    cancelled itself and stops reading in its cleanup, with no other task in the loop, looks
    the same."""
    current = asyncio.current_task()
    return all(task is current or _cancelling(task) for task in asyncio.all_tasks())


def _cancelling(task: asyncio.Task[object]) -> bool:
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return callable(cancelling) and cancelling() > 0


def drained_by_cancelled_task() -> bool:
    """Whether the task that cancelled the current one waits for it to unwind (through
    ``gather``, as a framework's cancel-and-drain does) while being cancelled itself: a
    framework that tears down the task running a run's work as its caller is cancelled (a
    timeout around the caller) cut that work short. One that does so because its caller stopped
    early did not, nor does a caller already being cancelled that awaits the task directly in
    its cleanup. Only for a task known to be cancelling (it looks at every task)."""
    try:
        current = asyncio.current_task() if asyncio._get_running_loop() is not None else None
        if current is None:
            return False
        for task in asyncio.all_tasks():
            waiting_on = getattr(task, "_fut_waiter", None)
            children = getattr(waiting_on, "_children", None)  # a gather's future lists them
            if (
                type(children) is list
                and any(child is current for child in children)
                and _cancelling(task)
            ):
                return True
    except Exception as error:  # noqa: BLE001 - fail-open: read as no such caller
        report("threadline.drained_by_cancelled_task", error)
    return False


# The mark of the stream whose consumer may close it early (see watch_consumer): None while
# the consumer reads, True once it closed the stream, False once a cancellation of the
# consumer (a timeout around it) cut the stream short.
_consumer_mark: ContextVar[list[bool | None] | None] = ContextVar(
    "threadline_consumer_mark", default=None
)


def watch_consumer() -> tuple[list[bool | None], Token[list[bool | None] | None]]:
    """Start noting whether the consumer of a stream closes it before the end. A framework
    that runs the stream's work in tasks of its own (they copy the context, so share the mark)
    cancels them when the consumer closes it; with the mark set, a run that sees that
    cancellation ends as stopped early (:func:`closed_by_consumer`), not failed. Set the mark
    with :func:`consumer_closed`; undo with :func:`unwatch_consumer`."""
    mark: list[bool | None] = [None]
    return mark, _consumer_mark.set(mark)


def consumer_closed(mark: list[bool | None]) -> None:
    """The consumer closed the stream, or stopped waiting for it: stopped early, unless the
    consumer is itself being cancelled (a timeout around it), in which case the work was cut
    short (:func:`cut_short_by_consumer`), and fails. The first call settles it."""
    if mark[0] is None:
        mark[0] = task_cancelling() is False


def unwatch_consumer(token: Token[list[bool | None] | None]) -> None:
    with contextlib.suppress(ValueError):  # closed from another task: nothing to undo here
        _consumer_mark.reset(token)


def closed_by_consumer() -> bool:
    """Whether this context belongs to a stream its consumer closed (see watch_consumer)."""
    mark = _consumer_mark.get()
    return mark is not None and mark[0] is True


def cut_short_by_consumer() -> bool:
    """Whether this context belongs to a stream whose consumer was cancelled (a timeout around
    it) before the stream ended: the framework's cancellation of the stream's work is then a
    failure of that work, wherever it was."""
    mark = _consumer_mark.get()
    return mark is not None and mark[0] is False


async def close_inner(stream: object) -> None:
    """Close the async iterator a wrapper of ours iterates, as the wrapper closes. Not one that
    is being closed already: at its shutdown the event loop closes every async generator left
    open, the inner one maybe before its wrapper, and a second ``aclose()`` of a generator
    still closing raises ``RuntimeError`` (the loop logs it as an error of the app)."""
    if getattr(stream, "ag_running", False):
        return
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


# What a wrapper stream shares with the ConsumerStream handed out for it: the mark it watches
# (see watch_consumer) while it runs, None before and after.
MarkBox = list[list[bool | None] | None]


class ConsumerStream(AsyncGenerator[Any, Any]):
    """A wrapper async generator of ours as its consumer gets it. A consumer that drops a
    stream without closing it (a plain ``async for`` that a timeout leaves in the consumer's
    own code) leaves the closing to the event loop, later and in a task of its own, where
    nothing tells a timeout from a ``break``. Dropped while its consumer is being cancelled,
    this marks the stream cut short first (see :func:`consumer_closed`).

    It holds the generator and the box; the generator holds the box only (were it to hold
    this, the two would wait for the cycle collector, in whatever context that runs)."""

    __slots__ = ("_box", "_stream")

    def __init__(self, make: Callable[[MarkBox], AsyncGenerator[Any, Any]]) -> None:
        self._box: MarkBox = [None]
        self._stream = make(self._box)

    def __aiter__(self) -> ConsumerStream:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Any]:
        return self._stream.__anext__()

    def asend(self, value: Any) -> Coroutine[Any, Any, Any]:
        return self._stream.asend(value)

    def athrow(self, *args: Any) -> Coroutine[Any, Any, Any]:
        return self._stream.athrow(*args)

    def aclose(self) -> Coroutine[Any, Any, None]:
        return self._stream.aclose()

    def __del__(self) -> None:
        mark = self._box[0]
        if mark is not None and mark[0] is None and task_cancelling() is True:
            mark[0] = False  # before the event loop closes the generator, elsewhere
