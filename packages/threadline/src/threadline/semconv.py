"""Every name threadline emits: span, attribute, metric and event names, and metric buckets.

Pinned to open-telemetry/semantic-conventions-genai at commit
``94f432d7126f5884d30a2cdde6f4e89908ebb6fd`` (the commit opentelemetry-python-genai generates its
constants from). The JSON schemas shipped in ``threadline/testing/schemas`` are copies of the
same repository's ``model/gen-ai/*.json`` (commits listed in that folder's README). Nothing here
imports ``opentelemetry.semconv._incubating``: those GenAI names are deprecated there and frozen
before the move to the GenAI repository.

Names in the ``threadline.*`` namespace are ours, not the specification's.
"""

from __future__ import annotations

from typing import Final

SEMCONV_GENAI_REPOSITORY: Final = "open-telemetry/semantic-conventions-genai"
SEMCONV_GENAI_REF: Final = "94f432d7126f5884d30a2cdde6f4e89908ebb6fd"
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"

# --- gen_ai.operation.name values -------------------------------------------------------------
OP_CHAT: Final = "chat"
OP_GENERATE_CONTENT: Final = "generate_content"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"
OP_RETRIEVAL: Final = "retrieval"
OP_CREATE_AGENT: Final = "create_agent"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_PLAN: Final = "plan"

INFERENCE_OPERATIONS: Final = frozenset({OP_CHAT, OP_GENERATE_CONTENT, OP_TEXT_COMPLETION})
OPERATION_NAMES: Final = frozenset(
    {
        *INFERENCE_OPERATIONS,
        OP_EMBEDDINGS,
        OP_RETRIEVAL,
        OP_CREATE_AGENT,
        OP_INVOKE_AGENT,
        OP_EXECUTE_TOOL,
        OP_INVOKE_WORKFLOW,
        OP_PLAN,
        "fetch_response",
        "search_memory",
        "create_memory",
        "update_memory",
        "upsert_memory",
        "delete_memory",
        "create_memory_store",
        "delete_memory_store",
    }
)

# --- gen_ai.* attributes ----------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_RETRIEVAL_DOCUMENTS: Final = "gen_ai.retrieval.documents"
GEN_AI_RETRIEVAL_QUERY_TEXT: Final = "gen_ai.retrieval.query.text"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"
# A template variable: ``gen_ai.prompt.variable.<name>`` (MCP prompts/get arguments).
GEN_AI_PROMPT_VARIABLE_PREFIX: Final = "gen_ai.prompt.variable."
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"

# Content attributes whose string values are JSON validated against the shipped schemas.
CONTENT_SCHEMAS: Final = {
    GEN_AI_INPUT_MESSAGES: "gen-ai-input-messages.json",
    GEN_AI_OUTPUT_MESSAGES: "gen-ai-output-messages.json",
    GEN_AI_SYSTEM_INSTRUCTIONS: "gen-ai-system-instructions.json",
    GEN_AI_TOOL_DEFINITIONS: "gen-ai-tool-definitions.json",
    GEN_AI_RETRIEVAL_DOCUMENTS: "gen-ai-retrieval-documents.json",
}

TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

TOOL_TYPE_FUNCTION: Final = "function"
TOOL_TYPE_EXTENSION: Final = "extension"
TOOL_TYPE_DATASTORE: Final = "datastore"

# --- core (stable) attributes -----------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"
# error.type of a tool that reported its failure in its result instead of raising (an MCP
# result with isError, a LangChain ToolMessage with status "error", a LlamaIndex error output).
ERROR_TYPE_TOOL_ERROR: Final = "tool_error"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"
NETWORK_TRANSPORT: Final = "network.transport"
NETWORK_PROTOCOL_NAME: Final = "network.protocol.name"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"

