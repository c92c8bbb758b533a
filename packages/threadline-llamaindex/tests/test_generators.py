"""Generator functions LlamaIndex spans (as ``stream_structured_predict``): their span exits
before the generator runs; the root they make ends with the generator, not before."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import MockLLM

import threadline.llamaindex
from threadline import config
from threadline._registry import open_runs
from threadline.llamaindex._handler import Tracker
from threadline.testing import Telemetry

dispatcher = get_dispatcher(__name__)


class Reader:
    def __init__(self) -> None:
        self.llm = MockLLM(max_tokens=3)

    @dispatcher.span
    def two_streams(self) -> Iterator[Any]:
        yield from self.llm.stream_complete("a")
        yield from self.llm.stream_complete("b")
        yield self.llm.complete("c")

    @dispatcher.span
    def one_call(self) -> Iterator[Any]:
        yield self.llm.complete("a")

    @dispatcher.span
    def one_call_then_cleanup(self, closed_on: list[str]) -> Iterator[Any]:
        try:
            yield self.llm.complete("a")
        finally:
            closed_on.append(threading.current_thread().name)


def _tracker() -> Tracker:
    installed = threadline.llamaindex._instrument._installed
    assert installed is not None
    return installed[0]._tracker


def test_root_outlasts_every_stream_and_call_of_its_generator(telemetry: Telemetry) -> None:
    """A generator that opens a second model stream, then makes a call: all nest in its root,
    which ends when the generator is done, as its last call did."""
    stream = Reader().two_streams()
    assert len(list(stream)) == 7
    read = time.time_ns()
    del stream
    gc.collect()
    assert telemetry.tree() == (
        "invoke_workflow Reader [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]"
    )
    root = next(span for span in telemetry.spans() if span.name.startswith("invoke_workflow"))
    calls = [span for span in telemetry.spans() if span is not root]
    assert all(root.start_ns <= call.start_ns and call.end_ns <= root.end_ns for call in calls)
    assert root.end_ns <= read  # as its last call, not when the generator was released
    assert len(open_runs) == 0
    tracker = _tracker()
    assert (tracker.deferred_roots, tracker.deferred_spans, tracker.deferred_runs) == ({}, {}, {})


def test_generator_read_to_its_end_and_held_ends_its_root(telemetry: Telemetry) -> None:
    """A generator read to its end that the application keeps: its root ends by the next call
    (no event tells the generator's end), as its last call did, not when it is released."""
    reader = Reader()
    stream = reader.one_call()
    list(stream)
    reader.llm.complete("next")
    assert telemetry.tree() == (
        "invoke_workflow Reader [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]\n"
        "---\n"
        "text_completion unknown [INTERNAL]"
    )
    root, call, later = (
        next(span for span in telemetry.spans() if span.name.startswith("invoke_workflow")),
        *[span for span in telemetry.spans() if span.name.startswith("text_completion")],
    )
    assert call.end_ns <= root.end_ns <= later.start_ns
    assert len(open_runs) == 0
    assert _tracker().deferred_runs == {}
    del stream


def test_generator_read_to_its_end_and_held_is_ended_by_the_reaper(
    telemetry: Telemetry,
) -> None:
    """A generator read to its end that the application keeps, with no call after it: the
    reaper's thread ends its root (as its last call did) once it wakes, so the trace is not held
    back until some later call that may never come."""
    previous = config.current()
    config.configure(run_ttl_seconds=4.0)  # the reaper wakes every second
    try:
        stream = Reader().one_call()
        list(stream)
        read = time.time_ns()
        deadline = time.monotonic() + 10
        while len(telemetry.spans()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert telemetry.tree() == (
            "invoke_workflow Reader [INTERNAL]\n  text_completion unknown [INTERNAL]"
        )
        root, call = (
            next(span for span in telemetry.spans() if span.name.startswith(name))
            for name in ("invoke_workflow", "text_completion")
        )
        assert call.end_ns <= root.end_ns <= read  # as its last call, not when swept
        assert root.status_code == "UNSET"
        assert len(open_runs) == 0
        assert _tracker().deferred_runs == {}
        del stream
    finally:
        config.restore(previous)


def test_a_generator_let_go_while_the_reaper_looks_is_closed_on_the_applications_thread(
    telemetry: Telemetry,
) -> None:
    """The application lets go of a generator it has not read to its end at the moment the
    reaper's sweep holds it: the generator's cleanup runs on the application's thread (at its
    next call), not on the reaper's."""
    closed_on: list[str] = []
    reader = Reader()
    stream = reader.one_call_then_cleanup(closed_on)
    next(stream)
    tracker = _tracker()
    [entry] = tracker.deferred_runs.values()
    held, weak = [stream], entry.generator
    del stream
    entry.generator = lambda: held.pop() if held else weak()  # type: ignore[assignment]
    sweeper = threading.Thread(target=tracker.sweep_deferred, name="threadline-reaper")
    sweeper.start()
    sweeper.join()
    assert held == []  # the sweep took the last reference, and kept it
    assert closed_on == []
    reader.llm.complete("next")
    assert closed_on == [threading.current_thread().name]
    assert telemetry.tree() == (
        "invoke_workflow Reader [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]\n"
        "---\n"
        "text_completion unknown [INTERNAL]"
    )
    assert len(open_runs) == 0
    assert (tracker.deferred_roots, tracker.deferred_runs, tracker._let_go) == ({}, {}, [])


class _Counting(dict[int, Any]):
    """A dict that counts the passes over all its entries."""

    passes = 0

    def values(self) -> Any:
        _Counting.passes += 1
        return super().values()

    def items(self) -> Any:
        _Counting.passes += 1
        return super().items()

    def __iter__(self) -> Any:
        _Counting.passes += 1
        return super().__iter__()


def test_finding_a_deferred_root_does_not_go_over_the_others(telemetry: Telemetry) -> None:
    """Calls look up the deferred root of the generator they run in by their stack, not by
    going over every deferred root (many may be held unread); those of generators that are
    gone leave nothing behind."""
    tracker = _tracker()
    tracker.deferred_roots = _Counting()
    reader = Reader()
    held = [reader.two_streams() for _ in range(100)]
    assert len(tracker.deferred_roots) == 100
    _Counting.passes = 0
    stream = reader.one_call()
    list(stream)
    reader.llm.complete("next")
    assert _Counting.passes == 0
    assert telemetry.tree() == (
        "invoke_workflow Reader [INTERNAL]\n"
        "  text_completion unknown [INTERNAL]\n"
        "---\n"
        "text_completion unknown [INTERNAL]"
    )
    del held, stream
    gc.collect()
    assert (tracker.deferred_roots, tracker.deferred_spans, tracker.deferred_runs) == ({}, {}, {})
    assert len(telemetry.spans()) == 3
