"""Bounded state: the open-run cap, the TTL reaper, and registries that empty themselves."""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

import threadline
from threadline import _registry, _runs, config, semconv
from threadline.testing import Telemetry


@pytest.fixture
def restore_settings() -> Iterator[None]:
    previous = config.current()
    yield
    config.restore(previous)
    threadline.open_runs.reap(now=time.monotonic() + 10**9)  # end anything a test left open


def test_capacity_ends_the_oldest_runs_as_abandoned(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(max_open_runs=10)
    runs = [threadline.execute_tool(f"t{i}") for i in range(15)]
    assert len(threadline.open_runs) == 10
    abandoned = [s for s in telemetry.spans() if s.attributes.get(semconv.THREADLINE_ABANDONED)]
    assert sorted(s.name for s in abandoned) == [f"execute_tool t{i}" for i in range(5)]
    assert {s.attributes[semconv.THREADLINE_ABANDON_REASON] for s in abandoned} == {"capacity"}
    assert all(s.status_code == "UNSET" for s in abandoned)
    for run in runs:
        run.end()
    assert len(threadline.open_runs) == 0
    assert len(telemetry.spans()) == 15  # nobody ended twice


def test_abandoned_stream_is_reaped_with_usage_seen(
    telemetry: Telemetry, restore_settings: None
) -> None:
    threadline.configure(run_ttl_seconds=0.2)
    stream = threadline.inference("gpt-4o", provider="openai", stream=True)
    stream.chunk()
    stream.update(usage=threadline.Usage(input_tokens=12, output_tokens=3))
    deadline = time.monotonic() + 5
    while not stream.ended and time.monotonic() < deadline:
        time.sleep(0.05)  # the background reaper ends it
    assert stream.ended
    [span] = telemetry.spans()
    assert span.attributes[semconv.THREADLINE_ABANDONED] is True
    assert span.attributes[semconv.THREADLINE_ABANDON_REASON] == "ttl"
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert span.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    telemetry.assert_conformant()


def test_an_abandoned_agent_is_reaped_with_the_runs_beneath_it(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Runs beneath an expired run end with it, youngest first, so the agent's span sums the
    usage its abandoned requests saw; a run outside it is left to its own TTL."""
    threadline.configure(run_ttl_seconds=60)
    agent = threadline.invoke_agent("support")
    time.sleep(0.02)
    tool = threadline.execute_tool("lookup", parent=agent)
    chat = threadline.inference("gpt-4o", provider="openai", parent=tool, stream=True)
    chat.chunk()
    chat.update(usage=threadline.Usage(input_tokens=120, output_tokens=40))
    other = threadline.execute_tool("unrelated")
    # only the agent is past the TTL at this moment; the rest started later
    assert threadline.open_runs.reap(now=agent.start_monotonic + 60.01) == 3
    assert [s.name for s in telemetry.spans()] == [
        "chat gpt-4o",
        "execute_tool lookup",
        "invoke_agent support",
    ]
    agent_span = telemetry.spans()[-1]
    assert agent_span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert agent_span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 40
    assert not other.ended
    other.end()


def test_an_abandoned_run_records_usage_but_no_duration(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Its end was never seen: a duration would only say how long the reaper waited."""
    abandoned = threadline.inference("gpt-4o", provider="openai", stream=True)
    abandoned.chunk()
    abandoned.update(usage=threadline.Usage(input_tokens=12, output_tokens=3))
    tool = threadline.execute_tool("lookup")
    abandoned.abandon("ttl")
    tool.abandon("capacity")
    metrics = telemetry.metrics()
    assert semconv.METRIC_CLIENT_OPERATION_DURATION not in metrics
    assert semconv.METRIC_EXECUTE_TOOL_DURATION not in metrics
    usage = metrics[semconv.METRIC_CLIENT_TOKEN_USAGE]
    assert sorted(p["sum"] for p in usage) == [3, 12]
    [first_chunk] = metrics[semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK]  # that one was seen
    assert first_chunk["count"] == 1

    threadline.inference("gpt-4o", provider="openai").end()  # an observed end still counts
    [duration] = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["count"] == 1


def test_registry_entries_vanish_when_runs_end(restore_settings: None) -> None:
    registry: threadline.RunRegistry[str, threadline.Run] = threadline.RunRegistry()
    ended = threadline.execute_tool("a")
    failed = threadline.execute_tool("b")
    reaped = threadline.execute_tool("c")
    for key, run in (("a", ended), ("b", failed), ("c", reaped)):
        registry.add(key, run)
    assert len(registry) == 3
    ended.end()
    failed.fail(RuntimeError("x"))
    reaped.abandon("test")
    assert len(registry) == 0
    registry.add("late", ended)  # an ended run is never registered
    assert "late" not in registry


def test_a_run_reaped_while_attached_is_detached_when_its_end_finds_nothing(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """The reaper's thread cannot detach a run from the thread that attached it; that thread's
    next end event finds no run, and must not leave the ended span current."""
    registry: threadline.RunRegistry[str, threadline.Run] = threadline.RunRegistry()
    with threadline.invoke_agent("outer") as outer:
        tool = threadline.execute_tool("slow")
        registry.add("k", tool)
        tool.attach()
        reaper = threading.Thread(target=tool.abandon, args=("ttl",))  # as the reaper does
        reaper.start()
        reaper.join()
        assert tool.ended
        assert threadline.current_run() is tool  # stranded here
        assert registry.get_ending("k") is None
        assert threadline.current_run() is outer
    assert threadline.current_run() is None
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["execute_tool slow"].attributes[semconv.THREADLINE_ABANDON_REASON] == "ttl"
    assert spans["execute_tool slow"].parent_span_id == spans["invoke_agent outer"].span_id


def test_a_run_that_ends_leaves_a_newer_entry_of_its_key(restore_settings: None) -> None:
    registry: threadline.RunRegistry[str, threadline.Run] = threadline.RunRegistry()
    first = threadline.execute_tool("a")
    second = threadline.execute_tool("a")
    registry.add("k", first)
    registry.add("k", second)  # the key taken over while the first is still open
    first.end()
    assert registry.get("k") is second
    assert registry.pop("k") is second
    second.end()
    assert len(registry) == 0


def test_many_completed_runs_retain_nothing(restore_settings: None) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    # a provider that keeps nothing: any growth left is threadline's own
    threadline.configure(tracer_provider=TracerProvider())
    registry: threadline.RunRegistry[int, threadline.Run] = threadline.RunRegistry()

    def batch(n: int) -> None:
        for i in range(n):
            with threadline.invoke_agent("a") as agent:
                registry.add(i, agent)
                with threadline.inference("m", provider="openai") as chat:
                    chat.update(usage=threadline.Usage(1, 1))

    batch(200)  # warm caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    batch(2000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "threadline" in stat.traceback[0].filename
    )
    assert len(threadline.open_runs) == 0
    assert len(registry) == 0
    assert growth < 64 * 1024, growth


def test_a_reaper_that_cannot_start_is_started_later(
    telemetry: Telemetry, restore_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread to be had when the first run starts (a process at its thread limit): the run
    is recorded all the same, and a later run starts the reaper, which ends both."""
    registry = _registry._OpenRuns()
    monkeypatch.setattr(_registry, "open_runs", registry)
    monkeypatch.setattr(_runs, "open_runs", registry)
    monkeypatch.setattr(_runs, "_open_runs", registry._runs)
    real_start = threading.Thread.start
    failures = [1]

    def start(thread: threading.Thread) -> None:
        if thread.name == "threadline-reaper" and failures:
            failures.pop()
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    threadline.configure(run_ttl_seconds=0.2)
    first = threadline.execute_tool("first")
    assert registry._reaper is None
    assert len(registry) == 1
    registry._retry_reaper_at = 0.0  # the retry is due (it waits a second)
    second = threadline.execute_tool("second")
    assert registry._reaper is not None
    assert registry._reaper.is_alive()
    deadline = time.monotonic() + 5
    while not (first.ended and second.ended) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {s.name for s in telemetry.spans()} == {"execute_tool first", "execute_tool second"}
    assert all(s.attributes[semconv.THREADLINE_ABANDONED] for s in telemetry.spans())
    registry._wake.set()


def test_a_run_started_backdated_is_reaped_on_time(
    telemetry: Telemetry, restore_settings: None
) -> None:
    """Runs are kept in the order they were made, not the order they started: a run made
    backdated (``start_time=``) after a younger one is reaped when its own TTL is up."""
    threadline.configure(run_ttl_seconds=60)
    young = threadline.execute_tool("young")
    old = threadline.execute_tool("old", start_time=time.time_ns() - 50 * 10**9)
    assert threadline.open_runs.reap(now=time.monotonic() + 15) == 1
    assert old.ended
    assert not young.ended
    young.end()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_leaves_the_parents_runs_to_the_parent(restore_settings: None) -> None:
    """A forked worker (gunicorn's preload, multiprocessing's fork) inherits the open runs:
    they are the parent's to end, so the child's reaper must not end and export them again;
    the child gets a reaper of its own for its own runs, and ends runs even though a thread
    of the parent held the end lock at the fork."""
    run = threadline.execute_tool("in the parent")
    read, write = os.pipe()
    lock = _runs._END_LOCK
    lock.acquire()  # as another thread (the reaper ending a run) may hold it at the fork
    try:
        pid = os.fork()
    except BaseException:
        lock.release()
        raise
    if pid != 0:
        lock.release()
    else:  # pragma: no cover - the child reports through the pipe
        try:
            inherited = len(threadline.open_runs)
            own = threadline.execute_tool("in the child")
            reaper = threadline.open_runs._reaper
            free = _runs._END_LOCK.acquire(timeout=5)
            ok = inherited == 0 and reaper is not None and reaper.is_alive() and free
            if free:
                _runs._END_LOCK.release()
                own.end()
            os.write(write, b"ok" if ok else f"inherited={inherited} free={free}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert len(threadline.open_runs) == 1
    run.end()


def test_the_reaper_runs_the_sweepers_as_it_wakes(restore_settings: None) -> None:
    """An integration's sweeper (what no event ends) runs on the reaper's thread each time it
    wakes; one that raises is reported and the others still run; one whose owner is gone
    drops out."""
    registry = _registry._OpenRuns()

    class Owner:
        def __init__(self, fails: bool = False) -> None:
            self.fails = fails
            self.threads: list[str] = []

        def sweep(self) -> None:
            self.threads.append(threading.current_thread().name)
            if self.fails:
                raise RuntimeError("a sweeper's own bug")

    threadline.configure(run_ttl_seconds=0.2)  # the reaper wakes every 50 ms
    failing, working, gone = Owner(fails=True), Owner(), Owner()
    for owner in (failing, working, gone):
        registry.sweep_with(owner.sweep)  # the first starts the reaper
    del gone, owner
    gc.collect()
    deadline = time.monotonic() + 5
    while len(working.threads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(working.threads) == {"threadline-reaper"}
    assert len(working.threads) >= 2
    assert len(failing.threads) >= 2  # its failure was reported, and it runs again
    registry.sweep_with(working.sweep)  # once is enough; the one whose owner is gone went
    assert len(registry._sweepers) == 2
    registry._wake.set()
