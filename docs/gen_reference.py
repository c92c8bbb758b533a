"""Writes docs/reference/spans.md from ``threadline.semconv`` (run by ``nox -s docs``; a test
checks the committed page is current)."""

from __future__ import annotations

import sys
from pathlib import Path

from threadline import semconv

PAGE = Path(__file__).parent / "reference" / "spans.md"

SPANS = [
    (
        "inference",
        "`{gen_ai.operation.name} {gen_ai.request.model}` (chat, text_completion, ...)",
        "CLIENT (INTERNAL for in-process models)",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_REQUEST_MODEL,
            semconv.SERVER_ADDRESS,
            semconv.SERVER_PORT,
            semconv.GEN_AI_REQUEST_MAX_TOKENS,
            semconv.GEN_AI_REQUEST_TEMPERATURE,
            semconv.GEN_AI_REQUEST_TOP_P,
            semconv.GEN_AI_REQUEST_TOP_K,
            semconv.GEN_AI_REQUEST_STOP_SEQUENCES,
            semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY,
            semconv.GEN_AI_REQUEST_PRESENCE_PENALTY,
            semconv.GEN_AI_REQUEST_SEED,
            semconv.GEN_AI_REQUEST_CHOICE_COUNT,
            semconv.GEN_AI_OUTPUT_TYPE,
            semconv.GEN_AI_REQUEST_STREAM,
            semconv.GEN_AI_RESPONSE_ID,
            semconv.GEN_AI_RESPONSE_MODEL,
            semconv.GEN_AI_RESPONSE_FINISH_REASONS,
            semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
            semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
            semconv.GEN_AI_CONVERSATION_ID,
            semconv.GEN_AI_INPUT_MESSAGES,
            semconv.GEN_AI_OUTPUT_MESSAGES,
            semconv.GEN_AI_SYSTEM_INSTRUCTIONS,
            semconv.GEN_AI_TOOL_DEFINITIONS,
            semconv.THREADLINE_COST_USD,
            semconv.THREADLINE_CONTENT_TRUNCATED,
            semconv.THREADLINE_RETRY_CAUSE,
        ],
    ),
    (
        "embeddings",
        "`embeddings {gen_ai.request.model}`",
        "CLIENT",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_REQUEST_MODEL,
            semconv.SERVER_ADDRESS,
            semconv.SERVER_PORT,
            semconv.GEN_AI_REQUEST_ENCODING_FORMATS,
            semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
            semconv.GEN_AI_RESPONSE_MODEL,
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
        ],
    ),
    (
        "retrieval",
        "`retrieval {gen_ai.data_source.id}`",
        "CLIENT",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_DATA_SOURCE_ID,
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_REQUEST_MODEL,
            semconv.GEN_AI_REQUEST_TOP_K,
            semconv.GEN_AI_RETRIEVAL_QUERY_TEXT,
            semconv.GEN_AI_RETRIEVAL_DOCUMENTS,
        ],
    ),
    (
        "execute_tool",
        "`execute_tool {gen_ai.tool.name}`",
        "INTERNAL",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_TOOL_NAME,
            semconv.GEN_AI_TOOL_TYPE,
            semconv.GEN_AI_TOOL_CALL_ID,
            semconv.GEN_AI_TOOL_DESCRIPTION,
            semconv.GEN_AI_AGENT_NAME,
            semconv.GEN_AI_CONVERSATION_ID,
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
            semconv.GEN_AI_TOOL_CALL_RESULT,
            semconv.THREADLINE_RETRY_CAUSE,
        ],
    ),
    (
        "invoke_agent",
        "`invoke_agent {gen_ai.agent.name}`",
        "INTERNAL (CLIENT for remote agents)",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_AGENT_NAME,
            semconv.GEN_AI_AGENT_DESCRIPTION,
            semconv.GEN_AI_AGENT_ID,
            semconv.GEN_AI_AGENT_VERSION,
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_REQUEST_MODEL,
            semconv.GEN_AI_CONVERSATION_ID,
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        ],
    ),
    (
        "create_agent",
        "`create_agent {gen_ai.agent.name}`",
        "CLIENT",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_PROVIDER_NAME,
            semconv.GEN_AI_AGENT_NAME,
            semconv.GEN_AI_AGENT_ID,
            semconv.GEN_AI_AGENT_DESCRIPTION,
            semconv.GEN_AI_AGENT_VERSION,
            semconv.GEN_AI_REQUEST_MODEL,
        ],
    ),
    (
        "invoke_workflow",
        "`invoke_workflow {gen_ai.workflow.name}`",
        "INTERNAL",
        [
            semconv.GEN_AI_OPERATION_NAME,
            semconv.GEN_AI_WORKFLOW_NAME,
            semconv.GEN_AI_CONVERSATION_ID,
        ],
    ),
    (
        "mcp",
        "`{mcp.method.name} {gen_ai.tool.name or gen_ai.prompt.name}`",
        "CLIENT / SERVER",
        [
            semconv.MCP_METHOD_NAME,
            semconv.GEN_AI_TOOL_NAME,
            semconv.GEN_AI_PROMPT_NAME,
            semconv.GEN_AI_OPERATION_NAME,
            semconv.MCP_RESOURCE_URI,
            semconv.JSONRPC_REQUEST_ID,
            semconv.MCP_SESSION_ID,
            semconv.MCP_PROTOCOL_VERSION,
            semconv.NETWORK_TRANSPORT,
            semconv.NETWORK_PROTOCOL_NAME,
            semconv.NETWORK_PROTOCOL_VERSION,
            semconv.SERVER_ADDRESS,
            semconv.SERVER_PORT,
            semconv.CLIENT_ADDRESS,
            semconv.CLIENT_PORT,
            semconv.RPC_RESPONSE_STATUS_CODE,
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS,
            semconv.GEN_AI_TOOL_CALL_RESULT,
        ],
    ),
]

