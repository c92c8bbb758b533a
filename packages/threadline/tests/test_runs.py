"""The run API: span names, kinds, parents, attributes, status and metrics of each operation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline
from threadline import _registry, config, semconv
from threadline.testing import Telemetry, find


def agent_run() -> None:
    with threadline.invoke_agent("support", description="Helps customers"):
        with threadline.inference(
            "gpt-4o",
            provider="openai",
            server_address="api.openai.com",
            server_port=443,
            request=threadline.RequestParams(temperature=0.5, max_tokens=100, stop_sequences=["x"]),
        ) as chat:
            chat.update(
                response_id="r-1",
                response_model="gpt-4o-2024-08-06",
                finish_reasons=["tool_call"],
                usage=threadline.Usage(
                    input_tokens=50,
                    output_tokens=10,
                    cache_read_input_tokens=20,
                    cache_write_input_tokens=5,
                    reasoning_output_tokens=3,
                ),
            )
        with threadline.execute_tool("get_weather", call_id="call-1", description="Weather"):
            pass
        with threadline.inference("gpt-4o", provider="openai") as chat:
            chat.update(finish_reasons=["stop"], usage=threadline.Usage(70, 20))


def test_agent_tree_and_attributes(telemetry: Telemetry) -> None:
    agent_run()
    assert telemetry.tree() == (
        "invoke_agent support [INTERNAL]\n"
        "  chat gpt-4o [CLIENT]\n"
        "  execute_tool get_weather [INTERNAL]\n"
        "  chat gpt-4o [CLIENT]"
    )
    spans = telemetry.spans()
    first_chat = next(s for s in spans if s.attributes.get(semconv.GEN_AI_RESPONSE_ID) == "r-1")
    assert first_chat.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.request.stop_sequences": ("x",),
        "gen_ai.response.id": "r-1",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("tool_call",),
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 20,
        "gen_ai.usage.cache_write.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 3,
        **(
            {semconv.THREADLINE_COST_USD: first_chat.attributes[semconv.THREADLINE_COST_USD]}
            if semconv.THREADLINE_COST_USD in first_chat.attributes
            else {}
        ),
    }
    tool = find(spans, "execute_tool get_weather")
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call-1",
        "gen_ai.tool.description": "Weather",
        "gen_ai.agent.name": "support",
    }
    agent = find(spans, "invoke_agent support")
    # the agent sums its model calls; cache tokens are not recorded on internal agent spans
    assert agent.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "gen_ai.agent.description": "Helps customers",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.request.model": "gpt-4o",
    }
    assert all(s.status_code == "UNSET" for s in spans)
    telemetry.assert_conformant(strict=False)


def test_every_operation_is_conformant(telemetry: Telemetry) -> None:
    with threadline.invoke_workflow("rag-pipeline"):
        with threadline.embeddings("text-embedding-3-small", provider="openai") as emb:
            emb.update(usage=threadline.Usage(input_tokens=8), dimension_count=1536)
        with threadline.retrieval("docs-index", top_k=3):
            pass
        with threadline.inference("llama3", provider="ollama", operation="text_completion"):
            pass
        with threadline.create_agent("helper", provider="openai"):
            pass
        with threadline.invoke_agent("remote-helper", provider="aws.bedrock", remote=True):
            pass
    assert telemetry.tree() == (
        "invoke_workflow rag-pipeline [INTERNAL]\n"
        "  embeddings text-embedding-3-small [CLIENT]\n"
        "  retrieval docs-index [CLIENT]\n"
        "  text_completion llama3 [CLIENT]\n"
        "  create_agent helper [CLIENT]\n"
        "  invoke_agent remote-helper [CLIENT]"
    )
    telemetry.assert_conformant()
    emb_span = find(telemetry.spans(), "embeddings text-embedding-3-small")
    assert emb_span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 8
    assert emb_span.attributes[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 1536


class QuotaExceeded(Exception):
    pass


def test_failure_sets_error_and_reraises_same_object(telemetry: Telemetry) -> None:
    error = QuotaExceeded("out of tokens")
    with pytest.raises(QuotaExceeded) as raised:
        with threadline.inference("gpt-4o", provider="openai"):
            raise error
    assert raised.value is error
    span = find(telemetry.spans(), "chat gpt-4o")
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == f"{__name__}.QuotaExceeded"
    assert "out of tokens" in (span.status_description or "")
    telemetry.assert_conformant()
    points = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert points[0]["attributes"][semconv.ERROR_TYPE] == f"{__name__}.QuotaExceeded"


def test_client_operation_failure_is_an_exception_event(telemetry: Telemetry) -> None:
    """The conventions' ``gen_ai.client.operation.exception`` event, on the failed CLIENT span;
    none for tools and none for failures given as an error code."""
    with pytest.raises(QuotaExceeded), threadline.inference("gpt-4o", provider="openai"):
        raise QuotaExceeded("out of tokens")
    with pytest.raises(KeyError), threadline.execute_tool("lookup"):
        raise KeyError("city")
    threadline.inference("gpt-5", provider="openai").fail("rate_limited")

    [event] = telemetry.events(semconv.EVENT_OPERATION_EXCEPTION)
    span = find(telemetry.spans(), "chat gpt-4o")
    assert (event["trace_id"], event["span_id"]) == (span.trace_id, span.span_id)
    assert event["severity_number"] == 13  # WARN, as the conventions ask
    attributes = event["attributes"]
    assert attributes[semconv.EXCEPTION_TYPE] == f"{__name__}.QuotaExceeded"
    assert attributes[semconv.EXCEPTION_MESSAGE] == "out of tokens"
    assert (
        attributes[semconv.EXCEPTION_STACKTRACE].rstrip().endswith("QuotaExceeded: out of tokens")
    )
    telemetry.assert_conformant()


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


def test_exception_that_cannot_be_printed_still_fails_the_run(telemetry: Telemetry) -> None:
    with pytest.raises(Unprintable), threadline.inference("gpt-4o", provider="openai"):
        raise Unprintable
    run = threadline.inference("gpt-4o-mini", provider="openai")
    run.fail(QuotaExceeded("late"), end_time=1_000)
    span = find(telemetry.spans(), "chat gpt-4o")
    assert (span.status_code, span.status_description) == ("ERROR", "Unprintable")
    assert span.attributes[semconv.ERROR_TYPE] == f"{__name__}.Unprintable"
    first, second = telemetry.events(semconv.EVENT_OPERATION_EXCEPTION)
    assert semconv.EXCEPTION_MESSAGE not in first["attributes"]
    assert second["timestamp"] == 1_000  # when the run failed, not when it was recorded
    assert len(threadline.open_runs) == 0


def test_fail_with_error_code_and_builtin_error_type(telemetry: Telemetry) -> None:
    run = threadline.execute_tool("lookup")
    run.fail("rate_limited")
    with pytest.raises(TimeoutError), threadline.execute_tool("slow"):
        raise TimeoutError
    spans = telemetry.spans()
    assert find(spans, "execute_tool lookup").attributes[semconv.ERROR_TYPE] == "rate_limited"
    assert find(spans, "execute_tool slow").attributes[semconv.ERROR_TYPE] == "TimeoutError"
    telemetry.assert_conformant()


def test_marked_failed_run_ended_by_its_owner(telemetry: Telemetry) -> None:
    """``mark_failed`` on a run someone else ends (a framework's tool span around a failed MCP
    call): the span and its metric carry the error, however the run then ends."""
    run = threadline.execute_tool("lookup")
    run.mark_failed("tool_error")
    run.end()
    run.mark_failed("too_late")  # ignored once ended
    (span,) = telemetry.spans()
    assert (span.status_code, span.attributes[semconv.ERROR_TYPE]) == ("ERROR", "tool_error")
    (point,) = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert point["attributes"][semconv.ERROR_TYPE] == "tool_error"
    telemetry.assert_conformant()


def test_a_refused_tool_call_keeps_its_made_up_name_off_the_metric(telemetry: Telemetry) -> None:
    """A call its framework refused (a tool name no tool has) fails; the span names the tool the
    model asked for, while the metric leaves that unchecked name out."""
    run = threadline.execute_tool("no_such_tool", call_id="c1")
    run.refuse("unknown_tool", description="Unknown tool name: 'no_such_tool'.")
    run.refuse("again")  # ignored once ended
    (span,) = telemetry.spans()
    assert span.name == "execute_tool no_such_tool"
    assert (span.status_code, span.attributes[semconv.ERROR_TYPE]) == ("ERROR", "unknown_tool")
    assert span.attributes[semconv.GEN_AI_TOOL_NAME] == "no_such_tool"
    (point,) = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert semconv.GEN_AI_TOOL_NAME not in point["attributes"]
    assert point["attributes"][semconv.ERROR_TYPE] == "unknown_tool"
    telemetry.assert_conformant()


@pytest.mark.parametrize("agent_ends", ["stopped_early", "normally", "failed"])
def test_cancelled_run_is_settled_by_its_enclosing_run(
    telemetry: Telemetry, agent_ends: str
) -> None:
    """A cancelled call ends at once (its own end time and duration) and counts as ended; its
    enclosing run settles whether that was a failure: no failure only if the enclosing run
    was stopped early by its consumer, which is what cancelled the call."""
    cancelled = asyncio.CancelledError()
    agent = threadline.invoke_agent("support")
    chat = threadline.inference("gpt-4o", provider="openai", parent=agent)
    chat.attach()
    chat.cancel(cancelled)
    assert chat.ended  # later ends are ignored
    assert threadline.current_run() is None  # detached where it was attached
    chat.end()
    chat.cancel(cancelled)
    with threadline.step("cleanup", parent=agent):
        pass
    if agent_ends == "failed":
        agent.fail(TimeoutError())
    else:
        agent.end(stopped_early=agent_ends == "stopped_early")
    spans = {s.name: s for s in telemetry.spans()}
    assert list(spans) == ["cleanup", "chat gpt-4o", "invoke_agent support"]
    call = spans["chat gpt-4o"]
    assert call.end_ns <= spans["cleanup"].start_ns  # ended when it was cancelled
    failed = agent_ends != "stopped_early"
    if failed:
        assert call.status_code == "ERROR"
        assert call.attributes[semconv.ERROR_TYPE] == "asyncio.exceptions.CancelledError"
    else:
        assert call.status_code == "UNSET"
        assert semconv.ERROR_TYPE not in call.attributes
    (point,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert point["sum"] <= (call.end_ns - call.start_ns) / 1e9 + 1e-3
    assert (semconv.ERROR_TYPE in point["attributes"]) is failed
    assert len(threadline.open_runs) == 0
    telemetry.assert_conformant()


@pytest.mark.parametrize("stopped_early", [False, True])
def test_a_with_block_cancelled_is_settled_as_a_cancelled_run(
    telemetry: Telemetry, stopped_early: bool
) -> None:
    """A run's ``with`` block that a cancellation leaves is cancelled, not failed outright: a
    consumer closing the agent's stream cancelled it (no failure), a timeout did not."""

    async def main() -> None:
        with threadline.invoke_agent("support") as agent:
            with pytest.raises(asyncio.CancelledError):
                with threadline.inference("gpt-4o", provider="openai"):
                    raise asyncio.CancelledError
            if not stopped_early:
                return
            agent.end(stopped_early=True)

    asyncio.run(main())
    call = telemetry.find("chat gpt-4o")
    assert (call.status_code == "ERROR") is not stopped_early
    assert (semconv.ERROR_TYPE in call.attributes) is not stopped_early
    assert telemetry.find("invoke_agent support").status_code == "UNSET"
    assert len(threadline.open_runs) == 0


