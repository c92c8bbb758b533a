"""LlamaIndex span and event handlers that turn LlamaIndex's span tree into threadline runs.

LlamaIndex opens a span for every instrumented method call (``OpenAI.chat``,
``VectorIndexRetriever.retrieve``, ``SentenceSplitter.__call__``, workflow steps, ...) and
passes each handler the span id, the parent span id, the bound arguments and the instance.
Only the calls that are GenAI operations become runs; every other span is remembered (until it
exits) as a pointer to its nearest emitted ancestor, so children still find their parent. One
that starts a request outside any trace points to a workflow run made only once something
beneath it needs a parent (see ``Tracker._root``), so the request's calls share one trace.

Streaming LLM calls return a generator, and LlamaIndex exits their span right away: the
inference run stays open and ends on the ``LLMChatEndEvent``/``LLMCompletionEndEvent`` (or the
``ExceptionEvent``) that the stream fires when it is done. A stream never consumed is ended as
abandoned by threadline's reaper. A model's stream method without LlamaIndex's callback
decorator returns a stream that fires no such event: its run ends when the stream is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import gc
import inspect
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
)
from contextvars import ContextVar, Token
from types import AsyncGeneratorType, CellType, CodeType, FrameType, GeneratorType
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
)
from llama_index.core.instrumentation.span import BaseSpan, active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline
from threadline import semconv
from threadline._failopen import report
from threadline._registry import open_runs, release_stranded, stranded_refs
from threadline._runs import PendingSpan, beneath, current_made_run, pending_context
from threadline.llamaindex import _extract
from threadline.providers import dimension_count

if TYPE_CHECKING:
    from opentelemetry.context import Context

_MAX_NODES = 20_000
_MAX_HANDED_OUT = 1024
_SYNC_STREAMS = (".stream_chat", ".stream_complete")
_STREAM_METHODS = (*_SYNC_STREAMS, ".astream_chat", ".astream_complete")
_CUSTOM_LLM_FILE = os.path.join("llama_index", "core", "llms", "custom.py")
_CALLBACKS_FILE = os.path.join("llama_index", "core", "llms", "callbacks.py")


def _is_callbacks_stream(code: CodeType) -> bool:
    """Whether ``code`` is the stream LlamaIndex's LLM callbacks return (``wrapped_gen``),
    which fires the stream's progress, end and exception events."""
    return code.co_name == "wrapped_gen" and code.co_filename.endswith(_CALLBACKS_FILE)


_CALL_TOOL_FILE = os.path.join("llama_index", "core", "tools", "calling.py")
_CALL_TOOL_FUNCTIONS = frozenset({"call_tool", "acall_tool"})
_MAX_KINDS = 4_096
_MAX_WAITING_TOOLS = 1024
_MAX_STACK_DEPTH = 64
_PROPAGATION_KEY = "threadline"

Parent: TypeAlias = "threadline.Run | Context"
EventHook: TypeAlias = "Callable[[str, threadline.InferenceRun, Any], None]"

# The parent handed over by LlamaIndex's propagation hooks (a workflow run continued in another
# task or process): used by spans that have no LlamaIndex parent.
_remote_parent: ContextVar[Context | None] = ContextVar(
    "threadline_llamaindex_parent", default=None
)


class Kind(enum.Enum):
    SKIP = 0
    CHAT = 1
    COMPLETION = 2
    EMBEDDINGS = 3
    RETRIEVAL = 4
    TOOL = 5
    TOOL_STEP = 6
    AGENT = 7
    WORKFLOW = 8
    STEP = 9


# The members as module globals, for the per-span paths: on Python 3.11 reading an enum member
# (``Kind.CHAT``) runs a descriptor, about twenty times the cost of reading a global.
_SKIP, _CHAT, _COMPLETION = Kind.SKIP, Kind.CHAT, Kind.COMPLETION
_EMBEDDINGS, _RETRIEVAL, _TOOL, _TOOL_STEP = (
    Kind.EMBEDDINGS,
    Kind.RETRIEVAL,
    Kind.TOOL,
    Kind.TOOL_STEP,
)
_AGENT, _WORKFLOW = Kind.AGENT, Kind.WORKFLOW


_CHAT_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat"})
_COMPLETION_METHODS = frozenset({"complete", "acomplete", "stream_complete", "astream_complete"})
_EMBEDDING_METHODS = frozenset(
    {
        "get_query_embedding",
        "aget_query_embedding",
        "get_text_embedding",
        "aget_text_embedding",
        "get_text_embedding_batch",
        "aget_text_embedding_batch",
    }
)
_RETRIEVAL_METHODS = frozenset({"retrieve", "aretrieve"})
_TOOL_METHODS = frozenset({"call", "acall", "__call__"})
_QUERY_METHODS = frozenset({"query", "aquery"})
# Exceptions LlamaIndex raises to steer a workflow, not to report a failure.
_CONTROL_FLOW = frozenset({"WorkflowDone"})
# ``handler.cancel_run()``: the app stopped the workflow, which did not fail (0.12 raises it
# through the workflow's span; later releases end the span without it).
_STOPPED_BY_APP = "WorkflowCancelledByUser"
# ``ctx.wait_for_event`` in a tool: its step stops there and runs again, from its start, once
# the event comes (llama-index-workflows 2).
_WAITING = "WaitingForEvent"
_LEGACY_AGENT_CLASSES = frozenset({"AgentRunner", "BaseAgent", "BaseAgentRunner"})


def _optional_class(module: str, name: str) -> type | None:
    try:
        found = getattr(__import__(module, fromlist=[name]), name)
    except Exception:  # noqa: BLE001 - absent in this LlamaIndex version
        return None
    return found if isinstance(found, type) else None


def _with_optional(base: type, module: str, name: str) -> tuple[type, ...]:
    found = _optional_class(module, name)
    return (base,) if found is None else (base, found)


class _Types:
    """The LlamaIndex base classes a span's instance is classified by (looked up once)."""

    def __init__(self) -> None:
        def need(module: str, name: str) -> type:
            found = _optional_class(module, name)
            return found if found is not None else type(f"_Missing{name}", (), {})

        self.llm = need("llama_index.core.base.llms.base", "BaseLLM")
        self.embedding = need("llama_index.core.base.embeddings.base", "BaseEmbedding")
        # Multi-modal LLMs and sparse embeddings have base classes of their own; their calls
        # are spanned and fire the same events as the others'.
        self.llms = _with_optional(
            self.llm, "llama_index.core.multi_modal_llms.base", "MultiModalLLM"
        )
        self.embeddings = _with_optional(
            self.embedding, "llama_index.core.base.embeddings.base_sparse", "BaseSparseEmbedding"
        )
        self.retriever = need("llama_index.core.base.base_retriever", "BaseRetriever")
        self.tool = need("llama_index.core.tools.types", "BaseTool")
        self.query_engine = need("llama_index.core.base.base_query_engine", "BaseQueryEngine")
        self.chat_engine = need("llama_index.core.chat_engine.types", "BaseChatEngine")
        # What a chat engine's stream_chat/astream_chat returns while its answer still streams.
        self.chat_stream = need("llama_index.core.chat_engine.types", "StreamingAgentChatResponse")
        self.workflow = need("llama_index.core.workflow", "Workflow")
        # A multi-agent AgentWorkflow is a workflow: each agent's turns are its agent runs.
        agent = _optional_class("llama_index.core.agent.workflow.base_agent", "BaseWorkflowAgent")
        self.agents: tuple[type, ...] = (agent,) if agent is not None else ()


def _classify(types: _Types, instance: Any, method: str, verbose: bool) -> Kind:
    fallback = Kind.STEP if verbose else Kind.SKIP
    if instance is None:
        # Workflow steps are spanned as plain functions (``BaseWorkflowAgent.call_tool``).
        return Kind.TOOL_STEP if method == "call_tool" else fallback
    if isinstance(instance, types.llms):
        if isinstance(getattr(instance, "llm", None), types.llm):
            # A wrapper (StructuredLLM from as_structured_llm): the model it calls is the span.
            return fallback
        if method in _CHAT_METHODS:
            return Kind.CHAT
        if method in _COMPLETION_METHODS:
            return Kind.COMPLETION
        return fallback
    if isinstance(instance, types.embeddings):
        return Kind.EMBEDDINGS if method in _EMBEDDING_METHODS else fallback
    if isinstance(instance, types.retriever):
        return Kind.RETRIEVAL if method in _RETRIEVAL_METHODS else fallback
    if isinstance(instance, types.tool):
        return Kind.TOOL if method in _TOOL_METHODS else fallback
    if isinstance(instance, types.workflow):
        if method == "run":
            return Kind.AGENT if isinstance(instance, types.agents) else Kind.WORKFLOW
        # Before llama-index-workflows 2, steps are spanned as methods of the workflow.
        return Kind.TOOL_STEP if method == "call_tool" else fallback
    is_query = method in _QUERY_METHODS and isinstance(instance, types.query_engine)
    is_chat = method in _CHAT_METHODS and isinstance(instance, types.chat_engine)
    if is_query or is_chat:
        if any(cls.__name__ in _LEGACY_AGENT_CLASSES for cls in type(instance).__mro__):
            return Kind.AGENT
        return Kind.WORKFLOW
    return fallback


