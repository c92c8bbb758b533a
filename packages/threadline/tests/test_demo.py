"""The demo command: the scripted run (the fallback without the frameworks) as a tree, its
per-session summary and OTLP JSON file. The cross-framework run is tested in tests/test_demo.py."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from threadline import _demo_report, demo
from threadline.demo import main
from threadline.testing import SpanRecord

_TREE_LINE = re.compile(r"^( *)(\S.*?) \[(INTERNAL|CLIENT|SERVER)\]")


def _run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


def _tree_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if _TREE_LINE.match(line)]


def test_demo_prints_the_agent_tree(tmp_path: Path) -> None:
    text = _run("--scripted", "--output", str(tmp_path / "trace.json"))
    lines = _tree_lines(text)
    shape = [line.split(" [")[0] for line in lines]
    assert shape == [
        "invoke_agent weather-assistant",
        "  chat gpt-4o-mini",
        "  execute_tool get_weather",
        "  chat gpt-4o-mini",
    ]
    assert "gen_ai.usage.input_tokens=203" in lines[0]  # agent sums both model calls
    assert all("session.id=demo-session" in line for line in lines)
    assert all(re.search(r"\(\d+\.\d ms\)$", line) for line in lines)
    assert "note:" not in text


def test_demo_prints_a_session_summary(tmp_path: Path) -> None:
    text = _run("--scripted", "--output", str(tmp_path / "trace.json"))
    summary = text[text.index("session demo-session") :]
    assert summary.startswith("session demo-session (user demo-user)\n")
    assert "2 model calls, 1 tool call, 1 agent run\n" in summary
    assert "234 total = 203 input (64 cache read) + 31 output\n" in summary
    assert re.search(r"time to first token +median \d+\.\d ms over 1 streamed response", summary)
    assert re.search(r"errors +none", summary)


def test_demo_writes_otlp_json(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    text = _run("--scripted", "--output", str(path))
    assert f"wrote 4 spans as OTLP JSON to {path}" in text
    body = json.loads(path.read_text())
    (resource_spans,) = body["resourceSpans"]
    resource = {kv["key"]: kv["value"] for kv in resource_spans["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "threadline-demo"}
    (scope_spans,) = resource_spans["scopeSpans"]
    assert scope_spans["scope"]["name"] == "threadline"
    spans = scope_spans["spans"]
    assert [span["name"] for span in spans] == [
        "invoke_agent weather-assistant",
        "chat gpt-4o-mini",
        "execute_tool get_weather",
        "chat gpt-4o-mini",
    ]
    root = spans[0]
    assert re.fullmatch(r"[0-9a-f]{32}", root["traceId"])
    assert re.fullmatch(r"[0-9a-f]{16}", root["spanId"])
    assert "parentSpanId" not in root
    for span in spans[1:]:
        assert span["traceId"] == root["traceId"]
        assert span["parentSpanId"] == root["spanId"]
        assert int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
    chat = spans[1]
    assert chat["kind"] == 3  # CLIENT
    attributes = {kv["key"]: kv["value"] for kv in chat["attributes"]}
    assert attributes["gen_ai.usage.input_tokens"] == {"intValue": "82"}
    assert attributes["gen_ai.request.temperature"] == {"doubleValue": 0.2}
    assert attributes["session.id"] == {"stringValue": "demo-session"}


def test_output_can_be_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = _run("--scripted", "--output", "")
    assert "wrote" not in text
    assert list(tmp_path.iterdir()) == []


def test_missing_framework_falls_back_to_the_scripted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "langgraph" else real_find_spec(name, *args)

    monkeypatch.setattr(demo.importlib.util, "find_spec", find_spec)
    text = _run("--output", str(tmp_path / "trace.json"))
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert "langgraph" in notes[0]
    assert "scripted run" in notes[0]
    assert _tree_lines(text)[0].startswith("invoke_agent weather-assistant [INTERNAL]")


def test_console_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "demo", "--scripted"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "invoke_agent weather-assistant [INTERNAL]" in result.stdout
    assert (tmp_path / demo.DEFAULT_OUTPUT).exists()


# --- the summary and highlighting on hand-written spans ------------------------------------------


def _span(name: str, kind: str = "INTERNAL", **attributes: Any) -> SpanRecord:
    status = "ERROR" if "error.type" in attributes else "UNSET"
    return SpanRecord(
        name=name,
        kind=kind,
        start_ns=1_000_000_000,
        end_ns=1_250_000_000,
        attributes={"session.id": "s1", **attributes},
        status_code=status,
    )


def test_summary_counts_mcp_requests_once_and_tokens_only_on_model_spans() -> None:
    spans = [
        _span("invoke_agent a", **{"gen_ai.operation.name": "invoke_agent"},
              **{"gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 5}),
        _span("chat m", "CLIENT", **{"gen_ai.operation.name": "chat"},
              **{"gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 5},
              **{"gen_ai.usage.cache_read.input_tokens": 10},
              **{"gen_ai.response.time_to_first_chunk": 0.002}),
        _span("embeddings e", "CLIENT", **{"gen_ai.operation.name": "embeddings"},
              **{"gen_ai.usage.input_tokens": 7}),
        _span("execute_tool t", **{"gen_ai.operation.name": "execute_tool"}),
        _span("tools/call t", "CLIENT", **{"gen_ai.operation.name": "execute_tool"},
              **{"mcp.method.name": "tools/call", "error.type": "tool_error"}),
        _span("tools/call t", "SERVER", **{"gen_ai.operation.name": "execute_tool"},
              **{"mcp.method.name": "tools/call", "error.type": "tool_error"}),
    ]  # fmt: skip
    assert _demo_report.session_summaries(spans) == (
        "session s1\n"
        "  duration             0.25 s\n"
        "  calls                1 model call, 1 embeddings call, 1 tool call, 1 agent run, "
        "1 MCP request (tools/call 1)\n"
        "  tokens               42 total = 37 input (10 cache read) + 5 output\n"
        "  time to first token  median 2.0 ms over 1 streamed response (min 2.0 ms, max 2.0 ms)\n"
        "  errors               2: tools/call t (tool_error, client), tools/call t (tool_error, "
        "server)"
    )


def test_counting_exporter_tells_exported_from_failed_spans() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Flaky(SpanExporter):
        def __init__(self) -> None:
            self.results = [SpanExportResult.SUCCESS, SpanExportResult.FAILURE]

        def export(self, spans: Any) -> SpanExportResult:
            if not self.results:
                raise ConnectionError("collector gone")
            return self.results.pop(0)

    counting = _demo_report.CountingExporter(Flaky())
    assert counting.export([object()] * 3) is SpanExportResult.SUCCESS  # type: ignore[list-item]
    assert counting.export([object()] * 2) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert counting.export([object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert (counting.exported, counting.failed) == (3, 3)


def test_error_lines_are_red_only_on_a_terminal() -> None:
    tree = "a [INTERNAL]\n  b [CLIENT] !ERROR error.type=tool_error"
    assert _demo_report.highlight_errors(tree, color=False) == tree
    assert _demo_report.highlight_errors(tree, color=True).split("\n") == [
        "a [INTERNAL]",
        "\x1b[1;31m  b [CLIENT] !ERROR error.type=tool_error\x1b[0m",
    ]