# --- MCP (model/mcp) --------------------------------------------------------------------------
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_SESSION_ID: Final = "mcp.session.id"
MCP_RESOURCE_URI: Final = "mcp.resource.uri"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
JSONRPC_REQUEST_ID: Final = "jsonrpc.request.id"
JSONRPC_PROTOCOL_VERSION: Final = "jsonrpc.protocol.version"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
MCP_ERROR_TYPE_TOOL_ERROR: Final = ERROR_TYPE_TOOL_ERROR
MCP_METHOD_NAMES: Final = frozenset(
    {
        "initialize",
        "notifications/initialized",
        "ping",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/message",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "notifications/resources/list_changed",
        "notifications/resources/updated",
        "prompts/list",
        "prompts/get",
        "notifications/prompts/list_changed",
        "tools/list",
        "tools/call",
        "notifications/tools/list_changed",
        "logging/setLevel",
        "sampling/createMessage",
        "completion/complete",
        "roots/list",
        "notifications/roots/list_changed",
        "elicitation/create",
        "server/discover",
        "subscriptions/listen",
        "notifications/subscriptions/acknowledged",
    }
)
# Server side: these JSON-RPC codes describe the client's request, not a server failure.
MCP_SERVER_NON_ERROR_CODES: Final = frozenset({-32700, -32600, -32601, -32602, -32002})
# Methods of the MCP protocol (2025-11-25) that the registry above does not list yet.
MCP_PROTOCOL_METHODS_UNLISTED: Final = frozenset(
    {
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
        "notifications/tasks/status",
        "notifications/elicitation/complete",
    }
)
MCP_KNOWN_METHODS: Final = MCP_METHOD_NAMES | MCP_PROTOCOL_METHODS_UNLISTED
# What a server records for a method name outside these (the peer chose it): HTTP's
# convention for request methods it does not know.
MCP_METHOD_OTHER: Final = "_OTHER"

# --- threadline's own attributes (not in the specification) ----------------------------------
THREADLINE_ABANDONED: Final = "threadline.abandoned"
THREADLINE_ABANDON_REASON: Final = "threadline.abandon_reason"
THREADLINE_COST_USD: Final = "threadline.cost.usd"
THREADLINE_RUN_TYPE: Final = "threadline.run.type"
THREADLINE_CONTENT_TRUNCATED: Final = "threadline.content.truncated"
# A retry the framework asked the model for (not a failure): on the tool span that raised it, or
# on the inference span whose request answers a rejected output.
THREADLINE_RETRY_CAUSE: Final = "threadline.retry.cause"
RETRY_CAUSE_MODEL_RETRY: Final = "model_retry"
RETRY_CAUSE_OUTPUT_VALIDATION: Final = "output_validation"
# A model's response the app rejected and asked again for (billed all the same).
RETRY_CAUSE_RESPONSE_REJECTED: Final = "response_rejected"

# --- events -----------------------------------------------------------------------------------
EVENT_INFERENCE_DETAILS: Final = "gen_ai.client.inference.operation.details"
EVENT_OPERATION_EXCEPTION: Final = "gen_ai.client.operation.exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# --- metrics ----------------------------------------------------------------------------------
METRIC_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_CLIENT_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
METRIC_INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"
METRIC_EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
METRIC_WORKFLOW_DURATION: Final = "gen_ai.workflow.duration"
METRIC_MCP_CLIENT_OPERATION_DURATION: Final = "mcp.client.operation.duration"
METRIC_MCP_SERVER_OPERATION_DURATION: Final = "mcp.server.operation.duration"
METRIC_MCP_CLIENT_SESSION_DURATION: Final = "mcp.client.session.duration"
METRIC_MCP_SERVER_SESSION_DURATION: Final = "mcp.server.session.duration"
METRIC_THREADLINE_COST: Final = "threadline.client.cost"

DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
AGENT_DURATION_BUCKETS: Final = (
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6,
)  # fmt: skip
WORKFLOW_DURATION_BUCKETS: Final = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
MCP_DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
COST_BUCKETS: Final = (0.00001, 0.0001, 0.001, 0.01, 0.1, 1, 10, 100)

# --- session baggage keys -----------------------------------------------------------------------
# Baggage keys written by ``threadline.session``; the same names are used as span attributes.
BAGGAGE_SESSION_ID: Final = SESSION_ID
BAGGAGE_USER_ID: Final = USER_ID
BAGGAGE_CONVERSATION_ID: Final = GEN_AI_CONVERSATION_ID
SESSION_BAGGAGE_KEYS: Final = (BAGGAGE_SESSION_ID, BAGGAGE_USER_ID, BAGGAGE_CONVERSATION_ID)