def _lazy_async_stream_frame() -> FrameType | None:
    """The frame of the generator CustomLLM's ``astream_*`` handed out, when this call comes
    from it (and not from the application, calling a sync stream of the same LLM)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "gen" and code.co_filename.endswith(_CUSTOM_LLM_FILE):
            return frame
        frame = frame.f_back
    return None


def _custom_generator_frame(stream: Any) -> FrameType | None:
    """The frame of CustomLLM's own ``gen`` inside the async generator an ``astream_*``
    returned (LlamaIndex's callback decorator wraps it: ``f_return_val`` of its wrapper)."""
    for _ in range(3):
        frame = getattr(stream, "ag_frame", None)
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "gen" and code.co_filename.endswith(_CUSTOM_LLM_FILE):
            return frame  # type: ignore[no-any-return]
        stream = frame.f_locals.get("f_return_val")
    return None


def _call_tool_frame(skip: int = 3) -> FrameType | None:
    """The frame of LlamaIndex's ``call_tool``/``acall_tool`` calling the tool whose span this
    is, if that is what calls it (``skip``: the frames of ours above the tracker's enter)."""
    frame: FrameType | None = sys._getframe(skip)
    for _ in range(8):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name in _CALL_TOOL_FUNCTIONS and code.co_filename.endswith(_CALL_TOOL_FILE):
            return frame
        frame = frame.f_back
    return None


_SELECTION_FUNCTIONS = frozenset({"call_tool_with_selection", "acall_tool_with_selection"})


def _selected_call_id(tool: Any, frame: FrameType | None) -> str | None:
    """The id of the model's tool call that LlamaIndex's ``call_tool_with_selection`` runs
    (``predict_and_call``, step agents), if that is what calls the tool whose span this is:
    its ``call_tool`` (``frame``) calls this very tool (not one the tool calls in turn)."""
    caller = frame.f_back if frame is not None else None
    if caller is None:
        return None
    code = caller.f_code
    if code.co_name not in _SELECTION_FUNCTIONS or not code.co_filename.endswith(_CALL_TOOL_FILE):
        return None
    names = caller.f_locals  # read only on this path: it copies the frame's locals
    selected = names.get("tool")
    # (acall_tool calls a sync-only tool through an adapter, whose span this is)
    if selected is None or (
        selected is not tool and selected is not getattr(tool, "base_tool", None)
    ):
        return None
    call_id = getattr(names.get("tool_call"), "tool_id", None)
    return call_id if isinstance(call_id, str) and call_id else None


def _sent_arguments(tool: Any, frame: FrameType) -> dict[str, Any] | None:
    """The arguments (the model's, as a rule) that LlamaIndex's ``call_tool`` (``frame``) calls
    this very tool with: the object itself, where it passes a one-parameter tool their one
    value alone."""
    names = frame.f_locals  # read only on this path: it copies the frame's locals
    if names.get("tool") is not tool and names.get("async_tool") is not tool:
        return None
    sent = names.get("arguments")
    return sent if isinstance(sent, dict) else None


def _retried_with_keywords(tool: Any, frame: FrameType) -> bool:
    """Whether ``call_tool`` (``frame``), whose positional call of a one-parameter tool just
    raised, calls the tool again with the argument as a keyword: it does, unless it called a
    FunctionTool positionally because it takes no keywords (later releases check that first),
    or the keyword call will not bind (it then fails before the tool's span starts)."""
    keywords = frame.f_locals.get("arguments")
    if not isinstance(keywords, dict) or len(keywords) != 1:
        return False
    if "_function_tool_accepts_kwargs" in frame.f_code.co_names:
        function_tool = _optional_class("llama_index.core.tools.function_tool", "FunctionTool")
        if function_tool is not None and isinstance(tool, function_tool):
            return False
    retried = getattr(tool, "acall", None) if frame.f_code.co_name == "acall_tool" else tool
    try:
        inspect.signature(retried).bind(**keywords)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


_STREAMS = (GeneratorType, AsyncGeneratorType)
_STREAM_TYPES = (Generator, AsyncGenerator)  # what LlamaIndex's callbacks take for a stream


def _request_in_run(run: threadline.InferenceRun, stream: Any) -> bool:
    """Make the run current while the model's stream takes its first step, where the provider
    sends its request (when the caller first reads the stream, after the call's span exited),
    so the request's HTTP span nests in the run's span and provider instrumentations see
    ``suppress_provider_spans``. The stream LlamaIndex returns (``wrapped_gen`` of its LLM
    callbacks) iterates the model's own generator, held in a closure cell (``f_return_val``):
    the cell gets a stand-in whose first step runs in the run's context and that passes the
    later chunks straight through. Any other stream is left as it is.

    Whether the stream is LlamaIndex's ``wrapped_gen``, the one that fires the events that
    end the run (a model's stream method without its callback decorator returns its own)."""
    try:
        frame = stream.ag_frame if isinstance(stream, AsyncGeneratorType) else stream.gi_frame
        if frame is None:
            return False
        code = frame.f_code
        if not _is_callbacks_stream(code):
            return False
        # The generator holds its cells (its frame does, before Python 3.11). Of the closure's
        # cells, only f_return_val holds a stream: found by its type, without ``f_locals``
        # (which copies every local of the frame), then where it was found the last time.
        for holder in (stream, frame):
            referents = gc.get_referents(holder)
            at = _stream_cell_at.get(code)
            if at is not None and at < len(referents) and _hand_over(run, stream, referents[at]):
                return True
            cells = [(at, ref) for at, ref in enumerate(referents) if type(ref) is CellType]
            # a generator as a rule (a cheap check), else any stream LlamaIndex takes for one
            for kinds in (_STREAMS, _STREAM_TYPES):
                for at, cell in cells:
                    if _hand_over(run, stream, cell, kinds):
                        if len(_stream_cell_at) < _MAX_KINDS:
                            _stream_cell_at[code] = at
                        return True
    except Exception as error:  # noqa: BLE001 - fail-open: the request goes out as before
        report("llamaindex.stream_request", error)
    return True


# Where in its generator's referents each ``wrapped_gen`` holds the model's stream: the same
# place for every stream of one code object (checked before each use).
_stream_cell_at: dict[CodeType, int] = {}


def _hand_over(
    run: threadline.InferenceRun,
    stream: Any,
    cell: Any,
    kinds: tuple[type, ...] = (*_STREAMS, *_STREAM_TYPES),
) -> bool:
    """Put the stand-in for the model's stream into ``cell`` if it is the cell holding it."""
    if type(cell) is not CellType:
        return False
    try:
        inner = cell.cell_contents
    except ValueError:  # an empty cell
        return False
    if not isinstance(inner, kinds):
        return False
    if isinstance(stream, AsyncGeneratorType):
        cell.cell_contents = _FirstStepInRunAsync(run, inner)
    else:
        cell.cell_contents = _FirstStepInRun(run, inner)
    return True


class _FirstStepInRun:
    """A model's generator, whose first step runs in its run's context (see _request_in_run)."""

    __slots__ = ("run", "stream")

    def __init__(self, run: threadline.InferenceRun, stream: Any) -> None:
        self.run = run
        self.stream = stream

    def __iter__(self) -> Iterator[Any]:
        stream = iter(self.stream)
        run = self.run
        scope = run.attach_scope()
        try:
            first = next(stream)
        except StopIteration:
            return iter(())
        finally:
            if scope is not None:
                run.detach_scope(scope)
        if scope is not None and run.attached:
            # The model's generator yielded with a context of its own still current above
            # ours (inside its own span): ours is undone once that one has gone.
            return _detach_later(run, scope, first, stream)
        return itertools.chain((first,), stream)  # the later chunks: no Python frame of ours


def _detach_later(
    run: threadline.InferenceRun, scope: Token[Context], first: Any, stream: Iterator[Any]
) -> Iterator[Any]:
    try:
        yield first
        for chunk in stream:
            run.detach_scope(scope)  # nothing left to do once it is undone
            yield chunk
    finally:
        run.detach_scope(scope)


class _FirstStepInRunAsync:
    """The async twin of _FirstStepInRun: LlamaIndex's ``async for`` asks it for each chunk."""

    __slots__ = ("covered", "next", "run")

    def __init__(self, run: threadline.InferenceRun, stream: Any) -> None:
        self.run: threadline.InferenceRun | None = run
        self.next: Callable[[], Awaitable[Any]] = aiter(stream).__anext__
        # The first step's scope while a context of the model's own covers it (see
        # _FirstStepInRun): retried at each later chunk until undone.
        self.covered: tuple[threadline.InferenceRun, Token[Context]] | None = None

    def __aiter__(self) -> _FirstStepInRunAsync:
        return self

    def __anext__(self) -> Awaitable[Any]:
        run = self.run
        if run is None:
            if self.covered is not None:
                return self._step_then_retry()
            return self.next()
        self.run = None
        return self._first_step(run)

    async def _step_then_retry(self) -> Any:
        try:
            return await self.next()
        finally:  # the step may have left the model's own context: ours can go now
            covered = self.covered
            if covered is not None:
                self._retry_detach(covered)

    async def _first_step(self, run: threadline.InferenceRun) -> Any:
        scope = run.attach_scope()
        try:
            return await self.next()
        finally:
            if scope is not None:
                run.detach_scope(scope)
                if run.attached:
                    self.covered = (run, scope)

    def _retry_detach(self, covered: tuple[threadline.InferenceRun, Token[Context]]) -> None:
        run, scope = covered
        run.detach_scope(scope)
        if not run.attached or run.ended:
            self.covered = None


def _stream_answer(run: threadline.WorkflowRun, response: Any) -> bool:
    """A query engine's streamed answer (``streaming=True``): LlamaIndex calls the model only
    when the caller iterates ``response_gen``, after the query's span has exited. Iterating it
    then runs under the query's run, which ends when the answer does. False if not streamed."""
    # A field of (Async)StreamingResponse; on other responses it is a property, made anew on
    # every read (AgentChatResponse), and nothing is deferred.
    tokens = getattr(response, "__dict__", {}).get("response_gen")
    traced: Iterator[Any] | AsyncIterator[Any]
    if isinstance(tokens, GeneratorType):
        traced = _answer_tokens(run, tokens)
    elif isinstance(tokens, AsyncGeneratorType):
        traced = _answer_tokens_async(run, tokens)
    else:
        return False
    try:
        response.response_gen = traced
    except Exception as error:  # noqa: BLE001 - a response we cannot wrap: end the run now
        report("llamaindex.stream_answer", error)
        return False
    return True


# The sync and async twins below differ only in how they step through the answer.
def _answer_tokens(
    run: threadline.WorkflowRun, tokens: Generator[Any, None, None]
) -> Iterator[Any]:
    failure: BaseException | None = None
    try:
        while True:
            scope = run.attach_scope()
            try:
                token = next(tokens)
            finally:
                _leave(run, scope)
            yield token
    except StopIteration:
        pass
    except BaseException as error:  # GeneratorExit too: the caller closed the answer
        failure = error
        raise
    finally:
        tokens.close()
        try:
            _end_answer(run, failure)
        finally:
            failure = None  # see _answer_tokens_async


async def _answer_tokens_async(
    run: threadline.WorkflowRun, tokens: AsyncGenerator[Any, None]
) -> AsyncIterator[Any]:
    failure: BaseException | None = None
    try:
        while True:
            scope = run.attach_scope()
            try:
                token = await tokens.__anext__()
            finally:
                _leave(run, scope)
            yield token
    except StopAsyncIteration:
        pass
    except BaseException as error:
        failure = error
        raise
    finally:
        # Not closed here: LlamaIndex finalizes its own answer generator (closing it from here
        # cancels the model stream it feeds from, on 0.12).
        try:
            _end_answer(run, failure)
        finally:
            # The exception's traceback holds this frame, which holds it and ``tokens``: a
            # cycle that kept the model stream, and its span, open until the garbage collector
            # ran. Dropping it lets LlamaIndex's finalizer close the stream at once.
            failure = None


def _leave(run: threadline.WorkflowRun, scope: Token[Context] | None) -> None:
    if scope is not None:
        run.detach_scope(scope)


def _end_answer(run: threadline.WorkflowRun, failure: BaseException | None) -> None:
    if failure is None or isinstance(failure, GeneratorExit):
        run.end()  # read to the end, or closed early by the caller
    else:
        run.end_with_exception(failure)


def _thrown_at_chunk(error: BaseException) -> bool:
    """Whether ``error`` was thrown into LlamaIndex's stream (``wrapped_gen``) where it had
    handed the consumer a chunk, rather than raised beneath it while the stream was read."""
    tb = error.__traceback__
    if tb is None or tb.tb_next is not None:
        return False
    code = tb.tb_frame.f_code
    return _is_callbacks_stream(code)


def _end_after(run: threadline.Run, error: BaseException | None) -> None:
    """End a run that waited for a stream or a writer beneath it: as that one ended."""
    if error is None:
        run.end()
    elif isinstance(error, GeneratorExit):
        run.end(stopped_early=True)
    else:
        run.end_with_exception(error)


def _tool_arguments(arguments: Mapping[str, Any]) -> Any:
    """A tool call's arguments: its keyword arguments, else its one positional argument (step
    agents call single-parameter tools positionally), else the positional ones as a list."""
    kwargs = arguments.get("kwargs")
    if kwargs:
        return kwargs
    args = arguments.get("args")
    if args:
        return args[0] if len(args) == 1 else list(args)
    named = {k: v for k, v in arguments.items() if k not in ("args", "kwargs")}
    if len(named) == 1:
        return next(iter(named.values()))
    return named or None


def _tool_output_value(output: Any, result: Any) -> Any:
    """What a tool returned, to record as its result: the structure it returned (a dict, a
    list, a pydantic model or dataclass of the app's), which core records as JSON, when its
    ``ToolOutput`` content is just that structure's ``str()`` (the Python repr, no JSON); else
    the content, the text the model is given (a callback's, or a tool's own rendering)."""
    content = getattr(output, "content", None)
    if content is None:
        return result
    raw = getattr(output, "raw_output", None)
    if raw is None or isinstance(raw, str):
        return content
    if isinstance(raw, (list, tuple)):
        # LlamaIndex's own objects (content blocks, nodes) are the tool's rendering of them
        if any(_llama_index_object(item) for item in raw):
            return content
    elif not isinstance(raw, Mapping):
        is_model = callable(getattr(raw, "model_dump", None))
        if not (is_model or dataclasses.is_dataclass(raw)) or isinstance(raw, type):
            return content
        if _llama_index_object(raw):
            return content
    try:
        same = content == str(raw)
    except Exception:  # noqa: BLE001 - an app object whose str() fails
        return content
    return raw if same else content


def _llama_index_object(value: Any) -> bool:
    module = getattr(type(value), "__module__", None)
    return isinstance(module, str) and module.startswith("llama_index.")


def _prompt(arguments: Mapping[str, Any]) -> Any:
    """A completion's prompt. LlamaIndex spans the ``llm_completion_callback`` wrapper, whose
    signature is ``(_self, *args, **kwargs)``: the prompt is its first positional argument or
    the ``prompt`` keyword (a ``complete`` spanned directly names it)."""
    if "prompt" in arguments:
        return arguments["prompt"]
    args = arguments.get("args")
    if args:
        return args[0]
    kwargs = arguments.get("kwargs")
    return kwargs.get("prompt") if isinstance(kwargs, Mapping) else None


def _workflow_name(cls: type) -> str | None:
    """An app's workflow class names its workflow; LlamaIndex's own engines and workflows
    (``RetrieverQueryEngine``, ``AgentWorkflow``) are types, not names (the conventions keep
    those out of ``gen_ai.workflow.name``)."""
    return None if cls.__module__.startswith("llama_index.") else cls.__name__


def _tool_description(tool: Any, name: str) -> str | None:
    """The description of the tool named ``name``, if ``tool`` is that tool and has one."""
    metadata = getattr(tool, "metadata", None)
    if getattr(metadata, "name", None) != name:
        return None
    description = getattr(metadata, "description", None)
    return description if isinstance(description, str) and description else None


def _agent_name(instance: Any) -> str:
    name = getattr(instance, "name", None)
    return name if isinstance(name, str) and name else type(instance).__name__


def _generator_frame(generator: Any) -> FrameType | None:
    """A generator's frame: None once it ran to its end (or never ran and was closed)."""
    if type(generator) is AsyncGeneratorType:
        return generator.ag_frame
    return getattr(generator, "gi_frame", None)


# Serializes ending deferred roots and changing the map of them by frame, which the reaper's
# thread does too (see Tracker.sweep_deferred). Reentrant: ending a stale root happens while
# recording a new one. Made anew in a forked child, where a thread may have held it.
_deferred_lock = threading.RLock()


def _new_deferred_lock() -> None:
    global _deferred_lock
    _deferred_lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_deferred_lock)


