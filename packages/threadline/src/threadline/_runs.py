"""Runs: handles on one GenAI operation each, owning its span, metrics and event.

A run is started by a factory (``threadline.inference(...)``, ``threadline.execute_tool(...)``,
...), may be updated from any thread or task, and ends exactly once (``end``, ``fail`` or, when
abandoned, the reaper). Integrations drive runs from framework callbacks; application code can use
a run as a context manager, which makes its span current for the block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeVar

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from threadline import _context, _providers, _registry, config, semconv
from threadline._failopen import guarded, report
from threadline._providers import Instruments, resolved
from threadline._registry import open_runs
from threadline.content import (
    InputMessage,
    OutputMessage,
    Part,
    RetrievalDocument,
    ToolDefinition,
    _Limiter,
    documents_json,
    dumps,
    messages_json,
    prompt_variables_json,
    query_text,
    system_instructions_json,
    tool_definitions_json,
    tool_payload_json,
)
from threadline.cost import estimate_cost
from threadline.cost import prewarm as prewarm_prices

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from threadline._registry import RunRegistry

_RUN_KEY = otel_context.create_key("threadline.run")
# Set in a model call's context (config.suppress_provider_spans): provider SDK instrumentations
# that honour it (OpenLLMetry's openai, anthropic, bedrock, ...) record no second span of the call.
SUPPRESS_PROVIDER_SPANS_KEY = "suppress_language_model_instrumentation"
_BAGGAGE_KEY: str | None
try:
    from opentelemetry.baggage import _BAGGAGE_KEY
except ImportError:  # pragma: no cover - an API without it: read through the public call
    _BAGGAGE_KEY = None


def _span_key() -> str | None:
    """The context key the API stores the current span under, read off the API itself (None
    if setting a span ever stores anything but one key: then the public calls are used)."""
    keys = list(trace.set_span_in_context(trace.INVALID_SPAN, Context()))
    return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None


_SPAN_KEY = _span_key()
# SpanKind members as module globals: on Python 3.11 reading an enum member (SpanKind.CLIENT)
# runs a descriptor, about twenty times the cost of reading a global, on every run.
_CLIENT, _INTERNAL, _SERVER = SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.SERVER
_END_LOCK = threading.Lock()


def _new_end_lock() -> None:
    """In a forked child: another thread (the reaper) may have held the lock at the fork, and
    no thread there would release it."""
    global _END_LOCK
    _END_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_end_lock)
_open_runs = open_runs._runs  # the open-run map, for Run's inline add and discard
_MAX_BAGGAGE_VALUE = 256
_MAX_MCP_METHOD = 128
_logger = logging.getLogger("threadline")
_RunT = TypeVar("_RunT", bound="Run")
_prices_warm = [False]
_CHUNK_BATCH = 256


@dataclasses.dataclass(slots=True)
class Usage:
    """Token counts as the provider reports them; ``None`` means "not reported" (never 0)."""

    input_tokens: int | None = None
    """All input tokens, cached ones included."""
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else a + b

        return Usage(
            add(self.input_tokens, other.input_tokens),
            add(self.output_tokens, other.output_tokens),
            add(self.cache_read_input_tokens, other.cache_read_input_tokens),
            add(self.cache_write_input_tokens, other.cache_write_input_tokens),
            add(self.reasoning_output_tokens, other.reasoning_output_tokens),
        )

    def attributes(self, *, breakdown: bool = True) -> dict[str, AttributeValue]:
        out: dict[str, AttributeValue] = {}
        if self.input_tokens is not None:
            out[semconv.GEN_AI_USAGE_INPUT_TOKENS] = self.input_tokens
        if self.output_tokens is not None:
            out[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = self.output_tokens
        if breakdown:
            if self.cache_read_input_tokens is not None:
                out[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = self.cache_read_input_tokens
            if self.cache_write_input_tokens is not None:
                out[semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = self.cache_write_input_tokens
            if self.reasoning_output_tokens is not None:
                out[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = self.reasoning_output_tokens
        return out


def _token_counts(usage: Usage) -> Usage:
    """``usage`` with each count a non-negative int, as the conventions type them: an integral
    float becomes its int; anything else (a bool, a negative count, text) is not recorded."""
    # Inline tests, not a loop: this runs on every update that reports usage.
    a, b = usage.input_tokens, usage.output_tokens
    c, d, e = (
        usage.cache_read_input_tokens,
        usage.cache_write_input_tokens,
        usage.reasoning_output_tokens,
    )
    if (
        (a is None or (type(a) is int and a >= 0))
        and (b is None or (type(b) is int and b >= 0))
        and (c is None or (type(c) is int and c >= 0))
        and (d is None or (type(d) is int and d >= 0))
        and (e is None or (type(e) is int and e >= 0))
    ):
        return usage
    _logger.debug("threadline: dropping token counts that are not counts: %r", usage)
    return Usage(*(_token_count(v) for v in (a, b, c, d, e)))


def _token_count(value: object) -> int | None:
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and value >= 0 else None


@dataclasses.dataclass(slots=True)  # not frozen: a frozen __init__ costs µs on every call
class RequestParams:
    """Sampling parameters of an inference request; ``None`` fields are not recorded."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    stop_sequences: Sequence[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    choice_count: int | None = None
    output_type: str | None = None

    def attributes(self) -> dict[str, AttributeValue]:
        out: dict[str, AttributeValue] = {}
        # One inline test per field ("set, and not a bool": True would pass for 1): a loop
        # over (key, value) pairs, or a helper call per field, costs more on every request.
        value: Any = self.max_tokens
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_MAX_TOKENS] = value
        value = self.temperature
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_TEMPERATURE] = value
        value = self.top_p
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_TOP_P] = value
        value = self.top_k
        if value is not None and value is not True and value is not False:
            # a double in the conventions: an int is written as one
            out[semconv.GEN_AI_REQUEST_TOP_K] = float(value) if type(value) is int else value
        value = self.frequency_penalty
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY] = value
        value = self.presence_penalty
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_PRESENCE_PENALTY] = value
        value = self.seed
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_REQUEST_SEED] = value
        value = self.output_type
        if value is not None and value is not True and value is not False:
            out[semconv.GEN_AI_OUTPUT_TYPE] = value
        if self.stop_sequences:
            out[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = _strings(self.stop_sequences)
        if self.choice_count is not None and self.choice_count != 1:
            out[semconv.GEN_AI_REQUEST_CHOICE_COUNT] = self.choice_count
        return out


def error_type(error: BaseException) -> str:
    """Low-cardinality error type: the exception's qualified class name (builtins unqualified)."""
    cls = type(error)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _baggage_entries(ctx: Context) -> Mapping[str, object]:
    # What otel_baggage.get_all reads, without wrapping it in a new read-only view per run
    # (a Context is a dict: read it directly on this per-run path).
    if _BAGGAGE_KEY is None:
        return otel_baggage.get_all(ctx)
    entries = ctx.get(_BAGGAGE_KEY)
    return entries if isinstance(entries, dict) else {}


def _session_attributes(ctx: Context, *, conversation: bool) -> dict[str, AttributeValue]:
    """Allow-listed baggage entries of ``ctx`` as span attributes (hostile values dropped)."""
    # _baggage_entries(ctx), inline: every run starts here
    entries: object = otel_baggage.get_all(ctx) if _BAGGAGE_KEY is None else ctx.get(_BAGGAGE_KEY)
    if not entries or not isinstance(entries, (dict, Mapping)):  # dict first: no ABC check
        return {}
    allow = config.current().baggage_allowlist
    out: dict[str, AttributeValue] = {}
    for key, value in entries.items():
        if key not in allow or not isinstance(value, str) or len(value) > _MAX_BAGGAGE_VALUE:
            continue
        # baggage the app set itself is unchecked: a lone surrogate would make the exporter
        # drop the attribute (and log an error per span)
        if not value.isprintable():
            continue
        if key == semconv.GEN_AI_CONVERSATION_ID and not conversation:
            continue
        out[key] = value
    return out


def _unwind_pending_detaches() -> None:
    """Detach runs beneath the current one that asked to detach while covered (their own
    attachment, or scopes left open when they ended)."""
    while True:
        run = current_made_run()
        if run is None or not run._detach_pending or otel_context.get_current() is not run._ctx:
            return
        if run._token is not None:
            if not _context.detach(run._token):
                return
            run._token = None
        else:
            if not run._undo_one_scope(all_open=run._ended):
                if not run._scopes:
                    run._detach_pending = False
                return
        if run._token is None and not run._scopes:
            run._detach_pending = False
            if run._ended:
                run._ctx = None  # as in Run._finish: no cycle left for the collector
                _registry.stranded.discard(run)


def release_ended() -> None:
    """Detach the ended runs on top of this context that wait to be detached (see
    :meth:`RunRegistry.get_ending`)."""
    try:
        _unwind_pending_detaches()
    except Exception as error:  # noqa: BLE001 - fail-open
        report("release_ended", error)


_registry.release_ended[0] = release_ended


# How far up from the current run to look for a framework's parent (runs nest a few deep).
_MAX_NESTING = 64


def _strings(values: Sequence[str] | str) -> list[str]:
    """A string-array attribute. One string (OpenAI's ``stop`` and ``encoding_format`` may be
    one) is one value, not its characters."""
    if isinstance(values, str):
        return [values]
    return [str(value) for value in values]


def beneath(parent: Run | Context | None) -> Run | Context | None:
    """``parent`` as a framework's own run ids resolve it, or the current context when that
    lies beneath it.

    A framework's parent ids (LangChain's ``parent_run_id``, LlamaIndex's active span) pass
    through code it does not see: a span another library or the app opened inside its step (a
    Pydantic AI agent in a LangGraph node, the app's span around a model call) belongs between
    the step and what the step calls, and so does a session opened there. Any other current
    context (unrelated, or above ``parent``) leaves ``parent`` as it is.

    A context ``parent`` (where a framework's root call started, inside the app's span) gives
    way to a current span of the same trace that started after its own and is still open: the
    app's code inside the framework's step made it (see :func:`_beneath_context`)."""
    if not isinstance(parent, Run):
        return parent if parent is None else _beneath_context(parent)
    try:
        ctx = otel_context._RUNTIME_CONTEXT.get_current()
        value = ctx.get(_RUN_KEY)
        run: Run | None
        if isinstance(value, Run):
            run = value
        elif isinstance(value, PendingSpan):
            run = value.run()
            if run is parent and ctx is value._ctx:
                return parent  # the pending context holds nothing beneath the run
        else:
            return parent
        if run is None or run._ended:
            return parent
        if run is parent:  # a span that is no run of ours (or a session) may be set above it
            return parent if ctx is parent._ctx else ctx
        if isinstance(run, InferenceRun):
            return parent  # a model call in flight calls no framework: its context leaked here
        ancestor = run.parent_run
        for _ in range(_MAX_NESTING):
            if ancestor is None:
                return parent
            if ancestor is parent:
                return ctx
            ancestor = ancestor.parent_run
    except Exception as error:  # noqa: BLE001 - fail-open
        report("beneath", error)
    return parent


def _beneath_context(parent: Context) -> Context:
    """:func:`beneath` for a context parent: the current context when its span is ``parent``'s
    (baggage, a session, set beneath it) or a later open span of the same trace. A span that
    started first can be no descendant; one ended, or a model call in flight, only leaked here."""
    try:
        ctx = otel_context._RUNTIME_CONTEXT.get_current()
        if ctx is parent or _SPAN_KEY is None:
            return parent
        current = ctx.get(_SPAN_KEY)
        above = parent.get(_SPAN_KEY)
        if not isinstance(current, trace.Span) or not isinstance(above, trace.Span):
            return parent
        run = _run_of(ctx.get(_RUN_KEY))
        if (
            run is not None
            and run.span is current
            and (run._ended or isinstance(run, InferenceRun))
        ):
            return parent
        if current is above:
            return ctx
        inner = current.get_span_context()
        if not inner.is_valid or inner.trace_id != above.get_span_context().trace_id:
            return parent
        started = getattr(current, "start_time", None)  # SDK spans know both; others: unknown
        above_started = getattr(above, "start_time", None)
        if (
            isinstance(started, int)
            and isinstance(above_started, int)
            and started >= above_started
            and getattr(current, "end_time", 0) is None
        ):
            return ctx
    except Exception as error:  # noqa: BLE001 - fail-open
        report("beneath", error)
    return parent


class PendingSpan(trace.Span):
    """The span of a run made only once something needs it as a parent.

    A framework may run the app's code inside a step of its own before it knows whether the
    step becomes a span at all (LangChain makes a root chain a workflow only when something
    beneath it makes a span). A context holding a pending span (see :func:`pending_context`)
    lets that code's spans, sessions and runs nest under the step: the first to ask for the
    span's context (OpenTelemetry does, starting a child span; so does a threadline run started
    there) makes the run. Nothing that asks no such question makes it. The pending span itself
    records nothing: it is not the run's span, only the way to it.
    """

    __slots__ = ("_ctx", "_lock", "_make", "_making", "_run")

    def __init__(self, make: Callable[[], Run | None]) -> None:
        self._make: Callable[[], Run | None] | None = make
        self._run: Run | None = None
        self._ctx: Context | None = None  # the context pending_context made for it
        # Its own lock: ``make`` takes the framework's, which another thread may hold while it
        # asks a different pending span.
        self._lock = threading.RLock()
        self._making = False

    def run(self) -> Run | None:
        """The run, made now if it is not yet (another thread asking meanwhile waits for it);
        None if the framework made none."""
        if self._make is not None:
            with self._lock:
                make = self._make
                if make is not None and not self._making:  # asked again while made: none yet
                    self._making = True
                    try:
                        self._run = make()
                    except Exception as error:  # noqa: BLE001 - fail-open
                        report("PendingSpan.run", error)
                    finally:
                        self._make = None
                        self._making = False
        return self._run

    def stop(self) -> None:
        """The step is ending: no run is made from now on (one being made is waited for)."""
        if self._make is not None:
            with self._lock:
                if not self._making:
                    self._make = None

    def settle(self, run: Run | None) -> None:
        """The step is over: the run is ``run`` from now on (None: no run will be made)."""
        with self._lock:
            self._make = None
            self._run = run
            self._ctx = None  # the context holds this span: no cycle left for the collector

    def get_span_context(self) -> trace.SpanContext:
        run = self.run()
        return run.span.get_span_context() if run is not None else trace.INVALID_SPAN_CONTEXT

    def is_recording(self) -> bool:
        return False

    # Another library writing to "the current span" does not reach the run's span.
    def end(self, end_time: int | None = None) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
    ) -> None:
        pass

    def add_link(
        self, context: trace.SpanContext, attributes: Mapping[str, AttributeValue] | None = None
    ) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        pass

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        pass


