"""Stalls: a timeout that lands only once the call beneath it stalled."""

from __future__ import annotations

import asyncio
import threading

import pytest

from threadline.testing.stalls import Stalls


def test_the_timeout_waits_for_the_stall() -> None:
    stalls = Stalls(delay=0.01)
    steps: list[str] = []

    async def slow_start() -> None:
        await asyncio.sleep(0.2)  # longer than the delay: a fixed timeout would land here
        steps.append("started")
        await stalls.stall()

    asyncio.run(stalls.time_out(slow_start()))
    assert steps == ["started"]


def test_the_timeout_lands_after_the_given_stall() -> None:
    stalls = Stalls(delay=0.01)
    steps: list[str] = []

    async def two_stalls() -> None:
        for step in ("first", "second"):
            steps.append(step)
            stalls.stalled()
            await asyncio.sleep(0.1)
        steps.append("done")

    asyncio.run(stalls.time_out(two_stalls(), stalls=2))
    assert steps == ["first", "second"]


def test_a_stall_in_another_thread_lands_the_timeout() -> None:
    stalls = Stalls(delay=0.01)

    async def in_a_thread() -> None:
        threading.Thread(target=stalls.stalled).start()
        await asyncio.sleep(5)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TimeoutError):
            async with stalls.timeout():
                await in_a_thread()
        return loop.time() - began

    assert asyncio.run(main()) < 4


def test_without_a_stall_the_fallback_lands() -> None:
    stalls = Stalls(fallback=0.05)

    async def never_stalls() -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with stalls.timeout():
                await never_stalls()

    asyncio.run(main())


def test_a_stall_after_the_block_changes_nothing() -> None:
    stalls = Stalls(delay=0.0)

    async def main() -> None:
        async with stalls.timeout():
            pass
        stalls.stalled()  # no timeout is waiting
        await asyncio.sleep(0.01)

    asyncio.run(main())
