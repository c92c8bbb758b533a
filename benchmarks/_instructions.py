"""A third clock that host noise hardly moves: instructions per call, counted by Valgrind's
callgrind.

Timings on a shared host drift by tens of percent between minutes; the number of instructions a
call executes hardly does, once nothing the clock decides is left in it: the worker runs without
forced hand-offs of the GIL, and its export thread wakes for full batches and the flush only
(see ``worker.py``), so a busy host counts as a quiet one does. What still moves a count, by up
to 1 %, is where the process's objects land (address space randomisation): that decides which of
them share a slot of the interpreter's caches (its method cache hashes addresses). A collision
only ever adds work (a miss walks the class's MRO), so the driver takes the least count of a few
runs. The worker runs under
``valgrind --tool=callgrind --instr-atstart=no``: importing and warming up run uninstrumented,
and a client request switches counting on for exactly the measured calls and the export of their
spans (every thread) and dumps the count. Instructions are not time (a cache miss costs more
than an add), so this clock complements the two timed ones and replaces neither.

A workload whose calls are partly served by another process (the MCP server) has valgrind follow
its children: the other side brackets its share of the same calls with the same client requests
(started and stopped by two extra requests, which it counts in part: under one call in ``n``),
and the counts of both processes add up.

The client requests are C macros from ``valgrind/callgrind.h``: a three-function library is
compiled once per run with the system C compiler. Without valgrind, its headers or a compiler,
the clock is skipped.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

_SOURCE = """
#include <valgrind/callgrind.h>
void tl_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void tl_stop(void) { CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
LIBRARY_ENV = "BENCH_CALLGRIND_LIBRARY"


def build(directory: Path) -> Path | None:
    """Compile the client-request library into ``directory``; None where this host cannot
    count instructions (no valgrind, no headers, no compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if shutil.which("valgrind") is None or compiler is None:
        return None
    source = directory / "tl_callgrind.c"
    library = directory / "libtl_callgrind.so"
    source.write_text(_SOURCE)
    proc = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
    )
    return library if proc.returncode == 0 else None


def command(library: Path, out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The valgrind prefix of a worker command line, and the environment variable it needs."""
    prefix = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
    ]
    return prefix, {LIBRARY_ENV: str(library)}


def read_count(out_dir: Path, processes: int = 1) -> int:
    """Instructions of the dumps the measured sections wrote (``callgrind.<pid>.1``), one per
    process that took part, summed."""
    dumps = sorted(out_dir.glob("callgrind.*.1"))
    if len(dumps) != processes:
        raise RuntimeError(
            f"expected {processes} callgrind dump(s) in {out_dir}, found {len(dumps)}"
        )
    return sum(_summary(dump) for dump in dumps)


def _summary(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {dump}")


class Counter:
    """In the worker (and the other side of a workload that has one): brackets the measured
    calls (no-ops unless valgrind runs the process)."""

    def __init__(self) -> None:
        library = ctypes.CDLL(os.environ[LIBRARY_ENV])
        self.start = library.tl_start
        self.stop = library.tl_stop
