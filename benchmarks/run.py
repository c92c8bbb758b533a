"""Benchmark driver: per workload, every configuration in a fresh process, interleaved rounds
with a rotated order, medians with min-max.

    python benchmarks/run.py --python core=/path/to/python --python langchain=/path/... \
        [--rounds 5] [--seconds 0.5] [--only langchain.chat] [--out benchmarks/results]

Each group (``core``, ``langchain``, ``llamaindex``, ``pydantic_ai``, ``mcp``) runs with its own
interpreter, because the peers of one framework do not install together with another's. For
each workload the driver

1. asks the worker which configurations exist in that environment,
2. records the spans threadline emits for one call (the floor replays exactly those),
3. calibrates ``n`` so the slowest configuration times about ``--seconds`` per process,
4. runs ``--rounds`` rounds; round ``r`` runs every configuration once, in the order rotated by
   ``r``, each in a new process (its own warm-up, then ``n`` timed calls),
5. reports per configuration the median and min-max of microseconds per call over the rounds,
   and the time added over the uninstrumented baseline (the median of per-round differences,
   so slow drifts of the machine cancel out),
6. where valgrind is installed, runs every configuration under callgrind (``--instruction-runs``
   rounds, one process at a time) and reports instructions per call, the least count (which
   the targets judge, see :func:`summarise_instructions`) with the median and max: a clock the
   host's load does not move (``_instructions.py``; MCP's count adds its server's share of the
   same calls).

Writes ``<out>/<date>-<host>.json`` (every measurement) and ``.md`` (the tables).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import _instructions  # noqa: E402
from benchmarks._common import CONFIG_LABELS, CONFIG_ORDER, THREADLINE_CONFIGS  # noqa: E402

WORKER = HERE / "worker.py"
PEERS = ("openinference", "openllmetry", "native")
# Targets of issue #9: added time per call against the floor and against the peers.
FLOOR_TARGET = 1.5
LANGCHAIN_TARGETS = {"openllmetry": 0.5, "openinference": 0.2}
BEST_PEER_TARGET = 0.5


def worker(
    python: str,
    *args: str,
    timeout: float = 600,
    prefix: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    proc = subprocess.run(
        [*(prefix or []), python, str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE.parent,
        env={**os.environ, **(env or {}), "PYTHONHASHSEED": "0"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; out={}\n"
        "for d in m.distributions():\n"
        "    n=d.metadata['Name'] or ''\n"
        "    if any(k in n.lower() for k in ('opentelemetry','openinference','threadline',"
        "'langchain-core','llama-index-core','pydantic-ai','mcp','traceloop')): out[n]=d.version\n"
        "print(json.dumps(dict(sorted(out.items()))))"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout))


def measure_workload(
    python: str, workload: str, configs: list[str], rounds: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    template = tmp / f"{workload}.json"
    if "floor" in configs:
        if "threadline" not in configs:
            configs = [c for c in configs if c != "floor"]
        else:
            worker(python, workload, "threadline", "1", "--record", str(template))
    extra = ["--template", str(template)]

    def args(config: str, n: int) -> list[str]:
        return [workload, config, str(n), *(extra if config == "floor" else [])]

    # Calibrate on the slowest configuration.
    probe = 200
    slowest = max(worker(python, *args(c, probe))["us_per_call"] for c in configs)
    n = int(min(max(seconds * 1e6 / max(slowest, 0.01), 200), 200_000))

    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for config in order:
            samples[config].append(worker(python, *args(config, n)))
        print(f"  {workload} round {r + 1}/{rounds}", flush=True)
    return {"n": n, "configs": configs, "samples": samples}


def measure_instructions(
    python: str,
    workload: str,
    configs: list[str],
    calls: int,
    tmp: Path,
    library: Path,
    runs: int = 1,
) -> dict[str, list[float]]:
    """Thousands of instructions per call of each configuration, one count per run: ``runs``
    rounds of one callgrind run per configuration, one at a time. Each process places its
    objects elsewhere (address space randomisation), and where they land decides which of them
    share a slot of the interpreter's caches: a count moves by up to 1 % with that alone, so
    the median of a few runs judges the code, not one layout."""
    template = tmp / f"{workload}.json"

    def count(config: str) -> float:
        out_dir = Path(tempfile.mkdtemp(dir=tmp))
        prefix, env = _instructions.command(library, out_dir)
        extra = ["--template", str(template)] if config == "floor" else []
        done = worker(python, workload, config, str(calls), "--warmup", "300", "--instructions",
                      *extra, prefix=prefix, env=env, timeout=1800)  # fmt: skip
        return _instructions.read_count(out_dir, done["processes"]) / calls / 1000

    counts: dict[str, list[float]] = {config: [] for config in configs}
    for _ in range(runs):
        for config in configs:
            counts[config].append(count(config))
    return counts


def summarise_instructions(counts: dict[str, list[float]], timed: dict[str, Any]) -> dict[str, Any]:
    """Rows shaped like :func:`summarise`'s: each configuration's least count (its ``_least``
    keys, which the ratios judge), the median and max of its runs, and what the least adds
    to the baseline's least. What moves a count from run to run is where the process's objects
    land: two that share a slot of the interpreter's method cache evict each other, and each
    miss adds a walk of a class's MRO (``find_name_in_mro``). That only ever adds work, so the
    least of a few runs is the count of the code itself, as timeit takes the least of its
    repeats; a median still follows how many runs were unlucky."""
    base = min(counts["baseline"]) if counts.get("baseline") else None
    out: dict[str, Any] = {}
    for config, values in counts.items():
        row: dict[str, Any] = {
            "us_least": min(values),
            "us_median": statistics.median(values),
            "us_max": max(values),
            "runs": len(values),
            "spans_per_call": timed.get(config, {}).get("spans_per_call", 0),
        }
        if base is not None and config != "baseline":
            row["added_least"] = row["us_least"] - base
        out[config] = row
    return out


METRICS = {"cpu": "cpu_us_per_call", "wall": "us_per_call"}


def summarise(result: dict[str, Any], metric: str) -> dict[str, Any]:
    key = METRICS[metric]
    samples = result["samples"]
    base = [s[key] for s in samples.get("baseline", [])]
    out: dict[str, Any] = {}
    for config, runs in samples.items():
        us = [s[key] for s in runs]
        row: dict[str, Any] = {
            "us_median": statistics.median(us),
            "us_min": min(us),
            "us_max": max(us),
            "spans_per_call": statistics.median(s["spans_per_call"] for s in runs),
        }
        if base and config != "baseline":
            added = [u - b for u, b in zip(us, base, strict=False)]
            row.update(
                added_median=statistics.median(added), added_min=min(added), added_max=max(added)
            )
        out[config] = row
    return out


def ratios(summary: dict[str, Any], group: str, judged: str = "median") -> dict[str, Any]:
    """Added work of threadline over that of the floor and each peer, by each row's
    ``added_{judged}``."""

    def added(config: str) -> float | None:
        row = summary.get(config)
        return None if row is None else row.get(f"added_{judged}")

    out: dict[str, Any] = {}
    for ours in THREADLINE_CONFIGS:
        mine = added(ours)
        if mine is None:
            continue
        for other in ("floor", *PEERS):
            theirs = added(other)
            if theirs is not None and theirs > 0:
                out[f"{ours}/{other}"] = mine / theirs
    return out


def targets(summary: dict[str, Any], group: str, rat: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    if "threadline/floor" in rat:
        checks.append(_check("added <= 1.5 x floor", rat["threadline/floor"], FLOOR_TARGET))
    if group == "langchain":
        for peer, limit in LANGCHAIN_TARGETS.items():
            if f"threadline/{peer}" in rat:
                checks.append(
                    _check(f"added <= {limit} x {peer}", rat[f"threadline/{peer}"], limit)
                )
    elif group != "core":
        peer_ratios = {p: rat[f"threadline/{p}"] for p in PEERS if f"threadline/{p}" in rat}
        if peer_ratios:
            best = max(peer_ratios, key=lambda p: peer_ratios[p])  # the peer with least added
            checks.append(
                _check(f"added <= 0.5 x best peer ({best})", peer_ratios[best], BEST_PEER_TARGET)
            )
    return checks


def verdict(summary: dict[str, Any], group: str, judged: str = "median") -> dict[str, Any]:
    """One clock's summary of a workload, with its ratios and which targets hold."""
    rat = ratios(summary, group, judged)
    return {"summary": summary, "ratios": rat, "targets": targets(summary, group, rat)}


