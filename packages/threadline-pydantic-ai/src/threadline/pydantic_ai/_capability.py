"""``Tracing``: a Pydantic AI capability that maps agent runs onto threadline runs.

The capability hooks run inside the agent's own async flow, so every span is started and ended by
the hook that wraps the work (``wrap_run``, ``wrap_model_request``, ``wrap_tool_execute``), attached
only for that work, in the task that does it. Parents are passed explicitly, so a run driven from
several tasks (``iter``, streamed requests) still forms one tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import time
import warnings
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import NoOpTracer

import threadline
from pydantic_ai import exceptions as _exc
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.models.wrapper import WrapperModel
from threadline import semconv
from threadline._context import (
    close_inner,
    closed_by_consumer,
    consumer_closed,
    cut_short_by_consumer,
    drained_by_cancelled_task,
    every_task_cancelled,
    task_cancelling,
    unwatch_consumer,
    watch_consumer,
)
from threadline._failopen import report
from threadline.providers import provider_name, server_address
from threadline.sessions import current_session

if TYPE_CHECKING:
    from types import FrameType

    from opentelemetry.util.types import AttributeValue

    from threadline import AgentRun, InferenceRun, ToolRun

__all__ = ["DuplicateTelemetryWarning", "Tracing"]

_logger = logging.getLogger("threadline.pydantic_ai")


def _fallback_chain(model: Any) -> list[Any] | None:
    """The models a ``FallbackModel`` tries, in order (nested ones flattened); None for any
    other model. Its request's span starts as one to the first (see :func:`_answered_by`)."""
    if type(model).__name__ != "FallbackModel":
        return None  # first: another model's ``models`` may be a property of the app's
    models = getattr(model, "models", None)
    if not isinstance(models, Sequence) or not models:
        return None
    chain: list[Any] = []
    for member in models:
        chain.extend(_fallback_chain(member) or (member,))
    return chain


def _answering_model(chain: Sequence[Any], response: Any) -> Any:
    """The model of ``chain`` that gave ``response``: by its name (a response names a dated
    version, ``gpt-4o-2024-08-06`` for ``gpt-4o``: the longest model name it starts with) and
    its provider. A model addressed by an alias answers under another name (Anthropic's
    ``-latest``, an Azure deployment): then by its provider, among the models the chain did not
    move on from (2.x lists those on the response). None when no model matches."""
    name = response.model_name or ""
    provider = getattr(response, "provider_name", None)
    best, best_score = None, (False, False, 0)
    for model in chain:
        model_name = model.model_name
        if not name.startswith(model_name):
            continue
        score = (model.system == provider, model_name == name, len(model_name))
        if best is None or score > best_score:
            best, best_score = model, score
    if best_score[0]:
        return best
    moved_on = [
        (attempt.model_name, attempt.provider_name)
        for attempt in getattr(response, "failed_attempts", None) or ()
        if getattr(attempt, "kind", "fallback") == "fallback"
    ]
    left = [
        model
        for model in chain
        if not any(
            failed.startswith(model.model_name) and system in (None, model.system)
            for failed, system in moved_on
        )
    ]
    if provider:
        same = [model for model in left if model.system == provider]
        if len(same) == 1 or (same and moved_on):
            return same[0]
    if best is None and moved_on and left and not provider:
        return left[0]
    return best


def _served_by(model: Any, served: Any) -> list[Any] | None:
    """The models that may have answered a request started for ``model`` when its hooks moved
    it on to ``served`` (2.x: the ``ModelFallback`` capability, a ``RetryModelRequest`` naming a
    model): ``served``, or the chain it is; None when ``served`` is ``model``, possibly wrapped
    (``get_wrapper_model``)."""
    while served is not model and isinstance(served, WrapperModel):
        served = served.wrapped
    if served is model or served is None:
        return None
    return _fallback_chain(served) or [served]


def _answered_by(chat: InferenceRun, chain: Sequence[Any], response: Any) -> Any:
    """The span of a fallback chain's request names the model that answered (as Pydantic AI's
    own spans do): its name, provider and server, on the span and its metrics. Returns that
    model (None when unknown)."""
    answered = chain[0] if len(chain) == 1 else _answering_model(chain, response)
    if answered is None:
        return None
    address, port = server_address(answered.base_url)
    chat.answered_by(
        answered.model_name,
        provider_name(answered.system),
        server_address=address,
        server_port=port,
    )
    return answered


def _answered_output_mode(
    chat: InferenceRun, agent: AgentRun | None, model: Any, request_context: Any
) -> None:
    """A fallback chain's request: the output mode and tools are the answering model's (a
    structured output type without a mode gets each model's own default, see _output_mode)."""
    mode = _output_mode(model, request_context)
    output_type = _OUTPUT_TYPES.get(mode or "")
    if output_type:
        chat.update(attributes={semconv.GEN_AI_OUTPUT_TYPE: output_type})
        if agent is not None:
            _agent_output_type(agent, mode)
    if threadline.capture_enabled():
        from threadline.pydantic_ai import _content

        parameters = request_context.model_request_parameters
        chat.update(tool_definitions=_content.tool_definitions(parameters, model, mode))


class DuplicateTelemetryWarning(RuntimeWarning):
    """Pydantic AI's own instrumentation is on as well: threadline defers to it for that run."""


# A tool asking the model to try again (ModelRetry) is control flow, not a failure.
_RETRY_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (getattr(_exc, "ModelRetry", None), getattr(_exc, "ToolRetryError", None))
    if isinstance(cls, type)
)
# A run's usage limit stopping a streamed response: the run's failure, not the request's.
_USAGE_LIMIT = _exc.UsageLimitExceeded
_FALLBACK_GROUP: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(_exc, "FallbackExceptionGroup", None),) if isinstance(cls, type)
)
# Deferred or skipped tool calls end the span normally.
# A capability answering a model request itself (a cache, a guardrail) raises this with the
# response to use instead of the model's: the request succeeded.
_SKIPPED_REQUEST: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(_exc, "SkipModelRequest", None),) if isinstance(cls, type)
)

# What a tool call raises that reaches no ``on_tool_execute_error`` hook: control flow, a retry
# or a failure the model is told of. Anything else may still be recovered by such a hook.
_UNHOOKED_TOOL_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (
        getattr(_exc, name, None)
        for name in (
            "SkipToolExecution",
            "CallDeferred",
            "ApprovalRequired",
            "ToolRetryError",
            "ToolFailedError",
            "ToolFailed",
            "ModelRetry",
        )
    )
    if isinstance(cls, type)
)

# Pydantic AI 2.x runs output functions in this hook; 1.x passes output tools to the tool hooks.
_OUTPUT_PROCESS_HOOK = hasattr(AbstractCapability, "wrap_output_process")
# Pydantic AI 1.x runs the ``on_model_request_error`` hooks after ``wrap_model_request``, where one
# may still recover the request; 2.x runs them inside it, in each attempt (``prepare_model_request``
# came with attempts).
_MODEL_ERROR_HOOKS_AFTER_WRAP = not hasattr(AbstractCapability, "prepare_model_request")

# Tool calls Pydantic AI refuses before any hook sees them, asking the model to retry: by the
# cause its retried tool return names (2.x), or the words of its retry prompt (1.x, unknown only).
_REFUSED_CALLS = ("unknown_tool", "unavailable_tool")
_UNKNOWN_TOOL_PROMPT = "Unknown tool name: "

