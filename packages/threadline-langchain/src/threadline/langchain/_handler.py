"""The callback handler: LangChain/LangGraph run events -> threadline runs.

Parenting follows LangChain's ``parent_run_id``, never the ambient context: every chain run gets a
small record (bounded map, removed when the run ends) pointing at its parent, and a run that does
not become a span (a prompt, a parser, a sequence, a LangGraph node, ...) hands its children to
the nearest ancestor that does. Chain spans are decided lazily: a chain turns out to be a
LangGraph graph when its loop or its first node starts, so graph spans are created then, with
the graph's own start time.

Model, tool and retriever spans are made current between their start and end callbacks, so
spans of HTTP clients nest under them; while a LangGraph node runs, or its loop reads or writes
checkpoints, the graph's span is current, so spans made there nest under the graph. Those
callback pairs run in one thread/task (LangChain calls this handler inline, ``run_inline =
True``); a streamed model call is made current only until its first chunk, which arrives in the
same ``next()`` as its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable, Collection, Container, Hashable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import FrameType, ModuleType
from typing import Any, TypeAlias
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from langchain_core.runnables.base import RunnableBindingBase, RunnableGenerator, RunnableLambda
from langchain_core.runnables.config import var_child_runnable_config
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

import threadline
from threadline import AgentRun, InferenceRun, RetrievalRun, Run, ToolRun, semconv
from threadline._context import (
    ConsumerStream,
    MarkBox,
    close_inner,
    closed_by_consumer,
    consumer_closed,
    cut_short_by_consumer,
    task_cancelling,
    unwatch_consumer,
    watch_consumer,
)
from threadline._context import attach as attach_context
from threadline._deferred import when_imported
from threadline._failopen import report
from threadline._patching import Patches
from threadline._runs import PendingSpan, beneath, current_made_run, pending_context
from threadline.langchain import _convert

__all__ = ["CallbackHandler"]

# LangGraph raises these to pause, resume or route a graph: control flow, not failures.
_NODE_TAG = "graph:step:"
_HIDDEN_TAG = "langsmith:hidden"
_CREATE_AGENT = "langchain_create_agent"
_REACT_AGENT_NODES = frozenset({"agent", "pre_model_hook"})
_MIDDLEWARE_NODE_SUFFIXES = (".before_agent", ".before_model", ".after_model", ".after_agent")
_LEGACY_AGENTS = frozenset({"AgentExecutor"})
# The names LangChain and LangGraph give what the app did not name: types, not workflows (the
# conventions keep such names out of gen_ai.workflow.name). "RunnableParallel<a,b>" counts too.
_TYPE_NAMES = frozenset(
    {
        "AgentExecutor",
        "LangGraph",
        "Pregel",
        "CompiledGraph",
        "CompiledStateGraph",
        "RunnableAssign",
        "RunnableBinding",
        "RunnableBranch",
        "RunnableEach",
        "RunnableConfigurableAlternatives",
        "RunnableConfigurableFields",
        "RunnableGenerator",
        "RunnableLambda",
        "RunnableMap",
        "RunnableParallel",
        "RunnablePassthrough",
        "RunnablePick",
        "RunnableRetry",
        "RunnableSequence",
        "RunnableWithFallbacks",
        "RunnableWithMessageHistory",
    }
)
_MAX_CHAINS = 50_000

_SKIP, _PENDING, _EMITTED = 0, 1, 2
_STREAM_ATTRIBUTES = {semconv.GEN_AI_REQUEST_STREAM: True}


class _Chain:
    """Bookkeeping for one chain run (a runnable, a LangGraph graph or node)."""

    __slots__ = (
        "agent_known",
        "agent_node",
        "graph",
        "handler",
        "hidden",
        "metadata",
        "name",
        "node",
        "parent",
        "pending",
        "root",
        "run",
        "scope",
        "scoped",
        "start_ns",
        "state",
        "token",
        "user_code",
    )

    def __init__(
        self,
        handler: CallbackHandler,
        parent: _Chain | Run | Context,
        name: str,
        metadata: Mapping[str, Any] | None,
        hidden: bool,
    ) -> None:
        self.handler = handler
        self.parent = parent
        self.name = name
        self.metadata = metadata
        self.hidden = hidden
        self.start_ns = time.time_ns()
        self.state = _PENDING
        self.run: Run | None = None
        self.graph = False
        self.node = False  # a LangGraph node: a graph it runs goes by its name (_graph_name)
        self.agent_node = False
        self.agent_known = False  # told by the graph's nodes, as its loop started
        self.token: Token[Context] | None = None
        self.scope: Run | None = None  # the run made current while this node runs
        self.user_code = _NOT_APPS  # a call of the app's function (see _apps_function_call)
        # a root chain's context for LangChain's copies, and its pending span (see _root_scope)
        self.pending: tuple[Context, PendingSpan] | tuple[None, None] | None = None
        self.root: bool | None = None  # known at the first _starts_a_trace (its parent is set)
        self.scoped = False  # given a scope in LangChain's copies (_with_chain_scope)


# Shared by every handler instance, so a run seen by two handlers (the global one and one passed
# in a config) is recorded once. Keyed by the run id's ``int`` (``getattr(run_id, "int",
# run_id)``): a UUID's hash is Python code (``uuid.UUID.__hash__``), an int's is not, and each
# callback looks up several.
RunKey: TypeAlias = Hashable


def run_key(run_id: object) -> RunKey:
    """The key of a LangChain run id in the maps below (the callbacks inline it)."""
    return getattr(run_id, "int", run_id)


_runs: threadline.RunRegistry[RunKey, Run] = threadline.RunRegistry()
_chains: dict[RunKey, _Chain] = {}
_lock = threading.RLock()
# Every chunk of a model run reaches each handler listed on it. The handler that started the run
# counts them; a second handler (one on the model, one in the config: both allowed) leaves them
# to it; a handler listed more than once (LangChain merges callback lists without removing
# repeats) counts one call in as many as it is listed.
_owners: dict[RunKey, CallbackHandler] = {}
_seconds: dict[RunKey, CallbackHandler] = {}
_repeats: dict[RunKey, list[int]] = {}  # [times listed, token calls seen]


def _bounded_put(mapping: dict[RunKey, Any], key: RunKey, value: object) -> None:
    mapping[key] = value
    if len(mapping) > _MAX_CHAINS:
        # Runs whose end never arrives (abandoned streams) must not pile up.
        with contextlib.suppress(StopIteration, RuntimeError, KeyError):
            del mapping[next(iter(mapping))]


def _remember(key: RunKey, record: _Chain) -> None:
    _bounded_put(_chains, key, record)


# Root chains an async batch started, whose names may be only the class of the model a wrapper
# (``with_retry``) holds: the first model call beneath tells (see _wrapper_name).
_unsure_names: dict[RunKey, _Chain] = {}


# Open model, tool and retriever runs by the LangChain run they started in (a chain, or a tool or
# retriever for one called inside it). A run leaves its parent's map when it ends; when the parent
# ends, a run still there lost its own end callback.
_children: dict[RunKey, dict[RunKey, Run]] = {}
# Set by the guard around LangChain's async model, tool and retriever entry points: collects the
# runs made current inside, to end them if the call is cancelled and to make sure none stays
# current in the caller once it returns.
guarded_calls: ContextVar[dict[RunKey, Run] | None] = ContextVar(
    "threadline_langchain_guarded_call", default=None
)
# LangChain's dispatchers of callbacks to handlers: which one called tells sync from async.
_SYNC_DISPATCH, _ASYNC_DISPATCH = "handle_event", "_ahandle_event_for_handler"
_DISPATCHERS = frozenset((_SYNC_DISPATCH, _ASYNC_DISPATCH))


def _langchain_frame(names: Container[str]) -> FrameType | None:
    """The nearest frame named in ``names`` up the stack of the callback that called the
    caller of this (LangChain calls a handler a few frames below its dispatch)."""
    frame: FrameType | None = sys._getframe(3)
    for _ in range(8):
        if frame is None or frame.f_code.co_name in names:
            return frame
        frame = frame.f_back
    return None


def _called_from_async_code() -> bool:
    """Whether this callback comes from an async LangChain call (a sync ``invoke`` made in a
    notebook cell or an async web handler also runs where an event loop is running)."""
    if asyncio._get_running_loop() is None:  # the non-raising form: this runs on every call
        return False
    frame = _langchain_frame(_DISPATCHERS)
    # not called by LangChain's dispatch: assume the cautious case
    return frame is None or frame.f_code.co_name == _ASYNC_DISPATCH


def _start_leaf(key: RunKey, parent_key: RunKey | None, run: Run, *, attach: bool) -> None:
    """Register a model/tool/retriever run and make it current (``attach``) when its end is
    certain to come back to this context, or to an enclosing run that can end it instead.

    LangChain sends no callback when an async call is cancelled (``asyncio.timeout`` around
    ``ainvoke``: the ``CancelledError`` passes by ``agenerate``'s error handling, and
    ``BaseTool.arun`` and ``BaseRetriever.ainvoke`` only report ``Exception``). Inside a run this
    handler follows, that run's end or error ends what is left open (:func:`end_unfinished`);
    a top-level async call is made current only under instrument()'s guard, which does the same,
    since the run would otherwise stay current in the caller's task.
    """
    _runs.add(key, run)
    guard = guarded_calls.get()
    if parent_key is not None and (parent_key in _chains or parent_key in _runs):
        siblings = _children.get(parent_key)
        if siblings is None:
            siblings = _children.setdefault(parent_key, {})  # one map, even from threads
            if len(_children) > _MAX_CHAINS:  # parents whose end never reaches this handler
                with contextlib.suppress(StopIteration, RuntimeError, KeyError):
                    del _children[next(iter(_children))]
        siblings[key] = run
    elif guard is None and _called_from_async_code():
        return
    if attach:
        if guard is not None:
            if len(guard) % _GUARD_PRUNE_EVERY == _GUARD_PRUNE_EVERY - 1:
                _prune_guard(guard)
            guard[key] = run
        run.attach()


# A guard around a long graph sees every model call of its sync nodes: the runs that ended and
# hold no context any more are dropped now and then, not kept until the graph returns.
_GUARD_PRUNE_EVERY = 64


def _prune_guard(guard: dict[RunKey, Run]) -> None:
    # Sync nodes run in worker threads: copy first (one C-level call, atomic under the GIL).
    for key, run in list(guard.items()):
        if run.ended and not run.attached:
            guard.pop(key, None)


def _leaf_ended(key: RunKey, parent_key: RunKey | None, error: BaseException | None) -> None:
    """A model/tool/retriever run ended: it leaves its parent's map, and what it started that
    is still open is ended."""
    if parent_key is not None:
        siblings = _children.get(parent_key)
        if siblings is not None:
            siblings.pop(key, None)
            if not siblings:
                _children.pop(parent_key, None)
    _run_ended(key, error)


def _run_ended(key: RunKey, error: BaseException | None = None) -> None:
    """A LangChain run ended: end what it started that is still open."""
    children = _children.pop(key, None)
    if children:
        end_unfinished(children, error)


def end_unfinished(leaves: Mapping[RunKey, Run], error: BaseException | None) -> None:
    """End the runs of ``leaves`` still open, innermost first: with ``error`` (what their
    enclosing run failed with), or as abandoned when it ended normally."""
    for run_id, run in reversed(list(leaves.items())):
        if run.ended:
            continue
        if error is None and isinstance(run, InferenceRun) and run.chunks:
            # A sync chain whose stream the caller closed reports its end before LangChain
            # closes the model's stream inside it: the model's own end comes next (else the
            # reaper's), with what it streamed.
            continue
        _run_ended(run_id, error)
        run.detach()
        if error is None:
            run.abandon("end callback missing")
        else:
            _finish(run, error)


# Async entry points whose end callback may come in another context, or none at all when
# cancelled (LangChain's error handling there catches Exception): (module, class, method).
# BaseChatModel.agenerate and BaseLLM.agenerate send on_llm_end through asyncio.gather, so it runs
# in a task of its own, a copy of the caller's context, where the run made current in the caller
# cannot be detached.
_GUARDED = (
    ("langchain_core.language_models.chat_models", "BaseChatModel", "agenerate"),
    ("langchain_core.language_models.llms", "BaseLLM", "agenerate"),
    ("langchain_core.tools", "BaseTool", "arun"),
    ("langchain_core.retrievers", "BaseRetriever", "ainvoke"),
    # A graph cancelled in its caller's task (a timeout around ainvoke) reports its error from
    # a task of its own, where the graph's span, made current for a node that ran in the
    # caller's task, cannot be detached.
    ("langgraph.pregel", "Pregel", "ainvoke"),
    ("langgraph.pregel", "Pregel", "astream"),
)
# LangChain's astream_events (v2) runs the runnable in a task of its own and cancels it when the
# consumer closes the event stream: the module functions that do it, wrapped to say so.
_EVENT_STREAMS = (
    ("langchain_core.tracers.event_stream", "_astream_events_implementation_v2"),
    ("langchain_core.runnables.base", "_astream_events_implementation_v2"),
)
# Set while LangChain's astream_events starts the runnable's task: a graph streamed there is
# read by that task, not by an app, and the mark set for the event stream's consumer is its.
_for_events: ContextVar[bool] = ContextVar("threadline_langchain_for_events", default=False)
_guarded = Patches()
_guards: set[Callable[..., Any]] = set()  # the wrappers in place
_guard_on = False
# Reentrant: looking up an entry point can import a module whose own hook takes it
# (langchain_core.tools imports tools.base lazily).
_guard_lock = threading.RLock()


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        started: dict[RunKey, Run] = {}
        before = otel_context.get_current()
        token = guarded_calls.set(started)
        try:
            return await method(self, *args, **kwargs)
        except BaseException as error:
            if started:
                try:
                    end_unfinished(started, error)
                except Exception as internal:  # noqa: BLE001 - fail-open
                    report("langchain.guard", internal)
            raise
        finally:
            if started:
                for run in reversed(started.values()):
                    run.detach()  # here, in the caller's context, where it was attached
            _restore(before)
            with contextlib.suppress(ValueError):  # reset from another context: nothing to undo
                guarded_calls.reset(token)

    return guarded


def _guard_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    """The guard of an async generator (a graph's ``astream``). A graph runs a node in its
    consumer's task, and makes the graph's span current there while the node runs; a consumer
    that stops early closes the stream, and the graph reports that from a task of its own,
    where that span cannot be detached. A consumer closing it while being cancelled itself (a
    timeout around it, landing in its own code between items) cut the graph short: the mark
    the graph's tasks copy says so (see ``on_chain_error``), also when the consumer drops the
    stream unclosed (see ``ConsumerStream``)."""

    @functools.wraps(method)
    def handed_out(self: Any, *args: Any, **kwargs: Any) -> ConsumerStream:
        return ConsumerStream(lambda box: guarded(box, self, *args, **kwargs))

    async def guarded(box: MarkBox, self: Any, *args: Any, **kwargs: Any) -> Any:
        consumer = otel_context.get_current()
        mark: list[bool | None] | None = None
        if _for_events.get():  # the event stream's mark stays the one its tasks read
            events_token = _for_events.set(False)  # graphs streamed in its nodes: their own
        else:
            mark, mark_token = watch_consumer()  # set once: the graph's tasks copy the context
            box[0] = mark
        stream = method(self, *args, **kwargs)
        try:
            while True:
                try:
                    item = await stream.__anext__()
                except StopAsyncIteration:
                    break
                # The consumer holds each item in its own context, not in the one the graph
                # left current while a node runs (the graph goes on in that one when resumed):
                # code the consumer runs between items is not the graph's, and a stream it
                # drops without closing leaves nothing current in its task.
                token = None
                if otel_context.get_current() is not consumer:
                    token = threadline.attach_context(consumer)
                try:
                    yield item
                except GeneratorExit:
                    if mark is not None:
                        consumer_closed(mark)  # stopped early, unless a timeout cut it short
                    raise
                finally:
                    consumer = otel_context.get_current()  # as the consumer resumes or closes
                    if token is not None:
                        threadline.detach_context(token)
        finally:
            try:
                await close_inner(stream)
            finally:
                box[0] = None
                if mark is not None:
                    mark[0] = None  # later cancellations of tasks that copied it are their own
                    unwatch_consumer(mark_token)
                else:
                    with contextlib.suppress(ValueError):  # closed from another context
                        _for_events.reset(events_token)
                _restore(consumer)

    return handed_out


def _guard_events(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        mark, token = watch_consumer()  # the runnable's task copies the context: its mark
        events_token, events_set = _for_events.set(True), True  # until the task is made
        stream = function(*args, **kwargs)
        root: _Chain | None = None
        first = True
        try:
            async for event in stream:
                if first:
                    first = False
                    events_set = False
                    with contextlib.suppress(ValueError):  # read by another task
                        _for_events.reset(events_token)
                    root = _started_chain(event)  # the first event is the root run's start
                yield event
        except GeneratorExit:
            consumer_closed(mark)
            raise
        finally:
            try:
                await close_inner(stream)  # cancels and awaits the runnable's task
            finally:
                closed = mark[0] is True
                mark[0] = None
                unwatch_consumer(token)
                if events_set:
                    with contextlib.suppress(ValueError):  # closed from another context
                        _for_events.reset(events_token)
                if closed and root is not None:
                    _forget_tree(root)

    return guarded


def _started_chain(event: object) -> _Chain | None:
    """The record of the chain an ``astream_events`` event is about (its run id is a string)."""
    try:
        run_id = event.get("run_id") if isinstance(event, Mapping) else None
        return _chains.get(run_key(UUID(run_id))) if isinstance(run_id, str) else None
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.event_run", error)
        return None


def _forget_tree(root: _Chain) -> None:
    """Drop the records of a run tree whose ends will never come: LangChain cancels an event
    stream's task when its consumer closes it, at times before any end callback is sent (the
    root's own may have come)."""
    try:
        with _lock:
            for run_id, record in list(_chains.items()):
                ancestor: object = record
                for _ in range(_MAX_NESTING):
                    if ancestor is root:
                        _chains.pop(run_id, None)
                        _unsure_names.pop(run_id, None)
                        if record.pending is not None and record.pending[1] is not None:
                            record.pending[1].settle(record.run)
                        run = record.run
                        if run is not None and not run.ended:
                            run.end(stopped_early=True)  # its consumer stopped reading
                        break
                    if not isinstance(ancestor, _Chain):
                        break
                    ancestor = ancestor.parent
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.forget_tree", error)


_MAX_NESTING = 64


def _restore(before: Context) -> None:
    """Leave the caller's context as the call found it when the call left one of our ended runs
    current there (its end came in another task, which could not detach it)."""
    try:
        if otel_context.get_current() is not before:
            left = current_made_run()
            if left is not None and left.ended:
                threadline.attach_context(before)  # nothing to detach: the call is over
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.guard_restore", error)


def guard_entry_points() -> None:
    """Wrap LangChain's async entry points (once per process; see ``_GUARDED``), each when its
    module is imported: LangGraph may come later than LangChain, or never."""
    global _guard_on
    with _guard_lock:
        if _guard_on:
            return
        _guard_on = True
    for module_name, owner, name in (*_GUARDED, *((m, None, n) for m, n in _EVENT_STREAMS)):
        when_imported(
            module_name,
            functools.partial(_guard_entry_point, owner, name),
            site="langchain.guard_entry_points",
        )
    for module_name in _CONFIG_CONTEXT_USERS:
        when_imported(module_name, _scope_config_contexts, site="langchain.guard_entry_points")
    for module_name in _PREGEL_LOOPS:
        when_imported(module_name, _scope_pregel_loops, site="langchain.guard_entry_points")


# LangChain runs each call of a runnable in a copy of the caller's context, made by
# langchain_core.runnables.config._set_config_context; langchain-core 0.3 modules import it by
# name, so each module's reference is wrapped.
_CONFIG_CONTEXT_USERS = (
    "langchain_core.runnables.config",
    "langchain_core.runnables.base",
    "langchain_core.runnables.fallbacks",
    "langchain_core.tools.base",
)


def _scope_config_contexts(module: ModuleType) -> None:
    with _guard_lock:
        if not _guard_on:
            return
        entry = module.__dict__.get("_set_config_context")
        if not callable(entry) or entry in _guards:
            return
        _guarded.replace(
            module,
            "_set_config_context",
            functools.partial(_guarded_with, _with_chain_scope),
        )


def _with_chain_scope(set_config_context: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``_set_config_context(config)``, which LangChain runs inside the context copy a
    call's function runs in: when the call is the app's function (see _apps_function_call), the
    chain's span is made current in that copy. The copy is dropped with the call, so nothing
    is detached and the caller's own context is never touched (a stream's consumer, a batch's
    other inputs, an async caller whose end callback comes from another task)."""

    @functools.wraps(set_config_context)
    def scoped(config: Any, *args: Any, **kwargs: Any) -> Any:
        result = set_config_context(config, *args, **kwargs)
        try:
            key = _config_run_key(config)
            record = _chains.get(key) if key is not None else None
            if record is None or not record.scoped:
                return result  # most calls: LangChain's own runnables, invoked
            scope: Context | None = None
            if record.user_code is _NOT_APPS:
                pending = record.pending  # a streamed root chain: made at its first copy
                scope = pending[0] if pending is not None else _root_scope(record)
            else:
                target = None
                if record.user_code is _STREAMED:
                    # A streamed function reads the step before it in this copy too: that
                    # step's code belongs under the chain around both, not this one's span.
                    target = _resolve(record.parent)
                if not isinstance(target, Run):
                    target = _resolve(record)
                if isinstance(target, Run) and not target.ended:
                    scope = target.context
            # LangChain's own call sites run it in a fresh copy; an app calling it directly
            # would have the span stay current where it did
            if scope is not None and sys._getframe(1).f_globals.get("__name__", "").startswith(
                _FRAMEWORKS
            ):
                attach_context(scope)  # in the copy: dropped with it
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.chain_scope", error)
        return result

    return scoped


def _root_scope(record: _Chain) -> Context | None:
    """What LangChain's copy of a streamed root chain's context holds, for code of the app's
    that runs in it with no run of its own (a Runnable class of its own whose ``transform``
    LangChain calls directly, a parser of its own): the chain's span, pending until something
    there needs it, so a root chain with nothing beneath it is still no workflow."""
    if record.pending is not None:
        return record.pending[0]
    if record.hidden or not _starts_a_trace(record):
        record.pending = _NO_SCOPE
        return None
    run = record.run
    if run is not None:
        return run.context if not run.ended else None
    if record.state == _SKIP:
        return None
    record.pending = pending_context(
        record.parent,  # type: ignore[arg-type] # a Context: _starts_a_trace
        functools.partial(_emitted, record),
    )
    return record.pending[0]


_NO_SCOPE = (None, None)  # a root chain whose copies get no scope
# LangChain starts a streamed chain (one copy of the caller's context for the whole stream)
# with this placeholder for the input it has not read yet. An invoked one makes a copy per step:
# a scope in each would cost every chain call, while the app's code there (a Runnable class of
# its own) is rare; its functions get theirs (_with_chain_scope).
_STREAM_INPUT = {"input": ""}


# LangGraph's Pregel loop reads and writes checkpoints, and submits the graph's tasks, in the
# context its graph was called in, where the graph's span is not current: spans the app's
# checkpointer makes (a database client's) were traces of their own. The loop's entry and exit,
# and what it submits to its executor, run with the graph's span current instead.
_PREGEL_LOOPS = ("langgraph.pregel._loop", "langgraph.pregel.loop")  # the latter before 0.3
_LOOP_METHODS = {
    "SyncPregelLoop": ("__enter__", "__exit__"),
    "AsyncPregelLoop": ("__aenter__", "__aexit__"),
}


def _scope_pregel_loops(module: ModuleType) -> None:
    with _guard_lock:
        if not _guard_on:
            return
        for owner, names in _LOOP_METHODS.items():
            loop = module.__dict__.get(owner)
            if not isinstance(loop, type):
                continue
            for name in names:
                entry = loop.__dict__.get(name)
                if not callable(entry) or entry in _guards:
                    continue
                wrap = _in_graph_scope_async if name.startswith("__a") else _in_graph_scope
                _guarded.replace(loop, name, functools.partial(_guarded_with, wrap))


def _guarded_with(
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]], original: Callable[..., Any]
) -> Callable[..., Any]:
    return _keep_guard(wrap(original))


def _in_graph_scope(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = _graph_scope(self, sys._getframe(1))
        if run is None:
            return method(self, *args, **kwargs)
        token = threadline.attach_context(run.context)
        try:
            return method(self, *args, **kwargs)
        finally:
            threadline.detach_context(token)
            _scope_submissions(self, run)

    return scoped


def _in_graph_scope_async(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        # An async generator's consumer runs nothing in this task until the await returns.
        run = _graph_scope(self, sys._getframe(1))
        if run is None:
            return await method(self, *args, **kwargs)
        token = threadline.attach_context(run.context)
        try:
            return await method(self, *args, **kwargs)
        finally:
            threadline.detach_context(token)
            _scope_submissions(self, run)

    return scoped


def _graph_scope(loop: Any, caller: FrameType | None) -> Run | None:
    """The open span of the graph a Pregel loop runs, made now if it is not yet."""
    try:
        manager = getattr(loop, "manager", None)
        if manager is None and caller is not None:
            manager = caller.f_locals.get("run_manager")  # langgraph < 0.3 keeps it there
        run_id = getattr(manager, "run_id", None)
        record = _chains.get(run_key(run_id)) if run_id is not None else None
        if record is None:
            return None
        if not record.graph:
            # a graph before its first node starts; the nodes it has tell an agent already
            record.graph = True
            nodes = getattr(loop, "nodes", None)
            if isinstance(nodes, Mapping):
                record.agent_node = _has_agent_node(nodes, record)
                record.agent_known = True
        run = _emitted(record)
        return run if run is not None and not run.ended else None
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.graph_scope", error)
        return None


def _has_agent_node(nodes: Mapping[object, Any], graph: _Chain) -> bool:
    """Whether a graph's nodes show it is an agent: a prebuilt ReAct agent's model node, or
    the model node ``create_agent`` adds (its function is LangChain's: a node of the app's
    that is called ``model``, in a graph run in an agent's tool, whose metadata it inherits,
    is not). A node that is a graph of its own (an agent added as a graph's ``agent`` node)
    is that graph's span, and tells nothing of the graph around it."""
    for name, node in nodes.items():
        if not isinstance(name, str):
            continue
        if _is_subgraph(getattr(node, "bound", None)):
            continue
        if name == "model":
            bound = getattr(node, "bound", None)
            function = getattr(bound, "func", None) or getattr(bound, "afunc", None)
            module = getattr(function, "__module__", None)
            if isinstance(module, str):
                if module.startswith(_CREATE_AGENT_MODULE):
                    return True
                continue
        if _is_agent_node(name, graph):
            return True
    return False


_CREATE_AGENT_MODULE = "langchain.agents"


def _is_subgraph(runnable: object) -> bool:
    while isinstance(runnable, RunnableBindingBase):  # with_config(...) around a graph
        runnable = runnable.bound
    # LangGraph's loop is running: its module is imported
    pregel = sys.modules.get("langgraph.pregel")
    graph = getattr(pregel, "Pregel", None)
    return isinstance(graph, type) and isinstance(runnable, graph)


def _scope_submissions(loop: Any, run: Run) -> None:
    try:
        submit = loop.__dict__.get("submit")  # set by the loop's entry, as its executor's
        if callable(submit) and not isinstance(getattr(submit, "__self__", None), _GraphSubmit):
            loop.submit = _GraphSubmit(submit, run.context).submit
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.graph_submissions", error)


class _GraphSubmit:
    """A Pregel loop's ``submit`` that submits with the graph's span current: the executor
    copies the context then, so the work runs under the span. A bound method, because LangGraph
    keeps a ``WeakMethod`` of it."""

    __slots__ = ("__weakref__", "_context", "_submit")

    def __init__(self, submit: Callable[..., Any], context: Context) -> None:
        self._submit = submit
        self._context = context

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        token = threadline.attach_context(self._context)
        try:
            return self._submit(*args, **kwargs)
        finally:
            threadline.detach_context(token)


def _guard_entry_point(owner: str | None, name: str, module: ModuleType) -> None:
    with _guard_lock:
        if not _guard_on:
            return
        target = module if owner is None else getattr(module, owner, None)
        if not isinstance(target, (type, ModuleType)):
            return
        entry = target.__dict__.get(name)
        if entry is None or entry in _guards:
            return  # a module that imported an entry point another one defines, once wrapped
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None
        if owner is None:
            wrap = _guard_events if inspect.isasyncgenfunction(entry) else None
        elif inspect.iscoroutinefunction(entry):
            wrap = _guard
        else:
            wrap = _guard_stream if inspect.isasyncgenfunction(entry) else None
        if wrap is not None:
            _guarded.replace(target, name, functools.partial(_guarded_with, wrap))


def _keep_guard(guard: Callable[..., Any]) -> Callable[..., Any]:
    _guards.add(guard)
    return guard


def unguard_entry_points() -> None:
    global _guard_on
    with _guard_lock:
        _guard_on = False
        _guarded.undo()
        _guards.clear()


def _emitted(record: _Chain) -> Run | None:
    """The span of ``record``, created now if it is one we emit; None if it is skipped."""
    run = record.run
    if run is not None:
        return run
    if not record.graph:
        if record.state == _SKIP:
            return None
        if not record.handler._emits_plain(record):
            record.state = _SKIP
            return None
    handler = record.handler
    with _lock:
        if record.run is None:
            run = handler._start_chain(record, _resolve(record.parent))
            if run is None:
                record.state = _SKIP
            else:
                record.run = run
                record.state = _EMITTED
        return record.run


def _resolve(parent: _Chain | Run | Context | None) -> Run | Context | None:
    """The nearest emitted ancestor (a Run), or the context the root chain started in."""
    while isinstance(parent, _Chain):
        run = _emitted(parent)
        if run is not None:
            return run
        parent = parent.parent
    return parent


def _leaf_parent(parent_key: RunKey | None) -> Run | Context | None:
    if parent_key is None:
        parent_key = _implied_parent()
        if parent_key is None:
            return None
    record = _chains.get(parent_key)
    if record is not None:
        return beneath(_resolve(record))
    return beneath(_runs.get(parent_key))


def _emitted_so_far(parent: _Chain | Run | Context) -> Run | None:
    """The nearest ancestor that is a span already (without making one of a lazy chain)."""
    while isinstance(parent, _Chain):
        if parent.run is not None:
            return parent.run
        parent = parent.parent
    return parent if isinstance(parent, Run) else None


def _implied_parent() -> RunKey | None:
    """The run a call LangChain reports without a parent was made in, when LangChain's own
    child config names one this handler follows.

    ``RunnableWithFallbacks`` (langchain-core 0.3 to 1.7) calls each runnable with its caller's
    config instead of the child config it made, so with callbacks passed as a list the attempts
    come as new root runs, each its own trace; the child config, set as current for them,
    still names the fallbacks run."""
    parent_key = _config_run_key(var_child_runnable_config.get())
    if parent_key is not None and (parent_key in _chains or parent_key in _runs):
        return parent_key
    return None


def _config_run_key(config: object) -> RunKey | None:
    """The run a LangChain child config was made for (its callback manager's parent run), as
    the key of the maps above."""
    callbacks = config.get("callbacks") if type(config) is dict else None  # as LangChain makes it
    run_id = getattr(callbacks, "parent_run_id", None)
    return None if run_id is None else getattr(run_id, "int", run_id)


def _chain_parent(parent_key: RunKey | None) -> _Chain | Run | Context:
    if parent_key is None:
        parent_key = _implied_parent()
    if parent_key is not None:
        record = _chains.get(parent_key)
        if record is not None:
            return record
        run = _runs.get(parent_key)
        if run is not None:
            return run
    return otel_context.get_current()


def _is_agent_node(name: str, graph: _Chain) -> bool:
    """Whether a graph's node shows the graph is an agent: the model node of a prebuilt ReAct
    agent, or the model/middleware node of a ``create_agent`` graph. (``create_agent`` marks its
    graph's metadata, but metadata is inherited by every graph run beneath it: where its loop
    is seen, the graph's own nodes tell instead, see _has_agent_node.)"""
    if name in _REACT_AGENT_NODES:
        return True
    if name == "model" or name.endswith(_MIDDLEWARE_NODE_SUFFIXES):
        metadata = graph.metadata
        return metadata is not None and metadata.get("ls_integration") == _CREATE_AGENT
    return False


def _is_created_agent(name: str, metadata: Mapping[str, Any]) -> bool:
    """Whether a graph is a ``create_agent`` agent by its own metadata, known before any node
    runs (a run resumed after an interrupt starts in the tools node, not the model's): the
    agent's name is in it. A graph beneath the agent inherits the metadata under its own name."""
    return metadata.get("ls_integration") == _CREATE_AGENT and metadata.get("lc_agent_name") == name


def _starts_a_trace(record: _Chain) -> bool:
    """Whether ``record`` is a root chain started where no span is current."""
    root = record.root
    if root is None:
        parent = record.parent
        root = record.root = (
            isinstance(parent, Context)
            and not record.hidden
            and not trace.get_current_span(parent).get_span_context().is_valid
        )
    return root


def _apps_function_call(kwargs: Mapping[str, Any]) -> object:
    """Whether a chain run is a call of the app's function (a RunnableLambda, ``@chain``, a
    RunnableGenerator, the app's own Runnable class), and how LangChain calls it:
    ``_CALLED`` (``_call_with_config`` and its async twin), ``_STREAMED``
    (``_transform_stream_with_config`` and its async twin), else ``_NOT_APPS``: a batch (every
    input started at once), LangChain's own runnables (prompts, parsers, sequences, retries,
    passthroughs), or functions LangChain defines. Those pass ``run_type=None``; the caller's
    frame tells which runnable it is."""
    if "run_type" not in kwargs or kwargs["run_type"] is not None:
        return _NOT_APPS
    frame = _langchain_frame(_CALLERS)
    if frame is None:
        return _NOT_APPS
    how = _CALLERS[frame.f_code.co_name]
    if how is _NOT_APPS or not _is_apps(frame.f_locals.get("self")):
        return _NOT_APPS
    return how


def _wrapper_name(name: str) -> str | None:
    """The name of a root chain run by a LangChain wrapper (``with_retry``'s ``RunnableRetry``)
    that names it after the class of the runnable it wraps when the app gave no ``run_name``
    (``ChatOpenAI``): the wrapper's type is its name then, no name of the app's (the retries
    still share its trace). None when an async batch started it, in a task of its own where
    the wrapper is out of reach: the model call beneath tells (_settle_wrapper_name). Called by
    ``on_chain_start`` only (the frame to look for is a fixed distance up)."""
    frame = _langchain_frame(_CALLERS)
    if frame is None and _app_name(name) is not None and _started_by_a_gather():
        return None
    wrapper = frame.f_locals.get("self") if frame is not None else None
    if not isinstance(wrapper, RunnableBindingBase) or type(wrapper).__name__ not in _TYPE_NAMES:
        return name
    bound = wrapper.bound
    while isinstance(bound, RunnableBindingBase):
        bound = bound.bound
    return f"{type(wrapper).__name__}<{name}>" if type(bound).__name__ == name else name


def _started_by_a_gather() -> bool:
    """Whether the chain start being reported runs in a task of its own: LangChain's async
    batch (``_abatch_with_config``) starts every input's run through ``asyncio.gather``, so
    the callback manager's ``on_chain_start`` is that task's coroutine, called by no other."""
    if asyncio._get_running_loop() is None:
        return False
    frame = _langchain_frame((_ASYNC_DISPATCH,))
    for _ in range(3):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "on_chain_start" and code.co_flags & inspect.CO_COROUTINE:
            caller = frame.f_back
            return caller is None or not caller.f_code.co_flags & inspect.CO_COROUTINE
        frame = frame.f_back
    return False


def _started_by_stream() -> bool:
    """Whether the model run being reported was started by the model's ``stream``/``astream``:
    LangChain passes no flag saying so, and a streamed request that fails before its first
    chunk (a rate limit, an overloaded provider) is still one. The callback manager's start is
    called by that method itself; a model without ``_stream`` falls back to ``invoke``, whose
    ``generate`` starts it. (At the error, an async stream's manager may run in a task of its
    own: its caller is gone.) Called by ``_start_inference`` only (see _langchain_frame)."""
    frame = _langchain_frame(_DISPATCHERS)
    for _ in range(3):  # the manager's start: above the dispatch, ahandle_event, a listcomp
        if frame is None:
            return False
        frame = frame.f_back
        if frame is not None and frame.f_code.co_name in _MODEL_STARTS:
            caller = frame.f_back
            return caller is not None and caller.f_code.co_name in _STREAM_METHODS
    return False


def _closing_chunk(chunk: Any) -> bool:
    """Whether a streamed chunk is the empty one langchain-core 1.x reports after a stream
    whose last chunk was not marked ``chunk_position="last"`` (most providers'): made by
    LangChain, not received, so it is no output chunk and its gap no time per chunk."""
    message: Any = getattr(chunk, "message", None)  # None: a plain LLM's GenerationChunk
    return (
        getattr(message, "chunk_position", None) == "last"
        and not message.content  # an AIMessageChunk, the only message with a position
        and not message.usage_metadata
        and not message.response_metadata
        and not message.tool_call_chunks
    )


_MODEL_STARTS = frozenset(("on_chat_model_start", "on_llm_start"))
_STREAM_METHODS = frozenset(("stream", "astream"))


def _settle_wrapper_name(key: RunKey, serialized: Mapping[str, Any] | None) -> None:
    """A model call beneath a root chain an async batch started: the chain is a wrapper named
    after the model's class (see _wrapper_name) when its name is that class's."""
    record = _unsure_names.pop(key, None)
    if record is not None and record.run is None and record.name == _class_of(serialized):
        record.name = f"RunnableBinding<{record.name}>"  # a binding's type: no name of the app's


def _class_of(serialized: Mapping[str, Any] | None) -> str | None:
    ident = serialized.get("id") if serialized else None
    if isinstance(ident, list) and ident and isinstance(ident[-1], str):
        return ident[-1]
    return None


def _is_apps(runnable: object) -> bool:
    if isinstance(runnable, (RunnableLambda, RunnableGenerator)):
        functions = (getattr(runnable, attr, None) for attr in _FUNCTIONS)
        module = getattr(next((f for f in functions if f), None), "__module__", None)
        return not (isinstance(module, str) and module.startswith(_FRAMEWORKS))
    return runnable is not None and not type(runnable).__module__.startswith(_FRAMEWORKS)


_NOT_APPS, _CALLED, _STREAMED = object(), object(), object()
_CALLERS = {
    "_call_with_config": _CALLED,
    "_acall_with_config": _CALLED,
    "_transform_stream_with_config": _STREAMED,
    "_atransform_stream_with_config": _STREAMED,
    "_batch_with_config": _NOT_APPS,
    "_abatch_with_config": _NOT_APPS,
}
_FUNCTIONS = ("func", "afunc", "_transform", "_atransform")
_FRAMEWORKS = ("langchain", "langgraph")


def _is_node(tags: Sequence[str] | None) -> bool:
    if tags:
        for tag in tags:
            if tag.startswith(_NODE_TAG):
                return True
    return False


def _model_arguments(inputs: dict[str, Any], name: object) -> dict[str, Any] | None:
    """A tool's arguments without those LangChain injects (``InjectedToolArg``,
    ``InjectedToolCallId``, LangGraph's ``InjectedState`` and ``InjectedStore``: the whole graph
    state). langchain-core before 1.0 passes handlers the tool's input with them; later versions
    filter them out. The tool is the ``self`` of the ``BaseTool.run``/``arun`` that called.
    Called by ``on_tool_start`` only (the frame to look for is a fixed distance up)."""
    global _filters_injected
    try:
        if _filters_injected is None:
            from langchain_core.tools import BaseTool

            _filters_injected = hasattr(BaseTool, "_filter_injected_args")
        if _filters_injected:
            return inputs
        frame = _langchain_frame(_TOOL_RUNS)
        tool = frame.f_locals.get("self") if frame is not None else None
        if getattr(tool, "name", None) != name:  # not called by a tool's run: nothing to go by
            return inputs
        keys = _injected_keys(tool)
    except Exception as error:  # noqa: BLE001 - fail-open, and record none rather than all
        report("langchain.on_tool_start", error)
        return None
    if keys.isdisjoint(inputs):
        return inputs
    return {key: value for key, value in inputs.items() if key not in keys}


def _injected_keys(tool: Any) -> frozenset[str]:
    """The names of a tool's injected arguments, by its argument schema (as LangChain's
    ``tool_call_schema`` finds them), kept per schema."""
    schema = tool.args_schema
    if isinstance(schema, dict):  # a JSON schema: nothing is injected
        return frozenset()
    key = schema if schema is not None else type(tool)  # a BaseTool's own _run then
    keys = _injected_by_schema.get(key)
    if keys is None:
        from langchain_core.tools.base import _is_injected_arg_type, get_all_basemodel_annotations

        annotations = get_all_basemodel_annotations(tool.get_input_schema())
        keys = frozenset(k for k, kind in annotations.items() if _is_injected_arg_type(kind))
        if len(_injected_by_schema) >= _MAX_TOOL_SCHEMAS:
            _injected_by_schema.clear()
        _injected_by_schema[key] = keys
    return keys


_filters_injected: bool | None = None
_TOOL_RUNS = frozenset({"run", "arun"})
_injected_by_schema: dict[object, frozenset[str]] = {}
_MAX_TOOL_SCHEMAS = 256


def _tool_run_status(name: str) -> object:
    """The ``status`` of the ``BaseTool.run``/``arun`` reporting a tool's end: "error" when
    LangChain handled the tool's error. Called with plain arguments (no tool call id), the tool
    returns its output as is, with no ``ToolMessage`` to carry the status; its run still has
    it. Called by ``on_tool_end`` only (the frame to look for is a fixed distance up)."""
    try:
        frame = _langchain_frame(_TOOL_RUNS)
        if frame is None:
            return None
        local = frame.f_locals
        return local.get("status") if getattr(local.get("self"), "name", None) == name else None
    except Exception as error:  # noqa: BLE001 - the run still ends: the status is unknown
        report("langchain.tool_status", error)
        return None


class CallbackHandler(BaseCallbackHandler):
    """Turns LangChain and LangGraph runs into threadline spans.

    Pass it in ``config={"callbacks": [CallbackHandler()]}`` (or to a model's ``callbacks``), or
    call :func:`threadline.langchain.instrument` once to have it on every run.

    Args:
        verbose: also emit a plain span for every other chain run (prompts, parsers, sequences,
            lambdas, LangGraph nodes). By default those make no span and their children attach
            to the nearest emitted ancestor.
        agents: names of graphs or chains to record as ``invoke_agent`` (graphs from
            ``create_agent`` and prebuilt ReAct agents are recognised without this).
        workflows: names of chains (not graphs) to record as ``invoke_workflow``; LangGraph
            graphs always are.
    """

    run_inline = True  # called on the caller's thread/task, in order: needed for attach/detach
    raise_error = False

    def __init__(
        self,
        *,
        verbose: bool = False,
        agents: Collection[str] = (),
        workflows: Collection[str] = (),
    ) -> None:
        super().__init__()
        self.verbose = verbose
        self.agents = frozenset(agents)
        self.workflows = frozenset(workflows)
        # The run of the latest streamed token (None: not one this handler counts).
        self._streaming: tuple[UUID, InferenceRun | None] | None = None
        guard_entry_points()  # async calls must not leave a run current in their caller

    # --- chains ----------------------------------------------------------------------------------
    def _emits_plain(self, record: _Chain) -> bool:
        """Whether a chain that is not a graph becomes a span: see :meth:`_emits_alone`, and a
        root chain started outside any trace once something beneath it makes a span (so two
        model calls of one chain, or the attempts of ``with_retry``, are one trace, not one
        each)."""
        return self._emits_alone(record) or _starts_a_trace(record)

    def _emits_alone(self, record: _Chain) -> bool:
        """Whether a chain is a span even when nothing beneath it makes one: a graph, a chain
        named as an agent or workflow, a legacy agent, and any chain in verbose mode. A root
        prompt or parser that calls no model is no workflow (a root chain that runs the app's
        function is: see _apps_function_call)."""
        name = record.name
        return (
            record.graph
            or (self.verbose and not record.hidden)
            or name in self.agents
            or name in self.workflows
            or name in _LEGACY_AGENTS
        )

    def _start_chain(self, record: _Chain, parent: Run | Context | None) -> Run | None:
        name = record.name
        metadata = record.metadata or {}
        start = record.start_ns
        if record.graph:
            thread_id = metadata.get("thread_id")
            if isinstance(thread_id, (int, UUID)) and not isinstance(thread_id, bool):
                thread_id = str(thread_id)  # LangGraph accepts any of these as a thread id
            conversation_id = thread_id if isinstance(thread_id, str) and thread_id else None
            if name in self.agents or record.agent_node or _is_created_agent(name, metadata):
                return threadline.invoke_agent(
                    _graph_name(record),
                    parent=parent,
                    conversation_id=conversation_id,
                    start_time=start,
                )
            return threadline.invoke_workflow(
                _graph_name(record),
                parent=parent,
                conversation_id=conversation_id,
                start_time=start,
            )
        if name in self.agents or name in _LEGACY_AGENTS:
            return threadline.invoke_agent(_app_name(name), parent=parent, start_time=start)
        if name in self.workflows or _starts_a_trace(record):
            return threadline.invoke_workflow(_app_name(name), parent=parent, start_time=start)
        if self.verbose and not record.hidden:
            return threadline.step(name, parent=parent, start_time=start)
        return None

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if key in _chains:
                return
            parent = _chain_parent(getattr(parent_run_id, "int", parent_run_id))
            name = kwargs.get("name")
            if not isinstance(name, str) or not name:
                name = _serialized_name(serialized)
            hidden = tags is not None and _HIDDEN_TAG in tags
            unsure = False
            if isinstance(parent, Context) and kwargs.get("run_type", _NOT_APPS) is None:
                # A root chain that may be a wrapper (``with_retry``) named after what it holds.
                wrapped = _wrapper_name(name)
                unsure = wrapped is None
                if wrapped is not None:
                    name = wrapped
            record = _Chain(self, parent, name, metadata, hidden)
            if isinstance(parent, _Chain) and _is_node(tags):
                # A LangGraph node: its parent is a graph; the node itself is not a span.
                record.node = True
                parent.graph = True
                if not parent.agent_known and _is_agent_node(name, parent):
                    parent.agent_node = True
                if not self.verbose:
                    record.state = _SKIP
                if not hidden:
                    # Code inside a node runs under the graph's span (or the node's own, when
                    # verbose): spans other libraries make there nest under it. LangGraph
                    # invokes a node synchronously in one thread/task, so its end detaches
                    # in the same context.
                    target = _emitted(record) if self.verbose else _resolve(parent)
                    if isinstance(target, Run):
                        record.token = target.attach_scope()
                        record.scope = target
            elif not isinstance(parent, Context):
                # Started beneath a span LangChain does not know of (another library's run or
                # the app's, inside a node or a tool): that span is its parent.
                anchor = _emitted_so_far(parent)
                if anchor is not None:
                    inner = beneath(anchor)
                    if isinstance(inner, Context):
                        record.parent = inner
            if not hidden:
                # The spans the app's function makes and the sessions it opens nest under the
                # chain: its span is made current where the function runs (_with_chain_scope).
                record.user_code = _apps_function_call(kwargs)
                # A root chain LangChain streams may hold the app's code too (_root_scope).
                record.scoped = record.user_code is not _NOT_APPS or (
                    type(inputs) is dict and isinstance(parent, Context) and inputs == _STREAM_INPUT
                )
            _remember(key, record)
            if unsure:
                _bounded_put(_unsure_names, key, record)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_chain_start", error)

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            run = _chain_over(getattr(run_id, "int", run_id), None)
            if run is not None:
                run.end()
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_chain_end", error)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            if isinstance(error, GeneratorExit) and (
                cut_short_by_consumer() or task_cancelling() is True
            ):
                # A stream closed by a consumer being cancelled itself (a timeout around it,
                # landing in its own code between items) was cut short: it and what it had in
                # flight failed, as when the timeout lands while the consumer awaits the next
                # item. A graph's astream reports this from a task of its own, which carries
                # the mark its guard set; a sync stream, from the consumer's task.
                error = asyncio.CancelledError()
            run = _chain_over(getattr(run_id, "int", run_id), error)
            if run is not None:
                _finish(run, error)
        except Exception as error_:  # noqa: BLE001 - fail-open
            report("langchain.on_chain_error", error_)

    # --- models ----------------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start_inference(
                semconv.OP_CHAT, serialized, messages, None, run_id, parent_run_id, metadata, kwargs
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_chat_model_start", error)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start_inference(
                semconv.OP_TEXT_COMPLETION,
                serialized,
                None,
                prompts,
                run_id,
                parent_run_id,
                metadata,
                kwargs,
            )
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_llm_start", error)

    def _start_inference(
        self,
        operation: str,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]] | None,
        prompts: list[str] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        key = getattr(run_id, "int", run_id)
        if key in _runs:
            owner = _owners.get(key)
            if owner is self:
                repeats = _repeats.get(key)
                if repeats is None:
                    _bounded_put(_repeats, key, [2, 0])
                else:
                    repeats[0] += 1
            elif owner is not None:
                _bounded_put(_seconds, key, self)
            return
        _bounded_put(_owners, key, self)
        parent_key = getattr(parent_run_id, "int", parent_run_id)
        invocation = kwargs.get("invocation_params") or {}
        provider = _convert.provider_name(metadata, invocation, serialized)
        input_messages = system = tools = None
        if threadline.capture_enabled():  # each part fails open alone: the span, without it
            try:
                if messages:
                    history, system = _convert.system_instructions(
                        messages[0], provider, serialized
                    )
                    input_messages = _convert.input_messages(history)
                elif prompts:
                    input_messages = _convert.prompt_messages(prompts)
            except Exception as error:  # noqa: BLE001 - fail-open
                report("langchain.input_messages", error)
                input_messages = system = None
            try:
                tools = _convert.tool_definitions(invocation.get("tools"))
            except Exception as error:  # noqa: BLE001 - fail-open
                report("langchain.tool_definitions", error)
        address, port = _convert.server(serialized)
        if _unsure_names and parent_key is not None:
            _settle_wrapper_name(parent_key, serialized)
        parent = _leaf_parent(parent_key)
        request = _convert.request_params(invocation, metadata)
        if request is not None and request.output_type and isinstance(parent, AgentRun):
            # The agent's own request asks for structured output (create_agent's
            # response_format as the provider's): the agent's output type too.
            parent.update(attributes={semconv.GEN_AI_OUTPUT_TYPE: request.output_type})
        run = threadline.inference(
            _convert.model_name(metadata, invocation, serialized, kwargs.get("name")),
            provider=provider,
            operation=operation,
            parent=parent,
            request=request,
            stream=invocation.get("stream") is True or _started_by_stream(),
            server_address=address,
            server_port=port,
            input_messages=input_messages,
            system_instructions=system,
            tool_definitions=tools,
        )
        # Several prompts in one generate() call run interleaved: only a single one is made
        # current, so detaches always come back in order.
        _start_leaf(key, parent_key, run, attach=(kwargs.get("batch_size") or 1) == 1)

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            # Called once per token: the run of the previous token is remembered, so most
            # calls skip the registry lookup (LangChain passes the same run_id object).
            streaming = self._streaming
            if streaming is not None and streaming[0] is run_id:
                run = streaming[1]
                if run is None:
                    return
            else:
                key = getattr(run_id, "int", run_id)
                found = _runs.get(key)
                if not isinstance(found, InferenceRun) or (_seconds and _seconds.get(key) is self):
                    self._streaming = (run_id, None)
                    return
                run = found
                repeats = _repeats.get(key) if _repeats else None
                if repeats is None:
                    self._streaming = (run_id, run)
                else:  # not remembered: every call of this run's tokens comes here
                    seen = repeats[1]
                    repeats[1] = seen + 1
                    if seen % repeats[0]:
                        return
            if not token and chunk is not None and _closing_chunk(chunk):
                return
            if run.needs_every_chunk and run.chunk():
                # The request is out and answered: stop being current before the first chunk
                # is handed to the caller, so nothing stays attached between chunks.
                run.detach()
                run.update(attributes=_STREAM_ATTRIBUTES)
            if chunk is not None:
                try:  # plain attribute reads: getattr() with a default costs more, per token
                    usage = chunk.message.usage_metadata
                except AttributeError:  # a GenerationChunk (no message), or another object
                    usage = None
                if usage:
                    run.update(usage=run.usage + _convert.usage_from_metadata(usage))
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_llm_new_token", error)

    def on_llm_end(
        self,
        response: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), None)
            self._forget_run(key, run_id)
            run = _runs.get_ending(key)
            if not isinstance(run, InferenceRun):
                return
            self._forget_stream(run)
            run.detach()
            try:  # each part fails open alone; the run ends in any case
                output = None
                if threadline.capture_enabled():
                    try:
                        output = _convert.output_messages(response)
                    except Exception as error:  # noqa: BLE001 - fail-open
                        report("langchain.output_messages", error)
                try:
                    facts = _convert.response_facts(response)
                except Exception as error:  # noqa: BLE001 - fail-open
                    report("langchain.response_facts", error)
                    run.update(output_messages=output)
                else:
                    run.update(
                        response_id=facts.response_id,
                        response_model=facts.response_model,
                        finish_reasons=facts.finish_reasons or None,
                        usage=facts.usage,
                        output_messages=output,
                    )
            finally:
                run.end()
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_llm_end", error)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), error)
            self._forget_run(key, run_id)
            run = _runs.get_ending(key)
            if not isinstance(run, InferenceRun):
                return
            self._forget_stream(run)
            run.detach()
            partial = kwargs.get("response")  # what a stream produced before it stopped
            if partial is not None:
                facts = _convert.response_facts(partial)
                run.update(
                    response_id=facts.response_id,  # the provider's, to look the call up by
                    response_model=facts.response_model,
                    finish_reasons=facts.finish_reasons or None,
                    usage=facts.usage,
                )
            _finish(run, error)
        except Exception as error_:  # noqa: BLE001 - fail-open
            report("langchain.on_llm_error", error_)

    def _forget_run(self, key: RunKey, run_id: UUID) -> None:
        _owners.pop(key, None)
        if _seconds:
            _seconds.pop(key, None)
        if _repeats:
            _repeats.pop(key, None)
        streaming = self._streaming
        if streaming is not None and streaming[0] is run_id:  # a run id the app may reuse
            self._streaming = None

    def _forget_stream(self, run: InferenceRun) -> None:
        streaming = self._streaming
        if streaming is not None and streaming[1] is run:
            self._streaming = None

    # --- tools -----------------------------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if key in _runs:
                return
            parent_key = getattr(parent_run_id, "int", parent_run_id)
            serialized = serialized or {}
            # The tool's own name, the one the model calls it by; a run_name only names the run.
            name = serialized.get("name") or kwargs.get("name") or "tool"
            description = serialized.get("description")
            call_id = kwargs.get("tool_call_id")
            arguments = None
            if threadline.capture_enabled():
                arguments = _model_arguments(inputs, name) if inputs is not None else input_str
            run = threadline.execute_tool(
                str(name),
                parent=_leaf_parent(parent_key),
                call_id=call_id if isinstance(call_id, str) else None,
                description=description if isinstance(description, str) else None,
                arguments=arguments,
            )
            _start_leaf(key, parent_key, run, attach=True)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_tool_start", error)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), None)
            run = _runs.get_ending(key)
            if not isinstance(run, ToolRun):
                return
            run.detach()
            try:
                # Only LangChain's ToolMessage carries the call's id and status: a tool's own
                # result (called without a call id) may have attributes of those names.
                message = isinstance(output, ToolMessage)
                call_id = output.tool_call_id if message else None
                result = None
                if threadline.capture_enabled():
                    try:
                        result = _convert.tool_result(output, run.call_id)
                    except Exception as error:  # noqa: BLE001 - fail-open: the rest, without it
                        report("langchain.tool_result", error)
                run.update(
                    result=result,
                    call_id=call_id if isinstance(call_id, str) and run.call_id is None else None,
                )
                # a plain output: the tool was called without a call id, its run has the status
                status = output.status if message else _tool_run_status(run.name)
                if status == "error":
                    # A failure LangChain handled (handle_tool_error / handle_validation_error):
                    # reported as a ToolMessage, not through on_tool_error.
                    run.fail(semconv.ERROR_TYPE_TOOL_ERROR)
            finally:
                run.end()  # a no-op once failed; ends it even when the output could not be read
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_tool_end", error)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), error)
            run = _runs.get_ending(key)
            if run is None:
                return
            run.detach()
            call_id = kwargs.get("tool_call_id")
            if isinstance(run, ToolRun) and run.call_id is None and isinstance(call_id, str):
                run.update(call_id=call_id)
            _finish(run, error)
        except Exception as error_:  # noqa: BLE001 - fail-open
            report("langchain.on_tool_error", error_)

    # --- retrievers ------------------------------------------------------------------------------
    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if key in _runs:
                return
            parent_key = getattr(parent_run_id, "int", parent_run_id)
            source = (metadata or {}).get("ls_vector_store_provider")
            if not isinstance(source, str) or not source:
                source = kwargs.get("name")
                if not isinstance(source, str) or not source:
                    source = _serialized_name(serialized)
            run = threadline.retrieval(source, parent=_leaf_parent(parent_key), query=query)
            _start_leaf(key, parent_key, run, attach=True)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_retriever_start", error)

    def on_retriever_end(
        self,
        documents: Sequence[Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), None)
            run = _runs.get_ending(key)
            if not isinstance(run, RetrievalRun):
                return
            run.detach()
            try:
                if threadline.capture_enabled():
                    run.update(documents=_convert.documents(documents))
            finally:
                run.end()  # even when the documents could not be read
        except Exception as error:  # noqa: BLE001 - fail-open
            report("langchain.on_retriever_end", error)

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = getattr(run_id, "int", run_id)
            if _children:
                _leaf_ended(key, getattr(parent_run_id, "int", parent_run_id), error)
            run = _runs.get_ending(key)
            if run is None:
                return
            run.detach()
            _finish(run, error)
        except Exception as error_:  # noqa: BLE001 - fail-open
            report("langchain.on_retriever_error", error_)