def _check(name: str, value: float, limit: float) -> dict[str, Any]:
    return {"target": name, "ratio": value, "limit": limit, "holds": value <= limit}


def fmt_range(row: dict[str, Any], key: str) -> str:
    if f"{key}_median" not in row:
        return "-"
    return f"{row[f'{key}_median']:.1f} ({row[f'{key}_min']:.1f}-{row[f'{key}_max']:.1f})"


METRIC_TITLES = {
    "cpu": "process CPU time (time.process_time_ns: every thread of the worker, so the export "
    "thread's work counts too)",
    "wall": "wall-clock time (time.perf_counter_ns)",
}
INSTRUCTIONS_TITLE = (
    "thousands of instructions per call, counted by callgrind over every thread (one run "
    "per configuration, one at a time, the least of --instruction-runs runs, as a run only "
    "ever counts more where its objects collide in the interpreter's method cache; MCP's adds "
    "the server process's share of the same calls)"
)
METRIC_HEADINGS = {"instructions": "Added thousands of instructions per call (callgrind)"}


def _count(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.1f}" if key in row else "-"


def _counts(row: dict[str, Any]) -> str:
    if "us_least" not in row:
        return "-"
    return f"{row['us_least']:.1f} ({row['us_median']:.1f}, {row['us_max']:.1f})"