class _DeferredRoot:
    """A root whose span exited with a generator not read yet (see Tracker._defer_root)."""

    __slots__ = (
        "done",
        "generator",
        "key",
        "last_end",
        "pending",
        "run",
        "scope",
        "span_id",
        "streams",
    )

    def __init__(
        self, generator: Any, key: int, span_id: str, pending: PendingSpan, scope: Context
    ) -> None:
        self.generator = weakref.ref(generator)
        self.key = key  # id() of the generator's frame
        self.span_id = span_id
        self.pending = pending
        self.scope = scope
        self.run: threadline.Run | None = None  # made once something runs beneath it
        # The model streams opened beneath it, by id(): closing the generator closes them
        # only after it is released, and the root outlasts them.
        self.streams: dict[int, threadline.InferenceRun] = {}
        self.last_end: int | None = None  # when the last call beneath it ended
        self.done = False

    def finished(self) -> bool:
        """Whether its generator ran to its end or is gone, and no stream beneath it is open."""
        generator = self.generator()
        if generator is not None and _generator_frame(generator) is not None:
            return False
        return all(run.ended for run in list(self.streams.values()))


class _WorkflowScope:
    """A running workflow whose run is never current (``Workflow.run`` returns a future and
    its span exits in another context): its steps make it current while they run, so what they
    do (an HTTP call, an MCP tool, another framework) joins its trace.

    In a multi-agent ``AgentWorkflow`` each agent's turns are an ``invoke_agent`` run of their
    own under the workflow's; a handoff ends one and starts the next.
    """

    __slots__ = ("agent", "agents", "caller", "owner", "run")

    def __init__(
        self,
        run: threadline.Run,
        agents: Mapping[str, Any] | None,
        owner: int,
        caller: str | None = None,
    ) -> None:
        self.run = run
        self.agents = agents
        self.owner = owner  # id() of the workflow: its steps' spans are its methods before 2
        # The span id of the call that ran it: before llama-index-workflows 2, its caller's
        # later calls name the run as their parent and belong there (see _caller_of_run).
        self.caller = caller
        self.agent: threadline.AgentRun | None = None

    def parent_for(self, event: Any) -> threadline.Run:
        """The run a step handling ``event`` belongs to: the agent the event names (starting
        its run on a handoff), else the agent whose turn it is, else the workflow."""
        if self.agents is None:
            return self.run
        name = getattr(event, "current_agent_name", None)
        current = self.agent
        if current is None and name is None:
            # A run resumed from a saved Context starts with the tool calls its last run left
            # in flight, before any event names the agent: the one agent with that tool.
            name = _tool_owner(self.agents, getattr(event, "tool_name", None))
        if isinstance(name, str) and name and (current is None or current.name != name):
            if current is not None:
                current.end()
            description = getattr(self.agents.get(name), "description", None)
            current = self.agent = threadline.invoke_agent(
                name,
                parent=self.run,
                description=description if isinstance(description, str) else None,
            )
        return current if current is not None and not current.ended else self.run

    def close(self, error: BaseException | None, stopped_early: bool = False) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            if error is None:
                agent.end(stopped_early=stopped_early)
            else:
                agent.end_with_exception(error)


