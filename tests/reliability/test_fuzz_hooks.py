"""Wrapper hooks (Pydantic AI capability, MCP middleware and client wrappers) driven in any
interleaving by hypothesis: calls start inside each other or in parallel tasks, finish in any
order with results, errors or cancellation, sessions close while calls are in flight. Every call
returns exactly what its handler produced, leaves its context as it found it, and once the loop
is gone (and the reaper has run) nothing is left open, held or attached."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from apps import HOSTILE_META
from conftest import assert_clean_context, drain_open_runs
from hookcalls import HookCalls
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from opentelemetry import context as otel_context
from opentelemetry.context import Context

import threadline
from threadline._failopen import reported_sites

FUZZ = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
KEYS = 6  # a small pool, so calls nest, collide and finish out of order often
keys = st.integers(0, KEYS - 1)
runs = st.integers(0, 1)  # Pydantic AI run ids: requests and tools mostly find their run


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture, span_exporter: Any) -> None:
    caplog.set_level(logging.CRITICAL, logger="threadline")


class Abort(BaseException):
    """Not an ``Exception``: hooks must pass it through untouched too."""


def _run(machine: Any) -> None:
    machine.TestCase.settings = FUZZ
    machine.TestCase().runTest()


class _Machine(RuleBasedStateMachine):
    """Calls in flight on a private loop; subclasses add the rules that start them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = HookCalls()
        self.reported_before = reported_sites()

    def _in_flight(self, data: st.DataObject) -> Any:
        return data.draw(st.sampled_from(sorted(self.calls.calls, key=repr)))

    def _inside(self, data: st.DataObject) -> Any:
        """None (a fresh task), or a call in flight whose handler the new call runs in."""
        if not self.calls.calls:
            return None
        return data.draw(st.one_of(st.none(), st.sampled_from(sorted(self.calls.calls, key=repr))))

    @precondition(lambda self: bool(self.calls.calls))
    @rule(data=st.data(), outcome=st.sampled_from(["result", "error", "cancel"]),
          error=st.integers(0, 3))  # fmt: skip
    def finish(self, data: st.DataObject, outcome: str, error: int) -> None:
        key = self._in_flight(data)
        if outcome == "cancel":
            self.calls.resolve(key, ("cancel", None))
        elif outcome == "error":
            self.calls.resolve(key, ("raised", self.error(key, error)))
        else:
            self.calls.resolve(key, ("result", self.result(key)))

    @precondition(lambda self: bool(self.calls.calls))
    @rule(data=st.data())
    def finish_with_result(self, data: st.DataObject) -> None:
        key = self._in_flight(data)
        self.calls.resolve(key, ("result", self.result(key)))

    def error(self, key: Any, kind: int) -> BaseException:
        """One of four errors the handler raises (``kind`` 0-3)."""
        return ValueError(f"user error {key}")

    def result(self, key: Any) -> Any:
        return object()

    @invariant()
    def every_call_came_back_untouched(self) -> None:
        assert not self.calls.problems, self.calls.problems

    @invariant()
    def bounded(self) -> None:
        assert len(threadline.open_runs) <= 3 * KEYS

    def teardown(self) -> None:
        try:
            self.calls.close()
            assert not self.calls.problems, self.calls.problems
            self.after_close()
            # Every call came back (cancelled at worst), so every run it started has ended:
            # nothing is left for the reaper.
            assert drain_open_runs() == 0
            assert_clean_context()
            # Hostile input and odd orderings are handled, not internal errors.
            assert reported_sites() == self.reported_before
        finally:
            otel_context._RUNTIME_CONTEXT._current_context.set(Context())  # type: ignore[attr-defined]

    def after_close(self) -> None:
        pass


