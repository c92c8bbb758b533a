"""``threadline demo`` with every framework installed: one trace across LangGraph, LlamaIndex,
Pydantic AI and an MCP server subprocess. The demo runs as a subprocess, exactly as a user runs
it, and its printed tree, summary, OTLP JSON file and OTLP/HTTP export are checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadline.testing.otlp import OtlpReceiver, otlp_receiver

TREE = """\
invoke_agent trip-planner [INTERNAL]
  chat planner-1 [CLIENT]
  execute_tool search_guides [INTERNAL]
    embeddings mock-embedding [CLIENT]
    retrieval SimpleVectorStore [CLIENT]
      embeddings mock-embedding [CLIENT]
  chat planner-1 [CLIENT]
  execute_tool ask_expert [INTERNAL]
    invoke_agent cycling-expert [INTERNAL]
      chat expert-mini [CLIENT]
  chat planner-1 [CLIENT]
  execute_tool get_weather [INTERNAL]
    server/discover [CLIENT]
      server/discover [SERVER]
    tools/call get_weather [CLIENT] !ERROR error.type=tool_error
      tools/call get_weather [SERVER] !ERROR error.type=tool_error
        lookup_forecast [INTERNAL]
  chat planner-1 [CLIENT]
  execute_tool get_weather [INTERNAL]
    tools/call get_weather [CLIENT]
      tools/call get_weather [SERVER]
        lookup_forecast [INTERNAL]
    tools/list [CLIENT]
      tools/list [SERVER]
  chat planner-1 [CLIENT]"""
SERVER_SPANS = 6  # the [SERVER] spans and lookup_forecast: written by the MCP subprocess
SPANS = TREE.count("\n") + 1

_LINE = re.compile(r"^( *)(\S.*?) \[(INTERNAL|CLIENT|SERVER)\](.*?)(?: \(\d+\.\d ms\))?$")


def _demo(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _shape(stdout: str) -> str:
    """The printed tree without attributes and durations (errors kept)."""
    lines = []
    for line in stdout.splitlines():
        match = _LINE.match(line)
        if match:
            indent, name, kind, rest = match.groups()
            error = rest[rest.index(" !ERROR") :] if " !ERROR" in rest else ""
            lines.append(f"{indent}{name} [{kind}]{error}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    cwd = tmp_path_factory.mktemp("demo")
    return _demo(cwd=cwd), cwd / "threadline-demo-trace.json"


def test_the_demo_is_one_trace_across_four_frameworks_and_two_processes(
    demo_run: tuple[str, Path],
) -> None:
    stdout, _ = demo_run
    assert "note:" not in stdout  # not the scripted fallback
    assert "answer: Yes: take a Velib'" in stdout
    assert re.search(rf"^trace [0-9a-f]{{32}}: {SPANS} spans from 2 processes$", stdout, re.M)
    assert _shape(stdout) == TREE
    tree_lines = [line for line in stdout.splitlines() if _LINE.match(line)]
    assert all("session.id=demo-session" in line for line in tree_lines)
    # The agent's usage is the sum of its own five model calls (not the sub-agent's).
    assert tree_lines[0].startswith(
        "invoke_agent trip-planner [INTERNAL] gen_ai.usage.input_tokens=1894 "
        "gen_ai.usage.output_tokens=139 session.id=demo-session ("
    )
    assert (
        "invoke_agent cycling-expert [INTERNAL] gen_ai.usage.input_tokens=64 "
        "gen_ai.usage.output_tokens=27" in stdout
    )


def test_the_demo_prints_a_session_summary(demo_run: tuple[str, Path]) -> None:
    stdout, _ = demo_run
    summary = stdout[stdout.index("\nsession demo-session") + 1 :]
    lines = summary.splitlines()
    assert lines[0] == "session demo-session (user demo-user)"
    rows = {line[2:23].strip(): line[23:] for line in lines[1:6]}
    assert rows["calls"] == (
        "6 model calls, 2 embeddings calls, 1 retrieval, 4 tool calls, 2 agent runs, "
        "4 MCP requests (server/discover 1, tools/call 2, tools/list 1)"
    )
    assert rows["tokens"] == "2124 total = 1958 input (1344 cache read) + 166 output (12 reasoning)"
    assert re.fullmatch(
        r"median \d+\.\d ms over 5 streamed responses \(min \d+\.\d ms, max \d+\.\d ms\)",
        rows["time to first token"],
    )
    assert rows["errors"] == (
        "2: tools/call get_weather (tool_error, client), "
        "tools/call get_weather (tool_error, server)"
    )


def test_the_demo_writes_both_processes_spans_as_otlp_json(demo_run: tuple[str, Path]) -> None:
    stdout, path = demo_run
    assert f"wrote {SPANS} spans as OTLP JSON to threadline-demo-trace.json" in stdout
    body = json.loads(path.read_text())
    by_service: dict[str, list[dict[str, Any]]] = {}
    for resource_spans in body["resourceSpans"]:
        attributes = {kv["key"]: kv["value"] for kv in resource_spans["resource"]["attributes"]}
        service = attributes["service.name"]["stringValue"]
        for scope_spans in resource_spans["scopeSpans"]:
            assert scope_spans["scope"]["name"] == "threadline"
            by_service.setdefault(service, []).extend(scope_spans["spans"])
    assert sorted(by_service) == ["threadline-demo", "threadline-demo-weather"]
    assert len(by_service["threadline-demo-weather"]) == SERVER_SPANS
    spans = [span for group in by_service.values() for span in group]
    assert len(spans) == SPANS
    assert len({span["traceId"] for span in spans}) == 1
    ids = {span["spanId"]: span for span in spans}
    roots = [span for span in spans if "parentSpanId" not in span]
    assert [root["name"] for root in roots] == ["invoke_agent trip-planner"]
    assert all(span["parentSpanId"] in ids for span in spans if span not in roots)
    # Every server span hangs under a client span of the demo process.
    for span in by_service["threadline-demo-weather"]:
        if span["kind"] == 2:  # SERVER
            parent = ids[span["parentSpanId"]]
            assert parent["kind"] == 3  # CLIENT
            assert parent in by_service["threadline-demo"]
            assert parent["name"] == span["name"]


def test_content_capture_reaches_both_processes(tmp_path: Path) -> None:
    _demo("--content", "--output", "trace.json", cwd=tmp_path)
    body = json.loads((tmp_path / "trace.json").read_text())
    attributes: dict[str, set[str]] = {}
    for resource_spans in body["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                keys = {kv["key"] for kv in span["attributes"]}
                attributes.setdefault(span["name"], set()).update(keys)
    assert "gen_ai.input.messages" in attributes["chat planner-1"]
    assert "gen_ai.output.messages" in attributes["chat expert-mini"]
    assert "gen_ai.tool.call.arguments" in attributes["execute_tool search_guides"]
    assert "gen_ai.retrieval.documents" in attributes["retrieval SimpleVectorStore"]
    assert "gen_ai.tool.call.arguments" in attributes["tools/call get_weather"]


# --- --otlp: both processes export to one collector ----------------------------------------------


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    with otlp_receiver() as receiver:
        yield receiver


def test_otlp_export_from_both_processes(collector: OtlpReceiver, tmp_path: Path) -> None:
    url = collector.url
    stdout = _demo("--otlp", url, cwd=tmp_path)
    assert f"exported {SPANS - SERVER_SPANS} spans to {url}\n" in stdout
    assert f"the MCP server process exports its {SERVER_SPANS} spans there itself" in stdout
    services: dict[str, list[Any]] = {}
    for resource, span in collector.spans():
        services.setdefault(resource["service.name"], []).append(span)
    assert {name: len(spans) for name, spans in services.items()} == {
        "threadline-demo": SPANS - SERVER_SPANS,
        "threadline-demo-weather": SERVER_SPANS,
    }
    assert len({span.trace_id for spans in services.values() for span in spans}) == 1