ALL_SPANS = [
    semconv.ERROR_TYPE,
    semconv.SESSION_ID,
    semconv.USER_ID,
    semconv.THREADLINE_ABANDONED,
    semconv.THREADLINE_ABANDON_REASON,
]

METRICS = [
    (
        semconv.METRIC_CLIENT_OPERATION_DURATION,
        "histogram",
        "s",
        semconv.DURATION_BUCKETS,
        "inference, embeddings, retrieval, create_agent",
    ),
    (
        semconv.METRIC_CLIENT_TOKEN_USAGE,
        "histogram",
        "{token}",
        semconv.TOKEN_BUCKETS,
        "inference and embeddings, per `gen_ai.token.type`",
    ),
    (
        semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK,
        "histogram",
        "s",
        semconv.DURATION_BUCKETS,
        "streamed inference",
    ),
    (
        semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK,
        "histogram",
        "s",
        semconv.DURATION_BUCKETS,
        "streamed inference, each chunk after the first",
    ),
    (
        semconv.METRIC_INVOKE_AGENT_DURATION,
        "histogram",
        "s",
        semconv.AGENT_DURATION_BUCKETS,
        "invoke_agent",
    ),
    (
        semconv.METRIC_EXECUTE_TOOL_DURATION,
        "histogram",
        "s",
        semconv.DURATION_BUCKETS,
        "execute_tool",
    ),
    (
        semconv.METRIC_WORKFLOW_DURATION,
        "histogram",
        "s",
        semconv.WORKFLOW_DURATION_BUCKETS,
        "invoke_workflow",
    ),
    (
        semconv.METRIC_MCP_CLIENT_OPERATION_DURATION,
        "histogram",
        "s",
        semconv.MCP_DURATION_BUCKETS,
        "MCP client requests",
    ),
    (
        semconv.METRIC_MCP_SERVER_OPERATION_DURATION,
        "histogram",
        "s",
        semconv.MCP_DURATION_BUCKETS,
        "MCP server requests",
    ),
    (
        semconv.METRIC_MCP_CLIENT_SESSION_DURATION,
        "histogram",
        "s",
        semconv.MCP_DURATION_BUCKETS,
        "MCP client sessions",
    ),
    (
        semconv.METRIC_MCP_SERVER_SESSION_DURATION,
        "histogram",
        "s",
        semconv.MCP_DURATION_BUCKETS,
        "MCP server sessions",
    ),
    (
        semconv.METRIC_THREADLINE_COST,
        "counter",
        "USD",
        (),
        "threadline's own: estimated cost of inference calls",
    ),
]


def render() -> str:
    lines = [
        "# Span reference",
        "",
        "Generated from `threadline.semconv` by `docs/gen_reference.py`; do not edit by hand.",
        f"Pinned to `{semconv.SEMCONV_GENAI_REPOSITORY}` at `{semconv.SEMCONV_GENAI_REF}`.",
        "Names starting with `threadline.` are threadline's own, not the specification's.",
        "",
        "## Spans",
        "",
    ]
    for kind, name, span_kind, attributes in SPANS:
        lines += [f"### {kind}", "", f"Name {name}, kind {span_kind}.", ""]
        lines += [f"- `{attribute}`" for attribute in attributes]
        lines.append("")
    lines += ["### On every span", ""]
    lines += [f"- `{attribute}`" for attribute in ALL_SPANS]
    lines += [
        "",
        "`error.type` is set exactly when the status is ERROR; status OK is never set.",
        "",
        "## Metrics",
        "",
        "| Metric | Instrument | Unit | Bucket boundaries | Recorded for |",
        "|---|---|---|---|---|",
    ]
    for metric, instrument, unit, buckets, used in METRICS:
        bounds = ", ".join(f"{b:g}" for b in buckets) or "—"
        lines.append(f"| `{metric}` | {instrument} | `{unit}` | {bounds} | {used} |")
    lines += [
        "",
        "## Events",
        "",
        f"- `{semconv.EVENT_INFERENCE_DETAILS}` (severity DEBUG): the inference span's attributes "
        "with content in structured form; only when content capture includes events.",
        f"- `{semconv.EVENT_OPERATION_EXCEPTION}` (severity WARN): a failed GenAI client "
        "operation (a CLIENT inference, embeddings, retrieval or remote agent span) that raised: "
        "`exception.type`, `exception.message`, `exception.stacktrace` (its last 8 KiB), in the "
        "failed span's context. Always on, like the status description on that span.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