# --- Pydantic AI -----------------------------------------------------------------------------
def pydantic_ai_machine() -> type[RuleBasedStateMachine]:
    pytest.importorskip("threadline.pydantic_ai")
    from opentelemetry.trace import NoOpTracer
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import ApprovalRequired, ModelRetry
    from pydantic_ai.messages import (
        ModelResponse,
        PartDeltaEvent,
        PartStartEvent,
        TextPart,
        TextPartDelta,
        ToolCallPart,
    )
    from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.tools import ToolDefinition
    from pydantic_ai.usage import RequestUsage

    from threadline.pydantic_ai import Tracing

    model = TestModel()
    agent = Agent(model, name="agent", description="answers")
    tool_def = ToolDefinition(name="get_weather", description="Weather in a city.")
    events = [PartStartEvent(index=0, part=TextPart("a")),
              PartDeltaEvent(index=0, delta=TextPartDelta("b"))]  # fmt: skip

    def run_context(run: int) -> Any:
        return SimpleNamespace(tracer=NoOpTracer(), run_id=f"run-{run}", agent=agent,
                               model=model, conversation_id=None, deps=None)  # fmt: skip

    class PydanticAIHooks(_Machine):
        def __init__(self) -> None:
            super().__init__()
            self.tracing = Tracing()
            self.run_of: dict[Any, int] = {}  # agent-run call -> its run id

        def _run(self, data: st.DataObject) -> int:
            """Mostly a run in flight; sometimes one that never started or already ended."""
            active = sorted({r for k, r in self.run_of.items() if k in self.calls.calls})
            return data.draw(st.sampled_from([*active, *active, 7]))

        def error(self, key: Any, kind: int) -> BaseException:
            kinds = (ValueError(f"user error {key}"), ModelRetry("again"),
                     ApprovalRequired(), Abort())  # fmt: skip
            return kinds[kind]

        def result(self, key: Any) -> Any:
            return ModelResponse(parts=[TextPart(f"answer {key}")], model_name="test",
                                 usage=RequestUsage(input_tokens=3, output_tokens=1))  # fmt: skip

        @rule(key=keys, run=runs, data=st.data())
        def agent_run(self, key: int, run: int, data: st.DataObject) -> None:
            ctx = run_context(run)
            self.run_of[key] = run
            self.calls.start(
                key, lambda h: self.tracing.wrap_run(ctx, handler=h), within=self._inside(data)
            )

        @rule(key=keys, data=st.data(), streaming=st.booleans())
        def model_request(self, key: int, data: st.DataObject, streaming: bool) -> None:
            ctx = run_context(self._run(data))
            fields = {"messages": [], "model_settings": None,
                      "model_request_parameters": ModelRequestParameters()}  # fmt: skip
            if "model" in ModelRequestContext.__dataclass_fields__:  # 2.x
                fields["model"] = model
            request = ModelRequestContext(**fields)
            request.streaming = streaming  # type: ignore[attr-defined]
            self.calls.start(key, lambda h: self.tracing.wrap_model_request(
                ctx, request_context=request, handler=h), within=self._inside(data))  # fmt: skip

        @rule(key=keys, data=st.data())
        def tool(self, key: int, data: st.DataObject) -> None:
            ctx = run_context(self._run(data))
            call = ToolCallPart("get_weather", {"city": "Paris"}, tool_call_id=f"call-{key}")
            self.calls.start(key, lambda h: self.tracing.wrap_tool_execute(
                ctx, call=call, tool_def=tool_def, args={"city": "Paris"}, handler=h),
                within=self._inside(data))  # fmt: skip

        @rule(key=keys, data=st.data())
        def event_stream(self, key: int, data: st.DataObject) -> None:
            """The run's event stream, consumed to its end: two events, the handler's
            outcome, then one more event."""
            ctx = run_context(self._run(data))

            async def consume(handler: Any) -> Any:
                got: list[Any] = []

                async def source() -> Any:
                    for event in events:
                        yield event
                    got.append(await handler())
                    yield events[-1]

                async for _ in self.tracing.wrap_run_event_stream(ctx, stream=source()):
                    pass
                return got[0]

            self.calls.start(key, consume, within=self._inside(data))

        @rule(run=runs, data=st.data())
        def event_stream_left_early(self, run: int, data: st.DataObject) -> None:
            ctx = run_context(run)

            async def source() -> Any:
                for event in events * 3:
                    yield event

            async def first(handler: Any) -> Any:
                stream = self.tracing.wrap_run_event_stream(ctx, stream=source())
                async for _ in stream:
                    break
                await stream.aclose()  # type: ignore[attr-defined]
                return await handler()

            self.calls.start(("early", run), first, within=self._inside(data))
            self.calls.resolve(("early", run), ("result", None))

        @invariant()
        def runs_bounded(self) -> None:
            assert len(self.tracing._runs) <= KEYS

        def after_close(self) -> None:
            # Every wrap_run came back (cancelled at worst): no per-run state is left.
            assert self.tracing._runs == {}

    return PydanticAIHooks


def test_pydantic_ai_hooks_in_any_interleaving() -> None:
    _run(pydantic_ai_machine())


