"""Bounded bookkeeping of open runs, and the reaper that ends abandoned ones.

Every run threadline starts is tracked here until it ends. The tracker holds at most
``max_open_runs`` runs; the oldest is ended as abandoned when a new one would exceed it. A run
open for longer than ``run_ttl_seconds`` is ended as abandoned by a daemon reaper thread, which
wakes every quarter TTL (at most 30 s) and whenever the settings change, keeping whatever usage
the run had seen. At each wake it also runs the integrations' sweepers (see
``_OpenRuns.sweep_with``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from threadline import config
from threadline._failopen import report

if TYPE_CHECKING:
    from threadline._runs import Run

_K = TypeVar("_K", bound=Hashable)
_R = TypeVar("_R", bound="Run")


class _OpenRuns:
    def __init__(self) -> None:
        # Insertion-ordered: oldest first. Adding and removing one run are single dict
        # operations, atomic under the GIL, so a run's start and end take no lock; the lock
        # serializes eviction and the reaper's scan.
        self._runs: dict[int, Run] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        self._retry_reaper_at = 0.0
        # Weak, so an integration's tracker that goes away drops out (see sweep_with).
        self._sweepers: list[weakref.WeakMethod[Callable[[], object]]] = []

    # A run adds itself to ``_runs`` as it starts, and drops itself as it ends (one dict
    # operation each, inline in Run: every run). Runs past their TTL are left to the reaper
    # thread: checking on every start would put that work on the caller's path.

    def added(self) -> None:
        """Called by a run that added itself over the cap, or before the reaper runs: the
        oldest runs are abandoned, and the reaper is started."""
        if len(self._runs) > config.current().max_open_runs:
            self._evict()
        if self._reaper is None:
            self._start_reaper()

    def _evict(self) -> None:
        evicted: list[Run] = []
        with self._lock:
            runs = self._runs
            limit = config.current().max_open_runs
            while len(runs) > limit:
                try:
                    evicted.append(runs.pop(next(iter(runs))))
                except (StopIteration, KeyError, RuntimeError):  # emptied concurrently
                    break
        for old in reversed(evicted):  # youngest first: a child's usage reaches its agent
            old.abandon("capacity")

    def __len__(self) -> int:
        return len(self._runs)

    def reap(self, now: float | None = None) -> int:
        """End every run older than the TTL, and the open runs beneath them (part of the same
        abandoned operation, and otherwise ended after it); returns how many were ended."""
        ttl = config.current().run_ttl_seconds
        now = time.monotonic() if now is None else now
        expired: list[Run] = []
        with self._lock:
            oldest_first = list(self._runs.values())  # one C-level copy: atomic under the GIL
        younger: list[Run] = []
        for run in oldest_first:  # all of them: a run may start backdated (start_time=)
            (expired if now - run.start_monotonic > ttl else younger).append(run)
        if not expired:
            return 0
        gone = {id(run) for run in expired}
        for run in younger:
            ancestor = run.parent_run
            while ancestor is not None:
                if id(ancestor) in gone:
                    expired.append(run)
                    gone.add(id(run))
                    break
                ancestor = ancestor.parent_run
        # Youngest first: a run ends before what encloses it, so its usage reaches its agent.
        for run in reversed(expired):
            run.abandon("ttl")
        return len(expired)

    def sweep_with(self, sweeper: Callable[[], object]) -> None:
        """Have the reaper also call ``sweeper`` (a bound method, held weakly) each time it
        wakes: an integration's check for what no event ends, such as a generator that ran to
        its end while the application still holds it."""
        ref = weakref.WeakMethod(sweeper)
        with self._lock:
            live = [known for known in self._sweepers if known() is not None]
            self._sweepers = live if ref in live else [*live, ref]
        if self._reaper is None:
            self._start_reaper()

    def sweep(self) -> None:
        """Call every live sweeper (the reaper's thread does, after each reap)."""
        for ref in list(self._sweepers):
            sweeper = ref()
            if sweeper is None:
                continue
            try:
                sweeper()
            except Exception as error:  # noqa: BLE001 - the reaper must survive anything
                report("reaper.sweep", error)

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None or time.monotonic() < self._retry_reaper_at:
                return
            reaper = threading.Thread(
                target=_reaper_loop,
                args=(weakref.ref(self),),
                name="threadline-reaper",
                daemon=True,
            )
            try:
                reaper.start()
            except Exception as error:  # noqa: BLE001 - no thread to be had now: try later
                self._retry_reaper_at = time.monotonic() + 1.0
                report("reaper.start", error)
                return
            self._reaper = reaper

    def _after_fork(self) -> None:
        """In a forked child: the parent's open runs are the parent's to end (the child would
        export them a second time), and the reaper thread did not come along."""
        self._runs.clear()  # the same dict: Run's inline add and discard hold it
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._reaper = None
        self._retry_reaper_at = 0.0


def _reaper_loop(tracker_ref: weakref.ref[_OpenRuns]) -> None:
    while True:
        tracker = tracker_ref()
        if tracker is None:
            return
        wake = tracker._wake
        del tracker
        # a settings change wakes the reaper so a shorter TTL takes effect at once
        wake.wait(min(max(config.current().run_ttl_seconds / 4, 0.05), 30.0))
        wake.clear()
        tracker = tracker_ref()
        if tracker is None:
            return
        try:
            tracker.reap()
        except Exception as error:  # noqa: BLE001 - the reaper must survive anything
            report("reaper", error)
        tracker.sweep()
        del tracker


open_runs = _OpenRuns()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=open_runs._after_fork)