def pending_context(parent: Context, make: Callable[[], Run | None]) -> tuple[Context, PendingSpan]:
    """A context beneath ``parent`` whose current span is a :class:`PendingSpan` of ``make``
    (attach it where the step's code runs), and that span (settle it when the step ends)."""
    pending = PendingSpan(make)
    if _SPAN_KEY is not None:
        values = dict(parent)  # one copy for both entries, as Run.context does
        values[_SPAN_KEY] = pending
        values[_RUN_KEY] = pending
        ctx = Context(values)
    else:  # pragma: no cover - an API that stores the span differently
        ctx = trace.set_span_in_context(pending, parent)
        ctx = otel_context.set_value(_RUN_KEY, pending, ctx)
    pending._ctx = ctx
    return ctx, pending


def _run_of(value: object) -> Run | None:
    """A context's run entry as a run: a pending span's is made now."""
    if isinstance(value, Run):
        return value
    return value.run() if isinstance(value, PendingSpan) else None


def current_run(ctx: Context | None = None) -> Run | None:
    """The innermost threadline run of ``ctx`` (default: the current context). A framework's
    step whose span is still pending (see :class:`PendingSpan`) gets its run made now, as a
    child span would make it."""
    return _run_of(otel_context.get_value(_RUN_KEY, ctx))


def current_made_run(ctx: Context | None = None) -> Run | None:
    """:func:`current_run` for code that only looks (a transport sending a message, an
    unwinding context): a pending step's run if it has been made, and none is made."""
    value = otel_context.get_value(_RUN_KEY, ctx)
    if isinstance(value, Run):
        return value
    return value._run if isinstance(value, PendingSpan) else None


# Exceptions a framework raises to steer a run, not to fail it, by the top-level package of
# their class and its name (or a base's: no framework is imported to tell). Whichever
# integration's run they pass through ends without error: LangGraph's ``interrupt()`` in a
# Pydantic AI tool that a LangGraph node runs pauses the agent and the tool too.
_CONTROL_FLOW: dict[str, frozenset[str]] = {
    # GraphBubbleUp is the base of them all; the names are kept for releases without it
    "langgraph": frozenset(
        {"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphDrained"}
    ),
    # a tool call deferred to the app, waiting for approval, or skipped by a capability
    "pydantic_ai": frozenset({"CallDeferred", "ApprovalRequired", "SkipToolExecution"}),
}


def is_control_flow(error: BaseException) -> bool:
    """Whether ``error`` steers its framework's run (an interrupt, a hand-off) rather than
    failing it: a run it passes through ends without error."""
    for cls in type(error).__mro__:
        names = _CONTROL_FLOW.get(cls.__module__.partition(".")[0])
        if names is not None and cls.__name__ in names:
            return True
    return False


def _caller_attributes(attributes: Mapping[str, AttributeValue]) -> Mapping[str, AttributeValue]:
    """The attributes a caller gives, without ``error.type``: it goes with status ERROR only,
    set by the failure API (``fail``, ``mark_failed``), never on a span that did not fail."""
    if semconv.ERROR_TYPE not in attributes:
        return attributes
    _logger.debug(
        "threadline: %s is set by fail() or mark_failed(), not as an attribute; ignored",
        semconv.ERROR_TYPE,
    )
    return {key: value for key, value in attributes.items() if key != semconv.ERROR_TYPE}


def _description(error: BaseException) -> str:
    """The status description of a failure: the exception's class and message. A cancellation's
    message is often a sentinel object (LangGraph cancels with one), not words for a person."""
    name = type(error).__name__
    if isinstance(error, asyncio.CancelledError) and not (
        error.args and isinstance(error.args[0], str)
    ):
        return name
    message = _message(error)
    return f"{name}: {message}"[:1024] if message else name


