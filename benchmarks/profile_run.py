"""Profile one (workload, configuration) under cProfile:
``python benchmarks/profile_run.py <workload> <config> [n] [--template P]``; prints the top
functions by own time, to find what an instrumentation spends per call."""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Replay, Telemetry, with_floor
from benchmarks.worker import load


def main(argv: list[str]) -> None:
    workload, config = argv[0], argv[1]
    n = int(argv[2]) if len(argv) > 2 and not argv[2].startswith("--") else 5000
    group, _, name = workload.partition(".")
    telemetry = Telemetry()
    module = load(group)
    if config == "floor":
        module.noop_hook()
        call = module.WORKLOADS[name]()
        template = Path(argv[argv.index("--template") + 1])
        call = with_floor(call, Replay(json.loads(template.read_text()), telemetry.provider))
    else:
        module.instrument(config)
        call = module.WORKLOADS[name]()
    for _ in range(min(n, 500)):
        call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main(sys.argv[1:])