_STREAM_ATTRIBUTES = {semconv.GEN_AI_REQUEST_STREAM: True}
_OUTPUT_TYPES = {"text": "text", "native": "json", "prompted": "json", "image": "image"}
_SETTINGS_KEYS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "frequency_penalty",
    "presence_penalty",
    "seed",
)

# The run id of the run a Tracing capability is recording, so a second Tracing in the same run
# (one on the agent and one added by ``instrument()``) stays silent.
_traced_run: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "threadline_pydantic_ai_traced_run", default=None
)
_warned = [False]


_MAX_RUNS = 100_000  # runs recorded at once per capability; beyond it, no per-run spans
_MAX_SHARING = 64  # runs recorded at once under one run id; beyond it, no per-run spans
_MAX_INVALID_CALLS = 1_000  # tool calls with invalid arguments awaiting their outcome, per run
_MAX_FAILING_CALLS = 1_000  # failed tool calls awaiting their error hooks' outcome, per run
_MAX_RESPONSE_CALLS = 1_000  # tool calls of a response whose refusal would go unseen, per run


class _RunState:
    """What one recorded agent run's hooks share: its span and its model request in flight."""

    __slots__ = (
        "calls",
        "chat",
        "chat_failing",
        "closed",
        "error_hooked",
        "failed",
        "failing",
        "invalid",
        "requested",
        "run",
        "run_id",
        "shadowed",
        "stream_error",
        "streamed",
    )

    def __init__(self, run: AgentRun, run_id: str, shadowed: _RunState | None = None) -> None:
        self.run = run
        self.run_id = run_id
        # The state of an open run under the same run id that this run's took the place of:
        # its hooks find this one meanwhile, and that one again once this run ends.
        self.shadowed = shadowed
        self.closed = False  # its run ended: a hook still running beneath it records nothing
        self.chat: InferenceRun | None = None
        self.requested = False  # a model request has been made (see _agent_output_type)
        self.failed = False  # the run body failed (on_run_error saw it)
        # The streamed request whose response has been read to its end, and when: the
        # request's handler returns only when the caller leaves ``run_stream``'s block.
        self.streamed: tuple[InferenceRun, int] | None = None
        # The streamed request whose stream raised, and its error (see _count_chunks).
        self.stream_error: tuple[InferenceRun, Exception] | None = None
        # Tool calls whose arguments failed validation, by call id: (call, tool definition,
        # arguments, error, when), until it is known whether they became retries.
        self.invalid: dict[str, tuple[Any, Any, Any, BaseException, int]] | None = None
        # Tool calls whose error the ``on_tool_execute_error`` hooks have seen while their span
        # was open (2.x runs those hooks inside ``wrap_tool_execute``).
        self.error_hooked: set[str] | None = None
        # Tool calls that raised out of ``wrap_tool_execute`` before those hooks ran (1.x runs
        # them after it), by call id: [span, error raised, latest error, when], open until a
        # hook recovers the call or its error is known to stand.
        self.failing: dict[str, list[Any]] | None = None
        # The model request that raised out of ``wrap_model_request`` (1.x runs the
        # ``on_model_request_error`` hooks after it): (span, error, when, what ends it as a
        # success), open until a hook recovers the request or its error is known to stand.
        self.chat_failing: tuple[InferenceRun, Exception, int, tuple[Any, ...]] | None = None
        # The tool calls of the latest response, by call id, and when it ended, until the next
        # request shows whether Pydantic AI refused one without running it (_record_refused_calls).
        self.calls: tuple[dict[str, Any], int] | None = None


def _sharing(state: _RunState | None) -> int:
    """How many runs are open under the run id of ``state``, the latest of them."""
    count = 0
    while state is not None:
        count += 1
        state = state.shadowed
    return count


# The state of the run whose context this is: which of the runs open under one run id (see
# _RunState.shadowed) a hook belongs to.
_current_state: contextvars.ContextVar[_RunState | None] = contextvars.ContextVar(
    "threadline_pydantic_ai_run_state", default=None
)


