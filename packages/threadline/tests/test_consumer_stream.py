"""ConsumerStream: a wrapper stream as its consumer gets it, which notes a consumer that drops
it unclosed while being cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from threadline._context import ConsumerStream, MarkBox, consumer_closed, watch_consumer
from threadline.testing.stalls import Stalls


def _counting(seen: list[str]) -> ConsumerStream:
    """A wrapper as an integration writes one: it watches its consumer while it runs."""

    async def wrapper(box: MarkBox) -> AsyncGenerator[int, None]:
        mark, _token = watch_consumer()
        box[0] = mark
        try:
            for item in range(3):
                try:
                    yield item
                except GeneratorExit:
                    consumer_closed(mark)
                    raise
        finally:
            seen.append({None: "ended", True: "stopped early", False: "cut short"}[mark[0]])
            box[0] = None

    return ConsumerStream(wrapper)


def _consume(how: str) -> list[str]:
    seen: list[str] = []
    stalls = Stalls(delay=0.01)

    async def consume() -> None:
        async for _item in _counting(seen):
            if how == "break":
                break
            if how == "timeout":
                await stalls.stall()

    async def main() -> None:
        await stalls.time_out(consume())
        await asyncio.sleep(0.05)  # the event loop closes a stream dropped unclosed

    asyncio.run(main())
    return seen


def test_a_stream_read_to_its_end_ended() -> None:
    assert _consume("read") == ["ended"]


def test_a_consumer_leaving_with_break_stopped_early() -> None:
    """A plain ``async for`` left with ``break`` drops the stream unclosed: the event loop
    closes it, and that is the consumer stopping."""
    assert _consume("break") == ["stopped early"]


def test_a_timeout_in_the_consumers_own_code_cut_the_stream_short() -> None:
    """The same drop, while a timeout around the consumer cancels it: cut short."""
    assert _consume("timeout") == ["cut short"]


def test_it_hands_on_what_the_consumer_sends_throws_and_closes() -> None:
    async def echo(box: MarkBox) -> AsyncGenerator[Any, Any]:
        received = yield "ready"
        while True:
            try:
                received = yield received
            except KeyError as error:
                received = f"caught {error.args[0]}"

    async def main() -> list[Any]:
        stream = ConsumerStream(echo)
        assert stream.__aiter__() is stream
        got = [await stream.__anext__(), await stream.asend("a")]
        got.append(await stream.athrow(KeyError("k")))
        await stream.aclose()
        return got

    assert asyncio.run(main()) == ["ready", "a", "caught k"]
