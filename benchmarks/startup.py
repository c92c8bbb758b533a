"""Zero-code startup: what each `opentelemetry_instrumentor` entry point adds to a process.

For every benchmark group's virtualenv, `opentelemetry-instrument python -c ...` runs with
exactly one instrumentation enabled (the others listed in `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`)
and with none enabled, on two scripts: one that imports nothing (an application that does not use
the framework) and one that imports the framework. Each run is a fresh process; rounds interleave
the configurations with a rotated order, after one uncounted warm-up run of each. The child's CPU
time (user + system) and maximum RSS come from `wait4`; wall-clock time is reported alongside.

    python benchmarks/startup.py --python langchain=PATH/bin/python --startup-runs 10

Results: `results/<date>-<host>-startup.{json,md}`.
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

# The module an application of each group imports first, and the one whose presence in
# `sys.modules` says the framework was loaded.
FRAMEWORK_MODULES = {
    "langchain": ("langchain_core.language_models.chat_models", "langchain_core"),
    "llamaindex": ("llama_index.core", "llama_index.core"),
    "pydantic_ai": ("pydantic_ai", "pydantic_ai"),
    "mcp": ("mcp.client.session", "mcp"),
}
NONE = "none"

_LIST_ENTRY_POINTS = """
import json
from importlib.metadata import entry_points
print(json.dumps(sorted(
    (ep.name, ep.dist.name if ep.dist else "?")
    for ep in entry_points(group="opentelemetry_instrumentor")
)))
"""


def label(dist: str) -> str:
    """Who ships an instrumentor, in the names the other tables use."""
    name = dist.lower().replace("_", "-")
    if name.startswith("threadline"):
        return "threadline"
    if name.startswith("openinference"):
        return "OpenInference"
    if name.startswith("opentelemetry-instrumentation-"):
        return "OpenLLMetry" if name.endswith(("langchain", "llamaindex")) else dist
    return dist


def entry_points(python: str) -> list[tuple[str, str]]:
    out = subprocess.run(
        [python, "-c", _LIST_ENTRY_POINTS], check=True, capture_output=True, text=True
    )
    return [(name, dist) for name, dist in json.loads(out.stdout)]


def run_once(python: str, script: str, disabled: list[str]) -> dict[str, Any]:
    """One process under `opentelemetry-instrument`: CPU seconds, wall seconds, RSS."""
    bindir = Path(python).parent
    env = {
        **os.environ,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(disabled),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    command = [str(bindir / "opentelemetry-instrument"), python, "-c", script]
    # Files, not pipes: the parent only reads after the child is reaped by wait4.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}: {stderr[-2000:]}")
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "framework_loaded": stdout.strip() == "1",
    }


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("cpu", "wall", "rss_mb"):
        values = [s[key] for s in samples]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    out["framework_loaded"] = sorted({s["framework_loaded"] for s in samples})
    return out


def measure_group(group: str, python: str, runs: int) -> dict[str, Any]:
    imported, probe = FRAMEWORK_MODULES[group]
    check = f"import sys; print(int({probe!r} in sys.modules))"
    scripts = {"no framework": check, f"import {imported}": f"import {imported}; {check}"}
    points = entry_points(python)
    names = [name for name, _ in points]
    configs: dict[str, list[str]] = {NONE: names}
    for name, dist in points:
        configs[f"{label(dist)} ({name})"] = [other for other in names if other != name]
    cases = [(config, script) for config in configs for script in scripts]
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    for config, script in cases:  # warm-up: bytecode caches written, files in the page cache
        run_once(python, scripts[script], configs[config])
    for round_ in range(runs):
        shift = round_ % len(cases)
        for config, script in cases[shift:] + cases[:shift]:
            samples[(config, script)].append(run_once(python, scripts[script], configs[config]))
    result: dict[str, Any] = {"configs": list(configs), "scripts": list(scripts), "rows": []}
    for script in scripts:
        base = summarise(samples[(NONE, script)])
        for config in configs:
            row = summarise(samples[(config, script)])
            added = [
                s["cpu"] - b["cpu"]
                for s, b in zip(samples[(config, script)], samples[(NONE, script)], strict=True)
            ]
            row["added_cpu"] = {
                "median": statistics.median(added),
                "min": min(added),
                "max": max(added),
            }
            row["cpu_ratio"] = row["cpu"]["median"] / base["cpu"]["median"]
            result["rows"].append({"config": config, "script": script, **row})
    return result


def _ms(stat: dict[str, float]) -> str:
    return f"{stat['median'] * 1000:.0f} ({stat['min'] * 1000:.0f}-{stat['max'] * 1000:.0f})"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Zero-code startup, {report['date']} on {report['host']}",
        "",
        f"{report['machine']}; {report['runs']} runs per cell, medians (min-max). CPU is the",
        "child's user + system time; added CPU is the per-round difference to `none` (every",
        "entry point disabled) on the same script.",
        "",
    ]
    for group, result in report["groups"].items():
        if "error" in result:
            lines += [f"## {group}", "", f"FAILED: {result['error']}", ""]
            continue
        lines += [
            f"## {group}",
            "",
            "| script | enabled | CPU ms | added CPU ms | x none | wall ms | max RSS MB "
            "| framework imported |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            loaded = "/".join("yes" if x else "no" for x in row["framework_loaded"])
            lines.append(
                f"| `{row['script']}` | {row['config']} | {_ms(row['cpu'])} | "
                f"{_ms(row['added_cpu'])} | {row['cpu_ratio']:.2f} | {_ms(row['wall'])} | "
                f"{row['rss_mb']['median']:.1f} | {loaded} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append", default=[], metavar="GROUP=PATH")
    parser.add_argument("--startup-runs", type=int, default=10, help="0: measure nothing")
    parser.add_argument(
        "--only", action="append", default=[], help="`startup` or `startup.<group>`"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default=None, help="result file stem")
    args, _ = parser.parse_known_args(argv)  # the overhead driver's options pass through

    pythons = dict(p.split("=", 1) for p in args.python)
    if args.startup_runs <= 0:
        return 0
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "runs": args.startup_runs,
        "groups": {},
    }
    for group, python in pythons.items():
        if group not in FRAMEWORK_MODULES:
            continue
        if args.only and not {"startup", f"startup.{group}"} & set(args.only):
            continue
        print(f"startup: {group}", flush=True)
        try:
            report["groups"][group] = measure_group(group, python, args.startup_runs)
        except (RuntimeError, subprocess.SubprocessError) as error:
            print(f"  FAILED: {error}", flush=True)
            report["groups"][group] = {"error": str(error)[-2000:]}
    if not report["groups"]:
        return 0
    stem = args.name or f"{report['date']}-{report['host']}-startup"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {args.out / stem}.json and .md", flush=True)
    return 1 if any("error" in r for r in report["groups"].values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