def _tool_owner(agents: Mapping[str, Any], tool_name: Any) -> str | None:
    """The name of the one agent whose own tools include ``tool_name``; None when no agent or
    several have it (the handoff tool, which AgentWorkflow gives each agent, is in none)."""
    if not isinstance(tool_name, str):
        return None
    owner = None
    for name, agent in list(agents.items()):
        tools = getattr(agent, "tools", None)
        for tool in tools if isinstance(tools, list) else ():
            if getattr(getattr(tool, "metadata", None), "name", None) == tool_name:
                if owner is not None:
                    return None
                owner = name
                break
    return owner if isinstance(owner, str) else None


@functools.cache
def _exits_with_stop_event() -> bool:
    """Whether a workflow's span exits with its StopEvent (llama-index-workflows 2 and later)."""
    from importlib import metadata

    try:
        major = metadata.version("llama-index-workflows").split(".", 1)[0]
    except metadata.PackageNotFoundError:  # the workflows inside llama-index-core (0.12)
        return False
    return major.isdigit() and int(major) >= 2


def _record_response(
    run: threadline.InferenceRun, response: Any, streamed_finish: str | None
) -> None:
    """What a model's response (a ``ChatResponse``/``CompletionResponse``) tells: usage, id,
    model, finish reason (unless the stream recorded it already) and, with capture on, the
    output message."""
    raw = getattr(response, "raw", None)
    usage = _extract.usage_of(raw) if raw is not None else None
    if usage is None:
        extra = getattr(response, "additional_kwargs", None)
        if extra:  # where some LLMs report usage; usually empty
            usage = _extract.usage_of({"usage": extra})
    finish = streamed_finish
    if raw is not None:
        response_id, response_model = _extract.response_facts(raw)
        if finish is None:
            finish = _extract.finish_reason_of(raw)
        run.update(response_id=response_id, response_model=response_model)
    finish_reasons = [finish] if finish and not streamed_finish else None
    if usage is not None or finish_reasons:
        run.update(usage=usage, finish_reasons=finish_reasons)
    if threadline.capture_enabled():
        message = _extract.output_message(response, finish)
        if message is not None:
            run.update(output_messages=[message])


