"""Drives wrapper-style hooks (``async def hook(..., handler)``) in arbitrary interleavings.

Each call runs as its own asyncio task; its inner handler waits on a future that the test
resolves later (a result, an exception object) or the caller cancels the task. A call may
start inside another call's handler, in the context that handler saw, as a nested agent run,
a tool's MCP request or a parallel tool task would. Every call must come back with exactly
what its handler produced (or ``CancelledError``), run the handler exactly once (unless
cancelled before it), and leave its task's context as it found it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from threadline._runs import _SPAN_KEY, SUPPRESS_PROVIDER_SPANS_KEY, current_made_run

Hook = Callable[[Callable[..., Awaitable[Any]]], Awaitable[Any]]
"""Calls the hook under test with the given inner handler."""


def _stood_down(ctx: Context, before: dict[str, object]) -> bool:
    """Whether ``ctx`` (``before`` as it was) is the context of a run that ended while something
    covered it elsewhere: threadline then makes that context name the run's parent's span and
    its suppression of provider spans (``Run._stand_down``), so that what starts there goes
    beneath the parent. The only change threadline makes to a context it did not attach."""
    run = current_made_run(ctx)
    if run is None or not run.ended or trace.get_current_span(ctx) is run.span:
        return False
    changed = {key for key in {*before, *ctx} if before.get(key) is not ctx.get(key)}
    return changed <= {_SPAN_KEY, SUPPRESS_PROVIDER_SPANS_KEY}


class Call:
    __slots__ = ("entries", "expected", "gate", "inner", "task")

    def __init__(self, gate: asyncio.Future[Any]) -> None:
        self.gate = gate
        self.inner: contextvars.Context | None = None
        """The context the inner handler runs in, once it has been entered."""
        self.entries = 0
        self.expected: Any = None
        self.task: asyncio.Task[None] | None = None


class HookCalls:
    """Calls in flight on one private event loop, by key."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls: dict[object, Call] = {}
        self.problems: list[str] = []
        self.finished = 0

    def start(self, key: object, hook: Hook, *, within: object = None) -> bool:
        """Start ``hook`` as call ``key`` (in call ``within``'s handler context if that one is
        waiting in its handler). False when ``key`` is already in flight."""
        if key in self.calls:
            return False
        call = Call(self.loop.create_future())
        parent = self.calls.get(within)
        context = parent.inner.copy() if parent is not None and parent.inner else None

        async def handler(*args: Any, **kwargs: Any) -> Any:
            call.entries += 1
            call.inner = contextvars.copy_context()
            return await call.gate

        async def body() -> None:
            before_ctx = otel_context.get_current()
            before = dict(before_ctx)
            try:
                got: Any = await hook(handler)
                outcome: tuple[str, Any] = ("result", got)
            except BaseException as error:  # noqa: BLE001 - compared with what was expected
                outcome = ("raised", error)
            after_ctx = otel_context.get_current()
            after = dict(after_ctx)
            if after_ctx is not before_ctx:
                self.problems.append(f"{key!r}: context changed: {before} -> {after}")
            elif after != before and not _stood_down(after_ctx, before):
                self.problems.append(f"{key!r}: context altered: {before} -> {after}")
            cancelled = outcome[0] == "raised" and isinstance(outcome[1], asyncio.CancelledError)
            if call.entries != 1 and not (cancelled and call.entries == 0):
                self.problems.append(f"{key!r}: the user's handler ran {call.entries} times")
            expected = call.expected
            if expected is not None and outcome[0] == expected[0]:
                same = outcome[1] is expected[1] or (
                    expected[0] == "raised" and isinstance(outcome[1], asyncio.CancelledError)
                    and isinstance(expected[1], asyncio.CancelledError)
                )  # fmt: skip
                if not same:
                    self.problems.append(f"{key!r}: got {outcome}, expected {expected}")
            elif expected is not None:
                self.problems.append(f"{key!r}: got {outcome}, expected {expected}")
            else:
                self.problems.append(f"{key!r}: came back with {outcome} before its handler did")
            self.finished += 1

        call.task = self.loop.create_task(body(), context=context)
        self.calls[key] = call
        self.settle()
        return True

    def resolve(self, key: object, outcome: tuple[str, Any]) -> None:
        """The handler of ``key`` returns (``("result", value)``) or raises
        (``("raised", error)``); ``("cancel", None)`` cancels the call's task instead."""
        call = self.calls.get(key)
        if call is None or call.task is None or call.task.done() or call.expected is not None:
            return
        kind, value = outcome
        if kind == "cancel":
            call.expected = ("raised", asyncio.CancelledError())
            call.task.cancel()
        elif call.inner is None or call.gate.done():
            return  # the hook has not reached the handler (or skipped it)
        elif kind == "result":
            call.expected = outcome
            call.gate.set_result(value)
        else:
            call.expected = outcome
            call.gate.set_exception(value)
        self.settle()

    def settle(self) -> None:
        """Let every task run until it waits on its gate; forget the finished ones."""

        async def spin() -> None:
            for _ in range(8):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())
        for key, call in list(self.calls.items()):
            if call.task is not None and call.task.done():
                del self.calls[key]

    def close(self) -> None:
        """Cancel whatever is still in flight (the caller gives up), then close the loop."""
        for call in self.calls.values():
            if call.task is not None and not call.task.done():
                call.expected = ("raised", asyncio.CancelledError())
                call.task.cancel()
        self.settle()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        assert not self.calls, f"calls still running after cancellation: {list(self.calls)}"