class _Drawn:
    """Stands in for hypothesis's ``data``: the given values, in order (a replayed example)."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, strategy: Any) -> Any:
        return self.values.pop(0)


def test_a_pydantic_ai_tool_call_failing_after_its_run_ended_is_ended() -> None:
    """A call whose run ended meanwhile fails at once: no run's end is left to settle it."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.tool(key=1, data=_Drawn(0, None))
    machine.finish_with_result(data=_Drawn(0))
    machine.finish(data=_Drawn(1), outcome="error", error=0)
    machine.teardown()  # every run ended, none left for the reaper


def test_a_pydantic_ai_model_request_failing_after_its_run_ended_is_ended() -> None:
    """As a tool call: 1.x would leave the request open for error hooks no run end settles."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.model_request(key=1, data=_Drawn(0, None), streaming=False)
    machine.finish_with_result(data=_Drawn(0))
    machine.finish(data=_Drawn(1), outcome="error", error=0)
    machine.teardown()  # every run ended, none left for the reaper


def test_pydantic_ai_runs_sharing_an_id_keep_their_state(span_exporter: Any) -> None:
    """A run ending does not drop the state of another run under the same id."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.agent_run(key=1, run=0, data=_Drawn(None))
    machine.finish_with_result(data=_Drawn(0))
    machine.tool(key=2, data=_Drawn(0, None))
    machine.finish_with_result(data=_Drawn(2))
    machine.finish_with_result(data=_Drawn(1))
    machine.teardown()
    names = [span.name for span in span_exporter.get_finished_spans()]
    assert names.count("execute_tool get_weather") == 1, names


def test_a_pydantic_ai_run_outlived_by_one_under_its_id_keeps_its_state(
    span_exporter: Any,
) -> None:
    """A second run under an open run's id that ends first hands the id back: the first run's
    later tool call is recorded, beneath that first run."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.agent_run(key=1, run=0, data=_Drawn(None))
    machine.finish_with_result(data=_Drawn(1))
    machine.tool(key=2, data=_Drawn(0, None))
    machine.finish_with_result(data=_Drawn(2))
    machine.finish_with_result(data=_Drawn(0))
    machine.teardown()
    second, tool, first = span_exporter.get_finished_spans()
    assert [second.name, tool.name, first.name] == [
        "invoke_agent agent",
        "execute_tool get_weather",
        "invoke_agent agent",
    ]
    assert tool.parent is not None
    assert tool.parent.span_id == first.context.span_id


def test_a_pydantic_ai_hook_outliving_its_run_joins_no_other_run_under_its_id(
    span_exporter: Any,
) -> None:
    """A tool call that starts beneath a run that has ended (in a task it left running), while
    another run holds the same run id: it is no call of that other run."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.model_request(key=1, data=_Drawn(0, 0), streaming=False)
    machine.agent_run(key=2, run=0, data=_Drawn(None))
    machine.finish_with_result(data=_Drawn(0))
    machine.tool(key=3, data=_Drawn(0, 1))
    for key in (3, 1, 2):
        machine.finish_with_result(data=_Drawn(key))
    machine.teardown()
    first, request, second = span_exporter.get_finished_spans()  # no execute_tool
    assert [first.name, request.name, second.name] == [
        "invoke_agent agent",
        "chat test",
        "invoke_agent agent",
    ]
    assert request.parent is not None
    assert request.parent.span_id == first.context.span_id


def test_a_context_stood_down_beneath_a_stream_is_left_as_it_was() -> None:
    """A request's context, current in a stream started inside it, names the agent's span
    once the agent run's cancellation ends that request elsewhere: the same context object,
    not one left attached."""
    machine = pydantic_ai_machine()()
    machine.agent_run(key=0, run=0, data=_Drawn())
    machine.model_request(key=1, data=_Drawn(0, None), streaming=False)
    machine.event_stream(key=2, data=_Drawn(0, 1))
    machine.teardown()