def _summary_table(report: dict[str, Any], metric: str) -> list[str]:
    lines = [
        f"### {METRIC_HEADINGS.get(metric, f'Added microseconds per call, {metric}')}",
        "",
        "| workload | floor | threadline | threadline content on | OpenInference | OpenLLMetry |"
        " native | tl/floor | tl/OI | tl/OLLM | tl/native | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, wl in report["workloads"].items():
        if metric not in wl:
            continue
        s, r = wl[metric]["summary"], wl[metric]["ratios"]

        judged = "added_least" if metric == "instructions" else "added_median"

        def a(config: str, s: dict[str, Any] = s, key: str = judged) -> str:
            row = s.get(config)
            return "-" if row is None or key not in row else f"{row[key]:.1f}"

        def q(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key]:.2f}" if key in r else "-"

        held = "; ".join(
            f"{'OK' if c['holds'] else '**MISSED**'} {c['target']} ({c['ratio']:.2f})"
            for c in wl[metric]["targets"]
        )
        lines.append(
            f"| {name} | {a('floor')} | {a('threadline')} | {a('threadline_content')} | "
            f"{a('openinference')} | {a('openllmetry')} | {a('native')} | "
            f"{q('threadline/floor')} | {q('threadline/openinference')} | "
            f"{q('threadline/openllmetry')} | {q('threadline/native')} | {held or '-'} |"
        )
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    counted = any("instructions" in wl for wl in report["workloads"].values())
    lines = [
        f"# Benchmarks {report['date']} on {report['host']}",
        "",
        f"{report['machine']}; {report['rounds']} rounds per workload, each configuration in a "
        "fresh process per round, order rotated each round. Microseconds per call: median "
        "(min-max) over rounds. Added: median (min-max) of the per-round difference to the "
        "uninstrumented baseline. Every configuration exports through a BatchSpanProcessor to a "
        "no-op exporter. Ratios (tl = threadline, content off) divide added times. Two clocks: "
        + "; ".join(f"**{m}**: {t}" for m, t in METRIC_TITLES.items())
        + "."
        + (
            f" A third, where valgrind is installed: **instructions**: {INSTRUCTIONS_TITLE}."
            if counted
            else ""
        ),
        "",
        "## Summary",
        "",
    ]
    for metric in (*METRICS, *(["instructions"] if counted else [])):
        lines += _summary_table(report, metric)
    content = [
        f"| {name} | "
        + " | ".join(
            f"{wl[m]['ratios'][f'threadline_content/{p}']:.2f}"
            if f"threadline_content/{p}" in wl[m]["ratios"]
            else "-"
            for m in METRICS
            for p in ("floor", "openinference", "openllmetry", "native")
        )
        + " |"
        for name, wl in report["workloads"].items()
    ]
    lines += [
        "### Content capture on: ratios of threadline (content on) to each configuration",
        "",
        "| workload | "
        + " | ".join(f"{m} /{p}" for m in METRICS for p in ("floor", "OI", "OLLM", "native"))
        + " |",
        "|---|" + "---|" * 8,
        *content,
        "",
        "## Per workload",
        "",
    ]
    for name, wl in report["workloads"].items():
        lines += [
            f"### {name} (n={wl['n']} calls per process)",
            "",
            "| configuration | CPU us/call | CPU added | wall us/call | wall added "
            "| k instructions/call: least (median, max) | k instructions added | spans/call |",
            "|---|---|---|---|---|---|---|---|",
        ]
        counts = wl.get("instructions", {}).get("summary", {})
        for config in CONFIG_ORDER:
            cpu = wl["cpu"]["summary"].get(config)
            wall = wl["wall"]["summary"].get(config)
            if cpu is None or wall is None:
                continue
            instr = counts.get(config, {})
            lines.append(
                f"| {CONFIG_LABELS[config]} | {fmt_range(cpu, 'us')} | {fmt_range(cpu, 'added')} "
                f"| {fmt_range(wall, 'us')} | {fmt_range(wall, 'added')} | "
                f"{_counts(instr)} | {_count(instr, 'added_least')} | "
                f"{cpu['spans_per_call']:g} |"
            )
        lines.append("")
    if report.get("failed"):
        lines += ["## Failed workloads", ""]
        for name, wl in report["failed"].items():
            lines.append(f"- {name}: `{wl['error'].strip().splitlines()[-1]}`")
        lines.append("")
    lines += ["## Versions", ""]
    for group, vers in report["versions"].items():
        lines.append(f"- {group}: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append", default=[], metavar="GROUP=PATH")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--only", action="append", default=[], help="workload or group prefix")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default=None, help="result file stem")
    parser.add_argument(
        "--instruction-calls",
        type=int,
        default=200,
        help="calls counted under callgrind per configuration (0: no instruction counts)",
    )
    parser.add_argument(
        "--instruction-runs",
        type=int,
        default=3,
        help="callgrind runs per configuration, of which the least counts",
    )
    parser.add_argument(
        "--startup-runs", type=int, default=10, help="for benchmarks/startup.py (runs after this)"
    )
    args = parser.parse_args(argv)
    if args.only and all(o.startswith("startup") for o in args.only):
        return 0  # only the zero-code startup measurement was asked for

    pythons = dict(p.split("=", 1) for p in args.python) or {"core": sys.executable}
    started = time.time()
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "rounds": args.rounds,
        "seconds": args.seconds,
        "versions": {},
        "workloads": {},
    }
    stem = args.name or f"{report['date']}-{report['host']}"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        library = _instructions.build(Path(tmp)) if args.instruction_calls > 0 else None
        if library is None and args.instruction_calls > 0:
            print("no instruction counts: valgrind or a C compiler is missing", flush=True)
        for group, python in pythons.items():
            listing = worker(python, "--list", group)
            report["versions"][group] = versions(python)
            for name in listing["workloads"]:
                workload = f"{group}.{name}"
                if args.only and not any(workload.startswith(o) for o in args.only):
                    continue
                configs = [c for c in CONFIG_ORDER if c in listing["configs"]]
                print(f"{workload}: {', '.join(configs)}", flush=True)
                try:
                    result = measure_workload(
                        python, workload, configs, args.rounds, args.seconds, Path(tmp)
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"  FAILED: {error}", flush=True)
                    report["workloads"][workload] = {"error": str(error)[-2000:]}
                    continue
                for metric in METRICS:
                    result[metric] = verdict(summarise(result, metric), group)
                if library is not None:
                    try:
                        counts = measure_instructions(
                            python,
                            workload,
                            configs,
                            args.instruction_calls,
                            Path(tmp),
                            library,
                            runs=max(args.instruction_runs, 1),
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as error:
                        print(f"  instruction count FAILED: {error}", flush=True)
                    else:
                        result["instructions"] = verdict(
                            summarise_instructions(counts, result["cpu"]["summary"]),
                            group,
                            judged="least",
                        )
                        print(f"  {workload} instructions counted", flush=True)
                report["workloads"][workload] = result
                (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    report["failed"] = {k: v for k, v in report["workloads"].items() if "error" in v}
    report["workloads"] = {k: v for k, v in report["workloads"].items() if "error" not in v}
    report["elapsed_s"] = round(time.time() - started)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