def _chain_over(key: RunKey, error: BaseException | None) -> Run | None:
    """A chain ended or failed: its record goes, and the span to end is returned (made now for
    a chain shown even with nothing beneath it)."""
    if _children:
        _run_ended(key, error)
    if _unsure_names:
        _unsure_names.pop(key, None)
    record = _chains.pop(key, None)
    if record is None:
        return None
    if record.token is not None and record.scope is not None:
        record.scope.detach_scope(record.token)
    pending = record.pending[1] if record.pending is not None else None
    if pending is not None:
        pending.stop()  # first: a run made after the next line would stay open
    run = record.run
    if run is None and record.handler._emits_alone(record):
        run = _emitted(record)
    if pending is not None:
        pending.settle(run)  # whatever asks later gets this
    return run


def _finish(run: Run, error: BaseException) -> None:
    if isinstance(error, asyncio.CancelledError) and closed_by_consumer():
        run.end(stopped_early=True)  # an event stream its consumer closed
    else:
        # LangGraph's interrupts and hand-offs are no failure; leaving an agent's stream early
        # cancels the model call in flight: no failure if that is why (the agent's run then
        # ends as stopped early), else one.
        run.end_with_exception(error)


def _app_name(name: str) -> str | None:
    """``name``, unless it is only the type LangChain named an unnamed runnable after (the
    conventions' agent and workflow names are the ones the app gave)."""
    return None if name.partition("<")[0] in _TYPE_NAMES else name


def _graph_name(record: _Chain) -> str | None:
    """A graph's name; one the app left unnamed (LangGraph calls it "LangGraph") that runs as
    a node of another graph (added as the node, or called in it: LangGraph files it under the
    node either way) goes by the node's name, the one the app gave it there."""
    name = _app_name(record.name)
    if name is None:
        node = record.parent
        if isinstance(node, _Chain) and node.node and not node.hidden:
            return _app_name(node.name)
    return name


def _serialized_name(serialized: Mapping[str, Any] | None) -> str:
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ident = serialized.get("id")
        if isinstance(ident, list) and ident and isinstance(ident[-1], str):
            return ident[-1]
    return "chain"
