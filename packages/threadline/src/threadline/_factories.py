"""Functions that start runs: one per GenAI operation.

Each returns a run handle that is also a context manager (``with threadline.execute_tool(...)``
makes the span current and ends it, recording an exception without swallowing it). Starting is
fail-open: if threadline itself fails, a run that records nothing is returned instead.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from threadline import config, semconv
from threadline._failopen import report
from threadline._runs import (
    _CLIENT,
    _INTERNAL,
    _RUN_KEY,
    AgentRun,
    EmbeddingsRun,
    InferenceRun,
    McpRun,
    RequestParams,
    RetrievalRun,
    Run,
    StepRun,
    ToolRun,
    Usage,
    WorkflowRun,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Link
    from opentelemetry.util.types import AttributeValue

    from threadline.content import InputMessage, Part, ToolDefinition

_R = TypeVar("_R", bound=Run)


def _inert(cls: type[_R], parent: Run | Context | None) -> _R:
    """A run that records nothing, returned when starting a real one failed or when its call
    is recorded by the run it is inside. As a parent it passes on its surroundings: runs
    started beneath it join the trace, session and agent it is in."""
    run = object.__new__(cls)
    for klass in cls.__mro__:  # every field a run beneath it, or the caller, may read
        for field in getattr(klass, "__slots__", ()):
            if not hasattr(run, field):
                setattr(run, field, None)
    run._ended = True
    run._detach_pending = False
    run._failed_as = None
    if isinstance(parent, Run):
        context = parent.context
    else:
        context = otel_context.get_current() if parent is None else parent
    run._ctx = run._parent_ctx = context
    run._end_callbacks = None
    run._cancelled = None
    run._waiting = None
    run._stopped_early = False
    run._ended_at = None
    enclosing = _enclosing_run(parent)
    run.parent_run = enclosing if isinstance(enclosing, Run) else None
    run.start_monotonic = 0.0
    run.span = trace.INVALID_SPAN
    run.kind = SpanKind.INTERNAL
    if isinstance(run, (InferenceRun, EmbeddingsRun, AgentRun)):
        run.usage = Usage()
    if isinstance(run, AgentRun):  # what a model call beneath it adds its usage to
        run._models = set()
        run._usage_lock = threading.Lock()
    if isinstance(run, InferenceRun):  # what a per-token hook reads
        run.needs_every_chunk = False
        run._chunks = 0
    return run


def _enclosing_run(parent: Run | Context | None) -> object:
    """The run a new run's span would be a child of (a context's run entry as it is)."""
    if isinstance(parent, Run):
        return parent
    return (otel_context.get_current() if parent is None else parent).get(_RUN_KEY)


def _inside_a_model_call(parent: Run | Context | None) -> bool:
    """Whether this model call's span would be a child of a model call's where provider spans
    are suppressed (``suppress_provider_spans``, the default): a framework's model adapter over
    another framework's model (a LangChain chat model whose ``_generate`` calls a LlamaIndex
    LLM) is one call, and the outer run records it, with what the adapter reports, as it does
    for a provider SDK's call. Two spans would count its tokens (and cost) twice."""
    outer = _enclosing_run(parent)
    return (
        isinstance(outer, InferenceRun)
        and not outer.ended
        and config._settings.suppress_provider_spans
    )


