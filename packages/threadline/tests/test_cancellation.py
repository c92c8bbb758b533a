"""How a task being cancelled tells who cancelled it: a caller tearing it down while being
cancelled itself (cut short), or one that stopped early or cleans up after its own
cancellation (not)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from threadline._context import drained_by_cancelled_task


async def _teardown(how: str) -> bool:
    """A worker task torn down by its caller; what the worker sees as it is cancelled."""
    seen: list[bool] = []
    started = asyncio.Event()
    parked = asyncio.Event()  # the caller waits on, where its cancellation lands

    async def worker() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(drained_by_cancelled_task())
            raise

    async def caller() -> None:
        task = asyncio.create_task(worker())
        await started.wait()
        if how == "stopped early":  # not cancelled itself: drains the worker it no longer needs
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return
        parked.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            task.cancel()
            if how == "drained":  # a framework's cancel-and-drain, then the caller's error
                await asyncio.gather(task, return_exceptions=True)
            else:  # "awaited": the caller's own cleanup awaits the task
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            raise

    main = asyncio.create_task(caller())
    if how != "stopped early":
        await parked.wait()
        main.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main
    return seen[0]


@pytest.mark.parametrize(
    ("how", "cut_short"), [("drained", True), ("stopped early", False), ("awaited", False)]
)
def test_a_task_drained_by_a_cancelled_caller_was_cut_short(how: str, cut_short: bool) -> None:
    assert asyncio.run(_teardown(how)) is cut_short


def test_outside_a_task_nothing_drains() -> None:
    assert drained_by_cancelled_task() is False


def test_a_future_of_another_shape_is_no_gather() -> None:
    """Another task may wait on any future, of a class of its own: never an error here."""

    class Odd(asyncio.Future[None]):
        _children = None

    async def main() -> bool:
        odd = Odd()

        async def wait_on_it() -> None:
            await odd

        waiting = asyncio.create_task(wait_on_it())
        await asyncio.sleep(0)
        try:
            return drained_by_cancelled_task()
        finally:
            odd.set_result(None)
            await waiting

    assert asyncio.run(main()) is False