def test_cancelled_runs_nest(telemetry: Telemetry) -> None:
    """A run cancelled inside one that was cancelled before it waits with it, and never ends
    after it."""
    outer = threadline.invoke_workflow("app")
    agent = threadline.invoke_agent("support", parent=outer)
    chat = threadline.inference("gpt-4o", provider="openai", parent=agent)
    agent.cancel(asyncio.CancelledError())
    chat.cancel(asyncio.CancelledError())
    outer.end(stopped_early=True)
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["chat gpt-4o"].end_ns <= spans["invoke_agent support"].end_ns
    assert {s.status_code for s in spans.values()} == {"UNSET"}
    assert len(threadline.open_runs) == 0


@pytest.mark.parametrize("stopped_early", [False, True])
def test_call_cancelled_after_its_run_ended(telemetry: Telemetry, stopped_early: bool) -> None:
    """The run a call belongs to ended first (a framework that ends the agent, then cancels
    the request task): the call takes that run's outcome at once, and ends no later."""
    agent = threadline.invoke_agent("support")
    chat = threadline.inference("gpt-4o", provider="openai", parent=agent)
    if stopped_early:
        agent.end(stopped_early=True)
    else:
        agent.fail(TimeoutError())
    time.sleep(0.01)
    chat.cancel(asyncio.CancelledError())
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["chat gpt-4o"].end_ns <= spans["invoke_agent support"].end_ns
    assert (spans["chat gpt-4o"].status_code == "ERROR") is not stopped_early
    assert len(threadline.open_runs) == 0


def test_call_started_after_its_run_ended_then_cancelled(telemetry: Telemetry) -> None:
    """A lingering task starts a call under a run that has ended, then is cancelled: the call
    ends no earlier than it started, and its duration is recorded."""
    agent = threadline.invoke_agent("support")
    agent.end()
    time.sleep(0.005)
    chat = threadline.inference("gpt-4o", provider="openai", parent=agent)
    chat.cancel(asyncio.CancelledError())
    call = telemetry.find("chat gpt-4o")
    assert call.end_ns >= call.start_ns
    (point,) = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert point["min"] >= 0


def test_cancelled_run_whose_enclosing_run_never_ends_is_reaped(telemetry: Telemetry) -> None:
    agent = threadline.invoke_agent("support")
    chat = threadline.inference("gpt-4o", provider="openai", parent=agent)
    chat.cancel(asyncio.CancelledError())
    threadline.open_runs.reap(now=time.monotonic() + 10_000)
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["chat gpt-4o"].attributes[semconv.ERROR_TYPE] == (
        "asyncio.exceptions.CancelledError"
    )
    assert spans["invoke_agent support"].attributes[semconv.THREADLINE_ABANDONED] is True
    assert len(threadline.open_runs) == 0


def test_cancelled_run_with_nothing_around_it_fails_at_once(telemetry: Telemetry) -> None:
    chat = threadline.inference("gpt-4o", provider="openai")
    chat.cancel(asyncio.CancelledError())
    (span,) = telemetry.spans()
    assert span.attributes[semconv.ERROR_TYPE] == "asyncio.exceptions.CancelledError"


def test_generator_exit_is_not_an_error(telemetry: Telemetry) -> None:
    def stream():  # type: ignore[no-untyped-def]
        with threadline.inference("gpt-4o", provider="openai", stream=True) as run:
            for _ in range(10):
                run.chunk()
                yield 1

    gen = stream()
    next(gen)
    gen.close()
    span = find(telemetry.spans(), "chat gpt-4o")
    assert span.status_code == "UNSET"
    assert span.attributes[semconv.GEN_AI_REQUEST_STREAM] is True


def test_end_is_idempotent_and_updates_after_end_are_ignored(telemetry: Telemetry) -> None:
    run = threadline.inference("gpt-4o", provider="openai")
    run.end()
    run.end()
    run.fail(ValueError("late"))
    run.update(response_id="late")
    run.chunk()
    [span] = telemetry.spans()
    assert span.status_code == "UNSET"
    assert semconv.GEN_AI_RESPONSE_ID not in span.attributes
    assert len(telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)) == 1