async def _count_chunks(state: _RunState, stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
    try:
        async for event in stream:
            kind = getattr(event, "event_kind", None)
            if kind == "part_delta" or kind == "part_start":
                chat = state.chat
                if chat is not None and chat.needs_every_chunk and chat.chunk():
                    chat.set_attributes(_STREAM_ATTRIBUTES)
            yield event
        chat = state.chat
        if chat is not None and chat.chunks:
            state.streamed = (chat, time.time_ns())
    except Exception as error:
        # The model's error (a failed stream) reaches the stream's consumer; Pydantic AI then
        # cancels the request, whose hook sees only that cancellation (see _cancel_chat).
        chat = state.chat
        if chat is not None:
            if isinstance(error, _USAGE_LIMIT):
                # The run's token limit (2.x checks it on every event) stopped reading the
                # response: the run fails, not the request, as when the limit is checked after it.
                state.streamed = (chat, time.time_ns())
            else:
                state.stream_error = (chat, error)
        raise
    finally:
        await close_inner(stream)


async def _run_tool(
    tool: ToolRun,
    handler: Any,
    args: Any,
    state: _RunState | None = None,
    call_id: str | None = None,
) -> Any:
    """Run a tool call (or output function) through ``handler`` as the current span ``tool``.
    With ``state`` and ``call_id`` (a tool call), an error that Pydantic AI is yet to pass to
    the ``on_tool_execute_error`` hooks leaves the span open for their outcome."""
    tool.attach()  # a sub-agent or HTTP call inside the tool nests under it
    try:
        result = await handler(args)
    except BaseException as error:
        if isinstance(error, _RETRY_ERRORS):
            tool.set_attributes({semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_MODEL_RETRY})
            tool.end()
        elif (
            state is None or call_id is None or not _await_error_hooks(state, call_id, tool, error)
        ):
            # a deferred call or any framework's interrupt is no failure; a cancellation is
            # one unless the run was stopped early
            tool.end_with_exception(error)
        raise
    finally:
        tool.detach()
    if state is not None and state.error_hooked:  # a hook recovered the call inside the wrap
        state.error_hooked.discard(call_id or "")
    if threadline.capture_enabled():
        tool.update(result=_model_visible(result))
    tool.end()
    return result


def _await_error_hooks(state: _RunState, call_id: str, tool: ToolRun, error: BaseException) -> bool:
    """Whether the span of a tool call that raised ``error`` stays open for the outcome of the
    ``on_tool_execute_error`` hooks: Pydantic AI 1.x runs them after ``wrap_tool_execute``, and
    one may recover the call (its result is then the call's) or raise another error. 2.x runs
    them inside it: they have had their say (``error_hooked``)."""
    hooked = state.error_hooked
    if hooked and call_id in hooked:
        hooked.discard(call_id)
        return False
    if not isinstance(error, Exception) or isinstance(error, _UNHOOKED_TOOL_ERRORS):
        return False
    if state.run.ended:
        return False  # a call that outlived its run: nothing is left to settle it
    failing = state.failing
    if failing is None:
        failing = state.failing = {}
    if len(failing) >= _MAX_FAILING_CALLS or call_id in failing:
        return False
    failing[call_id] = [tool, error, error, time.time_ns()]
    return True


def _caused_by(error: BaseException, cause: BaseException) -> bool:
    """Whether ``error`` is ``cause`` or was raised while handling it (an error hook that
    raised another error for it)."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 16:
        if current is cause:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _refusal(part: Any) -> str | None:
    """Why Pydantic AI refused the tool call a part of the next request answers, without
    running it or calling any hook: ``unknown_tool`` (a name no tool has) or, on 2.x,
    ``unavailable_tool`` (one the model has not been shown yet); None for any other part."""
    kind = getattr(part, "part_kind", None)
    if kind == "tool-return" and getattr(part, "outcome", None) == "retried":
        cause = getattr(getattr(part, "retry", None), "cause", None)
        return cause if cause in _REFUSED_CALLS else None
    content = getattr(part, "content", None)
    if kind == "retry-prompt" and isinstance(content, str):
        return "unknown_tool" if content.startswith(_UNKNOWN_TOOL_PROMPT) else None
    return None


def _refused_past_retries(error: BaseException | None, call: Any) -> bool:
    """Whether the run failed because refusing ``call`` (an unknown tool) used up its retries:
    ``UnexpectedModelBehavior`` raised from the refusal Pydantic AI would have sent."""
    if not isinstance(error, _exc.UnexpectedModelBehavior):
        return False
    cause = error.__cause__
    message = getattr(cause, "message", None)
    return (
        isinstance(cause, _RETRY_ERRORS)
        and isinstance(message, str)
        and message.startswith(f"{_UNKNOWN_TOOL_PROMPT}{call.tool_name!r}.")
    )


def _run_cancelled(ctx: Any) -> type[BaseException] | None:
    """Pydantic AI 2.x: the error a run cancelled by its own ``cancel()`` or ``timeout`` ends
    with, ``RunCancelled`` or ``RunTimedOut``, which it raises to the caller for the
    ``CancelledError`` that tore the run down; None for any other cancellation."""
    try:
        # Read as RunContext.cancel does: a durable run's context raises for absent fields.
        cancellation = vars(ctx).get("_cancellation")
        if cancellation is None or cancellation.cancel_requested is not True:
            return None
        kind = getattr(_exc, "RunTimedOut" if cancellation.timed_out else "RunCancelled", None)
    except Exception as error:  # noqa: BLE001 - recorded as the cancellation it is
        report("threadline.pydantic_ai.run_cancelled", error)
        return None
    return kind if isinstance(kind, type) and issubclass(kind, BaseException) else None


_event_streams_watched = [False]

# Whether instrument() is on; the Tracing it gave agents made meanwhile records only while it is.
instrumenting = [False]

# What a Pydantic AI 1.x run raises when the consumer of its run_stream_events closed the stream:
# the run's next event finds nobody to take it (see _watch_event_generator).
_stream_closed: tuple[type[BaseException], ...] = ()


def _watch_event_streams() -> None:
    """Note when the consumer of ``run_stream_events`` closes it before the end, so the run it
    tears down ends as stopped early: ``AgentRunEvents`` on Pydantic AI 2.x, the event
    generator on 1.x. Once per process, pass-through otherwise."""
    _event_streams_watched[0] = True
    try:
        from pydantic_ai.agent import abstract

        events = getattr(abstract, "AgentRunEvents", None)
        if not isinstance(events, type):
            _watch_event_generator(abstract)
            return
        start, close = getattr(events, "_ensure_started", None), getattr(events, "aclose", None)
        if not (inspect.iscoroutinefunction(start) and inspect.iscoroutinefunction(close)):
            return

        @functools.wraps(start)
        async def ensure_started(self: Any) -> None:
            if getattr(self, "_task", None) is not None:
                await start(self)
                return
            mark, token = watch_consumer()  # the run's task copies the context: its mark
            try:
                with contextlib.suppress(Exception):  # unmarked, closing early reads as failed
                    self._threadline_closed = mark
                await start(self)
            finally:
                unwatch_consumer(token)

        @functools.wraps(close)
        async def aclose(self: Any) -> None:
            mark = getattr(self, "_threadline_closed", None)
            task = getattr(self, "_task", None)
            if mark is not None and task is not None and not task.done():
                consumer_closed(mark)
            await close(self)

        events._ensure_started = ensure_started  # type: ignore[attr-defined]
        events.aclose = aclose  # type: ignore[attr-defined]
    except Exception as error:  # noqa: BLE001 - closing such a stream early then reads as failed
        report("threadline.pydantic_ai.watch_event_streams", error)


def _watch_event_generator(abstract: Any) -> None:
    """Pydantic AI 1.x: ``run_stream_events`` returns the async generator
    ``AbstractAgent._run_stream_events``. Its first event starts the run in a task of its own (a
    copy of the consumer's context) that sends it the events through an anyio memory stream.
    Closing the generator before the end closes that stream, without cancelling the task: the
    run fails at its next event with ``anyio.BrokenResourceError``, or is cancelled if the event
    loop ends first. Wrap the generator so that the run's task carries a consumer mark, set when
    its consumer closes it early (see ``wrap_run``)."""
    global _stream_closed
    agent_class = getattr(abstract, "AbstractAgent", None)
    generate = getattr(agent_class, "_run_stream_events", None)
    if agent_class is None or not inspect.isasyncgenfunction(generate):
        return
    import anyio

    @functools.wraps(generate)
    async def run_stream_events(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        stream = generate(self, *args, **kwargs)
        mark, token = watch_consumer()  # the run's task, started by the first event, copies it
        try:
            event = await stream.__anext__()
        except StopAsyncIteration:
            return
        except asyncio.CancelledError:
            consumer_closed(mark)  # a timeout while waiting for the first event: cut short
            raise
        finally:
            unwatch_consumer(token)  # before yielding: nothing stays set in the consumer's context
        try:
            while True:
                thrown: BaseException | None = None
                try:
                    yield event
                except GeneratorExit:  # closed early (the run may still be going)
                    consumer_closed(mark)  # unless the consumer is itself being cancelled
                    raise
                except BaseException as error:  # noqa: BLE001 - thrown in: passed on, as it was
                    thrown = error
                try:
                    if thrown is None:
                        event = await stream.__anext__()
                    else:
                        event = await stream.athrow(thrown)
                except StopAsyncIteration:
                    return
        finally:
            await close_inner(stream)

    _stream_closed = (anyio.BrokenResourceError,)
    agent_class._run_stream_events = run_stream_events


def _request_failed(chat: InferenceRun, error: BaseException) -> None:
    """A model request that raised: a ModelRetry (from a capability) is no failure."""
    if isinstance(error, _RETRY_ERRORS):
        chat.set_attributes({semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_MODEL_RETRY})
        chat.end()
    else:
        chat.fail(error)


def _prepared_content(chat: InferenceRun, messages: Sequence[Any]) -> None:
    """The history as the model was sent it. Pydantic AI 2.x prepares the request's history for
    its model inside the handler (``Model.prepare_messages``): retry feedback in the voice its
    cause calls for, a mid-conversation system prompt as a ``<system>``-tagged user prompt where
    the model has no such messages, and more. The request then holds that history instead."""
    try:
        from threadline.pydantic_ai import _content

        chat.update(input_messages=_content.input_messages(messages)[0])
    except Exception as error:  # noqa: BLE001 - the span keeps the history as stored
        report("threadline.pydantic_ai.request_content", error)


def _cancel_chat(state: _RunState, chat: InferenceRun, error: asyncio.CancelledError) -> None:
    """A model request cancelled in flight."""
    streamed, state.streamed = state.streamed, None
    stream_error, state.stream_error = state.stream_error, None
    if stream_error is not None and stream_error[0] is chat:
        _request_failed(chat, stream_error[1])  # cancelled because its stream failed
    elif streamed is not None and streamed[0] is chat:
        # Read to its end: the request succeeded, and Pydantic AI cancels its task because
        # the caller's block raised after (a failing output validator).
        chat.end(end_time=streamed[1])
    else:
        chat.cancel(error)  # a failure unless the run was stopped early


def _settle_failing_chat(state: _RunState, error: BaseException | None) -> None:
    """End the span of a model request that raised past ``wrap_model_request`` (1.x) and that no
    hook recovered: a recovered response reaches ``after_model_request``, which ends the span.
    Still open at the next request or at the run's end, the error stood (another capability may
    have retried the request around it): failed with the run's error when the request's caused
    it (a hook replaced it), else with the request's own, at its time."""
    failing, state.chat_failing = state.chat_failing, None
    if failing is None:
        return
    chat, raised, at, _ = failing
    if error is not None and isinstance(error, Exception) and _caused_by(error, raised):
        chat.fail(error, end_time=at)
    else:
        chat.fail(raised, end_time=at)


def _all_messages(result: Any) -> Sequence[Any] | None:
    """The history a run ended with (its result's); None when it cannot tell."""
    try:
        messages = result.all_messages()
    except Exception as error:  # noqa: BLE001 - the refused calls then go unrecorded
        report("threadline.pydantic_ai.refused_calls", error)
        return None
    return messages if isinstance(messages, Sequence) else None


def _note_calls(state: _RunState, response: Any, at: int | None = None) -> None:
    """Keep the tool calls of ``response`` (ended ``at``), to record those Pydantic AI refuses
    unseen: it refuses them as it takes the response, so that is their time."""
    try:
        calls = {
            part.tool_call_id: part
            for part in response.parts
            if getattr(part, "part_kind", None) == "tool-call"
        }
    except Exception as error:  # noqa: BLE001 - a refused call then goes unrecorded
        report("threadline.pydantic_ai.refused_calls", error)
        return
    ok = 0 < len(calls) <= _MAX_RESPONSE_CALLS
    state.calls = (calls, at or time.time_ns()) if ok else None


def _stopped_early(state: _RunState | None) -> bool:
    """Whether a ``CancelledError`` in ``wrap_run`` is Pydantic AI tearing the run down because
    its caller stopped early (``break`` out of ``run_stream`` or ``iter``),
    not a cancellation or failure of the run: Pydantic AI then cancels the task running
    ``wrap_run`` without reporting an error, while a cancelled caller's error reaches
    ``on_run_error`` (2.x) or is re-raised into the task without cancelling it (1.x)."""
    if closed_by_consumer():
        return state is not None  # run_stream_events closed early by its consumer
    if state is None or state.failed or cut_short_by_consumer():
        return False
    # None on Python 3.10: recorded as failed. The loop shutting down (asyncio.run returned
    # with the run in flight) is no consumer stopping, nor is a caller that tears this task
    # down as it is being cancelled itself (a timeout landing in a before_run hook: 2.x then
    # cancels and drains the task running wrap_run without reporting an error).
    return (
        task_cancelling() is True and not drained_by_cancelled_task() and not _loop_shutting_down()
    )


_CANCEL_ALL_TASKS = getattr(getattr(asyncio.runners, "_cancel_all_tasks", None), "__code__", None)


def _loop_shutting_down() -> bool:
    """Whether the loop is cancelling every task left, as ``asyncio.run`` does when its main
    coroutine returns. Every task cancelling alone does not tell: a consumer being cancelled
    itself (a timeout) may stop reading in its cleanup, and Pydantic AI 1.x then cancels the
    task that runs ``wrap_run`` and awaits it. So: ``asyncio.run``'s shutdown on the stack, or
    every task cancelling with none awaiting this one directly (a task waiting through
    ``gather``/``wait`` waits on another future, and is not seen). Only called while
    cancelled."""
    if not every_task_cancelled():
        return False
    try:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code is _CANCEL_ALL_TASKS:
                return True
            frame = frame.f_back
        current = asyncio.current_task()
        return not any(
            getattr(task, "_fut_waiter", None) is current for task in asyncio.all_tasks()
        )
    except Exception as error:  # noqa: BLE001 - every task cancelling: a shutdown, as before
        report("threadline.pydantic_ai.loop_shutting_down", error)
        return True


def _validation_description(error: BaseException) -> str | None:
    """The status description of a tool call whose arguments failed validation: a pydantic
    ``ValidationError``'s message quotes the model's arguments (content), so with capture off
    it names only where and why each one failed."""
    errors = getattr(error, "errors", None)
    if not callable(errors) or threadline.capture_enabled():
        return None  # the exception's own message
    details = "; ".join(
        f"{'.'.join(map(str, detail['loc']))}: {detail['msg']}"
        for detail in errors(include_url=False, include_context=False, include_input=False)
    )
    return f"{type(error).__name__}: {details}"[:1024]


def _model_visible(result: Any) -> Any:
    """What the model sees of a tool's result: a ToolReturn wraps it (``return_value``) with
    app-only metadata; media in it are parts. The result is the user's object, so probing it is
    guarded: an attribute hook that raises must not fail a tool call that succeeded."""
    try:
        if getattr(result, "kind", None) == "tool-return" and hasattr(result, "return_value"):
            result = result.return_value
        from threadline.pydantic_ai import _content  # only with content capture on

        return _content.tool_result(result)
    except Exception as error:  # noqa: BLE001 - the user's object, not our bug: recorded as is
        _logger.debug("tool result of type %s is recorded as is: %r", type(result).__name__, error)
    return result


def _warn_native() -> None:
    if _warned[0]:
        return
    _warned[0] = True
    warnings.warn(
        "threadline.pydantic_ai: Pydantic AI's own OpenTelemetry instrumentation is on for this "
        "agent (Agent.instrument_all, agent.instrument or the Instrumentation capability); "
        "threadline defers to it and records no spans for such runs. Turn one of the two off to "
        "choose which telemetry you get.",
        DuplicateTelemetryWarning,
        stacklevel=3,
    )


def _request_params(
    settings: Mapping[str, Any] | None, output_mode: str | None
) -> threadline.RequestParams:
    values: dict[str, Any] = {}
    if settings:
        for key in _SETTINGS_KEYS:
            value = settings.get(key)
            if value is not None:
                values[key] = value
    output_type = _OUTPUT_TYPES.get(output_mode or "")
    if output_type:
        values["output_type"] = output_type
    return threadline.RequestParams(**values)


def _output_mode(model: Any, request_context: Any) -> str | None:
    """The request's output mode. A structured output type given without one (``auto``) gets
    the model's default, which the model picks only as it prepares the request: ``native`` or
    ``prompted`` on some (a profile's ``default_structured_output_mode``; 2.x Anthropic and
    Bedrock models that think)."""
    try:
        parameters = request_context.model_request_parameters
        mode = getattr(parameters, "output_mode", None)
        if mode != "auto":
            return mode if isinstance(mode, str) else None
        while isinstance(model, WrapperModel):
            model = model.wrapped
        choose = getattr(model, "_default_structured_output_mode", None)  # 2.x, per model
        if callable(choose):
            mode = choose(request_context.model_settings, parameters)
        else:  # 1.x: the profile's
            mode = getattr(model.profile, "default_structured_output_mode", None)
    except Exception as error:  # noqa: BLE001 - no output type recorded
        report("threadline.pydantic_ai.output_type", error)
        return None
    return mode if isinstance(mode, str) else None


def _agent_output_type(run: AgentRun, output_mode: str | None) -> None:
    """The run's ``gen_ai.output.type``, told by its first request's output mode (the agent's
    output type is not known before)."""
    output_type = _OUTPUT_TYPES.get(output_mode or "")
    if output_type:
        try:
            run.update(attributes={semconv.GEN_AI_OUTPUT_TYPE: output_type})
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.output_type", error)


def _description(agent: Any, ctx: Any) -> str | None:
    description = getattr(agent, "description", None)
    if description is None:
        return None
    render = getattr(agent, "render_description", None)  # templated descriptions (2.x)
    if render is not None:
        description = render(ctx.deps)
    return description if isinstance(description, str) and description else None


_MAX_ATTEMPTS = 16  # failed attempts recorded per request
# Attempts recorded already: a nested agent's request (in a capability's hook, a tool) records
# its own, whose error may then pass through the enclosing request's hook.
# By identity (an attempt's hash reads its unhashable usage).
_recorded_attempts: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _continuation_helpers() -> tuple[Any, Any]:
    """2.x: Pydantic AI's own reading of a request resuming a suspended response from history
    (``billed_beyond``, ``resumed_response``); None each on releases without them."""
    try:
        from pydantic_ai.models import _continuation
    except ImportError:
        return None, None
    helpers = (getattr(_continuation, name, None) for name in ("billed_beyond", "resumed_response"))
    billed, resumed = (helper if callable(helper) else None for helper in helpers)
    return billed, resumed


_billed_beyond, _resumed_response = _continuation_helpers()


def _resumed(messages: Any) -> Any:
    """The suspended response a request's history ends in (which it resumes), if any (only
    where Pydantic AI has ``_resumed_response``)."""
    try:
        return _resumed_response(messages)
    except Exception:  # noqa: BLE001 - then everything the response says counts
        return None


def _billed(response: Any, resumed: Any) -> Any:
    """``response`` with the usage and failed attempts of the suspended response it resumed
    left out: the run that suspended it recorded those (Pydantic AI counts them the same way)."""
    if resumed is None or _billed_beyond is None:
        return response
    try:
        return _billed_beyond(response, resumed)
    except Exception as error:  # noqa: BLE001 - the span then counts the whole turn
        report("threadline.pydantic_ai.model_response", error)
        return response


def _error_attempts(error: BaseException) -> Any:
    """The attempts a failed request made: listed by a ``FallbackExceptionGroup`` when every
    model failed, or carried on another error that ended the request (a cancellation, a timeout,
    an error the fallback does not cover) so that their usage still counts."""
    if isinstance(error, _FALLBACK_GROUP):
        return getattr(error, "attempts", None)
    return getattr(error, "_pydantic_ai_failed_attempts", None)


def _attempted_model(name: str, provider: Any, candidates: Sequence[Any]) -> Any:
    """The model among ``candidates`` an attempt names: by its exact name, else the longest name
    it starts with (a response's dated version), of the attempt's provider."""
    best = None
    for candidate in candidates:
        model_name = getattr(candidate, "model_name", None)
        if not isinstance(model_name, str) or provider not in (None, candidate.system):
            continue
        if model_name == name:
            return candidate
        if name.startswith(model_name) and (best is None or len(model_name) > len(best.model_name)):
            best = candidate
    return best


def _record_failed_attempts(
    parent: AgentRun, attempts: Any, model: Any, chain: Sequence[Any] | None
) -> None:
    """A ``chat`` span for each attempt a request made before it answered or gave up (2.x
    ``ModelRequestAttempt``: a retry or a fallback inside the request's hook), beside the
    request's span: each is a model call, and a rejected response was billed. Its server is
    that of the model of ``chain`` (or ``model``) it names. A nested ``FallbackModel``'s own
    failure is no model call (its models' attempts are listed beside it)."""
    if not attempts:
        return
    try:
        listed = list(attempts)[:_MAX_ATTEMPTS]
    except Exception as error:  # noqa: BLE001
        report("threadline.pydantic_ai.failed_attempts", error)
        return
    candidates = (*(chain or ()), model)
    for attempt in listed:
        try:
            if _recorded_attempts.get(id(attempt)) is attempt:
                continue
            described = attempt.error
            if isinstance(described, str) and described.startswith("FallbackExceptionGroup"):
                continue
            _recorded_attempts[id(attempt)] = attempt
            start = int(attempt.timestamp.timestamp() * 1e9)
            end = start + int(attempt.duration.total_seconds() * 1e9)
            name = attempt.model_name
            provider = attempt.provider_name
            attempted = _attempted_model(name, provider, candidates)
            if attempted is not None:
                address, port = server_address(attempted.base_url)
                provider = attempted.system
            else:
                address, port = None, None
            rejected = attempt.outcome == "rejected"
            chat = threadline.inference(
                name,
                provider=provider_name(provider) if isinstance(provider, str) else "unknown",
                parent=parent,
                server_address=address,
                server_port=port,
                start_time=start,
                attributes=(
                    {semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_RESPONSE_REJECTED}
                    if rejected
                    else None
                ),
            )
            if attempt.usage is not None:
                chat.update(usage=_usage(attempt.usage))
            if rejected or not isinstance(described, str):
                chat.end(end_time=end)
            else:
                # "ExceptionType: message"; Pydantic AI's own errors by their full name, as the
                # request's span names the error it raised
                kind, _, message = described.partition(": ")
                if isinstance(getattr(_exc, kind, None), type):
                    kind = f"{_exc.__name__}.{kind}"
                chat.fail(kind or "_OTHER", description=message or None, end_time=end)
        except Exception as failure:  # noqa: BLE001 - that attempt goes unrecorded
            report("threadline.pydantic_ai.failed_attempts", failure)


def _usage(usage: Any) -> threadline.Usage:
    details = getattr(usage, "details", None) or {}
    reasoning = getattr(usage, "output_reasoning_tokens", None) or details.get("reasoning_tokens")
    return threadline.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_tokens or None,
        cache_write_input_tokens=usage.cache_write_tokens or None,
        reasoning_output_tokens=reasoning or None,
    )


