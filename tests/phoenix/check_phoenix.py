"""Runs the demo against Arize Phoenix (a real OTLP backend, from PyPI) and checks through its
REST API that the whole trace arrived and that Phoenix understood the gen_ai attributes.

Run by ``nox -s phoenix`` (not part of ``nox -s tests``: Phoenix is a large install).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait_healthy(base: str, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"phoenix exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("phoenix did not become healthy in time")


def main() -> int:
    port, grpc_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir:
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": workdir,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(grpc_port),
        }
        server = subprocess.Popen(
            ["phoenix", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_healthy(base, server)
            demo = subprocess.run(
                ["threadline", "demo", "--otlp", f"{base}/v1/traces", "--output", ""],
                capture_output=True,
                text=True,
                check=True,
            )
            print(demo.stdout)
            spans: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                spans = _get(f"{base}/v1/projects/default/spans?limit=1000")["data"]
                if len(spans) >= 25:
                    break
                time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=30)
    kinds = Counter(span["span_kind"] for span in spans)
    traces = {span["context"]["trace_id"] for span in spans}
    ids = {span["context"]["span_id"] for span in spans}
    print(f"phoenix stored {len(spans)} spans in {len(traces)} trace(s); span kinds {dict(kinds)}")
    problems = []
    if len(spans) != 25:
        problems.append(f"expected the demo's 25 spans, found {len(spans)}")
    if len(traces) != 1:
        problems.append(f"expected one trace, found {len(traces)}")
    if any(s["parent_id"] and s["parent_id"] not in ids for s in spans):
        problems.append("a span's parent is missing")
    for kind in ("AGENT", "LLM", "TOOL", "RETRIEVER", "EMBEDDING"):
        if not kinds.get(kind):
            problems.append(f"phoenix mapped no span to {kind}")
    for span in spans:
        attributes = span["attributes"]
        if attributes.get("session.id") != "demo-session":
            problems.append(f"{span['name']}: no session.id")
        if span["span_kind"] == "LLM" and "llm.token_count.prompt" not in attributes:
            problems.append(f"{span['name']}: phoenix read no token counts from gen_ai.usage.*")
    errors = [s["name"] for s in spans if s["status_code"] == "ERROR"]
    print(f"error spans as phoenix shows them: {errors}")
    if len(errors) != 2:
        problems.append(f"expected the demo's 2 error spans, found {errors}")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
