"""threadline: one OpenTelemetry GenAI span model for LangChain/LangGraph, LlamaIndex, Pydantic AI
and MCP, so one request through any mix of them is one trace.

This package owns every OpenTelemetry call; the integrations (``threadline.langchain``,
``threadline.llamaindex``, ``threadline.pydantic_ai``, ``threadline.mcp``) translate framework
events into the run API below.
"""

# Integrations are separate distributions installed into this namespace.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from typing import TYPE_CHECKING, Any

from threadline._deferred import lazy_exports

if TYPE_CHECKING:
    from threadline import config, content, cost, propagation, providers, semconv, sessions
    from threadline._context import attach as attach_context
    from threadline._context import detach as detach_context
    from threadline._factories import (
        create_agent,
        embeddings,
        execute_tool,
        inference,
        invoke_agent,
        invoke_workflow,
        mcp_request,
        retrieval,
        step,
    )
    from threadline._failopen import guarded
    from threadline._registry import RunRegistry, open_runs
    from threadline._runs import (
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
        current_run,
        error_type,
        links_to,
        record_mcp_operation,
        record_mcp_session,
    )
    from threadline.config import ContentCapture, Settings, configure
    from threadline.content import capture_enabled
    from threadline.propagation import continue_trace, extract, inject
    from threadline.sessions import current_session, session

__all__ = [
    "AgentRun",
    "ContentCapture",
    "EmbeddingsRun",
    "InferenceRun",
    "McpRun",
    "RequestParams",
    "RetrievalRun",
    "Run",
    "RunRegistry",
    "SessionSpanProcessor",
    "Settings",
    "StepRun",
    "ToolRun",
    "Usage",
    "WorkflowRun",
    "attach_context",
    "capture_enabled",
    "config",
    "configure",
    "content",
    "continue_trace",
    "cost",
    "create_agent",
    "current_run",
    "current_session",
    "detach_context",
    "embeddings",
    "error_type",
    "execute_tool",
    "extract",
    "guarded",
    "inference",
    "inject",
    "invoke_agent",
    "invoke_workflow",
    "links_to",
    "mcp_request",
    "open_runs",
    "propagation",
    "providers",
    "record_mcp_operation",
    "record_mcp_session",
    "retrieval",
    "semconv",
    "session",
    "sessions",
    "step",
]


_EXPORTS = {
    # the public submodules, so `import threadline` alone reaches `threadline.config.current()`
    **{name: f"threadline.{name}" for name in ("config", "content", "cost", "propagation")},
    **{name: f"threadline.{name}" for name in ("providers", "semconv", "sessions")},
    "attach_context": "threadline._context:attach",
    "detach_context": "threadline._context:detach",
    **dict.fromkeys(
        (
            "create_agent",
            "embeddings",
            "execute_tool",
            "inference",
            "invoke_agent",
            "invoke_workflow",
            "mcp_request",
            "retrieval",
            "step",
        ),
        "threadline._factories",
    ),
    "guarded": "threadline._failopen",
    "RunRegistry": "threadline._registry",
    "open_runs": "threadline._registry",
    **dict.fromkeys(
        (
            "AgentRun",
            "EmbeddingsRun",
            "InferenceRun",
            "McpRun",
            "RequestParams",
            "RetrievalRun",
            "Run",
            "StepRun",
            "ToolRun",
            "Usage",
            "WorkflowRun",
            "current_run",
            "error_type",
            "links_to",
            "record_mcp_operation",
            "record_mcp_session",
        ),
        "threadline._runs",
    ),
    "ContentCapture": "threadline.config",
    "Settings": "threadline.config",
    "configure": "threadline.config",
    "capture_enabled": "threadline.content",
    "continue_trace": "threadline.propagation",
    "extract": "threadline.propagation",
    "inject": "threadline.propagation",
    "current_session": "threadline.sessions",
    "session": "threadline.sessions",
}

# Names load on first use: an integration's entry point, which `opentelemetry-instrument` loads
# in every process whether or not it uses the framework, imports only the little it needs.
_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    # The span processor needs the SDK, which a library user may not have installed.
    if name == "SessionSpanProcessor":
        from threadline.sessions import _make_processor

        processor = _make_processor()
        globals()[name] = processor
        return processor
    return _lazy_getattr(name)