class Tracker:
    """The state shared by the span and event handlers: open runs by LlamaIndex span id."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose
        self.types = _Types()
        self.runs: threadline.RunRegistry[str, threadline.Run] = threadline.RunRegistry()
        self._run_entries = self.runs._entries  # read without a method call (hot path)
        # Streaming inference runs whose LlamaIndex span has exited (result = generator).
        self.streams: threadline.RunRegistry[str, threadline.InferenceRun] = (
            threadline.RunRegistry()
        )
        self.stream_entries = self.streams._entries  # read without a method call (hot path)
        self.stream_finish: dict[str, str] = {}
        # Open streams whose progress events still tell something (see on_progress): once
        # none does, the events of every chunk end at one lookup of their type.
        self.watched: set[str] = set()
        # Per LLM object (by id): its async streams handed out and not read yet, where they are
        # CustomLLM's: astream_* return a generator that calls stream_* only when iterated,
        # after their span has exited; each such inner call belongs to one of them (see enter).
        # Each with the frame of the generator handed out, which tells the streams apart when
        # they are read in another order than they were opened.
        self.handed_out: dict[int, list[tuple[FrameType | None, threadline.InferenceRun]]] = {}
        self.lazy_async: dict[tuple[type, str], bool] = {}
        # Non-emitted span id -> nearest emitted ancestor run (absent: none, use the context).
        self.nodes: dict[str, Parent] = {}
        self.kinds: dict[tuple[type, str], Kind] = {}
        # Running workflows by span id, and the steps that made one current (see enter).
        self.workflows: dict[str, _WorkflowScope] = {}
        # Before llama-index-workflows 2, ``Workflow.run`` leaves its span id active in the
        # caller's context (it returns a future; LlamaIndex resets it in another context), so
        # the caller's later calls name the run as their parent. Those runs' span ids, ended
        # ones included, are no parent for anything but their steps (see _caller_of_run).
        self.leaks_run_span = not _exits_with_stop_event()
        self.left_active: dict[str, str | None] = {}  # with the span id of the run's caller
        self.scopes: dict[str, tuple[threadline.Run, Token[Context] | None]] = {}
        self.tool_errors: dict[int, BaseException] = {}
        # Tool calls whose positional call failed and that LlamaIndex's call_tool calls again
        # with keywords, by id() of call_tool's frame: the retry continues the run.
        self.retried_tools: dict[int, tuple[int, threadline.ToolRun]] = {}
        # Agents' tool calls waiting for an event, by tool call id: the step run again when it
        # comes continues the same run (see _tool_result).
        self.waiting_tools: dict[str, threadline.ToolRun] = {}
        # Skipped spans that started a request outside any trace, by span id (see _root).
        self.roots: dict[str, PendingSpan] = {}
        # Streams that root's run waits for (by id: the stream's run, and the root's run), when
        # the root returned a stream (see _ends_with_streams).
        self.stream_roots: dict[int, tuple[threadline.InferenceRun, threadline.Run]] = {}
        # Roots whose span exited with a generator not read yet (see _defer_root), by id() of
        # the generator's frame; until their run is made, by span id; then by id() of the run.
        self.deferred_roots: dict[int, _DeferredRoot] = {}
        self.deferred_spans: dict[str, _DeferredRoot] = {}
        self.deferred_runs: dict[int, _DeferredRoot] = {}
        self._sweeping = False  # the reaper sweeps the deferred roots (see sweep_deferred)
        # Unread generators the application let go of while the reaper looked at them: they
        # are closed (their finally blocks run) on the application's thread, at its next call.
        self._let_go: list[Any] = []
        # Chat engines' runs that end with the writer reading their streaming response, by the
        # response's id (see _ends_with_writer).
        self.writers: dict[int, tuple[weakref.ref[Any], threadline.Run]] = {}
        # The events about an open stream (by the stream's span id), and what each does: its
        # end, and its chunks' progress while a stream is watched. One dict, changed in place
        # (the event handler holds it): empty while no stream is open.
        self._ending_events: Mapping[type, EventHook] = {
            LLMChatEndEvent: self.on_end,
            LLMCompletionEndEvent: self.on_end,
            ExceptionEvent: self.on_exception,
        }
        self._progress_events: Mapping[type, EventHook] = {
            LLMChatInProgressEvent: self.on_progress,
            LLMCompletionInProgressEvent: self.on_progress,
        }
        self.events: dict[type, EventHook] = {}
        self._hooks_lock = threading.Lock()

    # --- spans ---------------------------------------------------------------------------------
    def _kind(self, instance: Any, prefix: str) -> Kind:
        key = (type(instance), prefix)
        kind = self.kinds.get(key)
        if kind is None:
            method = prefix.rpartition(".")[2]
            kind = _classify(self.types, instance, method, self.verbose)
            if len(self.kinds) >= _MAX_KINDS:
                self.kinds.clear()
            self.kinds[key] = kind
        return kind

    def _lazy_async_stream(self, llm: Any, id_: str) -> bool:
        """Whether this span is an ``astream_*`` of CustomLLM's own (lazy) implementation."""
        method = id_.partition("-")[0].rpartition(".")[2]
        if not method.startswith("astream_"):
            return False
        key = (type(llm), method)
        lazy = self.lazy_async.get(key)
        if lazy is None:
            custom = _optional_class("llama_index.core.llms.custom", "CustomLLM")
            # static lookup: the instrumented methods are descriptors that wrap anew on access
            lazy = custom is not None and inspect.getattr_static(
                type(llm), method, None
            ) is inspect.getattr_static(custom, method, None)
            if len(self.lazy_async) < _MAX_KINDS:
                self.lazy_async[key] = lazy
        return lazy

    def _unread_async_stream(self, llm: Any, frame: FrameType) -> threadline.InferenceRun | None:
        """Take the async stream of ``llm`` whose generator is running (``frame``); failing
        that, the oldest unread one still open."""
        pending = self.handed_out.get(id(llm))
        if not pending:
            return None
        chosen = next((i for i, (f, _) in enumerate(pending) if f is frame), None)
        while pending:
            _, outer = pending.pop(chosen if chosen is not None else 0)
            chosen = None
            if not pending:
                self.handed_out.pop(id(llm), None)
            if not outer.ended and outer.chunks == 0:
                return outer
        return None

    def _parent(self, parent_id: str | None) -> Parent | None:
        if parent_id is None:
            if self.deferred_runs:
                self._end_finished_deferred()
            if self.deferred_roots:
                scope = self._deferred_root_scope()
                if scope is not None:
                    return scope
            remote = _remote_parent.get()
            if remote is not None and threadline.current_run() is None:
                return remote
            return None
        run = self.runs.get(parent_id)
        return run if run is not None else self.nodes.get(parent_id)

    def _remember(self, id_: str, parent: Parent | None) -> None:
        if parent is None:
            return
        nodes = self.nodes
        if len(nodes) >= _MAX_NODES:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del nodes[next(iter(nodes))]  # the oldest: its span never exited
        nodes[id_] = parent

    def enter(self, id_: str, bound_args: Any, instance: Any, parent_id: str | None) -> None:
        cut = id_.find("-")
        prefix = id_[:cut] if cut > 0 else id_
        # Inline fast paths: LlamaIndex spans every step, and most become no run.
        kind = self.kinds.get((type(instance), prefix))
        if kind is None:
            kind = self._kind(instance, prefix)
        if parent_id is None:
            parent = self._parent(None)
        else:
            parent = self._run_entries.get(parent_id)
            if parent is None:
                parent = self.nodes.get(parent_id)
                if parent is None and self.left_active and parent_id in self.left_active:
                    # the caller's context after a workflow ran in it: the caller's call
                    parent_id, parent = self._caller(self.left_active[parent_id])
        workflows = self.workflows
        if kind is _SKIP and not workflows:
            if parent is not None:
                nodes = self.nodes
                if len(nodes) >= _MAX_NODES:
                    self._remember(id_, parent)
                else:
                    nodes[id_] = parent
            elif parent_id is None:
                self._root(id_, instance)
            return
        arguments: Mapping[str, Any] = bound_args.arguments
        workflow = workflows.get(parent_id) if parent_id and workflows else None
        if workflow is not None and workflow.run.ended:
            # Ended without its span's exit (abandoned, or LlamaIndex 0.12 never exited it).
            del self.workflows[parent_id]  # type: ignore[arg-type]
            if self.leaks_run_span:
                self._left_active(parent_id, workflow.caller)  # type: ignore[arg-type]
            workflow = None
        if (
            workflow is not None
            and self.leaks_run_span
            and self._caller_of_run(workflow, kind, instance)
        ):
            parent_id, parent = self._caller(workflow.caller)
            workflow = None
        if workflow is not None:
            # A step of a running workflow: it runs in a task of the workflow's own.
            parent = workflow.parent_for(arguments.get("ev"))
            if kind is _SKIP:
                self._remember(id_, parent)
                self._add_scope(id_, parent)
                return
        elif kind is _SKIP:
            if parent is None and parent_id is None:
                self._root(id_, instance)
            else:
                self._remember(id_, parent)
            return
        # A nested call of LlamaIndex's own (a chat implemented by complete()) joins the run
        # LlamaIndex names as its parent; a new run started beneath a span LlamaIndex does not
        # know of (another library's or the app's, inside a step or a tool) nests under it.
        own = parent
        if (
            (kind is _CHAT or kind is _COMPLETION)
            and isinstance(own, threadline.InferenceRun)
            and not own.ended
        ):
            self._remember(id_, own)  # e.g. a chat implemented by complete()
            return
        if workflow is None:
            parent = beneath(parent)
        run: threadline.Run | None
        if kind is _CHAT or kind is _COMPLETION:
            frame = (
                _lazy_async_stream_frame()
                if self.handed_out and prefix.endswith(_SYNC_STREAMS)
                else None
            )
            if frame is not None:
                outer = self._unread_async_stream(instance, frame)
                if outer is not None:
                    self._remember(id_, outer)  # the sync stream behind CustomLLM.astream_*
                    return
            run = self._inference(kind, prefix, instance, arguments, parent)
        elif kind is _EMBEDDINGS:
            if isinstance(own, threadline.EmbeddingsRun) and not own.ended:
                self._remember(id_, own)
                return
            host, port = _extract.endpoint(instance)
            run = threadline.embeddings(
                _extract.model_name(instance),
                provider=_extract.provider_of(type(instance)),
                parent=parent,
                server_address=host,
                server_port=port,
            )
        elif kind is _RETRIEVAL:
            run = self._retrieval(instance, arguments, parent)
        elif kind is _TOOL:
            if isinstance(own, threadline.ToolRun) and not own.ended:
                self._remember(id_, own)
                # An agent's tool step names its tool only: the tool's call tells the rest.
                description = _tool_description(instance, own.name)
                if description is not None:
                    own.set_attributes({semconv.GEN_AI_TOOL_DESCRIPTION: description})
                return
            run = self._retried_tool(instance, arguments) if self.retried_tools else None
            if run is None:
                run = self._tool(instance, arguments, parent)
        elif kind is _TOOL_STEP:
            run = self._tool_step(arguments, parent)
            if run is None:  # a step named call_tool that calls no tool
                self._remember(id_, parent)
                if workflow is not None and isinstance(parent, threadline.Run):
                    self._add_scope(id_, parent)
                return
        elif kind is _AGENT:
            description = getattr(instance, "description", None)
            run = threadline.invoke_agent(
                _agent_name(instance),
                parent=parent,
                description=description if isinstance(description, str) else None,
            )
        elif kind is _WORKFLOW:
            run = threadline.invoke_workflow(_workflow_name(type(instance)), parent=parent)
        else:
            run = threadline.step(prefix, parent=parent)
        self.runs.add(id_, run)
        if (kind is _WORKFLOW or kind is _AGENT) and isinstance(instance, self.types.workflow):
            # Workflow.run returns a future and its span exits when the workflow finishes,
            # in another context: making the run current here would leave it attached.
            self._add_workflow(id_, run, instance, kind, parent_id)
            return
        run.attach()

    @staticmethod
    def _caller_of_run(workflow: _WorkflowScope, kind: Kind, instance: Any) -> bool:
        """Whether a span LlamaIndex puts directly under a running workflow (before
        llama-index-workflows 2) is a call of the context that started it rather than one of its
        steps, which are methods of the workflow (see leaks_run_span): another workflow's run,
        or anything else's call (a query, a model call, while the run goes on)."""
        if kind is _WORKFLOW or kind is _AGENT:
            return True
        return instance is not None and id(instance) != workflow.owner

    def _root(self, id_: str, instance: Any) -> None:
        """A skipped span that starts a request outside any trace (``llm.predict_and_call``, a
        synthesizer or an ingestion pipeline called directly): the calls beneath it would each
        start a trace of their own. It becomes an ``invoke_workflow`` run once one of them makes
        a span, pending until then (a root chain of LangChain's alike); under a span already
        (the app's), the calls join that trace and it makes none."""
        ctx = otel_context.get_current()
        span = trace.get_current_span(ctx)
        if isinstance(span, PendingSpan) or span.get_span_context().is_valid:
            return
        roots = self.roots
        if len(roots) >= _MAX_KINDS:
            with contextlib.suppress(StopIteration, RuntimeError):
                self._close_root(next(iter(roots)))  # the oldest: its span never exited
        make = functools.partial(self._made_root, id_, instance, ctx, time.time_ns())
        scope, roots[id_] = pending_context(ctx, make)
        self._remember(id_, scope)

    def _made_root(
        self, id_: str, instance: Any, parent: Context, start: int
    ) -> threadline.Run | None:
        """The run of a root skipped span (see _root), made when something beneath needs it;
        from then on its span id finds it as any run's does."""
        name = None
        models = (*self.types.llms, *self.types.embeddings)
        if instance is not None and not isinstance(instance, models):
            name = _workflow_name(type(instance))  # an app's class; a model names no workflow
        run = threadline.invoke_workflow(name, parent=parent, start_time=start)
        self.runs.add(id_, run)
        if self.deferred_spans:
            deferred = self.deferred_spans.pop(id_, None)
            if deferred is not None:
                deferred.run = run
                self.deferred_runs[id(run)] = deferred
        return run

    def _close_root(self, id_: str, result: Any = None) -> threadline.Run | None:
        """A root's span is ending: no run is made from now on; the run made, if any."""
        pending = self.roots.pop(id_, None)
        if pending is None:
            return None
        if isinstance(result, _STREAMS) and self._defer_root(id_, pending, result):
            return None
        pending.stop()  # first: a run made after its span's end would stay open
        run = pending.run()
        pending.settle(run)
        self.nodes.pop(id_, None)
        return run

    def _defer_root(self, id_: str, pending: PendingSpan, stream: Any) -> bool:
        """A root whose span exits with a generator before anything beneath it ran (a
        generator function LlamaIndex spans, as ``stream_structured_predict``: its model call
        comes when the caller reads it, outside any span). The calls the generator makes while
        it runs nest under the root's run as they would have in its span; the run ends once
        the generator ran to its end or is released, and the model streams opened beneath it
        ended, as the last call beneath it did (see _end_deferred)."""
        scope = self.nodes.get(id_)
        if (
            scope is None
            or isinstance(scope, threadline.Run)
            or current_made_run(scope) is not None
            or len(self.deferred_roots) >= _MAX_KINDS
            or len(self.deferred_runs) >= _MAX_KINDS
        ):
            return False
        frame = _generator_frame(stream)
        if frame is None:  # run to its end already
            return False
        key = id(frame)  # the generator holds its frame: unique while it has one
        entry = _DeferredRoot(stream, key, id_, pending, scope)
        with _deferred_lock:
            stale = self.deferred_roots.get(key)
            self.deferred_roots[key] = entry
            self.deferred_spans[id_] = entry
        if stale is not None:  # a generator whose frame is gone: it ran to its end
            self._frame_gone(stale)
        if not self._sweeping:
            self._sweeping = True
            open_runs.sweep_with(self.sweep_deferred)
        weakref.finalize(stream, self._deferred_released, entry).atexit = False
        self.nodes.pop(id_, None)
        return True

    def _deferred_root_scope(self) -> Context | None:
        """The context of the deferred root whose generator runs beneath this call, if any:
        one dict lookup per frame of the stack, however many roots are deferred."""
        if self._let_go:  # their roots are still deferred: here is the application's thread
            let_go, self._let_go = self._let_go, []
            del let_go  # closes them
        roots = self.deferred_roots
        caller: FrameType | None = sys._getframe(2)
        for _ in range(_MAX_STACK_DEPTH):
            if caller is None:
                return None
            entry = roots.get(id(caller))
            if entry is not None:
                generator = entry.generator()
                if generator is not None and _generator_frame(generator) is caller:
                    return entry.scope
                # another frame where a generator's was: that generator ran to its end
                self._frame_gone(entry)
            caller = caller.f_back
        return None

    def _end_finished_deferred(self) -> None:
        """End the deferred roots whose generator ran to its end while the application still
        holds it (no event tells that): a few per call, in turn, so the cost stays flat."""
        runs = self.deferred_runs
        for _ in range(2):
            try:
                key = next(iter(runs))
                entry = runs.pop(key)
            except (StopIteration, KeyError, RuntimeError):
                return
            if entry.finished():
                self._end_deferred(entry)
            elif not entry.done:
                runs[key] = entry  # to the back: checked again in turn

    def sweep_deferred(self) -> None:
        """End the deferred roots whose generator ran to its end while the application still
        holds it. The reaper's thread calls this each time it wakes: an application that makes
        no further call still has the root exported (ended as its last call beneath it did)."""
        entries = {id(entry): entry for entry in list(self.deferred_spans.values())}
        entries.update((id(entry), entry) for entry in list(self.deferred_runs.values()))
        for entry in entries.values():
            if entry.done or entry.streams:  # a stream beneath it ends it (see
                continue  # deferred_child_ended), once it has its end time
            generator = entry.generator()
            if generator is not None and _generator_frame(generator) is not None:
                # Not run to its end. Should the application have let go of it meanwhile,
                # this reference is the last: dropping it here would close the generator,
                # running its finally blocks, on this thread.
                if sys.getrefcount(generator) <= 2:  # this name's and the call's own
                    self._let_go.append(generator)
                del generator
                continue
            del generator
            if entry.finished():
                self._end_deferred(entry)

    def _in_deferred_root(self, run: threadline.InferenceRun) -> None:
        """A model stream opened beneath a deferred root: the root outlasts it."""
        root = run.parent_run
        entry = self.deferred_runs.get(id(root)) if root is not None else None
        if entry is None:
            return
        streams = entry.streams
        if len(streams) >= _MAX_STACK_DEPTH:
            for key, other in list(streams.items()):
                if other.ended:
                    streams.pop(key, None)
        if len(streams) < _MAX_STACK_DEPTH:
            streams[id(run)] = run

    def deferred_child_ended(self, run: threadline.Run) -> None:
        """A call beneath a deferred root ended: the root ends no earlier."""
        root = run.parent_run
        entry = self.deferred_runs.get(id(root)) if root is not None else None
        if entry is None or not run.ended:
            return
        entry.last_end = time.time_ns()
        if entry.streams:
            entry.streams.pop(id(run), None)
        if entry.finished():  # a stream the generator's end (or release) closed
            self._end_deferred(entry)

    def _deferred_released(self, entry: _DeferredRoot) -> None:
        """A deferred root's generator is released: its run ends, unless a model stream still
        open beneath it (closing the generator closes that stream right after) ends it."""
        try:
            self._frame_gone(entry)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.deferred_root", error)

    def _frame_gone(self, entry: _DeferredRoot) -> None:
        """A deferred root's generator has no frame any more (its id may be another's now): it
        ends, or, with a stream beneath it still open, waits for that one (see
        deferred_child_ended)."""
        self._unmap_frame(entry)
        if entry.finished():
            self._end_deferred(entry)

    def _unmap_frame(self, entry: _DeferredRoot) -> None:
        """Drop a deferred root from the map by frame, unless its frame's id is another's now
        (the reaper's thread may look while a new root takes it)."""
        with _deferred_lock:
            if self.deferred_roots.get(entry.key) is entry:
                del self.deferred_roots[entry.key]

    def _end_deferred(self, entry: _DeferredRoot) -> None:
        with _deferred_lock:
            if entry.done:
                return
            entry.done = True
        try:
            self._unmap_frame(entry)
            self.deferred_spans.pop(entry.span_id, None)
            pending = entry.pending
            pending.stop()
            run = pending.run()
            pending.settle(run)
            if run is None:
                return
            self.deferred_runs.pop(id(run), None)
            if not run.ended:
                # as the last call beneath it: the generator's end is seen later, if at all
                run.end(end_time=entry.last_end)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.deferred_root", error)

    def _ends_with_streams(self, root: threadline.Run) -> bool:
        """Whether a root that returned a stream (``llm.stream``, ``llm.astream``), or a chat
        engine that returned a streaming response, has model streams open beneath it: it then
        ends when they do (see _stream_ended)."""
        inside = [run for run in list(self.stream_entries.values()) if run.parent_run is root]
        if not inside:
            return False
        if len(self.stream_roots) >= _MAX_KINDS:
            self.stream_roots.clear()  # streams never read; the reaper ends them
        roots = self.stream_roots
        for run in inside:
            roots[id(run)] = (run, root)
        for run in inside:
            if run.ended:
                # Read to the end in another thread (a chat engine's) before its end could
                # find the root here: it ends no root.
                roots.pop(id(run), None)
        return any(other is root for _, other in list(roots.values()))

    def _stream_ended(self, run: threadline.InferenceRun, error: BaseException | None) -> None:
        entry = self.stream_roots.pop(id(run), None)
        if entry is None or entry[0] is not run:
            return
        root = entry[1]
        if any(other is root for _, other in list(self.stream_roots.values())):
            return  # another stream beneath it is still open
        _end_after(root, error)

    def _ends_with_writer(self, run: threadline.Run, response: Any) -> bool:
        """Whether a chat engine's streaming response is read by a writer of LlamaIndex's
        (``write_response_to_history`` in a thread, ``awrite_response_to_history`` in a task,
        each a span whose instance is the response): the run then ends when that span does
        (see writer_ended). Race-free where the streams are not: on llama-index-core 0.14 the
        model is called only once the writer reads the answer, after the engine returned."""
        fields = getattr(response, "__dict__", None)
        if type(fields) is not dict or fields.get("is_writing_to_memory", True) is not True:
            return False  # read by the caller (without a writer, such a response never ends)
        if fields.get("chat_stream") is None and fields.get("achat_stream") is None:
            return False
        writers = self.writers
        if len(writers) >= _MAX_KINDS:
            # a copy: writers' threads pop their entries meanwhile
            stale = [key for key, (ref, other) in list(writers.items()) if other.ended or not ref()]
            for key in stale:
                writers.pop(key, None)
            if len(writers) >= _MAX_KINDS:
                writers.clear()  # writers that never ran; the reaper ends their runs
        key = id(response)
        writers[key] = (weakref.ref(response), run)
        # The writer may have finished before it could find the run here.
        error = fields.get("exception")
        done = fields.get("is_done") or error is not None
        if done and writers.pop(key, None) is not None:
            _end_after(run, error if isinstance(error, BaseException) else None)
        return True

    def writer_ended(self, response: Any, error: BaseException | None) -> None:
        """A span has ended whose instance may be a streaming response a run waits for."""
        key = id(response)
        entry = self.writers.get(key)
        # None, or another object alive at the id of a dead response (its entry stays for the
        # pruning); else whichever side pops the entry ends the run
        if entry is None or entry[0]() is not response or self.writers.pop(key, None) is None:
            return
        _end_after(entry[1], error)

    def _caller(self, caller: str | None) -> tuple[str | None, Parent | None]:
        """The span id and parent of the call that ran a workflow, to a call its context makes
        (see _caller_of_run); without it (it has ended), the context's own parent."""
        if caller is not None:
            parent: Parent | None = self._run_entries.get(caller)
            if parent is None:
                parent = self.nodes.get(caller)
            if parent is not None:
                return caller, parent
        return None, self._parent(None)

    def _add_workflow(
        self, id_: str, run: threadline.Run, instance: Any, kind: Kind, caller: str | None
    ) -> None:
        workflows = self.workflows
        if len(workflows) >= _MAX_KINDS:
            # Workflows whose span never exited (LlamaIndex 0.12 exits it only when the caller
            # awaits the result): drop the ended ones, and all if none has.
            for key in [key for key, scope in workflows.items() if scope.run.ended]:
                del workflows[key]
            if len(workflows) >= _MAX_KINDS:
                workflows.clear()
        agents = getattr(instance, "agents", None) if kind is _WORKFLOW else None
        workflows[id_] = _WorkflowScope(
            run, agents if isinstance(agents, dict) else None, id(instance), caller
        )

    def _left_active(self, id_: str, caller: str | None) -> None:
        left = self.left_active
        if len(left) >= _MAX_KINDS:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del left[next(iter(left))]  # the oldest: its caller's context is likely gone
        left[id_] = caller

    def _add_scope(self, id_: str, run: threadline.Run) -> None:
        if len(self.scopes) >= _MAX_NODES:
            self.scopes.clear()  # steps that never exited; their tokens are stale anyway
        self.scopes[id_] = (run, run.attach_scope())

    def _leave_scope(self, id_: str) -> None:
        run, token = self.scopes.pop(id_, (None, None))
        if run is not None and token is not None:
            run.detach_scope(token)

    def _inference(
        self,
        kind: Kind,
        prefix: str,
        llm: Any,
        arguments: Mapping[str, Any],
        parent: Parent | None,
    ) -> threadline.InferenceRun:
        facts = _extract.llm_facts(llm)
        model = facts.model
        call_kwargs = arguments.get("kwargs")
        if not isinstance(call_kwargs, Mapping) or not call_kwargs:
            call_kwargs = None
        else:
            # a per-call model (``llm.chat(messages, model="gpt-4o")``) is the one requested
            override = call_kwargs.get("model")
            if override and type(override) is str:
                model = override
        # additional_kwargs, a dict some apps change in place, is read on every call
        fields = getattr(llm, "__dict__", None)
        if call_kwargs is None and not (type(fields) is dict and fields.get("additional_kwargs")):
            request = facts.params
        else:
            request = _extract.request_params(llm, call_kwargs)
        input_messages = tools = None
        if threadline.capture_enabled():
            if kind is _CHAT:
                messages = arguments.get("messages")
                input_messages = _extract.input_messages(messages) if messages else None
            else:
                prompt = _prompt(arguments)
                if prompt is not None:
                    images = _extract.image_documents(arguments)
                    input_messages = _extract.prompt_messages(prompt, images)
            if call_kwargs and call_kwargs.get("tools"):
                tools = _extract.tool_definitions(call_kwargs["tools"])
        # complete() on a chat model is a chat request on the wire.
        chat = kind is _CHAT or facts.is_chat_model
        provider = facts.provider
        return threadline.inference(
            model,
            provider=provider,
            operation=semconv.OP_CHAT if chat else semconv.OP_TEXT_COMPLETION,
            parent=parent,
            request=request,
            stream=prefix.endswith(_STREAM_METHODS),  # the method's name, not the class's
            server_address=facts.host,
            server_port=facts.port,
            input_messages=input_messages,
            tool_definitions=tools,
            in_process=provider == _extract.IN_PROCESS_PROVIDER,
        )

    def _retrieval(
        self, retriever: Any, arguments: Mapping[str, Any], parent: Parent | None
    ) -> threadline.RetrievalRun:
        store = getattr(retriever, "_vector_store", None)
        source = type(store).__name__ if store is not None else type(retriever).__name__
        top_k = getattr(retriever, "_similarity_top_k", None)
        if top_k is None:
            top_k = getattr(retriever, "similarity_top_k", None)
        query = None
        if threadline.capture_enabled():
            query = _extract.query_text(arguments.get("str_or_query_bundle"))
        return threadline.retrieval(
            source,
            parent=parent,
            top_k=top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None,
            query=query,
        )

    def _tool(
        self, tool: Any, arguments: Mapping[str, Any], parent: Parent | None
    ) -> threadline.ToolRun:
        metadata = getattr(tool, "metadata", None)
        name = getattr(metadata, "name", None) or type(tool).__name__
        description = getattr(metadata, "description", None)
        frame = _call_tool_frame()
        args = None
        if threadline.capture_enabled():
            # called by call_tool: the arguments it was given (a one-parameter tool gets their
            # value alone), else the call's own
            args = _sent_arguments(tool, frame) if frame is not None else None
            if args is None:
                args = _tool_arguments(arguments)
        return threadline.execute_tool(
            str(name),
            parent=parent,
            description=description if isinstance(description, str) else None,
            arguments=args,
            call_id=_selected_call_id(tool, frame),
        )

    def _retried_tool(self, tool: Any, arguments: Mapping[str, Any]) -> threadline.ToolRun | None:
        """The run of a tool call whose positional call failed, if this is the call_tool's
        retry with keywords (see _retry_with_keywords)."""
        frame = _call_tool_frame()
        if frame is None:
            return None
        entry = self.retried_tools.pop(id(frame), None)
        if entry is None or entry[0] != id(tool) or entry[1].ended:
            return None
        run = entry[1]
        if threadline.capture_enabled():
            run.update(arguments=_tool_arguments(arguments))
        return run

    def _retry_with_keywords(
        self,
        id_: str,
        run: threadline.ToolRun,
        error: BaseException,
        bound_args: Any,
        tool: Any,
    ) -> bool:
        """LlamaIndex's ``call_tool`` calls a one-parameter tool with its argument positionally
        and, should that raise, again as a keyword argument (a tool that needs keywords, such as
        the output class of a FunctionCallingProgram): both calls are one tool call, not a
        failed one and a second one. True when the run is kept for the retry."""
        arguments = getattr(bound_args, "arguments", None)
        if not isinstance(error, Exception) or not isinstance(arguments, dict):
            return False
        if arguments.get("kwargs") or len(arguments.get("args") or ()) != 1:
            return False
        frame = _call_tool_frame()
        if frame is None or tool is None or not _retried_with_keywords(tool, frame):
            return False
        retried = self.retried_tools
        if len(retried) >= _MAX_WAITING_TOOLS:
            retried.clear()  # retries that never came; the reaper ends their runs
        self.runs.pop(id_)
        retried[id(frame)] = (id(tool), run)
        return True

    def _tool_step(
        self, arguments: Mapping[str, Any], parent: Parent | None
    ) -> threadline.ToolRun | None:
        event = arguments.get("ev")
        name = getattr(event, "tool_name", None)
        if not isinstance(name, str):
            return None
        call_id = getattr(event, "tool_id", None)
        if self.waiting_tools and isinstance(call_id, str):
            waiting = self.waiting_tools.pop(call_id, None)
            if waiting is not None and not waiting.ended and waiting.parent_run is parent:
                return waiting  # its step again, now that the event it waited for came
        args = getattr(event, "tool_kwargs", None) if threadline.capture_enabled() else None
        return threadline.execute_tool(
            name,
            parent=parent,
            call_id=call_id if isinstance(call_id, str) and call_id else None,
            arguments=args,
        )

    def exit(self, id_: str, result: Any, instance: Any = None) -> None:
        if self.scopes:
            self._leave_scope(id_)
        root = self._close_root(id_, result) if self.roots else None
        run = self._run_entries.get(id_)
        if run is None:
            self.nodes.pop(id_, None)
            if stranded_refs:  # most exits: nothing stranded, no call
                release_stranded()
            return
        run.detach()
        stopped = False
        if self.workflows:
            workflow = self.workflows.pop(id_, None)
            if workflow is not None:
                if self.leaks_run_span:
                    self._left_active(id_, workflow.caller)
                if self.waiting_tools:
                    self._cut_off_waiting_tools(workflow)
                # A run that finished exits with its StopEvent since llama-index-workflows 2
                # (before, with the StopEvent's result, which may be None); one the app stopped
                # (``handler.cancel_run()``) exits with none: the calls it cancelled are no
                # failure.
                stopped = result is None and _exits_with_stop_event()
                workflow.close(None, stopped)
        if isinstance(run, threadline.InferenceRun):
            if isinstance(result, _STREAMS):
                self._open_stream(id_, run)  # ends on the stream's end event
                if self.deferred_runs:
                    self._in_deferred_root(run)
                if instance is not None and self._lazy_async_stream(instance, id_):
                    if len(self.handed_out) >= _MAX_HANDED_OUT:
                        self.handed_out.clear()
                    entry = (_custom_generator_frame(result), run)
                    self.handed_out.setdefault(id(instance), []).append(entry)
                # after _custom_generator_frame read the stream
                if _request_in_run(run, result):
                    self._watch(id_)
                else:
                    self._end_on_release(id_, run, result)
                return
            if result is not None:
                try:
                    _record_response(run, result, None)
                finally:
                    run.end()  # even when the response could not be read
                return
        elif isinstance(run, threadline.ToolRun):
            if self._tool_result(id_, run, result):
                return
        elif isinstance(run, threadline.RetrievalRun):
            if threadline.capture_enabled():
                run.update(documents=_extract.documents(result, content=True))
        elif isinstance(run, threadline.EmbeddingsRun):
            run.update(dimension_count=dimension_count(result))
        elif isinstance(run, threadline.WorkflowRun):
            if _stream_answer(run, result):
                return  # ends when the streamed answer does
            if run is root and isinstance(result, _STREAMS):
                if self._ends_with_streams(run):
                    return
            # A streaming chat engine returns while LlamaIndex's thread or task reads its answer.
            elif isinstance(result, self.types.chat_stream) and (
                self._ends_with_writer(run, result) or self._ends_with_streams(run)
            ):
                return
        run.end(stopped_early=stopped)

    def _end_on_release(self, id_: str, run: threadline.InferenceRun, stream: Any) -> None:
        """A model's own stream, returned by a stream method without LlamaIndex's callback
        decorator: no event will tell its end, and it cannot be wrapped once returned. Its run
        ends when the stream is released, as ``for chunk in llm.stream_complete(...)`` does right
        after its last chunk, a ``break`` or an error (which it cannot tell apart)."""
        weakref.finalize(stream, self._released, id_, run).atexit = False

    def _released(self, id_: str, run: threadline.InferenceRun) -> None:
        try:
            if self._close_stream(id_) is None:
                return  # ended already (by the reaper)
            run.end()
            if self.stream_roots:
                self._stream_ended(run, None)
            if self.deferred_runs:
                self.deferred_child_ended(run)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.stream_released", error)

    def _tool_result(self, id_: str, run: threadline.ToolRun, result: Any) -> bool:
        """Record a tool's output; True when the run is not to end normally now (it failed, was
        cancelled, or waits for an event)."""
        output = getattr(result, "tool_output", result)  # ToolCallResult or ToolOutput
        raised = self.tool_errors.pop(id(run), None) if self.tool_errors else None
        if getattr(output, "is_error", False):
            error = getattr(output, "exception", None) or raised
            run.fail(error if isinstance(error, BaseException) else semconv.ERROR_TYPE_TOOL_ERROR)
            return True
        if result is None and isinstance(raised, asyncio.CancelledError):
            # llama-index-workflows 2 catches a cancellation inside the tool step's span, which
            # then exits with no result: the tool's own span was dropped with it.
            run.end_with_exception(raised)
            return True
        if result is None and type(raised).__name__ == _WAITING and run.call_id:
            # The step stopped to wait (caught inside its span, too) and is run again later.
            self.runs.pop(id_)
            waiting = self.waiting_tools
            if len(waiting) >= _MAX_WAITING_TOOLS:
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del waiting[next(iter(waiting))]  # never resumed: the reaper ends it
            waiting[run.call_id] = run
            return True
        if threadline.capture_enabled():
            run.update(result=_tool_output_value(output, result))
        return False

    def _cut_off_waiting_tools(self, workflow: _WorkflowScope) -> None:
        """The workflow ends while tool calls of its agents still wait for an event: they end
        as cancelled, which the end of their agent's run settles (no failure when the app
        stopped the run)."""
        for call_id, run in list(self.waiting_tools.items()):
            owner = run.parent_run
            if owner is workflow.run or (owner is not None and owner.parent_run is workflow.run):
                self.waiting_tools.pop(call_id, None)
                run.cancel(asyncio.CancelledError())

    def drop(
        self, id_: str, err: BaseException | None, bound_args: Any = None, tool: Any = None
    ) -> None:
        if self.scopes:
            self._leave_scope(id_)
        if self.roots:
            self._close_root(id_)
        run = self.runs.get_ending(id_)
        if run is None:
            parent = self.nodes.pop(id_, None)
            if err is not None and isinstance(parent, threadline.ToolRun):
                # The tool itself raised inside an agent's tool step; the step turns the error
                # into an error output, which may not carry the exception.
                if len(self.tool_errors) >= _MAX_KINDS:
                    self.tool_errors.clear()
                self.tool_errors[id(parent)] = err
            return
        run.detach()
        if self.tool_errors:
            self.tool_errors.pop(id(run), None)
        kind = type(err).__name__ if err is not None else None
        failure = None if kind is None or kind in _CONTROL_FLOW or kind == _STOPPED_BY_APP else err
        if (
            failure is not None
            and type(run) is threadline.ToolRun
            and self._retry_with_keywords(id_, run, failure, bound_args, tool)
        ):
            return
        stopped = kind == _STOPPED_BY_APP
        if self.workflows:
            workflow = self.workflows.pop(id_, None)
            if workflow is not None:
                if self.leaks_run_span:
                    self._left_active(id_, workflow.caller)
                if self.waiting_tools:
                    self._cut_off_waiting_tools(workflow)
                workflow.close(failure, stopped)
        if failure is None:
            run.end(stopped_early=stopped)
        else:
            run.end_with_exception(failure)

    # --- propagation ---------------------------------------------------------------------------
    def capture(self) -> dict[str, Any]:
        """The trace position of the current LlamaIndex span, for another task or process."""
        parent = self._parent(active_span_id.get())
        carrier: dict[str, Any] = {}
        threadline.inject(
            carrier, context=parent.context if isinstance(parent, threadline.Run) else parent
        )
        return {_PROPAGATION_KEY: carrier} if carrier else {}

    def restore(self, context: Mapping[str, Any]) -> None:
        carrier = context.get(_PROPAGATION_KEY)
        if isinstance(carrier, Mapping) and carrier:
            _remote_parent.set(threadline.extract(carrier))

    # --- events --------------------------------------------------------------------------------
    # Streams open and end on any thread (a streaming chat response reads its model's stream in
    # a thread of its own): the hooks change under a lock, so one stream's end never takes away
    # the hooks of a stream opened meanwhile. The event handler only reads them.
    def _open_stream(self, span_id: str, run: threadline.InferenceRun) -> None:
        with self._hooks_lock:
            self.streams.add(span_id, run)
            if not self.events:
                self.events.update(self._ending_events)

    def _close_stream(self, span_id: str) -> threadline.InferenceRun | None:
        with self._hooks_lock:
            run = self.streams.pop(span_id)
            if not self.stream_entries:  # no event tells anything now
                self.events.clear()
                self.watched.clear()
            elif self.watched:
                self._drop_watch(span_id)
            return run

    def _watch(self, span_id: str) -> None:
        with self._hooks_lock:
            watched = self.watched
            if watched:  # streams ended without an end event (the reaper's) are watched no more
                watched.intersection_update(self.stream_entries)
            watched.add(span_id)
            self.events.update(self._progress_events)

    def _unwatch(self, span_id: str) -> None:
        with self._hooks_lock:
            self._drop_watch(span_id)

    def _drop_watch(self, span_id: str) -> None:  # holding _hooks_lock
        watched = self.watched
        watched.discard(span_id)
        if not watched:
            for kind in self._progress_events:
                self.events.pop(kind, None)

    def on_progress(self, span_id: str, run: threadline.InferenceRun, event: Any) -> None:
        """A chunk of a watched stream: its time (the first's, or every one's for a meter) and
        the provider's finish reason, which may come before the last chunk (OpenAI's usage
        chunk, Anthropic's message_stop). A stream is watched until it has told both."""
        if span_id not in self.watched:
            return
        if run.needs_every_chunk:
            run.chunk()
        if span_id not in self.stream_finish:
            raw = getattr(event.response, "raw", None)
            if raw is not None:
                reason = _extract.finish_reason_of(raw)
                if reason is None:
                    return
                if len(self.stream_finish) >= _MAX_NODES:
                    self.stream_finish.clear()
                self.stream_finish[span_id] = reason
                run.update(finish_reasons=[reason])
            # A chunk without the provider's response (a mock's or a custom model's): the
            # later ones are taken to have none either (every provider LLM of LlamaIndex sets
            # it on each chunk); the end event's response is read in any case.
        if not run.needs_every_chunk:
            self._unwatch(span_id)

    def on_end(self, span_id: str, run: threadline.InferenceRun, event: Any) -> None:
        """A stream's last event: its response, then the end of its run. (A call that is no
        stream records its response at its span's exit, which returns the same response.)"""
        self._close_stream(span_id)
        try:
            _record_response(run, event.response, self.stream_finish.pop(span_id, None))
        finally:
            run.end()  # even when the response could not be read
            if self.stream_roots:
                self._stream_ended(run, None)
            if self.deferred_runs:
                self.deferred_child_ended(run)

    def on_exception(self, span_id: str, run: threadline.InferenceRun, event: Any) -> None:
        self._close_stream(span_id)
        self.stream_finish.pop(span_id, None)
        error = getattr(event, "exception", None)
        if isinstance(error, asyncio.CancelledError) and _thrown_at_chunk(error):
            # Left unread after a chunk (``break``) and finalized as its event loop shut down
            # (``asyncio.run`` cancels the stream's aclose): closed early, not cut off mid-read.
            error = GeneratorExit()
        if isinstance(error, GeneratorExit):
            run.end()  # the consumer closed the stream early
        elif isinstance(error, BaseException):
            run.end_with_exception(error)
        else:
            run.fail(semconv.ERROR_TYPE_OTHER)
        if self.stream_roots:
            self._stream_ended(run, error if isinstance(error, BaseException) else None)
        if self.deferred_runs:
            self.deferred_child_ended(run)