def _message(error: BaseException) -> str:
    """``str(error)``; empty if the exception cannot tell (its ``__str__`` raised)."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - the user's exception: its failure is not the run's
        return ""


def _suppressed_by(run: object) -> bool:
    """Whether ``run`` is a model call that added the provider suppression to its context
    itself (one the app or another instrumentation set before it stays theirs)."""
    return (
        isinstance(run, Run)
        and run._model_call
        and SUPPRESS_PROVIDER_SPANS_KEY not in run._parent_ctx
        and run.context.get(SUPPRESS_PROVIDER_SPANS_KEY) is True
    )


class Run:
    """A started operation. Thread-safe; every method is fail-open."""

    operation: str
    kind: SpanKind
    _records_conversation: ClassVar[bool] = False
    # A GenAI client operation (a CLIENT span): its failures are also told as the conventions'
    # gen_ai.client.operation.exception event.
    _exception_event: ClassVar[bool] = False
    # A call of a model through a provider's SDK, which provider instrumentations also trace.
    _model_call: ClassVar[bool] = False
    _ended: bool  # read of an enclosing run while this one is being made

    __slots__ = (
        "__weakref__",  # for _registry.stranded
        "_cancelled",
        "_ctx",
        "_detach_pending",
        "_end_callbacks",
        "_ended",
        "_ended_at",
        "_failed_as",
        "_parent_ctx",
        "_released_scopes",
        "_scopes",
        "_stopped_early",
        "_token",
        "_waiting",
        "kind",
        "operation",
        "parent_run",
        "span",
        "start_monotonic",
    )

    def __init__(
        self,
        name: str,
        attributes: dict[str, AttributeValue],
        parent: Run | Context | None,
        *,
        kind: SpanKind,
        start_time: int | None = None,
        links: Sequence[Link] | None = None,
    ) -> None:
        self.kind = kind
        if isinstance(parent, Run):
            parent_ctx = parent.context
            self.parent_run: Run | None = parent
        else:
            # otel_context.get_current() without its wrapper's frame (here and in detach): the
            # runtime context, looked up on every call as in _context
            parent_ctx = otel_context._RUNTIME_CONTEXT.get_current() if parent is None else parent
            enclosing = parent_ctx.get(_RUN_KEY)  # current_run(parent_ctx), inline: every run
            if isinstance(enclosing, Run):
                if enclosing._ended and parent is None:
                    # an ended run's context, current again once what covered it went (see
                    # _stand_down): detach it now, and start beneath what it was started in
                    _unwind_pending_detaches()
                    parent_ctx = otel_context._RUNTIME_CONTEXT.get_current()
                    enclosing = parent_ctx.get(_RUN_KEY)
                    self.parent_run = _run_of(enclosing)
                else:
                    self.parent_run = enclosing
            else:
                self.parent_run = None if enclosing is None else _run_of(enclosing)
        self._parent_ctx = parent_ctx
        if _BAGGAGE_KEY is None or parent_ctx.get(_BAGGAGE_KEY):  # no call without baggage
            session = _session_attributes(parent_ctx, conversation=self._carries_conversation())
            if session:
                session.update(attributes)  # explicit values win over baggage
                attributes = session
        self._start_attributes(attributes)
        self._ended = False
        self._failed_as: str | None = None
        self._detach_pending = False
        self._token: Token[Context] | None = None
        self._scopes: list[Token[Context]] | None = None
        self._released_scopes: list[Token[Context]] | None = None
        self._ctx: Context | None = None
        self._end_callbacks: list[tuple[RunRegistry[Any, Any], Any]] | None = None
        self._cancelled: list[Run] | None = None  # cancelled runs inside, waiting (see cancel)
        self._waiting: _Waiting | None = None
        self._stopped_early = False  # ended without error because its consumer stopped
        self._ended_at: int | None = None
        # resolved() inline (here and where a run ends or a stream's first chunk arrives): its
        # call costs more than its check, on every run
        tracer = (_providers._resolved or resolved()).tracer
        # one instant for the span start and the monotonic clock behind durations and
        # time to first chunk, so neither can exceed the span
        self.start_monotonic = time.monotonic()
        if start_time is None:
            start_time = time.time_ns()
        else:  # a run created late (e.g. a graph seen at its first node) measures from then
            self.start_monotonic -= max(time.time_ns() - start_time, 0) / 1e9
        self.span = tracer.start_span(
            name,
            context=parent_ctx,
            kind=kind,
            attributes=attributes,
            links=links,
            start_time=start_time,
        )
        runs = _open_runs  # registered until it ends (see _OpenRuns)
        runs[id(self)] = self
        if len(runs) > config._settings.max_open_runs or open_runs._reaper is None:
            open_runs.added()

    # --- context -------------------------------------------------------------------------------
    @property
    def context(self) -> Context:
        """The parent context with this run's span set: pass it as a child's ``parent``."""
        ctx = self._ctx
        if ctx is None:
            if _SPAN_KEY is not None:  # one copy of the parent context instead of two
                values = dict(self._parent_ctx)
                parent = values.get(_RUN_KEY)
                values[_SPAN_KEY] = self.span
                values[_RUN_KEY] = self
                if self._model_call and config._settings.suppress_provider_spans:
                    values[SUPPRESS_PROVIDER_SPANS_KEY] = True
                elif _suppressed_by(parent):  # a run beneath a model call's span calls
                    del values[SUPPRESS_PROVIDER_SPANS_KEY]  # providers of its own
                ctx = Context(values)
            else:  # pragma: no cover - an API that stores the span differently
                parent = self._parent_ctx.get(_RUN_KEY)
                ctx = trace.set_span_in_context(self.span, self._parent_ctx)
                ctx = otel_context.set_value(_RUN_KEY, self, ctx)
                if self._model_call and config._settings.suppress_provider_spans:
                    ctx = otel_context.set_value(SUPPRESS_PROVIDER_SPANS_KEY, True, ctx)
                elif _suppressed_by(parent):
                    ctx = otel_context.set_value(SUPPRESS_PROVIDER_SPANS_KEY, None, ctx)
            self._ctx = ctx
        return ctx

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def attached(self) -> bool:
        """Whether some context still holds this run from :meth:`attach` or
        :meth:`attach_scope`: :meth:`detach` (or the scope's) has work left."""
        return self._token is not None or bool(self._scopes)

    # The hot methods guard themselves inline: a decorator's wrapper frame costs ~0.3 µs a call.
    def attach(self) -> None:
        """Make this run's span current until :meth:`detach` (or the run ends).

        For callback pairs (start/end) that run in the same thread or task. When the end arrives
        elsewhere, detaching is skipped silently instead of corrupting that context.
        """
        try:
            if self._token is None and not self._ended:
                self._token = _context.attach(self.context)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("Run.attach", error)

    def detach(self) -> None:
        """Undo :meth:`attach`. From a foreign thread/task this does nothing, and the attaching
        context can still detach later.

        Runs attached in one context may end out of order (A attached, B attached, A ends):
        resetting A's token first would make B's later reset bring back A's ended span. So a
        run that is not the current one only marks itself, and is detached when the runs
        attached above it have gone.
        """
        token = self._token
        if token is None:
            return
        try:
            if otel_context._RUNTIME_CONTEXT.get_current() is not self._ctx:
                self._detach_pending = True
                if self._ended:
                    _registry.stranded.add(self)
                    self._stand_down()
                return
            if _context.detach(token):
                self._token = None
                self._detach_pending = False
                if self._ended and _registry.stranded_refs:
                    _registry.stranded.discard(self)  # ended elsewhere, detached here at last
                # _unwind_pending_detaches() has nothing to do unless the run now current
                # asked to detach; this runs on every detach, so look before calling
                below = otel_context._RUNTIME_CONTEXT.get_current().get(_RUN_KEY)
                if isinstance(below, Run) and below._detach_pending:
                    _unwind_pending_detaches()
        except Exception as error:  # noqa: BLE001 - fail-open
            report("Run.detach", error)

    def attach_scope(self) -> Token[Context] | None:
        """Make this run current for a nested step that is no run of its own (a LangGraph node
        inside its graph) until :meth:`detach_scope`; returns the token (None once ended).

        A scope still attached when the run ends in the same context is detached then, so a
        step whose end never arrives does not leave the run's span current."""
        try:
            if self._ended:
                return None
            token = _context.attach(self.context)
            if self._scopes is None:
                self._scopes = [token]
            else:
                self._scopes.append(token)
            return token
        except Exception as error:  # noqa: BLE001 - fail-open
            report("Run.attach_scope", error)
            return None

    def detach_scope(self, token: Token[Context]) -> None:
        """Undo :meth:`attach_scope` (nothing happens from a foreign thread/task)."""
        try:
            scopes = self._scopes
            if not scopes or token not in scopes:
                return  # closed already, when the run ended
            if otel_context.get_current() is not self._ctx:
                # Something attached above this scope is still current: resetting the token now
                # would drop that too, and its own reset would bring this run back. The scope
                # is undone when what covers it goes (see _unwind_pending_detaches).
                if self._released_scopes is None:
                    self._released_scopes = [token]  # tokens are unhashable: a list
                elif token not in self._released_scopes:  # asked again while still covered
                    self._released_scopes.append(token)
                self._detach_pending = True
                return
            scopes.remove(token)
            if _context.detach(token):
                _unwind_pending_detaches()
        except Exception as error:  # noqa: BLE001 - fail-open
            report("Run.detach_scope", error)

    def _close_scopes(self) -> None:
        """At the end: detach scopes whose steps never ended, when they are on top here."""
        while (
            self._scopes
            and self._token is None
            and otel_context.get_current() is self._ctx
            and self._undo_one_scope(all_open=True)
        ):
            pass
        if self._scopes:
            self._detach_pending = True  # covered here, or open in another context
            self._stand_down()
        else:
            _unwind_pending_detaches()

    def _stand_down(self) -> None:
        """Ended, with its context left where something covers it (a span the app opened inside
        it): once that exits, this context is current again, until threadline can detach it. So
        that what starts there meanwhile goes beneath this run's parent, not beneath an ended
        span, the context now names the parent's span (and its suppression of provider spans).
        The context is this run's own object, held by the tokens that restore it; it keeps this
        run under its run key, for the detach to find."""
        ctx = self._ctx
        if ctx is None or _SPAN_KEY is None:
            return
        parent = self._parent_ctx
        for key in (_SPAN_KEY, SUPPRESS_PROVIDER_SPANS_KEY):
            value = parent.get(key)
            # A Context refuses changes through its own methods; it is a dict underneath.
            if value is None:
                dict.pop(ctx, key, None)
            else:
                dict.__setitem__(ctx, key, value)

    def _undo_one_scope(self, *, all_open: bool) -> bool:
        """Reset the most recent scope token of the current context (released ones only,
        unless ``all_open``); False when there is none. Tokens of other contexts (parallel
        steps in other tasks) cannot be reset here and stay for their own context."""
        scopes = self._scopes
        if not scopes:
            return False
        released = self._released_scopes
        for token in reversed(scopes):
            if not all_open and (released is None or token not in released):
                continue
            if _context.detach(token):
                scopes.remove(token)
                if released is not None and token in released:
                    released.remove(token)
                return True
        return False

    def __enter__(self: _RunT) -> _RunT:
        self.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.detach()
        if exc is None:
            self.end()
        else:
            self.end_with_exception(exc)
        return False  # the user's exception propagates untouched

    # --- ending --------------------------------------------------------------------------------
    def _claim_end(self, stopped_early: bool = False) -> bool:
        with _END_LOCK:
            if self._ended:
                return False
            self._ended = True
            self._stopped_early = stopped_early
        return True

    def end(self, *, end_time: int | None = None, stopped_early: bool = False) -> None:
        """End the run successfully. Later calls (and updates) are ignored.

        ``stopped_early``: its consumer stopped before the end (closed the run's stream), which
        cancelled what was in flight inside it: runs cancelled inside it end without error (see
        :meth:`cancel`)."""
        try:
            with _END_LOCK:  # self._claim_end(stopped_early), inline: every run
                if self._ended:
                    return
                self._ended = True
                self._stopped_early = stopped_early
            self._finish(self._failed_as, end_time)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("Run.end", error)

    @guarded()
    def fail(
        self,
        error: BaseException | str,
        *,
        description: str | None = None,
        end_time: int | None = None,
    ) -> None:
        """End the run as failed: status ERROR and ``error.type`` (the exception class, or the
        given low-cardinality string such as a provider error code)."""
        if not self._claim_end():
            return
        kind = self._set_error(error, description)
        if isinstance(error, BaseException):
            _emit_exception_event(self, error, end_time)
        self._finish(kind, end_time)

    def end_with_exception(self, error: BaseException) -> None:
        """End the run with the exception its operation raised: a closed generator means its
        consumer stopped early (no failure), a cancellation came from outside (see
        :meth:`cancel`), a framework's control flow (see :func:`is_control_flow`) is no
        failure, anything else is one."""
        if isinstance(error, GeneratorExit):
            self.end(stopped_early=True)
        elif isinstance(error, asyncio.CancelledError):
            self.cancel(error)
        elif is_control_flow(error):
            self.end()
        else:
            self.fail(error)

    def _set_error(self, error: BaseException | str, description: str | None) -> str:
        """Status ERROR and ``error.type`` on the span; returns the error type."""
        if isinstance(error, BaseException):
            kind = error_type(error)
            if description is None:
                description = _description(error)
        else:
            kind = str(error) or semconv.ERROR_TYPE_OTHER
        self.span.set_attribute(semconv.ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR, description))
        return kind

    @guarded()
    def mark_failed(self, error: BaseException | str, *, description: str | None = None) -> None:
        """Record that the operation failed, on a run someone else ends: status ERROR and
        ``error.type`` now, and the error type on its metrics when it ends, however it ends
        (e.g. a framework's tool span, ended normally, around an MCP call that failed)."""
        if not self._ended:
            self._failed_as = self._set_error(error, description)

    def cancel(self, error: BaseException) -> None:
        """End a run whose operation was cancelled from outside (an ``asyncio`` cancellation).
        It ends at this moment (never after the run it belongs to), and that run settles
        whether it was a failure: if its consumer stopped it early
        (``end(stopped_early=True)``, e.g. an agent's stream closed after the first token),
        the cancellation was how it stopped and this run ends without error; any other end (a
        timeout, a failure, code that carried on after cancelling the call) fails it with
        ``error``. A run still open settles it when it ends; one that has ended, at once. With
        no run around it, it fails at once. From the call on it counts as ended."""
        settle: tuple[bool, int | None] | None = None
        deferred = False
        try:
            with _END_LOCK:
                if self._ended:
                    return
                parent = self.parent_run
                if parent is not None:
                    self._ended = deferred = True
                    self._waiting = _Waiting(error, time.time_ns())
                    if not parent._ended or parent._waiting is not None:
                        if parent._cancelled is None:  # settled when the parent ends
                            parent._cancelled = [self]
                        else:
                            parent._cancelled.append(self)
                    else:
                        settle = (parent._stopped_early, parent._ended_at)
        except Exception as failure:  # noqa: BLE001 - fail-open
            report("Run.cancel", failure)
        if not deferred:
            self.fail(error)
            return
        self.detach()
        if settle is not None:
            self._settle(*settle)

    def _settle(self, stopped_early: bool, limit: int | None) -> None:
        """End a cancelled run as its enclosing run ends (at ``limit`` the latest)."""
        with _END_LOCK:
            waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        at = waiting.at if limit is None else min(waiting.at, limit)
        # ...and not before it started (a run started under one that had ended already)
        started = getattr(self.span, "start_time", None)  # the SDK's span knows it exactly
        if not isinstance(started, int):
            started = time.time_ns() - int((time.monotonic() - self.start_monotonic) * 1e9)
        at = max(at, started)
        try:
            if stopped_early:
                self._stopped_early = True  # what was cancelled inside it settles alike
                self._finish(self._failed_as, at)
            else:
                kind = self._set_error(waiting.error, None)
                _emit_exception_event(self, waiting.error, at)
                self._finish(kind, at)
        except Exception as failure:  # noqa: BLE001 - fail-open
            report("Run.cancel", failure)

    def abandon(self, reason: str = "abandoned") -> None:
        """End a run nobody ended (the reaper calls this); keeps what was recorded so far."""
        try:
            if self._waiting is not None:  # cancelled, and what encloses it never ended
                self._settle(False, None)
                return
            if not self._claim_end():
                return
            self.span.set_attribute(semconv.THREADLINE_ABANDONED, True)
            self.span.set_attribute(semconv.THREADLINE_ABANDON_REASON, reason)
            self._finish(self._failed_as, None, observed=False)
        except Exception as error:  # noqa: BLE001
            report("Run.abandon", error)

    def _finish(
        self, error_type: str | None, end_time: int | None, *, observed: bool = True
    ) -> None:
        """End the span and record the metrics. ``observed``: the operation's end was seen; an
        abandoned run's was not, and it records no duration (only how long we waited)."""
        # Fix the end before our own end-of-run work, so it never inflates the span or metric.
        duration = time.monotonic() - self.start_monotonic
        if end_time is None or not isinstance(end_time, int):
            if end_time is not None:  # the caller's mistake, mid-run: reported, never raised
                error = TypeError(f"end_time must be int nanoseconds: {end_time!r}")  # type: ignore[unreachable]
                report("Run.end", error)
            end_time = time.time_ns()
        else:  # an end in the past (a cancelled run resolved later) shortens the duration
            duration = max(duration - max(time.time_ns() - end_time, 0) / 1e9, 0.0)
        self._ended_at = end_time
        if error_type is not None:
            self._stopped_early = False
        if self._cancelled:
            try:
                self._settle_cancelled(error_type is None and self._stopped_early, end_time)
            except Exception as error:  # noqa: BLE001 - the span must still end
                report(f"{type(self).__name__}._settle_cancelled", error)
        try:
            self._before_end(error_type)
        except Exception as error:  # noqa: BLE001 - the span must still end
            report(f"{type(self).__name__}._before_end", error)
        try:
            self.span.end(end_time=end_time)
        except Exception as error:  # noqa: BLE001 - a raising span processor; bookkeeping goes on
            report("span.end", error)
        _open_runs.pop(id(self), None)
        if self._token is not None:
            self.detach()
        if self._scopes:
            self._close_scopes()
        if self._token is None and not self._scopes:
            # The context holds the run: dropping it lets refcounting free the run and its
            # span at once, instead of leaving a cycle for the garbage collector.
            self._ctx = None
        callbacks, self._end_callbacks = self._end_callbacks, None
        if callbacks:
            for registry, key in callbacks:
                registry._discard(key, self)
        try:
            instruments = (_providers._resolved or resolved()).recording_instruments()
            if instruments is not None:
                if not observed:
                    instruments = instruments.without_durations()
                self._record_metrics(instruments, error_type, duration)
        except Exception as error:  # noqa: BLE001
            report(f"{type(self).__name__}._record_metrics", error)

    def _settle_cancelled(self, stopped_early: bool, end_time: int) -> None:
        """Settle the runs cancelled inside this one as it ends (see :meth:`cancel`)."""
        with _END_LOCK:  # none can join once this one has claimed its end
            cancelled, self._cancelled = self._cancelled, None
        for run in cancelled or ():
            run._settle(stopped_early, end_time)

    def _carries_conversation(self) -> bool:
        """Whether the session's ``gen_ai.conversation.id`` goes on this span: only on the span
        types the conventions give it (inference, execute_tool, invoke_agent, invoke_workflow)."""
        return self._records_conversation

    def _on_end(self, registry: RunRegistry[Any, Any], key: Any) -> None:
        if self._end_callbacks is None:
            self._end_callbacks = []
        self._end_callbacks.append((registry, key))
        if self._ended:  # ended concurrently: undo the registration
            registry._discard(key, self)

    def _start_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        """Subclasses add what needs the parent run (conversation, agent name) to the start
        attributes: known before the span starts, it costs no second pass."""

    def _before_end(self, error_type: str | None) -> None:
        """Subclasses set their end-of-run attributes here."""

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        """Subclasses record their metrics here."""

    @guarded()
    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Extra attributes (e.g. a provider's own ``openai.*`` keys). Ignored after the end."""
        if not self._ended:
            self.span.set_attributes(_caller_attributes(attributes))

    def _nearest(self, cls: type[_RunT]) -> _RunT | None:
        run = self.parent_run
        while run is not None:
            if isinstance(run, cls):
                return run
            run = run.parent_run
        return None

    def _inherited_conversation_id(self) -> str | None:
        run = self.parent_run
        while run is not None:
            conversation = getattr(run, "conversation_id", None)
            if conversation:
                return str(conversation)
            run = run.parent_run
        return None


class _Waiting(NamedTuple):
    """A cancelled run's pending outcome (see :meth:`Run.cancel`)."""

    error: BaseException
    at: int  # when it was cancelled (ns since the epoch)


def _conversation_attribute(
    run: InferenceRun | ToolRun | AgentRun | WorkflowRun, attributes: dict[str, AttributeValue]
) -> None:
    """``run``'s conversation into its start attributes: its explicit ``conversation_id``, else
    the nearest enclosing run's."""
    conversation = run.conversation_id
    if conversation is None and run.parent_run is not None and run._carries_conversation():
        conversation = run.conversation_id = run._inherited_conversation_id()
    if conversation is not None:
        attributes[semconv.GEN_AI_CONVERSATION_ID] = conversation


def _capture() -> tuple[config.ContentCapture, _Limiter] | None:
    settings = config.current()
    if settings.capture_content is config.NO_CONTENT:
        return None
    return settings.capture_content, _Limiter(settings)


def _set_content(span: trace.Span, content: Mapping[str, Any], lim: _Limiter) -> None:
    """Content attributes (JSON text unless already a string), and the flag when any was cut."""
    attributes: dict[str, AttributeValue] = {
        key: value if isinstance(value, str) else dumps(value) for key, value in content.items()
    }
    if lim.truncated:
        attributes[semconv.THREADLINE_CONTENT_TRUNCATED] = True
    if attributes:
        span.set_attributes(attributes)


class InferenceRun(Run):
    """``chat``/``text_completion``/``generate_content`` call to a model: a CLIENT span."""

    _records_conversation = True
    _exception_event = True
    _model_call = True
    __slots__ = (
        "_chunk_gaps",
        "_chunks",
        "_first_chunk",
        "_input_messages",
        "_last_chunk",
        "_metric_attributes",
        "_output_messages",
        "_pending",
        "_system_instructions",
        "_tool_definitions",
        "conversation_id",
        "model",
        "needs_every_chunk",
        "provider",
        "response_model",
        "usage",
    )

    def __init__(
        self,
        operation: str,
        model: str | None,
        provider: str,
        parent: Run | Context | None,
        *,
        request: RequestParams | None,
        stream: bool,
        server_address: str | None,
        server_port: int | None,
        conversation_id: str | None,
        input_messages: Sequence[InputMessage] | None,
        system_instructions: Sequence[Part] | None,
        tool_definitions: Sequence[ToolDefinition] | None,
        attributes: Mapping[str, AttributeValue] | None,
        kind: SpanKind,
        start_time: int | None,
    ) -> None:
        self.operation = operation
        self.model = model
        self.provider = provider
        self.response_model: str | None = None
        self.usage = Usage()
        self._chunks = 0
        # False once the first chunk is noted and no meter records the time per chunk: the
        # later chunks' :meth:`chunk` calls only count, and a per-token hook may skip them.
        self.needs_every_chunk = True
        self._chunk_gaps: list[float] | None = None
        self._first_chunk: float | None = None
        self._pending: dict[str, AttributeValue] | None = None
        self._last_chunk = 0.0
        self._input_messages = input_messages
        self._system_instructions = system_instructions
        self._tool_definitions = tool_definitions
        self._output_messages: Sequence[OutputMessage] | None = None
        metric: dict[str, AttributeValue] = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_PROVIDER_NAME: provider,
        }
        if model:
            metric[semconv.GEN_AI_REQUEST_MODEL] = model
        if server_address:
            metric[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                metric[semconv.SERVER_PORT] = server_port
        self._metric_attributes = metric
        attrs = dict(metric)
        if request is not None:
            attrs.update(request.attributes())
        if stream:
            attrs[semconv.GEN_AI_REQUEST_STREAM] = True
        if attributes:
            attrs.update(_caller_attributes(attributes))
        self.conversation_id = conversation_id
        if not _prices_warm[0] and config.current().cost:
            _prices_warm[0] = True
            prewarm_prices()
        super().__init__(
            f"{operation} {model}" if model else operation,
            attrs,
            parent,
            kind=kind,
            start_time=start_time,
        )

    def _start_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        _conversation_attribute(self, attributes)

    def chunk(self, count: int = 1) -> bool:
        """Record the arrival of streamed output chunk(s): time to first chunk, then time per
        output chunk. Returns whether these were the stream's first chunk(s).

        Called once per token, so it only notes the gap; the per-chunk histogram is recorded
        in a batch (at the end, or every ``_CHUNK_BATCH`` chunks) off the stream's path."""
        try:
            if self._ended or count < 1:
                return False
            seen = self._chunks
            self._chunks = seen + count
            if seen:
                gaps = self._chunk_gaps  # None: no meter records them, so none are kept
                if gaps is not None:
                    now = time.monotonic()
                    last, self._last_chunk = self._last_chunk, now
                    if count == 1:
                        gaps.append(now - last)
                    else:  # one point per chunk (a batch's worth at most): the shared gap
                        gaps.extend([(now - last) / count] * min(count, _CHUNK_BATCH))
                    if len(gaps) >= _CHUNK_BATCH:
                        self._flush_chunk_gaps(resolved().recording_instruments())
                return False
            now = time.monotonic()
            self._last_chunk = now
            first = now - self.start_monotonic
            self._pending_attribute(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, first)
            if (_providers._resolved or resolved()).recording_instruments() is not None:
                # recorded at the end, with the attributes of the model that answered
                self._first_chunk = first
                # chunks that came with the first one came no time after it
                self._chunk_gaps = [0.0] * min(count - 1, _CHUNK_BATCH)
            else:
                self.needs_every_chunk = False
            return True
        except Exception as error:  # noqa: BLE001 - fail-open
            report("InferenceRun.chunk", error)
            return False

    @guarded()
    def answered_by(
        self,
        model: str,
        provider: str | None = None,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> None:
        """Name the model that answered, when it may not be the one this run started for (a
        fallback chain that moved on to its next model): the span's name, request model,
        provider and server, and the metrics still to be recorded, are then the answering
        model's. A span cannot lose an attribute: start such a run without a server."""
        if self._ended or not model:
            return
        self.model = model
        metric = dict(self._metric_attributes)
        metric[semconv.GEN_AI_REQUEST_MODEL] = model
        if provider:
            self.provider = provider
            metric[semconv.GEN_AI_PROVIDER_NAME] = provider
        metric.pop(semconv.SERVER_ADDRESS, None)
        metric.pop(semconv.SERVER_PORT, None)
        if server_address:
            metric[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                metric[semconv.SERVER_PORT] = server_port
        self._metric_attributes = metric
        self.span.update_name(f"{self.operation} {model}")
        self.span.set_attributes(metric)

    def _pending_attribute(self, key: str, value: AttributeValue) -> None:
        if self._pending is None:
            self._pending = {key: value}
        else:
            self._pending[key] = value

    def _flush_chunk_gaps(self, instruments: Instruments | None) -> None:
        gaps = self._chunk_gaps
        if gaps:
            if instruments is not None:
                histogram = instruments.time_per_output_chunk
                attributes = self._metric_attributes
                for gap in gaps:
                    # chunks noted by two threads at once may come out of order: no gap then
                    histogram.record(gap if gap > 0.0 else 0.0, attributes)
            gaps.clear()

    @property
    def chunks(self) -> int:
        """The chunks noted so far (see :attr:`needs_every_chunk`: a hook that skips the calls
        it allows counts only the first)."""
        return self._chunks

    def update(
        self,
        *,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: Sequence[str | None] | None = None,
        usage: Usage | None = None,
        output_messages: Sequence[OutputMessage] | None = None,
        input_messages: Sequence[InputMessage] | None = None,
        system_instructions: Sequence[Part] | None = None,
        tool_definitions: Sequence[ToolDefinition] | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record response facts as they become known. ``usage`` replaces the usage so far
        (streams report running totals); content is kept and serialized once, at the end."""
        try:
            if self._ended:
                return
            attrs: dict[str, AttributeValue] = {}
            if usage is not None:
                usage = _token_counts(usage)
                attrs = usage.attributes()
                self.usage = usage
            if response_id:
                attrs[semconv.GEN_AI_RESPONSE_ID] = response_id
            if response_model:
                self.response_model = response_model
                attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
            if isinstance(finish_reasons, str):  # one reason given as is
                finish_reasons = (finish_reasons,)
            if finish_reasons is not None and any(r is not None for r in finish_reasons):
                # One reason per choice, by position: a reason the provider left out (None)
                # stays as "" (a string[] attribute holds no None, and dropping it would pin the
                # next choice's reason on this one). None of them known: no attribute at all.
                attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [
                    "" if reason is None else str(reason) for reason in finish_reasons
                ]
            if attributes:
                attrs.update(_caller_attributes(attributes))
            if attrs:
                # applied once at the end: each set_attributes takes the span's lock
                pending = self._pending
                if pending is None:
                    self._pending = attrs
                else:
                    pending.update(attrs)
            if output_messages is not None:
                self._output_messages = output_messages
            if input_messages is not None:
                self._input_messages = input_messages
            if system_instructions is not None:
                self._system_instructions = system_instructions
            if tool_definitions is not None:
                self._tool_definitions = tool_definitions
        except Exception as error:  # noqa: BLE001 - fail-open
            report("InferenceRun.update", error)

    def _before_end(self, error_type: str | None) -> None:
        pending, self._pending = self._pending, None  # ours: built by update()
        if self.parent_run is not None:
            agent = self._nearest(AgentRun)
            if agent is not None:
                agent._add_usage(self.usage, self.model)
        if config.current().cost:
            cost = estimate_cost(self.provider, self.response_model or self.model, self.usage)
            if cost is not None:
                if pending is None:
                    pending = {}
                pending[semconv.THREADLINE_COST_USD] = cost
                instruments = (_providers._resolved or resolved()).recording_instruments()
                if instruments is not None:
                    metric: dict[str, AttributeValue] = {
                        semconv.GEN_AI_PROVIDER_NAME: self.provider
                    }
                    if self.model:
                        metric[semconv.GEN_AI_REQUEST_MODEL] = self.model
                    if self.response_model:  # the model priced
                        metric[semconv.GEN_AI_RESPONSE_MODEL] = self.response_model
                    metric.update(_metric_baggage(self._parent_ctx))
                    instruments.cost.add(cost, metric)
        if pending:
            self.span.set_attributes(pending)
        capture = _capture()
        if capture is None:
            return
        mode, lim = capture
        content: dict[str, Any] = {}
        if self._input_messages is not None:
            content[semconv.GEN_AI_INPUT_MESSAGES] = messages_json(self._input_messages, lim)
        if self._output_messages is not None:
            content[semconv.GEN_AI_OUTPUT_MESSAGES] = messages_json(self._output_messages, lim)
        if self._system_instructions is not None:
            content[semconv.GEN_AI_SYSTEM_INSTRUCTIONS] = system_instructions_json(
                self._system_instructions, lim
            )
        if self._tool_definitions:  # none, or an update that left none
            content[semconv.GEN_AI_TOOL_DEFINITIONS] = tool_definitions_json(
                self._tool_definitions, lim
            )
        if mode.on_span:
            _set_content(self.span, content, lim)
        if mode.on_event:
            _emit_details_event(self, content, truncated=lim.truncated)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs = self._metric_attributes
        if self.response_model:
            attrs = dict(attrs)
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = self.response_model
        # Time per chunk keeps the request's attributes: a long stream's gaps are recorded on
        # the way, before the answer's are known, and one stream's points stay one series.
        self._flush_chunk_gaps(instruments)
        if self._first_chunk is not None:
            # one point, at the end: the answer's attributes, without error.type (not one of
            # this metric's: the first chunk did arrive, whatever failed after it)
            instruments.time_to_first_chunk.record(self._first_chunk, attrs)
        # token usage has no error.type either: only the duration carries it
        _record_tokens(instruments, attrs, self.usage)
        if error_type:
            attrs = dict(attrs)
            attrs[semconv.ERROR_TYPE] = error_type
        instruments.operation_duration.record(duration, attrs)


def _record_tokens(instruments: Any, attrs: Mapping[str, AttributeValue], usage: Usage) -> None:
    if usage.input_tokens is None and usage.output_tokens is None:
        return
    if usage.input_tokens is not None:
        instruments.token_usage.record(
            usage.input_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: semconv.TOKEN_TYPE_INPUT}
        )
    if usage.output_tokens is not None:
        instruments.token_usage.record(
            usage.output_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: semconv.TOKEN_TYPE_OUTPUT}
        )


def _metric_baggage(ctx: Context) -> dict[str, AttributeValue]:
    keys = config.current().metric_baggage_keys
    if not keys:
        return {}
    out: dict[str, AttributeValue] = {}
    for key in keys:
        value = otel_baggage.get_baggage(key, ctx)
        # baggage the app or another propagator set is unchecked: a lone surrogate would fail
        # the encoding of every metric in the export, not just this point
        if isinstance(value, str) and len(value) <= 64 and value.isprintable():
            out[key] = value
    return out


_MAX_STACKTRACE = 8192


def _emit_exception_event(run: Run, error: BaseException, at: int | None) -> None:
    """The conventions' ``gen_ai.client.operation.exception`` log event (severity WARN), in the
    failed operation's context, for a GenAI client operation (a CLIENT span of a run type that
    tells it). A long stack trace keeps its end, where the error was raised."""
    if not run._exception_event or run.kind is not _CLIENT:
        return
    try:
        import traceback

        from opentelemetry._logs import LogRecord, SeverityNumber

        stack = "".join(traceback.format_exception(error))
        if len(stack) > _MAX_STACKTRACE:
            stack = "…" + stack[-(_MAX_STACKTRACE - 1) :]
        attributes: dict[str, AttributeValue] = {
            semconv.EXCEPTION_TYPE: error_type(error),
            semconv.EXCEPTION_STACKTRACE: stack,
        }
        message = _message(error)
        if message:
            attributes[semconv.EXCEPTION_MESSAGE] = message[:1024]
        resolved().event_logger.emit(
            LogRecord(
                timestamp=at if at is not None else time.time_ns(),  # when the run failed
                event_name=semconv.EVENT_OPERATION_EXCEPTION,
                severity_number=SeverityNumber.WARN,
                attributes=attributes,
                context=run.context,
            )
        )
    except Exception as failure:  # noqa: BLE001 - the run still ends as failed
        report("exception_event", failure)


def _emit_details_event(
    run: InferenceRun, content: Mapping[str, Any], *, truncated: bool = False
) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber

    span = run.span
    span_attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    attributes: dict[str, Any] = {
        k: v for k, v in span_attributes.items() if k not in semconv.CONTENT_SCHEMAS
    }
    attributes.update(content)
    if truncated:  # told here too: with EVENT_ONLY the span holds no content, and no flag
        attributes[semconv.THREADLINE_CONTENT_TRUNCATED] = True
    resolved().event_logger.emit(
        LogRecord(
            # the moment the operation it details ended (the record is emitted as it ends)
            timestamp=run._ended_at or time.time_ns(),
            event_name=semconv.EVENT_INFERENCE_DETAILS,
            severity_number=SeverityNumber.DEBUG,
            attributes=attributes,
            context=run.context,
        )
    )


class EmbeddingsRun(Run):
    """An ``embeddings`` call: a CLIENT span."""

    operation = semconv.OP_EMBEDDINGS
    _exception_event = True
    _model_call = True
    __slots__ = ("_metric_attributes", "model", "provider", "response_model", "usage")

    def __init__(
        self,
        model: str | None,
        provider: str,
        parent: Run | Context | None,
        *,
        server_address: str | None,
        server_port: int | None,
        encoding_formats: Sequence[str] | None,
        dimension_count: int | None,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        self.model, self.provider = model, provider
        self.response_model: str | None = None
        self.usage = Usage()
        metric: dict[str, AttributeValue] = {
            semconv.GEN_AI_OPERATION_NAME: self.operation,
            semconv.GEN_AI_PROVIDER_NAME: provider,
        }
        if model:
            metric[semconv.GEN_AI_REQUEST_MODEL] = model
        if server_address:
            metric[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                metric[semconv.SERVER_PORT] = server_port
        self._metric_attributes = metric
        attrs = dict(metric)
        if encoding_formats:
            attrs[semconv.GEN_AI_REQUEST_ENCODING_FORMATS] = _strings(encoding_formats)
        if dimension_count is not None:
            attrs[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimension_count
        if attributes:
            attrs.update(_caller_attributes(attributes))
        name = f"{self.operation} {model}" if model else self.operation
        super().__init__(name, attrs, parent, kind=_CLIENT, start_time=start_time)

    @guarded()
    def update(
        self,
        *,
        usage: Usage | None = None,
        response_model: str | None = None,
        dimension_count: int | None = None,
    ) -> None:
        if self._ended:
            return
        if usage is not None:
            self.usage = usage = _token_counts(usage)
            self.span.set_attributes(usage.attributes(breakdown=False))
        if response_model:
            self.response_model = response_model
            self.span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, response_model)
        if dimension_count is not None:
            self.span.set_attribute(semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, dimension_count)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs = dict(self._metric_attributes)
        if self.response_model:
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = self.response_model
        _record_tokens(instruments, attrs, Usage(input_tokens=self.usage.input_tokens))
        if error_type:
            attrs[semconv.ERROR_TYPE] = error_type
        instruments.operation_duration.record(duration, attrs)


class RetrievalRun(Run):
    """A ``retrieval`` from a data source (vector store, search index): a CLIENT span."""

    operation = semconv.OP_RETRIEVAL
    _exception_event = True
    __slots__ = ("_documents", "_metric_attributes", "_query")

    def __init__(
        self,
        data_source_id: str | None,
        parent: Run | Context | None,
        *,
        provider: str | None,
        model: str | None,
        query: str | None,
        top_k: float | None,
        server_address: str | None,
        server_port: int | None,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        metric: dict[str, AttributeValue] = {semconv.GEN_AI_OPERATION_NAME: self.operation}
        if provider:
            metric[semconv.GEN_AI_PROVIDER_NAME] = provider
        if model:
            metric[semconv.GEN_AI_REQUEST_MODEL] = model
        if server_address:
            metric[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                metric[semconv.SERVER_PORT] = server_port
        self._metric_attributes = metric
        attrs = dict(metric)
        if data_source_id:
            attrs[semconv.GEN_AI_DATA_SOURCE_ID] = data_source_id
        if top_k is not None:
            # a double in the conventions: an int is written as one
            attrs[semconv.GEN_AI_REQUEST_TOP_K] = float(top_k) if type(top_k) is int else top_k
        if attributes:
            attrs.update(_caller_attributes(attributes))
        self._query = query
        self._documents: Sequence[RetrievalDocument] | None = None
        name = f"{self.operation} {data_source_id}" if data_source_id else self.operation
        super().__init__(name, attrs, parent, kind=_CLIENT, start_time=start_time)

    @guarded()
    def update(
        self, *, documents: Sequence[RetrievalDocument] | None = None, query: str | None = None
    ) -> None:
        if self._ended:
            return
        if documents is not None:
            self._documents = documents
        if query is not None:
            self._query = query

    def _before_end(self, error_type: str | None) -> None:
        capture = _capture()
        if capture is None or not capture[0].on_span:
            return
        _, lim = capture
        content: dict[str, Any] = {}
        if self._query is not None:
            query = query_text(self._query, lim)
            if query is not None:
                content[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] = query
        if self._documents is not None:
            content[semconv.GEN_AI_RETRIEVAL_DOCUMENTS] = documents_json(self._documents, lim)
        _set_content(self.span, content, lim)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs = self._metric_attributes
        if error_type:
            attrs = {**attrs, semconv.ERROR_TYPE: error_type}
        instruments.operation_duration.record(duration, attrs)


class ToolRun(Run):
    """``execute_tool``: one tool call, an INTERNAL span."""

    operation = semconv.OP_EXECUTE_TOOL
    _records_conversation = True
    __slots__ = (
        "_arguments",
        "_has_result",
        "_metric_attributes",
        "_result",
        "agent_name",
        "call_id",
        "conversation_id",
        "name",
    )

    def __init__(
        self,
        name: str,
        parent: Run | Context | None,
        *,
        call_id: str | None,
        description: str | None,
        tool_type: str | None,
        arguments: Any,
        agent_name: str | None,
        conversation_id: str | None,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        self.name = name
        self.call_id = call_id
        self._arguments = arguments
        self._result: Any = None
        self._has_result = False
        attrs: dict[str, AttributeValue] = {semconv.GEN_AI_OPERATION_NAME: self.operation}
        metric: dict[str, AttributeValue] = {}
        if name:  # a tool the framework gave no name: the span is "execute_tool", no None value
            attrs[semconv.GEN_AI_TOOL_NAME] = metric[semconv.GEN_AI_TOOL_NAME] = name
        if tool_type:
            attrs[semconv.GEN_AI_TOOL_TYPE] = tool_type
        if call_id:
            attrs[semconv.GEN_AI_TOOL_CALL_ID] = call_id
        if description:
            attrs[semconv.GEN_AI_TOOL_DESCRIPTION] = description
        if attributes:
            attrs.update(_caller_attributes(attributes))
        if tool_type:
            metric[semconv.GEN_AI_TOOL_TYPE] = tool_type
        self.conversation_id = conversation_id or None
        self.agent_name = agent_name
        if agent_name:
            attrs[semconv.GEN_AI_AGENT_NAME] = metric[semconv.GEN_AI_AGENT_NAME] = agent_name
        self._metric_attributes = metric
        super().__init__(
            f"{self.operation} {name}" if name else self.operation,
            attrs,
            parent,
            kind=_INTERNAL,
            start_time=start_time,
        )

    def _start_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        if self.agent_name is None and self.parent_run is not None:
            agent = self._nearest(AgentRun)
            if agent is not None and agent.name:
                self.agent_name = agent.name
                attributes[semconv.GEN_AI_AGENT_NAME] = agent.name
                self._metric_attributes[semconv.GEN_AI_AGENT_NAME] = agent.name
        _conversation_attribute(self, attributes)

    @guarded()
    def update(
        self, *, result: Any = None, arguments: Any = None, call_id: str | None = None
    ) -> None:
        if self._ended:
            return
        if result is not None:
            self._result, self._has_result = result, True
        if arguments is not None:
            self._arguments = arguments
        if call_id:
            self.call_id = call_id
            self.span.set_attribute(semconv.GEN_AI_TOOL_CALL_ID, call_id)

    @guarded()
    def refuse(
        self, error_type: str, *, description: str | None = None, end_time: int | None = None
    ) -> None:
        """A call its framework refused without running it (a tool name no tool has): failed
        with ``error_type``. The name came from the model unchecked, so it stays off the
        duration metric, where each made-up name would be a series of its own."""
        if self._ended:
            return
        self._metric_attributes.pop(semconv.GEN_AI_TOOL_NAME, None)
        self.fail(error_type, description=description, end_time=end_time)

    @guarded()
    def record_mcp_call(
        self,
        *,
        request_id: str | int | None = None,
        protocol_version: str | None = None,
        transport: str | None = None,
        network_protocol: tuple[str, str | None] | None = None,
        peer_address: str | None = None,
        peer_port: int | None = None,
        session_id: str | None = None,
    ) -> None:
        """This tool's execution is an MCP ``tools/call``, recorded on this span instead of a
        CLIENT span under it (the MCP conventions' optional de-duplication): the request's MCP,
        network, server and session attributes, as that CLIENT span would have them."""
        _, metric, peer = _mcp_attributes(
            "tools/call",
            server=False,
            tool_name=self.name,
            prompt_name=None,
            protocol_version=protocol_version,
            transport=transport,
            network_protocol=network_protocol,
            peer_address=peer_address,
            peer_port=peer_port,
        )
        attributes = {**metric, **peer}
        if request_id is not None:
            attributes[semconv.JSONRPC_REQUEST_ID] = str(request_id)
        if session_id:
            attributes[semconv.MCP_SESSION_ID] = session_id
        self.set_attributes(attributes)

    def _before_end(self, error_type: str | None) -> None:
        capture = _capture()
        if capture is None or not capture[0].on_span:
            return
        _, lim = capture
        content: dict[str, Any] = {}
        for key, value, present, request in (
            (
                semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
                self._arguments,
                self._arguments is not None,
                True,
            ),
            (semconv.GEN_AI_TOOL_CALL_RESULT, self._result, self._has_result, False),
        ):
            if not present:
                continue
            payload = tool_payload_json(value, lim, request=request, call_id=self.call_id)
            if payload is not None:
                content[key] = payload
        _set_content(self.span, content, lim)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs = self._metric_attributes
        if error_type:
            attrs = {**attrs, semconv.ERROR_TYPE: error_type}
        instruments.tool_duration.record(duration, attrs)


class AgentRun(Run):
    """``invoke_agent`` (INTERNAL for in-process agents, CLIENT for remote ones) or
    ``create_agent`` (CLIENT). Sums the usage of the inference runs beneath it."""

    _records_conversation = True
    _exception_event = True
    __slots__ = (
        "_models",
        "_provider",
        "_request_model",
        "_usage_lock",
        "conversation_id",
        "name",
        "usage",
    )

    def _carries_conversation(self) -> bool:
        return self.operation != semconv.OP_CREATE_AGENT  # create_agent spans have none

    def __init__(
        self,
        operation: str,
        name: str | None,
        parent: Run | Context | None,
        *,
        agent_id: str | None,
        description: str | None,
        version: str | None,
        provider: str | None,
        model: str | None,
        conversation_id: str | None,
        remote: bool,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        self.operation = operation
        self.name = name
        self.usage = Usage()
        self._models: set[str] = set()
        self._usage_lock = threading.Lock()
        self._request_model = model or None
        kind = _CLIENT if remote or operation == semconv.OP_CREATE_AGENT else _INTERNAL
        self._provider = provider if provider and kind is _CLIENT else None
        attrs: dict[str, AttributeValue] = {semconv.GEN_AI_OPERATION_NAME: operation}
        if name:
            attrs[semconv.GEN_AI_AGENT_NAME] = name
        if description:
            attrs[semconv.GEN_AI_AGENT_DESCRIPTION] = description
        if model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = model
        if kind is _CLIENT:
            # provider, id and version belong to remote agents only (semconv-genai #322)
            if provider:
                attrs[semconv.GEN_AI_PROVIDER_NAME] = provider
            if agent_id:
                attrs[semconv.GEN_AI_AGENT_ID] = agent_id
            if version:
                attrs[semconv.GEN_AI_AGENT_VERSION] = version
        if attributes:
            attrs.update(_caller_attributes(attributes))
        self.conversation_id = conversation_id
        super().__init__(
            f"{operation} {name}" if name else operation,
            attrs,
            parent,
            kind=kind,
            start_time=start_time,
        )

    def _start_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        _conversation_attribute(self, attributes)

    def _add_usage(self, usage: Usage, model: str | None) -> None:
        with self._usage_lock:
            self.usage = self.usage + usage
            if model:
                self._models.add(model)

    @guarded()
    def update(
        self,
        *,
        usage: Usage | None = None,
        conversation_id: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """``usage`` replaces the sum collected from child inference runs."""
        if self._ended:
            return
        if usage is not None:
            usage = _token_counts(usage)
            with self._usage_lock:
                self.usage = usage
        if conversation_id:
            self.conversation_id = conversation_id
            self.span.set_attribute(semconv.GEN_AI_CONVERSATION_ID, conversation_id)
        if attributes:
            self.span.set_attributes(_caller_attributes(attributes))

    def _before_end(self, error_type: str | None) -> None:
        # input/output only: cache tokens are not recorded on agent spans (semconv-genai #469)
        attrs = self.usage.attributes(breakdown=self.kind is _CLIENT)
        if len(self._models) == 1 and not self._request_model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = next(iter(self._models))
        if attrs:
            self.span.set_attributes(attrs)  # one pass: each call takes the span's lock

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs: dict[str, AttributeValue] = {}
        if self._provider:  # a remote agent or create_agent: a call to a GenAI provider
            attrs[semconv.GEN_AI_PROVIDER_NAME] = self._provider
        if self._request_model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = self._request_model
        elif len(self._models) == 1:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = next(iter(self._models))
        if error_type:
            attrs[semconv.ERROR_TYPE] = error_type
        if self.operation == semconv.OP_CREATE_AGENT:
            # gen_ai.client.operation.duration: no agent name among its attributes
            attrs[semconv.GEN_AI_OPERATION_NAME] = self.operation
            instruments.operation_duration.record(duration, attrs)
        else:
            if self.name:
                attrs[semconv.GEN_AI_AGENT_NAME] = self.name
            instruments.agent_duration.record(duration, attrs)


class WorkflowRun(Run):
    """``invoke_workflow``: a chain/graph/query engine that is not an agent. INTERNAL span."""

    operation = semconv.OP_INVOKE_WORKFLOW
    _records_conversation = True
    __slots__ = ("conversation_id", "name")

    def __init__(
        self,
        name: str | None,
        parent: Run | Context | None,
        *,
        conversation_id: str | None,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        self.name = name
        attrs: dict[str, AttributeValue] = {semconv.GEN_AI_OPERATION_NAME: self.operation}
        if name:
            attrs[semconv.GEN_AI_WORKFLOW_NAME] = name
        if attributes:
            attrs.update(_caller_attributes(attributes))
        self.conversation_id = conversation_id
        super().__init__(
            f"{self.operation} {name}" if name else self.operation,
            attrs,
            parent,
            kind=_INTERNAL,
            start_time=start_time,
        )

    def _start_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        _conversation_attribute(self, attributes)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs: dict[str, AttributeValue] = {}
        if self.name:
            attrs[semconv.GEN_AI_WORKFLOW_NAME] = self.name
        if error_type:
            attrs[semconv.ERROR_TYPE] = error_type
        instruments.workflow_duration.record(duration, attrs)


class StepRun(Run):
    """A plain INTERNAL span for framework steps shown only in verbose mode (no gen_ai
    attributes: a prompt template or parser is not a GenAI operation)."""

    operation = "step"
    __slots__ = ()

    def __init__(
        self,
        name: str,
        parent: Run | Context | None,
        *,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        super().__init__(
            name,
            dict(_caller_attributes(attributes)) if attributes else {},
            parent,
            kind=_INTERNAL,
            start_time=start_time,
        )


def _mcp_attributes(
    method: str,
    *,
    server: bool,
    tool_name: str | None,
    prompt_name: str | None,
    protocol_version: str | None,
    transport: str | None,
    network_protocol: tuple[str, str | None] | None,
    peer_address: str | None,
    peer_port: int | None,
) -> tuple[str, dict[str, AttributeValue], dict[str, AttributeValue]]:
    """``(method as named, metric attributes, span-only peer attributes)`` of an MCP operation.

    An inbound method name is the peer's choice, and servers see it before rejecting it: span
    name and metrics get a bounded value (``_OTHER``), the span keeps what was asked."""
    named = (
        semconv.MCP_METHOD_OTHER if server and method not in semconv.MCP_KNOWN_METHODS else method
    )
    metric: dict[str, AttributeValue] = {semconv.MCP_METHOD_NAME: named}
    if tool_name:
        metric[semconv.GEN_AI_TOOL_NAME] = tool_name
    if prompt_name:
        metric[semconv.GEN_AI_PROMPT_NAME] = prompt_name
    if method == "tools/call":
        metric[semconv.GEN_AI_OPERATION_NAME] = semconv.OP_EXECUTE_TOOL
    if protocol_version:
        metric[semconv.MCP_PROTOCOL_VERSION] = protocol_version
    if transport:
        metric[semconv.NETWORK_TRANSPORT] = transport
    if network_protocol:
        metric[semconv.NETWORK_PROTOCOL_NAME] = network_protocol[0]
        if network_protocol[1]:
            metric[semconv.NETWORK_PROTOCOL_VERSION] = network_protocol[1]
    peer: dict[str, AttributeValue] = {}
    if peer_address:
        address_key = semconv.CLIENT_ADDRESS if server else semconv.SERVER_ADDRESS
        port_key = semconv.CLIENT_PORT if server else semconv.SERVER_PORT
        peer[address_key] = peer_address
        if peer_port:
            peer[port_key] = peer_port
        if not server:
            # The server's address is in the client metric; a client's (an ephemeral port) is
            # not in the server's.
            metric.update(peer)
    return named, metric, peer


class McpRun(Run):
    """One MCP request or notification (``mcp.client``/``mcp.server`` span types).

    Named ``{mcp.method.name} {target}``; ``tools/call`` also carries
    ``gen_ai.operation.name=execute_tool``. Error semantics follow the MCP conventions: see
    :meth:`fail_rpc` and :meth:`fail_tool`.
    """

    __slots__ = ("_metric_attributes", "method")

    def _carries_conversation(self) -> bool:
        # A tools/call is an execute_tool operation: it carries the conversation like ToolRun.
        return self.method == "tools/call"

    def __init__(
        self,
        method: str,
        parent: Run | Context | None,
        *,
        server: bool,
        tool_name: str | None,
        prompt_name: str | None,
        resource_uri: str | None,
        request_id: str | int | None,
        session_id: str | None,
        protocol_version: str | None,
        transport: str | None,
        network_protocol: tuple[str, str | None] | None,
        peer_address: str | None,
        peer_port: int | None,
        links: Sequence[Link] | None,
        attributes: Mapping[str, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        self.method = method
        self.operation = semconv.OP_EXECUTE_TOOL if method == "tools/call" else method
        named, metric, peer = _mcp_attributes(
            method,
            server=server,
            tool_name=tool_name,
            prompt_name=prompt_name,
            protocol_version=protocol_version,
            transport=transport,
            network_protocol=network_protocol,
            peer_address=peer_address,
            peer_port=peer_port,
        )
        target = tool_name or prompt_name
        self._metric_attributes = metric
        attrs = {**metric, **peer}
        if named != method:
            attrs[semconv.MCP_METHOD_NAME] = method[:_MAX_MCP_METHOD]
        if resource_uri:
            attrs[semconv.MCP_RESOURCE_URI] = resource_uri
        if request_id is not None:
            attrs[semconv.JSONRPC_REQUEST_ID] = str(request_id)
        if session_id:
            attrs[semconv.MCP_SESSION_ID] = session_id
        if attributes:
            attrs.update(_caller_attributes(attributes))
        super().__init__(
            f"{named} {target}" if target else named,
            attrs,
            parent,
            kind=_SERVER if server else _CLIENT,
            start_time=start_time,
            links=links,
        )

    @guarded()
    def fail_rpc(
        self,
        code: int,
        message: str | None = None,
        *,
        expected: bool = False,
        error: BaseException | None = None,
        server_fault: bool = False,
    ) -> None:
        """A JSON-RPC error response. On the server, codes that describe a bad request
        (parse error, invalid request/params, unknown method/resource) are recorded but do not
        make the span an error, unless the failure is the server's own all the same
        (``server_fault``: a request of its own to its client that its channel could not carry
        is answered with -32600); nor does an answer the caller ``expected`` (a probe the peer
        may reject, such as ``server/discover`` to a server of an older protocol). As the MCP
        conventions ask, ``error.type`` is the code. ``error``: the exception the response
        stands for (a handler raised it and the SDK answered with ``code``): where the response
        is a failure, the status description is its message (unless ``message`` is given) and
        it is recorded as the failure's exception."""
        if self._ended:
            return
        status = str(code)
        self.span.set_attribute(semconv.RPC_RESPONSE_STATUS_CODE, status)
        metric = self._metric_attributes
        metric[semconv.RPC_RESPONSE_STATUS_CODE] = status
        if expected:
            self.end()
        elif (
            self.kind is _SERVER and code in semconv.MCP_SERVER_NON_ERROR_CODES and not server_fault
        ):
            # The request named something this server does not serve (an unknown tool is
            # -32602): that name came from the peer unchecked and stays off the metric.
            metric.pop(semconv.GEN_AI_TOOL_NAME, None)
            metric.pop(semconv.GEN_AI_PROMPT_NAME, None)
            self.end()
        elif error is not None:
            if self._claim_end():
                if message is None:
                    message = _description(error)
                kind = self._set_error(status, message)
                _emit_exception_event(self, error, None)
                self._finish(kind, None)
        else:
            self.fail(status, description=message)

    @guarded()
    def fail_tool(self, message: str | None = None) -> None:
        """A ``CallToolResult`` with ``isError: true``."""
        self.fail(semconv.MCP_ERROR_TYPE_TOOL_ERROR, description=message)

    @guarded()
    def served(self, *, tools: Iterable[object] = (), prompts: Iterable[object] = ()) -> None:
        """Names this server listed (``tools/list``, ``prompts/list``): real ones, so a failed
        call of one keeps its name on the operation metric."""
        for key, names in (
            (semconv.GEN_AI_TOOL_NAME, tools),
            (semconv.GEN_AI_PROMPT_NAME, prompts),
        ):
            for name in names:
                if len(_served) >= _MAX_SERVED:
                    return
                if isinstance(name, str):
                    _served.add((key, name))

    @guarded()
    def update(
        self,
        *,
        session_id: str | None = None,
        protocol_version: str | None = None,
        arguments: Any = None,
        result: Any = None,
        prompt_variables: Mapping[str, Any] | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """``arguments``/``result``: a ``tools/call``'s; ``prompt_variables``: a
        ``prompts/get``'s arguments. Content: recorded only with capture on."""
        if self._ended:
            return
        if session_id:
            self.span.set_attribute(semconv.MCP_SESSION_ID, session_id)
        if protocol_version:
            self.span.set_attribute(semconv.MCP_PROTOCOL_VERSION, protocol_version)
            self._metric_attributes[semconv.MCP_PROTOCOL_VERSION] = protocol_version
        if attributes:
            self.span.set_attributes(_caller_attributes(attributes))
        capture = _capture()
        if capture is not None and capture[0].on_span:
            _, lim = capture
            content: dict[str, Any] = {}
            for key, value, request in (
                (semconv.GEN_AI_TOOL_CALL_ARGUMENTS, arguments, True),
                (semconv.GEN_AI_TOOL_CALL_RESULT, result, False),
            ):
                if value is not None:
                    payload = tool_payload_json(value, lim, request=request, call_id=None)
                    if payload is not None:
                        content[key] = payload
            if prompt_variables is not None:
                content.update(prompt_variables_json(prompt_variables, lim))
            _set_content(self.span, content, lim)

    def _record_metrics(
        self, instruments: Instruments, error_type: str | None, duration: float
    ) -> None:
        attrs = self._metric_attributes
        server = self.kind is _SERVER
        if server:
            attrs = _served_names_only(attrs, failed=error_type is not None)
        if error_type:
            attrs = {**attrs, semconv.ERROR_TYPE: error_type}
        histogram = instruments.mcp_server_duration if server else instruments.mcp_client_duration
        histogram.record(duration, attrs)


# Tool and prompt names this process's servers listed or served without error. A failed call's
# name reaches the server metric only when it is one of them: a client asking for names that do
# not exist (an unknown tool is answered with an isError result, an unknown prompt with an
# exception) must not create series at will.
_served: set[tuple[str, str]] = set()
_MAX_SERVED = 4_096


def _served_names_only(
    attrs: dict[str, AttributeValue], *, failed: bool
) -> dict[str, AttributeValue]:
    for key in (semconv.GEN_AI_TOOL_NAME, semconv.GEN_AI_PROMPT_NAME):
        name = attrs.get(key)
        if not isinstance(name, str):
            continue
        if not failed:
            if len(_served) < _MAX_SERVED:
                _served.add((key, name))
        elif (key, name) not in _served:
            attrs = {k: v for k, v in attrs.items() if k != key}
    return attrs


def record_mcp_operation(
    duration: float,
    method: str,
    *,
    server: bool = False,
    tool_name: str | None = None,
    prompt_name: str | None = None,
    protocol_version: str | None = None,
    transport: str | None = None,
    network_protocol: tuple[str, str | None] | None = None,
    peer_address: str | None = None,
    peer_port: int | None = None,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    """Record ``mcp.{client,server}.operation.duration`` for an operation that has no MCP span
    of its own (a ``tools/call`` recorded on a framework's tool span). ``status_code``: the
    JSON-RPC error code of the response, if any; ``error``: its ``error.type``."""
    try:
        instruments = resolved().recording_instruments()
        if instruments is None:
            return
        _, attrs, _ = _mcp_attributes(
            method,
            server=server,
            tool_name=tool_name,
            prompt_name=prompt_name,
            protocol_version=protocol_version,
            transport=transport,
            network_protocol=network_protocol,
            peer_address=peer_address,
            peer_port=peer_port,
        )
        if status_code is not None:
            attrs[semconv.RPC_RESPONSE_STATUS_CODE] = str(status_code)
        if error:
            attrs[semconv.ERROR_TYPE] = error
        histogram = instruments.mcp_server_duration if server else instruments.mcp_client_duration
        histogram.record(duration, attrs)
    except Exception as error_:  # noqa: BLE001
        report("record_mcp_operation", error_)


def record_mcp_session(
    duration: float,
    *,
    server: bool,
    protocol_version: str | None = None,
    network_protocol: str | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
    error: str | None = None,
) -> None:
    """Record ``mcp.{client,server}.session.duration`` for a session that ended.
    ``network_protocol``: ``http`` for streamable HTTP; ``server_address``/``server_port``: the
    server a client session talked to (the server side records no peer)."""
    try:
        attrs: dict[str, AttributeValue] = {}
        if protocol_version:
            attrs[semconv.MCP_PROTOCOL_VERSION] = protocol_version
        if network_protocol:
            attrs[semconv.NETWORK_PROTOCOL_NAME] = network_protocol
        if server_address and not server:
            attrs[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                attrs[semconv.SERVER_PORT] = server_port
        if error:
            attrs[semconv.ERROR_TYPE] = error
        instruments = resolved().recording_instruments()
        if instruments is None:
            return
        histogram = (
            instruments.mcp_server_session_duration
            if server
            else instruments.mcp_client_session_duration
        )
        histogram.record(duration, attrs)
    except Exception as error_:  # noqa: BLE001
        report("record_mcp_session", error_)


def links_to(contexts: Iterable[Context]) -> list[Link]:
    """Span links to the spans current in ``contexts`` (e.g. an HTTP server span); what is
    not a context is left out (it links to nothing)."""
    links = []
    for ctx in contexts:
        if not isinstance(ctx, Context):  # not what the type says: no link
            continue  # type: ignore[unreachable]
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return links