# --- MCP -------------------------------------------------------------------------------------
def mcp_machine() -> type[RuleBasedStateMachine]:
    pytest.importorskip("threadline.mcp")
    mcp = pytest.importorskip("mcp")
    if not hasattr(mcp, "Client"):
        pytest.skip("the middleware and dispatcher hooks are mcp 2.x")
    from mcp.server.connection import Connection
    from mcp.shared.exceptions import MCPError
    from pydantic import BaseModel, ValidationError

    from threadline.mcp import TracingMiddleware
    from threadline.mcp import _client as client_hooks

    class Arguments(BaseModel):
        city: str

    try:
        Arguments.model_validate({})
    except ValidationError as error:
        validation_error = error
    metas = st.one_of(st.none(), st.sampled_from(HOSTILE_META),
                      st.just({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                               "baggage": "session.id=s-1,user.id=u-1"}))  # fmt: skip
    methods = st.sampled_from(["tools/call", "resources/read", "prompts/get", "ping"])

    def params(method: str, meta: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"name": "get_weather", "arguments": {"city": "Paris"},
                               "uri": "file:///notes.txt"}  # fmt: skip
        if meta is not None:
            out["_meta"] = meta
        return out

    class Dispatcher:
        """Stands in for the client-side JSON-RPC dispatcher the wrappers patch."""

    class Session:
        """Stands in for a ClientSession over that dispatcher."""

        def __init__(self, dispatcher: Dispatcher) -> None:
            self._dispatcher = dispatcher

    class McpHooks(_Machine):
        def __init__(self) -> None:
            super().__init__()
            self.middleware = TracingMiddleware()
            self.connections = [Connection(None, protocol_version="2025-06-18")  # type: ignore[arg-type]
                                for _ in range(2)]  # fmt: skip
            self.closed: set[int] = set()
            self.dispatcher = Dispatcher()
            # Client sessions over that dispatcher (entering one registers it for the spans).
            self.sessions = [Session(self.dispatcher) for _ in range(2)]

        def error(self, key: Any, kind: int) -> BaseException:
            kinds = (ValueError(f"user error {key}"), MCPError(-32602, "bad params"),
                     validation_error, Abort())  # fmt: skip
            return kinds[kind]

        def result(self, key: Any) -> Any:
            is_error = self.calls.finished % 2 == 0
            return {"content": [{"type": "text", "text": "sunny"}], "isError": is_error}

        @rule(key=keys, method=methods, meta=metas, notification=st.booleans(),
              connection=st.integers(0, 1), data=st.data())  # fmt: skip
        def server_call(self, key: int, method: str, meta: Any, notification: bool,
                        connection: int, data: st.DataObject) -> None:  # fmt: skip
            ctx = SimpleNamespace(
                method="notifications/message" if notification else method,
                params=params(method, meta),
                request_id=None if notification else key,
                protocol_version="2025-06-18",
                request=None,
                session=SimpleNamespace(_connection=self.connections[connection]),
            )
            self.calls.start(key, lambda h: self.middleware(ctx, h), within=self._inside(data))

        @rule(key=keys, method=methods, meta=metas, data=st.data())
        def client_request(self, key: int, method: str, meta: Any, data: st.DataObject) -> None:
            async def original(dispatcher: Any, method: str, params: Any, handler: Any) -> Any:
                return await handler()

            send = client_hooks.wrap_send_raw_request(original)
            self.calls.start(key, lambda h: send(self.dispatcher, method, params(method, meta), h),
                             within=self._inside(data))  # fmt: skip

        @rule(key=keys, meta=metas, data=st.data())
        def client_notification(self, key: int, meta: Any, data: st.DataObject) -> None:
            async def original(dispatcher: Any, method: str, params: Any, handler: Any) -> Any:
                return await handler()

            notify = client_hooks.wrap_notify(original)
            self.calls.start(key, lambda h: notify(self.dispatcher, "notifications/cancelled",
                             params("ping", meta), h), within=self._inside(data))  # fmt: skip

        @rule(connection=st.integers(0, 1))
        def connection_closes(self, connection: int) -> None:
            if connection not in self.closed:
                self.closed.add(connection)
                self.calls.loop.run_until_complete(self.connections[connection].exit_stack.aclose())

        @rule(session=st.integers(0, 1), enter=st.booleans(), error=st.booleans())
        def session_enters_or_exits(self, session: int, enter: bool, error: bool) -> None:
            """Client sessions entered and exited in any order, twice, or never entered."""
            target = self.sessions[session]

            async def aenter(self_: Any) -> Any:
                return self_

            async def aexit(self_: Any, *args: Any) -> None:
                return None

            loop = self.calls.loop
            if enter:
                loop.run_until_complete(client_hooks.wrap_session_enter(aenter)(target))
            else:
                exc = ValueError("session failed") if error else None
                exit_ = client_hooks.wrap_session_exit(aexit)
                loop.run_until_complete(exit_(target, type(exc) if exc else None, exc, None))

    return McpHooks


def test_mcp_hooks_in_any_interleaving() -> None:
    _run(mcp_machine())