class SpanHandler(BaseSpanHandler[BaseSpan]):
    """Registered on LlamaIndex's root dispatcher; forwards span enter/exit/drop to the tracker.

    Overrides the public ``span_*`` methods so LlamaIndex's own span bookkeeping (a dict and a
    lock per span) is skipped: the tracker keeps what it needs.
    """

    # A plain instance attribute, not a pydantic PrivateAttr: reading one of those goes through
    # BaseModel.__getattr__ (over a microsecond), and this is read on every span and event.
    _tracker: ClassVar[Tracker]

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        object.__setattr__(self, "_tracker", tracker)

    @classmethod
    def class_name(cls) -> str:
        return "ThreadlineSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._tracker.enter(id_, bound_args, instance, parent_id)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.span_enter", error)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        tracker = self._tracker
        run = tracker._run_entries.get(id_) if tracker.deferred_runs else None
        try:
            tracker.exit(id_, result, instance)
            if run is not None:
                tracker.deferred_child_ended(run)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.span_exit", error)
        if tracker.writers:  # after the exit: a writer's own run (verbose) ends first
            try:
                tracker.writer_ended(instance, None)
            except Exception as error:  # noqa: BLE001 - fail-open
                report("llamaindex.span_exit", error)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        tracker = self._tracker
        run = tracker._run_entries.get(id_) if tracker.deferred_runs else None
        try:
            tracker.drop(id_, err, bound_args, instance)
            if run is not None:
                tracker.deferred_child_ended(run)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.span_drop", error)
        if tracker.writers:
            try:
                tracker.writer_ended(instance, err)
            except Exception as error:  # noqa: BLE001 - fail-open
                report("llamaindex.span_drop", error)

    def capture_propagation_context(self) -> dict[str, Any]:
        try:
            return self._tracker.capture()
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.capture_propagation_context", error)
            return {}

    def restore_propagation_context(self, context: dict[str, Any]) -> None:
        try:
            self._tracker.restore(context)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.restore_propagation_context", error)

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BaseSpan | None:
        return None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> BaseSpan | None:
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> BaseSpan | None:
        return None