def test_streaming_chunks_record_time_to_first_chunk(telemetry: Telemetry) -> None:
    run = threadline.inference("gpt-4o", provider="openai", stream=True)
    for _ in range(5):
        run.chunk()
    run.update(usage=threadline.Usage(10, 5), response_model="gpt-4o-2024-08-06")
    run.end()
    span = find(telemetry.spans(), "chat gpt-4o")
    assert span.attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    [ttfc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttfc["count"] == 1
    [tpoc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert tpoc["count"] == 4  # every chunk after the first
    assert run.chunks == 5
    # the first chunk's one point has the answer's attributes (known only at the end); the
    # gaps, recorded on the way in a long stream, the request's, so a stream is one series
    assert ttfc["attributes"][semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert semconv.GEN_AI_RESPONSE_MODEL not in tpoc["attributes"]


def test_only_a_recording_meter_needs_every_chunk(telemetry: Telemetry) -> None:
    """With a meter recording the time per chunk, every chunk is needed; with none (the
    default no-op meter), only the first, for the time to first chunk."""
    timed = threadline.inference("gpt-4o", provider="openai", stream=True)
    assert timed.needs_every_chunk
    timed.chunk()
    assert timed.needs_every_chunk
    timed.end()
    from opentelemetry.metrics import NoOpMeterProvider

    threadline.configure(meter_provider=NoOpMeterProvider())
    untimed = threadline.inference("gpt-4o", provider="openai", stream=True)
    assert untimed.needs_every_chunk
    assert untimed.chunk()
    assert not untimed.needs_every_chunk
    untimed.end()
    _, second = telemetry.spans()
    assert semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in second.attributes
    assert len(telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)) == 1


def test_a_stream_that_fails_after_its_first_chunk_puts_error_type_on_the_duration_only(
    telemetry: Telemetry,
) -> None:
    """``error.type`` is an attribute of the operation duration; the time to first chunk and
    the token usage have the conventions' common metric attributes only."""
    run = threadline.inference("gpt-4o", provider="openai", stream=True)
    run.chunk()
    run.chunk()
    run.update(usage=threadline.Usage(10, 1), response_model="gpt-4o-2024-08-06")
    run.fail(ConnectionResetError("peer went away"))
    [duration] = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert duration["attributes"][semconv.ERROR_TYPE] == "ConnectionResetError"
    [ttfc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    [tpoc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    tokens = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    assert len(tokens) == 2
    for point in (ttfc, tpoc, *tokens):
        assert semconv.ERROR_TYPE not in point["attributes"]
    assert ttfc["attributes"][semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    expected = {k: v for k, v in duration["attributes"].items() if k != semconv.ERROR_TYPE}
    assert ttfc["attributes"] == expected


def test_chunks_that_arrive_together_each_get_a_point(telemetry: Telemetry) -> None:
    run = threadline.inference("gpt-4o", provider="openai", stream=True)
    assert run.chunk(2) is True  # the second came with the first: a gap of 0
    assert run.chunk(5) is False
    run.end()
    [tpoc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert tpoc["count"] == 6  # every chunk after the first
    assert run.chunks == 7
    assert run.chunk(0) is False  # nothing arrived: nothing recorded, no error


def test_chunks_noted_from_two_threads_record_no_negative_gap(telemetry: Telemetry) -> None:
    """Two threads noting chunks at once may store their times out of order (the later time
    first): the SDK refuses a negative histogram value, so that gap counts as none."""
    run = threadline.inference("gpt-4o", provider="openai", stream=True)
    run.chunk()
    run._last_chunk = time.monotonic() + 1.0  # the other thread's later time, stored first
    run.chunk()
    run.end()
    [tpoc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert tpoc["count"] == 1
    assert tpoc["min"] == 0.0


def test_long_stream_records_every_chunk_gap_across_batches(telemetry: Telemetry) -> None:
    run = threadline.inference("gpt-4o", provider="openai", stream=True)
    assert run.chunk() is True
    assert not any(run.chunk() for _ in range(599))  # gaps flushed every 256 chunks
    run.update(response_model="gpt-4o-2024-08-06")
    run.end()
    [tpoc] = telemetry.metric_points(semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)  # one series
    assert tpoc["count"] == 599


def test_metrics_names_attributes_and_buckets(telemetry: Telemetry) -> None:
    agent_run()
    duration = telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
    assert {p["count"] for p in duration} == {1}
    first = next(p for p in duration if semconv.GEN_AI_RESPONSE_MODEL in p["attributes"])
    assert first["attributes"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    assert tuple(first["explicit_bounds"]) == semconv.DURATION_BUCKETS
    tokens = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    by_type: dict[str, int] = {}
    for point in tokens:
        token_type = point["attributes"][semconv.GEN_AI_TOKEN_TYPE]
        by_type[token_type] = by_type.get(token_type, 0) + point["sum"]
        assert tuple(point["explicit_bounds"]) == semconv.TOKEN_BUCKETS
    assert by_type == {"input": 120, "output": 30}
    [tool] = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert tool["attributes"] == {
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": "support",
    }
    [agent] = telemetry.metric_points(semconv.METRIC_INVOKE_AGENT_DURATION)
    assert agent["attributes"] == {"gen_ai.agent.name": "support", "gen_ai.request.model": "gpt-4o"}
    assert tuple(agent["explicit_bounds"]) == semconv.AGENT_DURATION_BUCKETS


def test_handles_cross_threads(telemetry: Telemetry) -> None:
    """Start, chunk and end arrive on three different threads (callback frameworks do this)."""
    holder: dict[str, threadline.InferenceRun] = {}

    def start() -> None:
        holder["run"] = threadline.inference("gpt-4o", provider="openai", stream=True)

    def chunk() -> None:
        holder["run"].chunk()

    def end() -> None:
        holder["run"].update(usage=threadline.Usage(3, 4))
        holder["run"].end()

    for target in (start, chunk, end):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    span = find(telemetry.spans(), "chat gpt-4o")
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    assert len(threadline.open_runs) == 0


def test_attach_in_one_thread_detach_in_another_is_silent(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = otel_context.get_current()
    run = threadline.execute_tool("t")
    run.attach()
    assert trace.get_current_span() is run.span
    thread = threading.Thread(target=run.end)  # ends (and tries to detach) elsewhere
    thread.start()
    thread.join()
    assert "Failed to detach context" not in caplog.text
    # the foreign end could not detach; the attaching context still can. Meanwhile what starts
    # there goes beneath the run's parent (here none), not beneath its ended span
    assert threadline.current_run() is run
    assert not trace.get_current_span().get_span_context().is_valid
    run.detach()
    assert otel_context.get_current() == before
    assert [s.name for s in telemetry.spans()] == ["execute_tool t"]


def test_context_manager_restores_context(telemetry: Telemetry) -> None:
    before = otel_context.get_current()
    with threadline.invoke_agent("a") as agent:
        assert threadline.current_run() is agent
        with threadline.execute_tool("t") as tool:
            assert trace.get_current_span() is tool.span
            assert tool.parent_run is agent
    assert otel_context.get_current() == before
    assert threadline.current_run() is None


def test_explicit_parent_wins_over_current(telemetry: Telemetry) -> None:
    agent = threadline.invoke_agent("a")
    with threadline.invoke_workflow("unrelated"):
        tool = threadline.execute_tool("t", parent=agent)
        tool.end()
    agent.end()
    assert telemetry.tree() == (
        "invoke_agent a [INTERNAL]\n"
        "  execute_tool t [INTERNAL]\n"
        "---\n"
        "invoke_workflow unrelated [INTERNAL]"
    )


def test_async_tasks_keep_their_parents(telemetry: Telemetry) -> None:
    async def tool(name: str) -> None:
        with threadline.execute_tool(name):
            await asyncio.sleep(0.001)

    async def main() -> None:
        with threadline.invoke_agent("parallel"):
            await asyncio.gather(*(tool(f"t{i}") for i in range(3)))

    asyncio.run(main())
    agent = find(telemetry.spans(), "invoke_agent parallel")
    tools = [s for s in telemetry.spans() if s.name.startswith("execute_tool")]
    assert len(tools) == 3
    assert {t.parent_span_id for t in tools} == {agent.span_id}


def test_conversation_id_is_inherited(telemetry: Telemetry) -> None:
    with threadline.invoke_agent("a", conversation_id="conv-1"):
        with threadline.inference("m", provider="openai"):
            pass
        with threadline.execute_tool("t"):
            pass
        with threadline.retrieval("idx"):
            pass
    spans = telemetry.spans()
    assert find(spans, "chat m").attributes[semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert find(spans, "execute_tool t").attributes[semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
    # retrieval spans do not take a conversation id
    assert semconv.GEN_AI_CONVERSATION_ID not in find(spans, "retrieval idx").attributes


def test_mcp_runs(telemetry: Telemetry) -> None:
    client = threadline.mcp_request(
        "tools/call",
        server=False,
        tool_name="get_weather",
        request_id=7,
        transport="pipe",
        protocol_version="2025-06-18",
    )
    server = threadline.mcp_request(
        "tools/call", server=True, parent=client, tool_name="get_weather", request_id=7
    )
    server.fail_tool("city not found")
    client.end()
    listing = threadline.mcp_request("tools/list", server=True)
    listing.fail_rpc(-32602, "bad params")  # a client mistake: not a server error
    call = threadline.mcp_request("tools/call", server=False, tool_name="x")
    call.fail_rpc(-32603, "internal")
    spans = telemetry.spans()
    assert telemetry.tree() == (
        "tools/call get_weather [CLIENT]\n"
        "  tools/call get_weather [SERVER] !ERROR error.type=tool_error\n"
        "---\n"
        "tools/list [SERVER]\n"
        "---\n"
        "tools/call x [CLIENT] !ERROR error.type=-32603"
    )
    server_span = next(s for s in spans if s.kind == "SERVER" and s.name.endswith("get_weather"))
    assert server_span.attributes[semconv.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert server_span.attributes[semconv.JSONRPC_REQUEST_ID] == "7"
    assert find(spans, "tools/list").attributes[semconv.RPC_RESPONSE_STATUS_CODE] == "-32602"
    telemetry.assert_conformant()
    assert len(telemetry.metric_points(semconv.METRIC_MCP_SERVER_OPERATION_DURATION)) == 2


def test_mcp_handler_exception_answered_with_a_code(telemetry: Telemetry) -> None:
    """A handler raised and the SDK answered with a code of its own: as the MCP conventions
    ask, error.type is the response's code, on the span and the metric, and the exception's
    message is the status description. On the server, a code that tells of a bad request is
    no failure, whatever exception it stands for."""
    call = threadline.mcp_request("prompts/get", server=True, prompt_name="forecast")
    call.fail_rpc(-32603, error=ValueError("no such city"))
    unknown = threadline.mcp_request("tools/call", server=True, tool_name="no_such_tool")
    unknown.fail_rpc(-32602, "Unknown tool", error=KeyError("no_such_tool"))
    assert telemetry.tree() == (
        "prompts/get forecast [SERVER] !ERROR error.type=-32603\n---\n"
        "tools/call no_such_tool [SERVER]"
    )
    span = find(telemetry.spans(), "prompts/get forecast")
    assert span.attributes[semconv.RPC_RESPONSE_STATUS_CODE] == "-32603"
    assert span.status_description == "ValueError: no such city"
    unknown_span = find(telemetry.spans(), "tools/call no_such_tool")
    assert unknown_span.status_code == "UNSET"
    assert unknown_span.attributes[semconv.RPC_RESPONSE_STATUS_CODE] == "-32602"
    points = telemetry.metric_points(semconv.METRIC_MCP_SERVER_OPERATION_DURATION)
    by_method = {p["attributes"][semconv.MCP_METHOD_NAME]: p["attributes"] for p in points}
    assert by_method["prompts/get"][semconv.RPC_RESPONSE_STATUS_CODE] == "-32603"
    assert by_method["prompts/get"][semconv.ERROR_TYPE] == "-32603"
    assert semconv.ERROR_TYPE not in by_method["tools/call"]
    telemetry.assert_conformant()


def test_caller_attributes_never_set_error_type(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """error.type goes with status ERROR only: given among a caller's attributes (at the
    start, in an update, by set_attributes) it is dropped; failures go through fail()."""
    caplog.set_level(logging.DEBUG, logger="threadline")
    given = {semconv.ERROR_TYPE: "timeout", "app.key": "kept"}
    threadline.execute_tool("t", attributes=given).end()
    chat = threadline.inference("m", provider="openai", attributes=given)
    chat.update(attributes={semconv.ERROR_TYPE: "x"})
    chat.end()
    agent = threadline.invoke_agent("a")
    agent.set_attributes(given)
    agent.end()
    rpc = threadline.mcp_request("tools/list", server=False)
    rpc.update(attributes=given)
    rpc.end()
    failed = threadline.execute_tool("f", attributes=given)
    failed.fail("tool_error")
    spans = telemetry.spans()
    assert len(spans) == 5
    for span in spans:
        assert span.attributes["app.key"] == "kept", span.name
        if span.name == "execute_tool f":
            assert span.status_code == "ERROR"
            assert span.attributes[semconv.ERROR_TYPE] == "tool_error"
        else:
            assert span.status_code == "UNSET", span.name
            assert semconv.ERROR_TYPE not in span.attributes, span.name
    assert "error.type is set by fail()" in caplog.text
    telemetry.assert_conformant()


def test_mcp_metric_attributes_stay_bounded(telemetry: Telemetry) -> None:
    """What a server's metrics get from the peer is bounded: no client address or ephemeral
    port, no method name it does not know, no tool name it could not serve."""
    served = threadline.mcp_request(
        "tools/call",
        server=True,
        tool_name="get_weather",
        transport="tcp",
        peer_address="10.0.0.7",
        peer_port=53124,
    )
    served.end()
    unknown_tool = threadline.mcp_request("tools/call", server=True, tool_name="no_such_tool")
    unknown_tool.fail_rpc(-32602, "Unknown tool: no_such_tool")
    odd = threadline.mcp_request("x" * 300, server=True)
    odd.fail_rpc(-32601, "Method not found")
    tasks = threadline.mcp_request("tasks/get", server=True)  # protocol, not yet in the registry
    tasks.end()
    sent = threadline.mcp_request(
        "tools/call", server=False, tool_name="t", peer_address="mcp.example.com", peer_port=443
    )
    sent.fail_rpc(-32603, "internal")

    assert telemetry.tree() == (
        "tools/call get_weather [SERVER]\n---\n"
        "tools/call no_such_tool [SERVER]\n---\n"
        "_OTHER [SERVER]\n---\n"
        "tasks/get [SERVER]\n---\n"
        "tools/call t [CLIENT] !ERROR error.type=-32603"
    )
    spans = telemetry.spans()
    served_span = find(spans, "tools/call get_weather")
    assert served_span.attributes[semconv.CLIENT_ADDRESS] == "10.0.0.7"
    assert served_span.attributes[semconv.CLIENT_PORT] == 53124
    assert find(spans, "_OTHER").attributes[semconv.MCP_METHOD_NAME] == "x" * 128

    server_points = telemetry.metric_points(semconv.METRIC_MCP_SERVER_OPERATION_DURATION)
    server_metrics = sorted(
        (p["attributes"] for p in server_points), key=lambda a: a[semconv.MCP_METHOD_NAME]
    )
    assert server_metrics == [
        {semconv.MCP_METHOD_NAME: "_OTHER", semconv.RPC_RESPONSE_STATUS_CODE: "-32601"},
        {semconv.MCP_METHOD_NAME: "tasks/get"},
        {
            semconv.MCP_METHOD_NAME: "tools/call",
            semconv.GEN_AI_TOOL_NAME: "get_weather",
            semconv.GEN_AI_OPERATION_NAME: "execute_tool",
            semconv.NETWORK_TRANSPORT: "tcp",
        },
        {
            semconv.MCP_METHOD_NAME: "tools/call",
            semconv.GEN_AI_OPERATION_NAME: "execute_tool",
            semconv.RPC_RESPONSE_STATUS_CODE: "-32602",
        },
    ]
    [client_point] = telemetry.metric_points(semconv.METRIC_MCP_CLIENT_OPERATION_DURATION)
    assert client_point["attributes"] == {
        semconv.MCP_METHOD_NAME: "tools/call",
        semconv.GEN_AI_TOOL_NAME: "t",
        semconv.GEN_AI_OPERATION_NAME: "execute_tool",
        semconv.SERVER_ADDRESS: "mcp.example.com",
        semconv.SERVER_PORT: 443,
        semconv.RPC_RESPONSE_STATUS_CODE: "-32603",
        semconv.ERROR_TYPE: "-32603",
    }
    telemetry.assert_conformant()


def test_invalid_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="operation must be one of"):
        threadline.inference("m", provider="p", operation="chatting")
    with pytest.raises(ValueError, match="remote agent needs its provider"):
        threadline.invoke_agent("a", remote=True)


def test_late_created_run_measures_from_its_start_time(telemetry: Telemetry) -> None:
    import time

    started = time.time_ns() - 2_000_000_000  # the framework saw it start 2 s ago
    threadline.invoke_workflow("late", start_time=started).end()
    [point] = telemetry.metric_points(semconv.METRIC_WORKFLOW_DURATION)
    assert point["sum"] >= 2.0
    span = find(telemetry.spans(), "invoke_workflow late")
    assert span.start_ns == started


def test_attach_context_helpers_are_safe_across_threads() -> None:
    run = threadline.execute_tool("node")
    token = threadline.attach_context(run.context)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(threadline.detach_context(token)))
    thread.start()
    thread.join()
    assert results == [False]  # a foreign thread cannot undo it, and says so quietly
    assert threadline.detach_context(token) is True
    assert threadline.detach_context(token) is False  # already used
    run.end()


def test_runtime_context_replaced_after_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Libraries replace OpenTelemetry's runtime context after threadline is imported (Sentry's
    integration does): runs attach, detach and find their parent through the one in use."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    class Replacement(ContextVarsRuntimeContext):
        pass

    replacement = Replacement()
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", replacement)
    with threadline.invoke_agent("agent") as agent:
        assert replacement.get_current() is agent.context
        assert trace.get_current_span() is agent.span
        tool = threadline.execute_tool("search")
        assert tool.parent_run is agent
        tool.attach()
        assert threadline.current_run() is tool
        tool.detach()
        assert threadline.current_run() is agent
        tool.end()
    assert threadline.current_run() is None
    assert replacement.get_current() == {}
    token = threadline.attach_context(agent.context)
    assert threadline.detach_context(token) is True
    assert threadline.detach_context(token) is False  # already used


def test_runs_ended_out_of_order_leave_no_context_behind(telemetry: Telemetry) -> None:
    before = otel_context.get_current()
    first = threadline.execute_tool("first")
    second = threadline.execute_tool("second")
    first.attach()
    second.attach()
    first.end()  # covered by `second`: detaches once `second` has gone
    assert trace.get_current_span() is second.span
    assert first in _registry.stranded  # an end event that finds no run would release it
    second.end()
    assert otel_context.get_current() == before
    # released here, so later end events that find no run have nothing to look for
    assert not _registry.stranded


def test_a_run_ended_under_an_app_span_is_no_parent_once_that_span_exits(
    telemetry: Telemetry,
) -> None:
    """A run that ends while a span the app opened inside it is still current cannot detach
    (the app's span would bring it back as it exits). Once that span exits, the ended run's
    context is current again until threadline can detach it: neither the app's spans nor
    threadline's runs made meanwhile are its children; they go beneath its parent."""
    tracer = trace.get_tracer("app")
    before = otel_context.get_current()
    agent = threadline.invoke_agent("support")
    agent.attach()
    tool = threadline.execute_tool("lookup")
    tool.attach()
    app_span = tracer.start_as_current_span("app.work")
    app_span.__enter__()
    tool.end()  # covered by the app's span
    app_span.__exit__(None, None, None)
    with tracer.start_as_current_span("app.after"):
        pass
    with threadline.execute_tool("next"):
        pass
    assert trace.get_current_span() is agent.span
    agent.end()
    assert otel_context.get_current() == before
    assert not _registry.stranded
    assert telemetry.tree(show_kind=False) == "\n".join(
        [
            "invoke_agent support",
            "  execute_tool lookup",
            "    app.work",
            "  app.after",
            "  execute_tool next",
        ]
    )


def test_raising_span_processor_still_ends_the_run_cleanly() -> None:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Raising(SpanProcessor):
        def on_end(self, span: object) -> None:
            raise RuntimeError("processor bug")

    provider = TracerProvider()
    provider.add_span_processor(Raising())
    previous = threadline.config.current()
    threadline.configure(tracer_provider=provider)
    try:
        with threadline.execute_tool("t") as run:
            pass
    finally:
        threadline.config.restore(previous)
    assert run.ended
    assert len(threadline.open_runs) == 0


_LATE_METER_PROVIDER = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import threadline
from threadline._providers import resolved

def chat():
    run = threadline.inference("m", provider="openai")
    run.update(usage=threadline.Usage(input_tokens=3, output_tokens=2))
    run.end()

chat()  # no meter provider yet: nothing to record, nothing built
assert resolved().recording_instruments() is None
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
chat()  # the global proxies now forward: recorded
names = {
    m.name
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics
}
assert names == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}, names
print("ok")
"""


def test_metrics_start_when_the_global_meter_provider_is_set_late() -> None:
    # A fresh interpreter: the global meter provider can be set once per process.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _LATE_METER_PROVIDER],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_explicit_no_op_meter_provider_records_nothing(telemetry: Telemetry) -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    from threadline._providers import resolved

    threadline.configure(meter_provider=NoOpMeterProvider())
    assert resolved().recording_instruments() is None
    with threadline.inference("m", provider="openai"):
        pass
    assert len(telemetry.spans()) == 1


def test_scopes_left_open_are_detached_when_the_run_ends(telemetry: Telemetry) -> None:
    before = otel_context.get_current()
    graph = threadline.invoke_workflow("graph")
    first = graph.attach_scope()
    second = graph.attach_scope()  # a nested step
    assert first is not None
    assert second is not None
    assert threadline.current_run() is graph
    graph.detach_scope(second)
    assert threadline.current_run() is graph  # the outer step is still open
    graph.end()  # the outer step's end never came
    assert otel_context.get_current() is before
    assert graph.attach_scope() is None  # ended: nothing to attach


def test_scope_covered_by_a_child_is_detached_when_the_child_goes(telemetry: Telemetry) -> None:
    before = otel_context.get_current()
    graph = threadline.invoke_workflow("graph")
    graph.attach_scope()
    chat = threadline.inference("m", provider="openai")
    chat.attach()  # current above the graph's scope
    graph.end()  # cannot detach its scope while the chat's attachment covers it
    assert threadline.current_run() is chat
    chat.detach()
    chat.end()
    assert otel_context.get_current() is before


def test_ended_runs_are_freed_without_the_garbage_collector(telemetry: Telemetry) -> None:
    """No reference cycle outlives a run: its span and context are freed by refcounting, not
    left for the collector (which would cost every application a collection pass per few
    hundred calls)."""
    import gc

    gc.collect()
    gc.disable()
    try:
        with threadline.invoke_agent("agent") as agent:
            chat = threadline.inference("m", provider="openai", parent=agent)
            chat.attach()
            chat.detach()
            chat.end()
            tool = threadline.execute_tool("t", parent=agent)
            tool.end()
            graph = threadline.invoke_workflow("graph", parent=agent)
            graph.attach_scope()
            graph.end()
        del agent, chat, tool, graph
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, threadline.Run)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == []


def test_scopes_of_parallel_steps_in_tasks_each_leave_their_task_clean(
    telemetry: Telemetry,
) -> None:
    graph = threadline.invoke_workflow("graph")

    async def node(started: asyncio.Event, release: asyncio.Event) -> bool:
        token = graph.attach_scope()
        assert token is not None
        started.set()
        await release.wait()
        graph.detach_scope(token)
        return threadline.current_run() is None

    async def main() -> list[bool]:
        first_started, second_started = asyncio.Event(), asyncio.Event()
        first_release, second_release = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(node(first_started, first_release))
        second = asyncio.create_task(node(second_started, second_release))
        await first_started.wait()
        await second_started.wait()
        first_release.set()  # the step that started first ends first
        clean_first = await first
        second_release.set()
        return [clean_first, await second]

    assert asyncio.run(main()) == [True, True]
    graph.end()
    assert threadline.current_run() is None


def test_scope_detached_while_covered_goes_when_the_cover_goes(telemetry: Telemetry) -> None:
    before = otel_context.get_current()
    graph = threadline.invoke_workflow("graph")
    token = graph.attach_scope()
    assert token is not None
    chat = threadline.inference("m", provider="openai")
    chat.attach()
    graph.detach_scope(token)  # the step ends while the chat's attachment covers it
    assert threadline.current_run() is chat
    chat.detach()
    assert otel_context.get_current() is before
    chat.end()
    graph.end()
    assert otel_context.get_current() is before


def test_request_params_drop_unset_and_bool_values() -> None:
    params = threadline.RequestParams(
        max_tokens=True,  # type: ignore[arg-type]
        temperature=0.0,
        top_k=0,
        seed=False,  # type: ignore[arg-type]
        output_type=True,  # type: ignore[arg-type]
        stop_sequences=[],
        choice_count=1,
    )
    assert params.attributes() == {"gen_ai.request.temperature": 0.0, "gen_ai.request.top_k": 0}
    assert type(params.attributes()["gen_ai.request.top_k"]) is float  # a double, as declared
    assert threadline.RequestParams(output_type="json", choice_count=2).attributes() == {
        "gen_ai.output.type": "json",
        "gen_ai.request.choice.count": 2,
    }


def test_inherited_attributes_are_there_when_the_span_starts() -> None:
    """The agent name and conversation a run takes from its enclosing runs are start attributes
    (a span processor's ``on_start`` sees them, and the span needs no second attribute pass)."""
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    seen: dict[str, dict[str, object]] = {}

    class AtStart(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen[span.name] = dict(span.attributes or {})

    provider = TracerProvider()
    provider.add_span_processor(AtStart())
    previous = config.current()
    threadline.configure(tracer_provider=provider)
    try:
        with threadline.invoke_agent("weather", conversation_id="conv-1"):
            threadline.execute_tool("get_weather").end()
            threadline.inference("m", provider="openai").end()
    finally:
        config.restore(previous)
    assert seen["execute_tool get_weather"][semconv.GEN_AI_AGENT_NAME] == "weather"
    assert seen["execute_tool get_weather"][semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert seen["chat m"][semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert seen["invoke_agent weather"][semconv.GEN_AI_CONVERSATION_ID] == "conv-1"


def test_agent_metrics_carry_the_provider_and_model_given(telemetry: Telemetry) -> None:
    with threadline.create_agent("helper", provider="openai", model="gpt-4o"):
        pass
    with threadline.invoke_agent("remote", provider="openai", model="gpt-4o-mini", remote=True):
        pass
    with threadline.invoke_agent("local", model="claude-sonnet-4"):
        with threadline.inference("gpt-4o", provider="openai"):
            pass  # the model given to the agent wins over its chats'
    [created] = [
        p
        for p in telemetry.metric_points(semconv.METRIC_CLIENT_OPERATION_DURATION)
        if p["attributes"]["gen_ai.operation.name"] == "create_agent"
    ]
    assert created["attributes"] == {  # no agent name: not an attribute of this metric
        "gen_ai.operation.name": "create_agent",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
    }
    invoked = {
        p["attributes"]["gen_ai.agent.name"]: p["attributes"]
        for p in telemetry.metric_points(semconv.METRIC_INVOKE_AGENT_DURATION)
    }
    assert invoked["remote"] == {
        "gen_ai.agent.name": "remote",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
    }
    assert invoked["local"] == {
        "gen_ai.agent.name": "local",
        "gen_ai.request.model": "claude-sonnet-4",
    }
    local = find(telemetry.spans(), "invoke_agent local")
    assert local.attributes["gen_ai.request.model"] == "claude-sonnet-4"


def test_an_agent_counts_its_own_calls_not_its_sub_agents(telemetry: Telemetry) -> None:
    with threadline.invoke_agent("supervisor"):
        with threadline.inference("m", provider="openai") as chat:
            chat.update(usage=threadline.Usage(input_tokens=100, output_tokens=10))
        with threadline.invoke_agent("worker"):
            with threadline.inference("m", provider="openai") as chat:
                chat.update(usage=threadline.Usage(input_tokens=1000, output_tokens=500))
    spans = telemetry.spans()
    supervisor = find(spans, "invoke_agent supervisor").attributes
    worker = find(spans, "invoke_agent worker").attributes
    assert (supervisor["gen_ai.usage.input_tokens"], supervisor["gen_ai.usage.output_tokens"]) == (
        100,
        10,
    )
    assert (worker["gen_ai.usage.input_tokens"], worker["gen_ai.usage.output_tokens"]) == (
        1000,
        500,
    )


def test_failure_descriptions_are_for_people(telemetry: Telemetry) -> None:
    import asyncio

    for name, error in (
        ("sentinel", asyncio.CancelledError(object())),  # LangGraph cancels with a sentinel
        ("worded", asyncio.CancelledError("deadline")),
        ("plain", ValueError("bad input")),
        ("empty", ValueError()),
    ):
        threadline.execute_tool(name).fail(error)
    described = {s.name: s.status_description for s in telemetry.spans()}
    assert described == {
        "execute_tool sentinel": "CancelledError",
        "execute_tool worded": "CancelledError: deadline",
        "execute_tool plain": "ValueError: bad input",
        "execute_tool empty": "ValueError",
    }


def test_finish_reasons_are_strings_that_keep_their_choice(telemetry: Telemetry) -> None:
    """One reason per choice: a missing one keeps its place, so "length" stays the second's."""
    with threadline.inference("m", provider="openai") as chat:
        chat.update(finish_reasons=[None, "length"])
    with threadline.inference("unknown", provider="openai") as chat:
        chat.update(finish_reasons=[None])
    known, unknown = telemetry.spans()
    assert known.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("", "length")
    assert semconv.GEN_AI_RESPONSE_FINISH_REASONS not in unknown.attributes


def test_beneath_prefers_the_current_context_only_below_the_parent(telemetry: Telemetry) -> None:
    from threadline._runs import beneath

    tracer = trace.get_tracer("app")
    with threadline.invoke_workflow("flow") as flow:
        assert beneath(flow) is flow  # its own context is current
        with tracer.start_as_current_span("app.step"):
            ctx = beneath(flow)
            assert trace.get_current_span(ctx).name == "app.step"  # type: ignore[attr-defined]
        with threadline.execute_tool("t") as tool:
            assert beneath(flow) is not flow  # a run beneath it is current
            assert threadline.current_run(beneath(flow)) is tool  # type: ignore[arg-type]
        with threadline.inference("m", provider="openai"):
            assert beneath(flow) is flow  # a model call in flight calls no framework
        other = threadline.invoke_workflow("other", parent=otel_context.Context())
        other.attach()
        assert beneath(flow) is flow  # an unrelated run is current
        other.detach()
        other.end()
    with threadline.execute_tool("outside") as outside:
        assert beneath(flow) is flow  # the parent ended, and is not above this one
    assert beneath(outside) is outside  # nothing current
    assert beneath(None) is None


def test_beneath_a_context_prefers_a_later_open_span_of_its_trace(telemetry: Telemetry) -> None:
    """A framework's root call started in the app's span: a span the app opened inside the
    call, or a session, wins; an earlier, ended, or unrelated span does not."""
    from threadline._runs import beneath

    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        started_in = otel_context.get_current()
        assert beneath(started_in) is started_in
        with tracer.start_as_current_span("app.step"):
            inner = beneath(started_in)
            assert trace.get_current_span(inner).name == "app.step"  # type: ignore[attr-defined]
        with threadline.session("s-1"):
            assert beneath(started_in) is otel_context.get_current()  # the same span, a session
        with threadline.inference("m", provider="openai"):
            assert beneath(started_in) is started_in  # a model call in flight calls no framework
        with tracer.start_as_current_span("elsewhere", context=otel_context.Context()):
            assert beneath(started_in) is started_in  # another trace
        ended = tracer.start_span("ended", context=started_in)
        ended.end()
        token = otel_context.attach(trace.set_span_in_context(ended))
        assert beneath(started_in) is started_in  # ended: only leaked here
        otel_context.detach(token)
        later = trace.set_span_in_context(tracer.start_span("later"))
        token = otel_context.attach(later)
        assert beneath(started_in) is later
        otel_context.detach(token)
        # "request" started before "later": it may be above it, never beneath
        assert trace.get_current_span() is request
        assert beneath(later) is later


def test_a_pending_span_makes_its_run_once_when_first_needed(telemetry: Telemetry) -> None:
    """Code inside a framework's step, before the step is known to be a span: a span or a run
    started in the pending context makes the step's run (once) and nests under it; a session
    opened there holds what the framework starts beneath its own run; asking nothing makes
    nothing; a failure to make it is no failure of the app's."""
    from threadline._runs import beneath, current_made_run, pending_context

    tracer = trace.get_tracer("app")
    made: list[threadline.Run] = []

    def make() -> threadline.Run:
        made.append(threadline.invoke_workflow("chain"))
        return made[-1]

    ctx, pending = pending_context(otel_context.Context(), make)
    assert not pending.is_recording()
    token = otel_context.attach(ctx)
    try:
        assert made == []  # attaching asks nothing
        with tracer.start_as_current_span("app.step"), threadline.session("s-1"):
            assert len(made) == 1
            inner = beneath(made[0])  # where the framework starts a call beneath its step
            assert threadline.current_run(inner) is made[0]  # the app's span is no run
            with threadline.inference("m", provider="openai", parent=inner) as call:
                assert call.parent_run is made[0]
        with threadline.execute_tool("t") as tool:
            assert tool.parent_run is made[0]
        assert beneath(made[0]) is made[0]  # the pending context holds nothing beneath it
    finally:
        otel_context.detach(token)
    assert len(made) == 1
    pending.settle(made[0])
    made[0].end()
    assert telemetry.tree(attributes=("session.id",)) == (
        "invoke_workflow chain [INTERNAL]\n"
        "  app.step [INTERNAL]\n"
        "    chat m [CLIENT] session.id=s-1\n"
        "  execute_tool t [INTERNAL]"
    )

    # the app asking for the current run makes it, as a child span would; only looking does not
    ctx, pending = pending_context(otel_context.Context(), make)
    assert current_made_run(ctx) is None
    assert len(made) == 1
    assert threadline.current_run(ctx) is made[1]
    assert current_made_run(ctx) is made[1]
    pending.settle(made[1])
    made[1].end()

    # settled with no run before anything asked: children are roots, nothing is made
    ctx, pending = pending_context(otel_context.Context(), make)
    pending.settle(None)
    with tracer.start_as_current_span("alone", context=ctx) as alone:
        assert alone.parent is None  # type: ignore[attr-defined]
    assert len(made) == 2

    def broken() -> threadline.Run:
        raise RuntimeError("integration bug")

    ctx, pending = pending_context(otel_context.Context(), broken)
    with tracer.start_as_current_span("orphan", context=ctx) as orphan:
        assert orphan.parent is None  # type: ignore[attr-defined]
    assert pending.get_span_context() is trace.INVALID_SPAN_CONTEXT


def test_a_pending_span_asked_from_two_threads_makes_one_run(telemetry: Telemetry) -> None:
    """A thread that asks while another makes the run waits for it (its spans join the same
    trace); settled, the pending span lets its run go without the collector."""
    import gc
    import weakref

    from threadline._runs import pending_context

    making = threading.Event()
    made: list[threadline.Run] = []

    def make() -> threadline.Run:
        making.set()
        time.sleep(0.05)  # e.g. the framework's lock, held elsewhere
        made.append(threadline.invoke_workflow("chain", parent=otel_context.Context()))
        return made[-1]

    ctx, pending = pending_context(otel_context.Context(), make)
    seen: dict[str, trace.SpanContext] = {}

    def ask(name: str, span: trace.Span) -> None:
        if name == "second":
            making.wait()
        seen[name] = span.get_span_context()

    threads = [threading.Thread(target=ask, args=(n, pending)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert seen["first"] == seen["second"] == made[0].span.get_span_context()

    gc.disable()
    try:
        run = weakref.ref(made.pop())
        pending.settle(run())
        run().end()  # type: ignore[union-attr]
        del ctx, pending
        assert run() is None  # no cycle through the pending span's context
    finally:
        gc.enable()


def test_a_run_ended_elsewhere_and_detached_where_it_was_attached_is_not_stranded(
    telemetry: Telemetry,
) -> None:
    tool = threadline.execute_tool("slow")
    tool.attach()
    ender = threading.Thread(target=tool.end)  # e.g. a cancelled run ended by its parent
    ender.start()
    ender.join()
    assert tool in _registry.stranded
    tool.detach()  # its own context, at last
    assert threadline.current_run() is None
    assert tool not in _registry.stranded


def test_one_string_given_for_a_list_is_one_value(telemetry: Telemetry) -> None:
    """OpenAI's ``stop`` and ``encoding_format`` may be one string: it is one value, not its
    characters."""
    with threadline.inference(
        "m", provider="openai", request=threadline.RequestParams(stop_sequences="END")
    ) as chat:
        chat.update(finish_reasons="stop")
    with threadline.embeddings("e", provider="openai", encoding_formats="float"):
        pass
    chat_span = find(telemetry.spans(), "chat m")
    assert chat_span.attributes[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] == ("END",)
    assert chat_span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    embeddings_span = find(telemetry.spans(), "embeddings e")
    assert embeddings_span.attributes[semconv.GEN_AI_REQUEST_ENCODING_FORMATS] == ("float",)


def test_consumer_mark_tells_a_closed_stream_from_a_cut_short_one() -> None:
    """The consumer mark shared with a stream's tasks: closing the stream is stopping early,
    a cancellation of the consumer (a timeout around it) cuts it short, and the first of the
    two settles it."""
    from threadline._context import (
        closed_by_consumer,
        consumer_closed,
        cut_short_by_consumer,
        unwatch_consumer,
        watch_consumer,
    )

    async def consume(cancelled: bool) -> tuple[bool, bool]:
        mark, token = watch_consumer()
        try:
            if cancelled:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(1)
                consumer_closed(mark)
                task.uncancel()
            consumer_closed(mark)  # a second call changes nothing
            return closed_by_consumer(), cut_short_by_consumer()
        finally:
            unwatch_consumer(token)

    assert asyncio.run(consume(cancelled=False)) == (True, False)
    assert asyncio.run(consume(cancelled=True)) == (False, True)
    assert (closed_by_consumer(), cut_short_by_consumer()) == (False, False)  # outside a stream


def test_token_counts_that_are_not_counts_are_not_recorded(telemetry: Telemetry) -> None:
    """Usage is an int in the conventions: an integral float is recorded as its int; a bool,
    a negative count or text is left out (the span, the metrics and the agent's sum)."""
    with threadline.invoke_agent("support") as agent:
        with threadline.inference("gpt-4o", provider="openai", parent=agent) as chat:
            chat.update(
                usage=threadline.Usage(
                    input_tokens=100.0,  # type: ignore[arg-type]
                    output_tokens=True,  # type: ignore[arg-type]
                    cache_read_input_tokens=-5,
                    reasoning_output_tokens="7",  # type: ignore[arg-type]
                )
            )
        with threadline.inference("gpt-4o", provider="openai", parent=agent) as chat:
            chat.update(usage=threadline.Usage(input_tokens=10, output_tokens=2))
    spans = telemetry.spans()
    first = spans[0].attributes
    assert first[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert type(first[semconv.GEN_AI_USAGE_INPUT_TOKENS]) is int
    for key in (
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    ):
        assert key not in first
    summed = telemetry.find("invoke_agent support").attributes
    assert summed[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 110
    assert summed[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    points = telemetry.metric_points(semconv.METRIC_CLIENT_TOKEN_USAGE)
    assert all(point["min"] >= 0 for point in points)
    telemetry.assert_conformant()


def test_a_frameworks_control_flow_ends_any_run_without_error(telemetry: Telemetry) -> None:
    """LangGraph's interrupt (or a subclass of it) passing through a run of any integration
    ends it normally; an exception of the same name from elsewhere is a failure."""
    interrupt = type("GraphInterrupt", (Exception,), {"__module__": "langgraph.errors"})
    subclass = type("MyInterrupt", (interrupt,), {"__module__": "app"})
    impostor = type("GraphInterrupt", (Exception,), {"__module__": "app.errors"})
    for error in (interrupt(), subclass(), impostor()):
        with pytest.raises(type(error)), threadline.execute_tool(type(error).__module__):
            raise error
    statuses = {s.name: s.status_code for s in telemetry.spans()}
    assert statuses == {
        "execute_tool langgraph.errors": "UNSET",
        "execute_tool app": "UNSET",
        "execute_tool app.errors": "ERROR",
    }


@pytest.mark.parametrize("name", ["", None])
def test_a_tool_without_a_name_is_named_by_its_operation_alone(
    telemetry: Telemetry, name: str | None
) -> None:
    """The conventions' span name is ``{operation}`` when the keyed attribute is absent: no
    ``"execute_tool "`` with a trailing space, and no tool name of ``None`` on the span or the
    duration metric (an OTLP exporter cannot encode it)."""
    threadline.execute_tool(name).end()  # type: ignore[arg-type]
    [span] = telemetry.spans()
    assert span.name == "execute_tool"
    assert semconv.GEN_AI_TOOL_NAME not in span.attributes
    assert span.attributes[semconv.GEN_AI_OPERATION_NAME] == "execute_tool"
    [point] = telemetry.metric_points(semconv.METRIC_EXECUTE_TOOL_DURATION)
    assert point["attributes"] == {semconv.GEN_AI_TOOL_TYPE: "function"}


_SUPPRESS = "suppress_language_model_instrumentation"


def _suppressed() -> object:
    return otel_context.get_value(_SUPPRESS)


def test_a_model_call_asks_provider_instrumentations_for_no_second_span(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a model call's span is current, the context carries the key OpenLLMetry's provider
    instrumentations skip their own span on (the call is this span already); other runs'
    contexts, and everything once the call is over, do not. The setting turns it off."""
    with threadline.invoke_agent("planner"):
        assert _suppressed() is None
        with threadline.inference("gpt-4o", provider="openai"):
            assert _suppressed() is True
        with threadline.embeddings("text-embedding-3-small", provider="openai"):
            assert _suppressed() is True
        with threadline.execute_tool("search"):
            assert _suppressed() is None
        with threadline.inference("gpt-4o", provider="openai") as chat:
            # a run beneath the model call's span makes provider calls of its own
            with threadline.execute_tool("lookup", parent=chat.context):
                assert _suppressed() is None
        assert _suppressed() is None
    # suppression the app (or another instrumentation) set itself stays beneath threadline's runs
    token = otel_context.attach(otel_context.set_value(_SUPPRESS, True))
    try:
        with threadline.execute_tool("app"), threadline.inference("m", provider="openai") as chat:
            with threadline.execute_tool("nested", parent=chat.context):
                assert _suppressed() is True
    finally:
        otel_context.detach(token)
    previous = config.current()
    try:
        config.configure(suppress_provider_spans=False)
        with threadline.inference("gpt-4o", provider="openai"):
            assert _suppressed() is None
        monkeypatch.setenv(config.ENV_SUPPRESS_PROVIDER_SPANS, "false")
        assert config.reload_from_env().suppress_provider_spans is False
        monkeypatch.setenv(config.ENV_SUPPRESS_PROVIDER_SPANS, "maybe")
        assert config.reload_from_env().suppress_provider_spans is True
        with pytest.raises(TypeError, match="suppress_provider_spans"):
            config.configure(suppress_provider_spans="no")  # type: ignore[arg-type]
    finally:
        config.restore(previous)
    assert len(telemetry.spans()) == 10


def test_a_model_call_inside_another_is_recorded_once(telemetry: Telemetry) -> None:
    """A model call started beneath a model call's span (another framework's adapter) records
    no span and no tokens of its own, as provider SDK spans beneath it do not; with provider
    spans allowed (``suppress_provider_spans=False``) both are recorded. A tool call inside a
    call of the same tool is one call too; inside another tool, it is a call of its own."""
    with threadline.invoke_agent("helper"):
        with threadline.inference("adapter", provider="langchain") as outer:
            with threadline.inference("inner", provider="llama_index") as inner:
                inner.update(usage=threadline.Usage(input_tokens=7))
            outer.update(usage=threadline.Usage(input_tokens=7))
        with threadline.execute_tool("lookup"), threadline.execute_tool("lookup"):
            threadline.execute_tool("other").end()
    previous = config.current()
    threadline.configure(suppress_provider_spans=False)
    try:
        with threadline.inference("adapter", provider="langchain"):
            threadline.inference("inner", provider="llama_index").end()
    finally:
        config.restore(previous)
    assert telemetry.tree(attributes=("gen_ai.usage.input_tokens",), show_kind=False) == (
        "invoke_agent helper gen_ai.usage.input_tokens=7\n"
        "  chat adapter gen_ai.usage.input_tokens=7\n"
        "  execute_tool lookup\n"
        "    execute_tool other\n"
        "---\n"
        "chat adapter\n"
        "  chat inner"
    )


def test_runs_beneath_a_run_recorded_by_its_outer_run_join_the_outer_one(
    telemetry: Telemetry,
) -> None:
    """A tool call inside a call of the same tool is recorded by the outer run; the inner run
    records nothing. Runs started beneath it (``parent=`` the inner run) still join the outer
    run's trace, session and agent: its span is their parent, its agent counts their tokens."""
    with threadline.session("s-1"), threadline.invoke_agent("helper"):
        with threadline.execute_tool("search"):
            inner = threadline.execute_tool("search")
            child = threadline.inference("m", provider="p", parent=inner)
            child.update(usage=threadline.Usage(input_tokens=3))
            child.end()
            threadline.execute_tool("fetch", parent=inner).end()
            threadline.execute_tool("search", parent=inner).end()
            inner.end()
    assert telemetry.tree(
        attributes=("session.id", "gen_ai.usage.input_tokens"), show_kind=False
    ) == (
        "invoke_agent helper session.id=s-1 gen_ai.usage.input_tokens=3\n"
        "  execute_tool search session.id=s-1\n"
        "    chat m session.id=s-1 gen_ai.usage.input_tokens=3\n"
        "    execute_tool fetch session.id=s-1\n"
        "    execute_tool search session.id=s-1"
    )


def test_a_bad_end_time_still_ends_the_run(telemetry: Telemetry) -> None:
    """An end time that is no time (the caller's mistake) is reported, never raised: the run
    ends now, detached and forgotten."""
    run = threadline.execute_tool("x")
    run.attach()
    run.end(end_time="soon")  # type: ignore[arg-type]
    assert threadline.current_run() is None
    assert len(threadline.open_runs) == 0
    (span,) = telemetry.spans()
    assert span.name == "execute_tool x"
    assert span.end_ns > 0
    assert threadline.links_to([object(), otel_context.get_current()]) == []  # type: ignore[list-item]