def _answers_rejected_output(request_context: Any) -> bool:
    """Whether this request sends the model feedback on output it rejected (a validation retry)."""
    messages = request_context.messages
    if not messages:
        return False
    last = messages[-1]
    if getattr(last, "kind", None) != "request":
        return False
    output_tools: set[str] | None = None
    for part in last.parts:
        kind = part.part_kind
        if kind == "retry-feedback":
            return True
        if kind == "retry-prompt" or (
            kind == "tool-return" and getattr(part, "outcome", None) == "retried"
        ):
            name = getattr(part, "tool_name", None)
            if name is None:
                return True
            if output_tools is None:
                tools = getattr(request_context.model_request_parameters, "output_tools", None)
                output_tools = {tool.name for tool in tools or ()}
            if name in output_tools:
                return True
    return False


@dataclass
class Tracing(AbstractCapability[Any]):
    """Record agent runs, model requests and tool calls as threadline runs.

    ``Agent(..., capabilities=[Tracing()])``. Each run gives an ``invoke_agent {agent}`` span with
    ``chat {model}`` (CLIENT) and ``execute_tool {tool}`` children; a sub-agent called from a tool
    nests under that tool's span. When Pydantic AI's own instrumentation is on for a run, this
    capability records nothing for it and warns once (:class:`DuplicateTelemetryWarning`).
    """

    _: KW_ONLY
    id: str | None = "threadline"
    """One per agent: a second ``Tracing`` (e.g. from ``instrument()``) merges with this one."""

    _agent: Any = field(default=None, init=False, repr=False, compare=False)
    """The agent, when known only from ``instrument()`` (releases whose RunContext lacks it)."""
    _by_instrument: bool = field(default=False, init=False, repr=False, compare=False)
    """Given by ``instrument()`` to an agent made while it was on: records only while it is."""
    _runs: dict[str, _RunState] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Runs being recorded, by Pydantic AI run id. Per-run state lives here rather than on a
    copy made in ``for_run``: a capability that returns a new object there makes Pydantic AI
    rebuild and re-sort the run's whole capability chain."""

    def __post_init__(self) -> None:
        if not _event_streams_watched[0]:
            _watch_event_streams()

    def _state(self, ctx: Any) -> _RunState | None:
        run_id = getattr(ctx, "run_id", None)
        if run_id is None:
            return None
        state = self._runs.get(run_id)
        if state is None:
            return None
        mine = _current_state.get()  # the state of the run this hook runs beneath
        if mine is None or mine is state or mine.run_id != run_id:
            return state
        if mine.closed:  # a hook outliving its run, whose id another run has taken since
            return None
        candidate = state.shadowed  # runs open under one id: this hook's, else the latest
        while candidate is not None:
            if candidate is mine:
                return mine
            candidate = candidate.shadowed
        return state

    # --- agent run -------------------------------------------------------------------------
    def _start_agent(self, ctx: Any) -> tuple[AgentRun, str | None] | None:
        if self._by_instrument and not instrumenting[0]:
            return None  # the agent outlived uninstrument()
        try:
            if not isinstance(ctx.tracer, NoOpTracer):
                _warn_native()
                return None
            run_id = getattr(ctx, "run_id", None)
            if run_id is not None and _traced_run.get() == run_id:
                return None  # another Tracing records this run
            agent = getattr(ctx, "agent", None) or self._agent
            name = getattr(agent, "name", None)
            # A conversation set on the session (threadline.session(conversation_id=...)) wins:
            # without a conversation_id argument Pydantic AI mints a new id for every run.
            conversation_id = None
            if semconv.GEN_AI_CONVERSATION_ID not in current_session():
                conversation_id = getattr(ctx, "conversation_id", None)
            run = threadline.invoke_agent(
                name if isinstance(name, str) else None,
                description=_description(agent, ctx),
                conversation_id=conversation_id,
            )
            return run, run_id
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.wrap_run", error)
            return None

    async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
        started = self._start_agent(ctx)
        if started is None:
            return await handler()
        run, run_id = started
        key = run_id if run_id is not None and len(self._runs) < _MAX_RUNS else None
        state = marker = None
        if key is not None:
            shadowed = self._runs.get(key)
            if _sharing(shadowed) < _MAX_SHARING:
                state = self._runs[key] = _RunState(run, key, shadowed)
            else:
                # unrecorded: its hooks must not find another run's state under its id
                marker = _RunState(run, key)
                marker.closed = True
                key = None
        token = _traced_run.set(run_id)
        state_token = _current_state.set(state if state is not None else marker)
        try:
            with run:  # ends the run, failed with whatever passes through
                try:
                    try:
                        result = await handler()
                    except BaseException as error:
                        if state is not None:
                            if state.failing:
                                self._settle_failing_calls(state, None, error)
                            if state.chat_failing:
                                _settle_failing_chat(state, error)
                            if state.calls:
                                self._record_refused_calls(state, None, error)
                        raise
                    finally:
                        if state is not None:
                            if state.failing:
                                self._settle_failing_calls(state, None, None)
                            if state.invalid:
                                self._record_invalid_calls(state, None)
                            if state.chat_failing:
                                _settle_failing_chat(state, None)
                    if state is not None and state.calls:
                        # the final response's calls Pydantic AI refused beside the output
                        self._record_refused_calls(state, _all_messages(result), None)
                    return result
                except asyncio.CancelledError as error:
                    if state is not None and state.chat is not None:
                        # Pydantic AI 1.x runs a streamed request in a task it neither cancels
                        # nor awaits when the run is cancelled: it is over with the run.
                        _cancel_chat(state, state.chat, error)
                    if _stopped_early(state):
                        run.detach()
                        # first: the with block then finds the run ended
                        run.end(stopped_early=True)
                    elif state is not None and (cancelled := _run_cancelled(ctx)) is not None:
                        # The run's own cancel() or timeout: its caller gets that error instead
                        # (unless an outside cancellation raced it, which Pydantic AI lets win).
                        run.detach()
                        run.fail(
                            f"{cancelled.__module__}.{cancelled.__qualname__}",
                            description=cancelled.__name__,
                        )
                    raise
                except _stream_closed:
                    # Pydantic AI 1.x: run_stream_events closed early by its consumer
                    if state is not None and closed_by_consumer():
                        run.detach()
                        run.end(stopped_early=True)
                    raise
        finally:
            if key is not None and state is not None:
                self._forget(key, state)
            # Pydantic AI 1.x may close an abandoned run's task from another context.
            with contextlib.suppress(ValueError):
                _traced_run.reset(token)
            with contextlib.suppress(ValueError):
                _current_state.reset(state_token)

    def _forget(self, run_id: str, state: _RunState) -> None:
        """Drop an ended run's state, keeping that of any other open run under its id."""
        state.closed = True
        shadowed, state.shadowed = state.shadowed, None
        latest = self._runs.get(run_id)
        if latest is state:
            if shadowed is None:
                del self._runs[run_id]
            else:
                self._runs[run_id] = shadowed
            return
        while latest is not None:  # a later run under the same id took its place
            if latest.shadowed is state:
                latest.shadowed = shadowed
                return
            latest = latest.shadowed

    def _record_refused_calls(
        self, state: _RunState, messages: Sequence[Any] | None, error: BaseException | None
    ) -> None:
        """Record the tool calls of the latest response that Pydantic AI refused without running
        them or calling any hook (see _refusal), as ``execute_tool`` spans that failed with the
        refusal's cause as ``error.type``: asking the model to retry, as the next request
        (``messages``) shows, or, at the run's end (``messages`` None), failing the run
        (``error``) as the refusals used up their retries."""
        noted, state.calls = state.calls, None
        if not noted:
            return
        calls, at = noted
        try:
            refused: list[tuple[Any, str, str | None, bool]] = []
            if messages:
                last = messages[-1]
                if getattr(last, "kind", None) == "request":
                    for part in last.parts:
                        call = calls.get(getattr(part, "tool_call_id", None) or "")
                        cause = _refusal(part) if call is not None else None
                        if cause is not None:
                            content = part.content
                            description = content if isinstance(content, str) else None
                            refused.append((call, cause, description, True))
            elif messages is None:
                for call in calls.values():
                    if _refused_past_retries(error, call):
                        refused.append((call, "unknown_tool", str(error), False))
            for call, cause, description, retried in refused:
                tool = self._start_tool(
                    call.tool_name, call.tool_call_id, None, call.args, state.run, start_time=at
                )
                if tool is None:
                    continue
                if retried:
                    tool.set_attributes(
                        {semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_MODEL_RETRY}
                    )
                tool.refuse(cause, description=(description or cause)[:1024], end_time=at)
        except Exception as failure:  # noqa: BLE001
            report("threadline.pydantic_ai.refused_calls", failure)

    async def on_run_error(self, ctx: Any, *, error: BaseException) -> Any:
        # Called with the run body's failure, a cancellation of the caller included (2.x, inside
        # wrap_run; 1.x calls it after wrap_run, with the run already ended).
        state = self._state(ctx)
        if state is not None:
            state.failed = True
        raise error

    # --- model requests --------------------------------------------------------------------
    def _start_chat(
        self,
        model: Any,
        request_context: Any,
        parent: AgentRun,
        output_mode: str | None,
        *,
        fallback: bool = False,
    ) -> InferenceRun | None:
        try:
            parameters = request_context.model_request_parameters
            # A fallback chain's server is the answering model's, known at the end.
            address, port = (None, None) if fallback else server_address(model.base_url)
            attributes: dict[str, AttributeValue] | None = None
            if _answers_rejected_output(request_context):
                attributes = {semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_OUTPUT_VALIDATION}
            chat = threadline.inference(
                model.model_name,
                provider=provider_name(model.system),  # "bedrock" -> "aws.bedrock"
                parent=parent,
                request=_request_params(request_context.model_settings, output_mode),
                stream=bool(getattr(request_context, "streaming", False)),
                server_address=address,
                server_port=port,
                attributes=attributes,
            )
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.wrap_model_request", error)
            return None
        if threadline.capture_enabled():
            try:
                from threadline.pydantic_ai import _content

                messages, instructions = _content.input_messages(request_context.messages)
                instructions = _content.instruction_parts(parameters) or instructions
                chat.update(
                    input_messages=messages,
                    system_instructions=instructions or None,
                    tool_definitions=_content.tool_definitions(parameters, model, output_mode)
                    or None,
                )
            except Exception as error:  # noqa: BLE001 - the span goes on without its content
                report("threadline.pydantic_ai.request_content", error)
        return chat

    def _end_chat(
        self,
        chat: InferenceRun,
        response: Any,
        chain: Sequence[Any] | None = None,
        end_time: int | None = None,
        request_context: Any = None,
        agent: AgentRun | None = None,
        started_for: Any = None,
    ) -> None:
        if response is None:
            chat.end(end_time=end_time)
            return
        try:
            if chain is not None:
                answered = _answered_by(chat, chain, response)
                if answered is not None and started_for is not None:
                    _answered_output_mode(chat, agent, answered, request_context)
            finish = response.finish_reason
            chat.update(
                response_id=response.provider_response_id,
                response_model=response.model_name,
                finish_reasons=[finish] if finish else None,
                usage=_usage(response.usage),
            )
            if threadline.capture_enabled():
                from threadline.pydantic_ai import _content

                chat.update(output_messages=_content.output_messages(response))
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.model_response", error)
        chat.end(end_time=end_time)

    async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> Any:
        state = self._state(ctx)
        if state is None:
            return await handler(request_context)
        if state.failing:
            self._settle_failing_calls(state, request_context.messages, None)
        if state.invalid:
            self._record_invalid_calls(state, request_context.messages)
        if state.chat_failing:  # no hook recovered it: the request is being made again
            _settle_failing_chat(state, None)
        if state.calls:
            self._record_refused_calls(state, request_context.messages, None)
        model = getattr(request_context, "model", None) or ctx.model
        chain = _fallback_chain(model)
        started_for = chain[0] if chain else model
        output_mode = _output_mode(started_for, request_context)
        first_request = not state.requested
        if first_request:
            state.requested = True
            if not chain:  # a fallback chain's is the answering model's, known at the end
                _agent_output_type(state.run, output_mode)
        chat = self._start_chat(
            started_for,
            request_context,
            state.run,
            # a span cannot lose an attribute: a fallback chain's output type waits for the end
            None if chain else output_mode,
            fallback=bool(chain),
        )
        if chat is None:
            return await handler(request_context)
        state.chat = chat
        # The history as stored, to tell whether Pydantic AI prepared another for the model.
        stored = request_context.messages if threadline.capture_enabled() else None
        resumed = _resumed(request_context.messages) if _resumed_response is not None else None
        chat.attach()  # HTTP client spans nest under the chat span
        try:
            response = await handler(request_context)
        except BaseException as error:
            if stored is not None and request_context.messages is not stored:
                _prepared_content(chat, request_context.messages)
            if isinstance(error, _SKIPPED_REQUEST):
                self._end_chat(chat, getattr(error, "response", None), chain)
            elif isinstance(error, asyncio.CancelledError):
                _cancel_chat(state, chat, error)
            elif (
                _MODEL_ERROR_HOOKS_AFTER_WRAP
                and isinstance(error, Exception)
                and not isinstance(error, _RETRY_ERRORS)
                and not state.run.ended  # a request that outlived its run: nothing settles it
            ):
                # 1.x: an on_model_request_error hook may yet recover the request (its response
                # reaches after_model_request) or replace the error (the run's end tells)
                ending = (chain, request_context, state.run if first_request else None)
                state.chat_failing = (chat, error, time.time_ns(), (*ending, chain and started_for))
            else:
                _request_failed(chat, error)
            _record_failed_attempts(state.run, _error_attempts(error), model, chain)
            state.stream_error = None
            raise
        finally:
            chat.detach()
            if state.chat is chat:
                state.chat = None
        if stored is not None and request_context.messages is not stored:
            _prepared_content(chat, request_context.messages)
        served = getattr(request_context, "model", None)
        if served is not model:  # moved on to another model (2.x ModelFallback)
            try:
                chain = _served_by(model, served) or chain
            except Exception as error:  # noqa: BLE001 - the span keeps the first model
                report("threadline.pydantic_ai.model_response", error)
        streamed, state.streamed = state.streamed, None
        end_time = streamed[1] if streamed and streamed[0] is chat else None
        billed = _billed(response, resumed)
        _record_failed_attempts(state.run, getattr(billed, "failed_attempts", None), model, chain)
        self._end_chat(
            chat,
            billed,
            chain,
            end_time,
            request_context,
            state.run if first_request else None,
            started_for if chain else None,
        )
        _note_calls(state, response, end_time)
        return response

    if _MODEL_ERROR_HOOKS_AFTER_WRAP:

        async def after_model_request(
            self, ctx: Any, *, request_context: Any, response: Any
        ) -> Any:
            # 1.x: called with the response an on_model_request_error hook recovered a failed
            # request with (as with any other response, after wrap_model_request).
            state = self._state(ctx)
            failing = state.chat_failing if state is not None else None
            if state is not None and failing is not None:
                state.chat_failing = None
                chat, _, _, (chain, context, agent, started_for) = failing
                self._end_chat(chat, response, chain, None, context, agent, started_for)
                _note_calls(state, response)
            return response

    # --- streaming -------------------------------------------------------------------------
    @property
    def has_wrap_run_event_stream(self) -> bool:
        # Observing streams must not turn a non-streamed run into a streamed one.
        return False

    def wrap_run_event_stream(self, ctx: Any, *, stream: AsyncIterable[Any]) -> AsyncIterable[Any]:
        state = self._state(ctx)
        if state is None:
            return stream
        return _count_chunks(state, stream)

    # --- tools -----------------------------------------------------------------------------
    def _start_tool(
        self,
        name: str,
        call_id: str | None,
        tool_def: Any,
        args: Any,
        parent: AgentRun,
        start_time: int | None = None,
    ) -> ToolRun | None:
        try:
            return threadline.execute_tool(
                name,
                parent=parent,
                call_id=call_id,
                description=getattr(tool_def, "description", None),
                arguments=args if threadline.capture_enabled() else None,
                start_time=start_time,
            )
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.wrap_tool_execute", error)
            return None

    async def wrap_tool_execute(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, handler: Any
    ) -> Any:
        state = self._state(ctx)
        if state is None or (
            # An output tool (1.x): recorded by wrap_output_process where Pydantic AI has it,
            # and never for a streamed partial output (validated again on every chunk).
            getattr(tool_def, "kind", None) == "output"
            and (_OUTPUT_PROCESS_HOOK or getattr(ctx, "partial_output", False))
        ):
            return await handler(args)
        if state.invalid:  # its arguments failed validation and a capability repaired them
            state.invalid.pop(call.tool_call_id, None)
        tool = self._start_tool(call.tool_name, call.tool_call_id, tool_def, args, state.run)
        if tool is None:
            return await handler(args)
        return await _run_tool(tool, handler, args, state, call.tool_call_id)

    async def on_tool_execute_error(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, error: Exception
    ) -> Any:
        # Called with a tool call's error, from the capability after this one on: inside
        # wrap_tool_execute (2.x) or after it (1.x), possibly before another capability
        # recovers the call (see _await_error_hooks).
        state = self._state(ctx)
        if state is not None:
            try:
                call_id = call.tool_call_id
                failing = state.failing.get(call_id) if state.failing else None
                if failing is not None:
                    failing[2], failing[3] = error, time.time_ns()
                else:
                    hooked = state.error_hooked
                    if hooked is None:
                        hooked = state.error_hooked = set()
                    if len(hooked) < _MAX_FAILING_CALLS:
                        hooked.add(call_id)
            except Exception as failure:  # noqa: BLE001
                report("threadline.pydantic_ai.on_tool_execute_error", failure)
        raise error

    async def after_tool_execute(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, result: Any
    ) -> Any:
        state = self._state(ctx)
        if state is not None and state.failing:
            try:
                failing = state.failing.pop(call.tool_call_id, None)
                if failing is not None:  # 1.x: an error hook recovered the call: its result
                    tool: ToolRun = failing[0]
                    if threadline.capture_enabled():
                        tool.update(result=_model_visible(result))
                    tool.end()
            except Exception as failure:  # noqa: BLE001
                report("threadline.pydantic_ai.after_tool_execute", failure)
        return result

    def _settle_failing_calls(
        self, state: _RunState, messages: Sequence[Any] | None, error: BaseException | None
    ) -> None:
        """End the spans of tool calls that raised past ``wrap_tool_execute`` and no error hook
        recovered (see _await_error_hooks), once their fate shows: at the next model request
        (``messages``), whose history tells whether a hook had the call retried or gave it a
        result, or at the run's end, failed with the error the run failed with when the call's
        error caused it (as an error hook raised it), else with the latest error seen."""
        failing, state.failing = state.failing, None
        if not failing:
            return
        try:
            outcomes: dict[str, str] = {}
            if messages and getattr(messages[-1], "kind", None) == "request":
                for part in messages[-1].parts:
                    call_id = getattr(part, "tool_call_id", None)
                    if not isinstance(call_id, str):
                        continue
                    kind = part.part_kind
                    if kind == "retry-prompt" or (
                        kind == "tool-return" and getattr(part, "outcome", None) == "retried"
                    ):
                        outcomes[call_id] = "retried"
                    elif kind == "tool-return":
                        outcomes[call_id] = "returned"
            for call_id, (tool, raised, latest, at) in failing.items():
                outcome = outcomes.get(call_id)
                if outcome == "retried":
                    tool.set_attributes(
                        {semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_MODEL_RETRY}
                    )
                    tool.end(end_time=at)
                elif outcome == "returned":
                    tool.end(end_time=at)
                elif isinstance(error, Exception) and _caused_by(error, raised):
                    tool.fail(error, end_time=at)  # the run failed with it
                elif isinstance(latest, _UNHOOKED_TOOL_ERRORS) and not isinstance(
                    latest, _RETRY_ERRORS
                ):
                    tool.end(end_time=at)  # a hook made it control flow (a deferral)
                else:
                    tool.fail(latest, end_time=at)
        except Exception as failure:  # noqa: BLE001
            report("threadline.pydantic_ai.on_tool_execute_error", failure)
            for tool, *_ in failing.values():
                tool.end()

    async def wrap_output_process(
        self, ctx: Any, *, output_context: Any, output: Any, handler: Any
    ) -> Any:
        # Pydantic AI 2.x runs output functions here, not through wrap_tool_execute. Output
        # without a function runs no user code (no span, as in Pydantic AI's instrumentation);
        # streamed, the function also runs on every partial output: only the final call counts.
        if not getattr(output_context, "has_function", False) or ctx.partial_output:
            return await handler(output)
        state = self._state(ctx)
        if state is None:
            return await handler(output)
        tool = None
        try:
            call = output_context.tool_call
            name = (
                call.tool_name if call is not None else output_context.function_name
            ) or "output_function"
            call_id = call.tool_call_id if call is not None else None
            tool = self._start_tool(name, call_id, output_context.tool_def, output, state.run)
        except Exception as error:  # noqa: BLE001
            report("threadline.pydantic_ai.wrap_output_process", error)
        if tool is None:
            return await handler(output)
        return await _run_tool(tool, handler, output)

    async def on_tool_validate_error(
        self, ctx: Any, *, call: Any, tool_def: Any, args: Any, error: Any
    ) -> Any:
        # Called only when validation fails, and possibly before another capability recovers
        # the error: the call is recorded once its outcome shows (_record_invalid_calls).
        state = self._state(ctx)
        # A streamed partial output failing validation (1.x output tools) is no call: nobody
        # is asked to retry, and Pydantic AI validates the final output again.
        if state is not None and not getattr(ctx, "partial_output", False):
            try:
                invalid = state.invalid
                if invalid is None:
                    invalid = state.invalid = {}
                if len(invalid) < _MAX_INVALID_CALLS:
                    invalid[call.tool_call_id] = (call, tool_def, args, error, time.time_ns())
            except Exception as failure:  # noqa: BLE001
                report("threadline.pydantic_ai.on_tool_validate_error", failure)
        raise error

    def _record_invalid_calls(self, state: _RunState, messages: Sequence[Any] | None) -> None:
        """Record the tool calls whose arguments failed validation as ``execute_tool`` spans
        asking the model to retry: failed (as Pydantic AI's own instrumentation records them),
        unless an argument validator asked for the retry (ModelRetry, as from the tool). A call that
        a later capability recovered has run: its result is in the next request (``messages``).
        At the run's end (``messages`` None), those left failed (their retries exhausted, say)."""
        invalid, state.invalid = state.invalid, None
        if not invalid:
            return
        try:
            ran: set[str] = set()
            if messages and getattr(messages[-1], "kind", None) == "request":
                # 2.x answers a failed call with a tool-return part too, outcome "retried"
                ran = {
                    part.tool_call_id
                    for part in messages[-1].parts
                    if part.part_kind == "tool-return"
                    and getattr(part, "outcome", None) != "retried"
                }
            for call_id, (call, tool_def, args, error, at) in invalid.items():
                if call_id in ran:
                    continue
                tool = self._start_tool(
                    call.tool_name, call.tool_call_id, tool_def, args, state.run, start_time=at
                )
                if tool is None:
                    continue
                tool.set_attributes(
                    {semconv.THREADLINE_RETRY_CAUSE: semconv.RETRY_CAUSE_MODEL_RETRY}
                )
                if isinstance(error, _RETRY_ERRORS):  # an argument validator's ModelRetry
                    tool.end(end_time=at)
                else:
                    tool.fail(error, description=_validation_description(error), end_time=at)
        except Exception as failure:  # noqa: BLE001
            report("threadline.pydantic_ai.on_tool_validate_error", failure)