class EventHandler(BaseEventHandler):
    """Registered on LlamaIndex's root dispatcher; forwards the LLM events the tracker needs."""

    # A plain instance attribute, not a pydantic PrivateAttr: reading one of those goes through
    # BaseModel.__getattr__ (over a microsecond).
    _tracker: ClassVar[Tracker]

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        object.__setattr__(self, "_tracker", tracker)
        # LlamaIndex calls handle() for every event, each chunk's included. The instance's own
        # function, which holds the tracker, spares it reading ``self._tracker`` through the
        # attribute hook pydantic models have (slower than the rest of what it does).
        object.__setattr__(self, "handle", _event_hook(tracker))

    @classmethod
    def class_name(cls) -> str:
        return "ThreadlineEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:  # the instance's, set above
        _event_hook(self._tracker)(event)


def _event_hook(tracker: Tracker) -> Callable[..., None]:
    """The tracker's handler of every LlamaIndex event."""

    # Both dicts are only ever changed in place. Every hook is about an open stream: while none
    # is open, there are no hooks.
    hooks = tracker.events
    streams = tracker.stream_entries

    def dispatch(event: BaseEvent) -> None:
        try:
            hook = hooks.get(type(event))
            if hook is not None:
                span_id = event.span_id
                if span_id and (run := streams.get(span_id)) is not None:
                    hook(span_id, run, event)
        except Exception as error:  # noqa: BLE001 - fail-open
            report("llamaindex.event", error)

    def handle(event: BaseEvent, **kwargs: Any) -> None:
        # Most events (each chunk's among them) end at this check, which raises for no class.
        if type(event) in hooks:
            dispatch(event)

    return handle
