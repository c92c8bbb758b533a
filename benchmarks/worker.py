"""One measurement in a fresh process: ``python benchmarks/worker.py <workload> <config> <n>``.

Sets up the configuration (global SDK TracerProvider with a BatchSpanProcessor to a no-op
exporter, then the configuration's instrumentation), builds the workload, warms up, times ``n``
calls with ``time.perf_counter_ns`` and prints one JSON object.

Other forms:
  worker.py --list <group>                      workloads and configurations available here
  worker.py <workload> threadline 1 --record P  write the spans of one call to P (the floor's
                                                template)
  worker.py <workload> floor <n> --template P   the floor: no-op hook + replay of template P
  worker.py <workload> <config> <n> --instructions
                                                run under callgrind: count the instructions
                                                of the n calls (benchmarks/_instructions.py)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import CLOCKLESS_ENV, Replay, Telemetry, with_floor, write_template


def load(group: str) -> Any:
    return importlib.import_module(f"benchmarks.workloads.{group}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        module = load(argv[1])
        print(json.dumps({"workloads": list(module.WORKLOADS), "configs": module.configs()}))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("config")
    parser.add_argument("n", type=int)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args(argv)

    if args.instructions:
        # No forced hand-offs of the GIL: threads take turns only where one waits (I/O, a
        # lock, the flush). A forced one comes by the clock, and where it lands (from the export
        # thread's start on) changes which code runs first and so how the interpreter's caches
        # fill: counts then follow the host's load instead of the code.
        sys.setswitchinterval(1e6)
        os.environ[CLOCKLESS_ENV] = "1"  # and so does a workload's other process (MCP's server)
    group, _, name = args.workload.partition(".")
    # Workloads that span processes (MCP) pass these on to their other side.
    os.environ["BENCH_CONFIG"] = args.config
    if args.record is not None:
        os.environ["BENCH_RECORD"] = str(args.record)
    if args.template is not None:
        os.environ["BENCH_TEMPLATE"] = str(args.template)
    telemetry = Telemetry(record=args.record is not None, clockless=args.instructions)
    module = load(group)
    if args.config == "floor":
        if args.template is None:
            parser.error("the floor needs --template")
        module.noop_hook()
        call = module.WORKLOADS[name]()
        # A workload may define its own floor (MCP's propagates the replayed span's context).
        floor = getattr(module, "with_floor", with_floor)
        call = floor(call, Replay(json.loads(args.template.read_text()), telemetry.provider))
    else:
        module.instrument(args.config)
        call = module.WORKLOADS[name]()

    warmup = args.warmup if args.warmup is not None else max(20, min(args.n // 5, 2000))
    result = None
    for _ in range(warmup):
        result = call()

    if args.record is not None:
        telemetry.flush()
        assert telemetry.memory is not None
        telemetry.memory.clear()
        call()
        telemetry.flush()
        spans = telemetry.memory.get_finished_spans()
        write_template(args.record, spans)
        record_other = getattr(module, "record_other_side", None)
        if record_other is not None:
            record_other()
        print(json.dumps({"workload": args.workload, "spans": len(spans)}))
        return 0

    if args.instructions:
        from benchmarks._instructions import Counter

        counter = Counter()
        # A workload served partly by another process counts that side too (MCP's server).
        other_side: Callable[[bool], None] | None = getattr(module, "count_other_side", None)
        gc.collect()
        telemetry.flush()
        if other_side is not None:
            other_side(True)
        counter.start()
        for _ in range(args.n):
            result = call()
        telemetry.flush()  # the export thread's work for these calls is theirs
        counter.stop()
        if other_side is not None:
            other_side(False)
        close_workload(module)
        processes = 1 if other_side is None else 2
        summary = {"workload": args.workload, "config": args.config, "n": args.n}
        print(json.dumps({**summary, "processes": processes}))
        return 0

    # CPU time spent for this process in other processes (an MCP server), if any.
    other_cpu = getattr(module, "other_cpu_ns", lambda: 0)
    gc.collect()
    exported_before = telemetry.flush()
    other_start = other_cpu()
    start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(args.n):
        result = call()
    elapsed = time.perf_counter_ns() - start
    cpu = time.process_time_ns() - cpu_start
    cpu += other_cpu() - other_start
    exported = telemetry.flush() - exported_before
    close_workload(module)
    print(
        json.dumps(
            {
                "workload": args.workload,
                "config": args.config,
                "n": args.n,
                "warmup": warmup,
                "ns": elapsed,
                "us_per_call": elapsed / args.n / 1000,
                "cpu_us_per_call": cpu / args.n / 1000,
                "spans_per_call": exported / args.n,
                "result": repr(result)[:60],
            }
        )
    )
    return 0


def close_workload(module: Any) -> None:
    close = getattr(module, "close", None)
    if close is not None:
        close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