# Runs that ended while attached in a context other than the current one (ended by the
# reaper's thread, an eviction, or out of order): that context keeps the span current until an
# end event there finds no run and releases it. Weak, so a run whose context is gone (its thread
# or task finished) drops out, and an empty set keeps registry misses free: hot paths test
# ``stranded_refs`` (the WeakSet's own set of references, tested in C), not the WeakSet, whose
# ``len`` is Python code; a reference that just died costs one needless look.
stranded: weakref.WeakSet[Run] = weakref.WeakSet()
stranded_refs: set[Any] = stranded.data  # type: ignore[attr-defined]  # never rebound


def release_stranded() -> None:
    """Detach the ended runs on top of the current context that wait to be detached: an
    integration calls this when an event that ends a run finds none (see
    :meth:`RunRegistry.get_ending`)."""
    if stranded_refs:
        release_ended[0]()


# Set by threadline._runs (which imports this module, and alone can strand a run) as it loads.
release_ended: list[Callable[[], None]] = [lambda: None]


config.on_change(lambda _settings: open_runs._wake.set())


class RunRegistry(Generic[_K, _R]):
    """Maps an integration's own run keys (a LangChain ``run_id``, a LlamaIndex span id) to runs.

    Entries disappear when their run ends, whichever way it ends (normally, failed, or reaped), so
    a registry can never hold more than the open-run cap. Every operation is one or two dict
    operations, each atomic, so none takes a lock: this is on the path of every run.
    """

    __slots__ = ("__weakref__", "_entries")

    def __init__(self) -> None:
        self._entries: dict[_K, _R] = {}

    def add(self, key: _K, run: _R) -> None:
        if run.ended:
            return
        self._entries[key] = run
        run._on_end(self, key)

    def get(self, key: _K) -> _R | None:
        return self._entries.get(key)

    def get_ending(self, key: _K) -> _R | None:
        """:meth:`get`, for an event that ends a run. A miss may be a run the reaper (or the
        open-run cap) ended while it was attached here: it could not detach from another
        thread, and its own end finds nothing to detach, so ended runs still current here are
        detached now."""
        run = self._entries.get(key)
        if run is None and stranded_refs:
            release_ended[0]()
        return run

    def pop(self, key: _K) -> _R | None:
        return self._entries.pop(key, None)

    def _discard(self, key: _K, run: Run) -> None:
        removed = self._entries.pop(key, None)
        if removed is not None and removed is not run:
            # Keys are run ids, unique in practice; should another run have taken this key
            # meanwhile, it stays.
            self._entries.setdefault(key, removed)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def values(self) -> list[_R]:
        return list(self._entries.values())  # one C-level copy: atomic
