"""Spans survive a trip through a JSON-lines file, including from a killed subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

import threadline.testing
from threadline.testing import JsonLinesSpanExporter, SpanRecord, read_spans_jsonl, records

SRC = Path(threadline.testing.__file__).resolve().parents[2]


def provider_with(*exporters: SpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "jsonl-test"}))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def make_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("threadline.tests", "1.0")
    with tracer.start_as_current_span(
        "invoke_agent planner", attributes={"gen_ai.agent.name": "planner"}
    ) as agent:
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.finish_reasons": ["stop", "length"],
                "gen_ai.usage.input_tokens": 42,
                "gen_ai.request.temperature": 0.25,
                "gen_ai.request.stream": True,
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": []}]),
                "text": "naïve ✓ \n newline",
            },
            links=[Link(agent.get_span_context(), {"link.reason": "follows"})],
        ) as chat:
            chat.add_event("gen_ai.first_chunk", {"offsets": [1, 2, 3]})
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attribute("error.type", "TimeoutError")
            tool.set_status(Status(StatusCode.ERROR, "timed out"))


def test_round_trip_equals_in_memory_records(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    memory = InMemorySpanExporter()
    make_spans(provider_with(memory, JsonLinesSpanExporter(path)))
    expected = records(memory.get_finished_spans())
    assert read_spans_jsonl(path) == expected
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    chat = next(r for r in expected if r.name == "chat gpt-4o")
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert chat.events == (("gen_ai.first_chunk", {"offsets": (1, 2, 3)}),)
    assert chat.links[0][2] == {"link.reason": "follows"}
    assert chat.resource["service.name"] == "jsonl-test"
    assert chat.scope == "threadline.tests"
    tool = next(r for r in expected if r.name == "execute_tool search")
    assert (tool.status_code, tool.status_description) == ("ERROR", "timed out")


def test_to_json_is_plain_json() -> None:
    record = SpanRecord(
        "chat",
        attributes={"list": ("a", "b")},
        events=(("e", {"n": (1,)}),),
        links=(("1" * 32, "2" * 16, {}),),
    )
    data = record.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["attributes"] == {"list": ["a", "b"]}
    assert data["links"] == [{"trace_id": "1" * 32, "span_id": "2" * 16, "attributes": {}}]
    assert SpanRecord.from_json(data) == record


def test_from_json_reads_the_sdk_span_json_shape() -> None:
    memory = InMemorySpanExporter()
    make_spans(provider_with(memory))
    for span in memory.get_finished_spans():
        ours = SpanRecord.from_span(span)
        theirs = SpanRecord.from_json(json.loads(span.to_json()))
        # The SDK's JSON has no instrumentation scope, and times rounded to microseconds.
        assert abs(theirs.start_ns - ours.start_ns) <= 1000
        assert abs(theirs.end_ns - ours.end_ns) <= 1000
        same = dataclasses.replace(
            theirs, start_ns=ours.start_ns, end_ns=ours.end_ns, scope=ours.scope
        )
        assert same == ours


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    make_spans(provider_with(JsonLinesSpanExporter(path)))
    whole = path.read_text(encoding="utf-8")
    with path.open("a", encoding="utf-8") as file:
        file.write(whole.splitlines()[0][:40])  # killed mid-write
    assert [r.name for r in read_spans_jsonl(path)] == [
        "chat gpt-4o",
        "execute_tool search",
        "invoke_agent planner",
    ]


def test_bad_line_in_the_middle_raises(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text('{"name": "a"}\n{"name": \n{"name": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"spans\.jsonl:2: not a span record"):
        read_spans_jsonl(path)


def test_missing_or_empty_file_has_no_spans(tmp_path: Path) -> None:
    assert read_spans_jsonl(tmp_path / "absent.jsonl") == []
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    assert read_spans_jsonl(tmp_path / "empty.jsonl") == []


def test_export_after_shutdown_fails(tmp_path: Path) -> None:
    exporter = JsonLinesSpanExporter(tmp_path / "spans.jsonl")
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.force_flush()


def test_concurrent_exports_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    tracer = provider_with(JsonLinesSpanExporter(path)).get_tracer("threadline.tests")

    def work(worker: int) -> None:
        for i in range(50):
            with tracer.start_as_current_span(f"span {worker}-{i}", attributes={"pad": "x" * 500}):
                pass

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = read_spans_jsonl(path)
    assert len(spans) == 400
    assert len({s.name for s in spans}) == 400


SUBPROCESS = textwrap.dedent(
    """
    import sys, time
    from opentelemetry import trace
    from threadline.testing import install_jsonl_exporter

    provider = install_jsonl_exporter(sys.argv[1])
    assert trace.get_tracer_provider() is provider
    tracer = trace.get_tracer("server")
    with tracer.start_as_current_span("tools/call search", kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span("execute_tool search"):
            pass
    print("ready", flush=True)
    with tracer.start_as_current_span("never ends"):
        time.sleep(60)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_subprocess_leaves_its_spans(tmp_path: Path) -> None:
    path = tmp_path / "server.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    spans = read_spans_jsonl(path)
    assert [s.name for s in spans] == ["execute_tool search", "tools/call search"]
    assert spans[0].parent_span_id == spans[1].span_id
    assert spans[1].kind == "SERVER"