def inference(
    model: str | None,
    *,
    provider: str,
    operation: str = semconv.OP_CHAT,
    parent: Run | Context | None = None,
    request: RequestParams | None = None,
    stream: bool = False,
    server_address: str | None = None,
    server_port: int | None = None,
    conversation_id: str | None = None,
    input_messages: Sequence[InputMessage] | None = None,
    system_instructions: Sequence[Part] | None = None,
    tool_definitions: Sequence[ToolDefinition] | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    in_process: bool = False,
    start_time: int | None = None,
) -> InferenceRun:
    """Start a ``chat``/``text_completion``/``generate_content`` span (``{operation} {model}``,
    CLIENT; INTERNAL when ``in_process`` because the model runs locally)."""
    if operation not in semconv.INFERENCE_OPERATIONS:
        raise ValueError(
            f"operation must be one of {sorted(semconv.INFERENCE_OPERATIONS)}, got {operation!r}"
        )
    try:
        if _inside_a_model_call(parent):
            return _inert(InferenceRun, parent)
        return InferenceRun(
            operation,
            model,
            provider,
            parent,
            request=request,
            stream=stream,
            server_address=server_address,
            server_port=server_port,
            conversation_id=conversation_id,
            input_messages=input_messages,
            system_instructions=system_instructions,
            tool_definitions=tool_definitions,
            attributes=attributes,
            kind=_INTERNAL if in_process else _CLIENT,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.inference", error)
        return _inert(InferenceRun, parent)


def embeddings(
    model: str | None,
    *,
    provider: str,
    parent: Run | Context | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
    encoding_formats: Sequence[str] | None = None,
    dimension_count: int | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> EmbeddingsRun:
    """Start an ``embeddings {model}`` CLIENT span."""
    try:
        return EmbeddingsRun(
            model,
            provider,
            parent,
            server_address=server_address,
            server_port=server_port,
            encoding_formats=encoding_formats,
            dimension_count=dimension_count,
            attributes=attributes,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.embeddings", error)
        return _inert(EmbeddingsRun, parent)


def retrieval(
    data_source_id: str | None = None,
    *,
    parent: Run | Context | None = None,
    provider: str | None = None,
    model: str | None = None,
    query: str | None = None,
    top_k: float | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> RetrievalRun:
    """Start a ``retrieval {data source}`` CLIENT span. ``query`` is content (opt-in)."""
    try:
        return RetrievalRun(
            data_source_id,
            parent,
            provider=provider,
            model=model,
            query=query,
            top_k=top_k,
            server_address=server_address,
            server_port=server_port,
            attributes=attributes,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.retrieval", error)
        return _inert(RetrievalRun, parent)


def _inside_same_tool(parent: Run | Context | None, name: str) -> bool:
    """Whether the run this tool call's span would be a child of is a call of the same tool:
    one framework's tool adapting another's (Pydantic AI's ``tool_from_langchain``) is one
    call, recorded by the outer run."""
    enclosing = _enclosing_run(parent)
    return isinstance(enclosing, ToolRun) and not enclosing.ended and enclosing.name == name


def execute_tool(
    name: str,
    *,
    parent: Run | Context | None = None,
    call_id: str | None = None,
    description: str | None = None,
    tool_type: str | None = semconv.TOOL_TYPE_FUNCTION,
    arguments: Any = None,
    agent_name: str | None = None,
    conversation_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> ToolRun:
    """Start an ``execute_tool {name}`` INTERNAL span. ``arguments`` (and the result given to
    ``update``) are content: recorded only when capture is on."""
    try:
        if _inside_same_tool(parent, name):
            return _inert(ToolRun, parent)
        return ToolRun(
            name,
            parent,
            call_id=call_id,
            description=description,
            tool_type=tool_type,
            arguments=arguments,
            agent_name=agent_name,
            conversation_id=conversation_id,
            attributes=attributes,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.execute_tool", error)
        return _inert(ToolRun, parent)


def invoke_agent(
    name: str | None = None,
    *,
    parent: Run | Context | None = None,
    agent_id: str | None = None,
    description: str | None = None,
    version: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    conversation_id: str | None = None,
    remote: bool = False,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> AgentRun:
    """Start an ``invoke_agent {name}`` span: INTERNAL for an agent running in this process,
    CLIENT (``remote=True``, with ``provider``) for a hosted one."""
    if remote and not provider:
        raise ValueError("a remote agent needs its provider")
    return _agent(semconv.OP_INVOKE_AGENT, name, parent, locals())


def create_agent(
    name: str,
    *,
    provider: str,
    parent: Run | Context | None = None,
    agent_id: str | None = None,
    description: str | None = None,
    version: str | None = None,
    model: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> AgentRun:
    """Start a ``create_agent {name}`` CLIENT span."""
    return _agent(semconv.OP_CREATE_AGENT, name, parent, locals())


def _agent(
    operation: str, name: str | None, parent: Run | Context | None, args: dict[str, Any]
) -> AgentRun:
    try:
        return AgentRun(
            operation,
            name,
            parent,
            agent_id=args.get("agent_id"),
            description=args.get("description"),
            version=args.get("version"),
            provider=args.get("provider"),
            model=args.get("model"),
            conversation_id=args.get("conversation_id"),
            remote=bool(args.get("remote")),
            attributes=args.get("attributes"),
            start_time=args.get("start_time"),
        )
    except Exception as error:  # noqa: BLE001
        report(f"threadline.{operation}", error)
        return _inert(AgentRun, parent)


def invoke_workflow(
    name: str | None = None,
    *,
    parent: Run | Context | None = None,
    conversation_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> WorkflowRun:
    """Start an ``invoke_workflow {name}`` INTERNAL span (a chain, graph or engine that is not
    an agent)."""
    try:
        return WorkflowRun(
            name,
            parent,
            conversation_id=conversation_id,
            attributes=attributes,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.invoke_workflow", error)
        return _inert(WorkflowRun, parent)


def step(
    name: str,
    *,
    parent: Run | Context | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> StepRun:
    """Start a plain INTERNAL span for a framework step (verbose modes only)."""
    try:
        return StepRun(name, parent, attributes=attributes, start_time=start_time)
    except Exception as error:  # noqa: BLE001
        report("threadline.step", error)
        return _inert(StepRun, parent)


def mcp_request(
    method: str,
    *,
    server: bool,
    parent: Run | Context | None = None,
    tool_name: str | None = None,
    prompt_name: str | None = None,
    resource_uri: str | None = None,
    request_id: str | int | None = None,
    session_id: str | None = None,
    protocol_version: str | None = None,
    transport: str | None = None,
    network_protocol: tuple[str, str | None] | None = None,
    peer_address: str | None = None,
    peer_port: int | None = None,
    links: Sequence[Link] | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> McpRun:
    """Start an MCP ``{method} {target}`` span: SERVER when handling a peer's request, CLIENT
    when sending one. ``transport`` is ``pipe`` for stdio, ``tcp`` for HTTP."""
    try:
        return McpRun(
            method,
            parent,
            server=server,
            tool_name=tool_name,
            prompt_name=prompt_name,
            resource_uri=resource_uri,
            request_id=request_id,
            session_id=session_id,
            protocol_version=protocol_version,
            transport=transport,
            network_protocol=network_protocol,
            peer_address=peer_address,
            peer_port=peer_port,
            links=links,
            attributes=attributes,
            start_time=start_time,
        )
    except Exception as error:  # noqa: BLE001
        report("threadline.mcp_request", error)
        return _inert(McpRun, parent)
