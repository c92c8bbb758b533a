"""Translation of LangChain objects (invocation params, messages, results) into threadline terms.

Everything that builds content (messages, tool definitions, documents) is only called when
content capture is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadline import RequestParams, Usage
from threadline.content import (
    BlobPart,
    FunctionToolDefinition,
    GenericPart,
    GenericToolDefinition,
    InputMessage,
    OutputMessage,
    Part,
    ReasoningPart,
    RetrievalDocument,
    TextPart,
    ToolCallRequestPart,
    ToolCallResponsePart,
    ToolDefinition,
    media_part,
)
from threadline.providers import first_text_field, server_address, usage_from_provider
from threadline.providers import int_value as _int
from threadline.providers import number_value as _number
from threadline.providers import provider_name as _normalize_provider

# LangChain's ``ls_provider`` values that differ from core's common aliases:
# langchain-google-genai talks to the Gemini API.
_PROVIDER_OVERRIDES: dict[str, str] = {"google_genai": "gcp.gemini"}

# Model-name keys of invocation params, most specific first.
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "azure_deployment")


def provider_name(
    metadata: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any],
    serialized: Mapping[str, Any] | None,
) -> str:
    raw = metadata.get("ls_provider") if metadata else None
    if not isinstance(raw, str) or not raw:
        raw = invocation_params.get("_type")
    if isinstance(raw, str) and raw:
        return _normalize_provider(raw, _PROVIDER_OVERRIDES)
    class_name = _class_name(serialized)
    return class_name.lower() if class_name else "langchain"


def model_name(
    metadata: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any],
    serialized: Mapping[str, Any] | None,
    run_name: Any,
) -> str | None:
    for key in _MODEL_KEYS:
        value = invocation_params.get(key)
        if isinstance(value, str) and value:
            return value
    if metadata:
        value = metadata.get("ls_model_name")
        if isinstance(value, str) and value:
            return value
    if isinstance(run_name, str) and run_name:
        return run_name
    return _class_name(serialized)


# Where a model class sends its requests when no base URL is configured.
_DEFAULT_HOSTS = {"ChatOpenAI": "api.openai.com", "ChatAnthropic": "api.anthropic.com"}
_BASE_URL_KEYS = (
    "openai_api_base",
    "base_url",
    "azure_endpoint",
    "anthropic_api_url",
    "api_base",
    "endpoint_url",
)


def server(serialized: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` from the model's configured base URL (or its class's
    default host)."""
    if not serialized:
        return None, None
    kwargs = serialized.get("kwargs")
    if isinstance(kwargs, Mapping):
        for key in _BASE_URL_KEYS:
            url = kwargs.get(key)
            if isinstance(url, str) and url:
                return server_address(url)
    host = _DEFAULT_HOSTS.get(_class_name(serialized) or "")
    return (host, 443) if host else (None, None)


# Embedding classes keep their configuration as fields, not in callbacks' serialized kwargs.
_EMBEDDINGS_MODEL_FIELDS = ("model", "model_name", "model_id", "deployment", "azure_deployment")
_EMBEDDINGS_PROVIDER_OVERRIDES: dict[str, str] = {
    **_PROVIDER_OVERRIDES,
    "aws": "aws.bedrock",
    "core": "langchain",  # langchain_core's fakes run in this process
}
_EMBEDDINGS_DEFAULT_HOSTS = {"OpenAIEmbeddings": "api.openai.com"}


class EmbeddingsModel:
    """What an embedding model object says about itself: model, provider, endpoint."""

    __slots__ = ("model", "provider", "server_address", "server_port")

    def __init__(self, embedder: Any) -> None:
        cls = type(embedder)
        self.model = first_text_field(embedder, _EMBEDDINGS_MODEL_FIELDS)
        self.provider = _embeddings_provider(cls)
        url = first_text_field(embedder, _BASE_URL_KEYS)
        if url:
            self.server_address, self.server_port = server_address(url)
        else:
            host = _EMBEDDINGS_DEFAULT_HOSTS.get(cls.__name__)
            self.server_address, self.server_port = (host, 443) if host else (None, None)


def _embeddings_provider(cls: type) -> str:
    """From the partner package (``langchain_openai`` -> openai), else the class name
    (``langchain_community``'s ``OllamaEmbeddings`` -> ollama)."""
    if cls.__name__.startswith("Azure"):
        return "azure.ai.openai"
    package = cls.__module__.partition(".")[0]
    key = package.removeprefix("langchain_")
    if key == package or key == "community":
        key = cls.__name__.removesuffix("Embeddings") or cls.__name__
    return _normalize_provider(key, _EMBEDDINGS_PROVIDER_OVERRIDES)


def _class_name(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    ident = serialized.get("id")
    if isinstance(ident, list) and ident and isinstance(ident[-1], str):
        return ident[-1]
    name = serialized.get("name")
    return name if isinstance(name, str) else None


def _stop(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value] if value else None
    return list(value) if isinstance(value, (list, tuple)) and value else None


# Invocation-param keys of sampling parameters -> (RequestParams field, conversion), in order of
# precedence: the first key present with a usable value sets its field.
_PARAMS: tuple[tuple[str, str, Any], ...] = (
    ("temperature", "temperature", _number),
    ("max_tokens", "max_tokens", _int),
    ("max_completion_tokens", "max_tokens", _int),
    ("max_output_tokens", "max_tokens", _int),
    ("max_tokens_to_sample", "max_tokens", _int),
    ("top_p", "top_p", _number),
    ("top_k", "top_k", _int),
    ("stop", "stop_sequences", _stop),
    ("stop_sequences", "stop_sequences", _stop),
    ("frequency_penalty", "frequency_penalty", _number),
    ("presence_penalty", "presence_penalty", _number),
    ("seed", "seed", _int),
    ("n", "choice_count", _int),
)
_PARAM_KEYS = frozenset(key for key, _, _ in _PARAMS)
# LangSmith's metadata copies, used when the invocation params lack the value.
_METADATA_PARAMS: tuple[tuple[str, str, Any], ...] = (
    ("ls_temperature", "temperature", _number),
    ("ls_max_tokens", "max_tokens", _int),
    ("ls_stop", "stop_sequences", _stop),
)
_METADATA_PARAM_KEYS = frozenset(key for key, _, _ in _METADATA_PARAMS)


def request_params(
    invocation_params: Mapping[str, Any], metadata: Mapping[str, Any] | None
) -> RequestParams | None:
    found: dict[str, Any] = {}
    _collect(invocation_params, _PARAMS, _PARAM_KEYS, found)
    if metadata:
        _collect(metadata, _METADATA_PARAMS, _METADATA_PARAM_KEYS, found)
    return RequestParams(**found) if found else None


def _collect(
    source: Mapping[str, Any],
    table: tuple[tuple[str, str, Any], ...],
    keys: frozenset[str],
    found: dict[str, Any],
) -> None:
    """Fields of ``table`` that ``source`` has a usable value for and ``found`` lacks."""
    present = source.keys() & keys  # usually a few keys, often none
    if present:
        for key, name, convert in table:
            if key in present and name not in found:
                value = convert(source[key])
                if value is not None:
                    found[name] = value


def usage_from_metadata(usage: Mapping[str, Any]) -> Usage:
    """``UsageMetadata`` (``AIMessage.usage_metadata``) -> Usage."""
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_input_tokens=_int(inputs.get("cache_read")),
        cache_write_input_tokens=_int(inputs.get("cache_creation")),
        reasoning_output_tokens=_int(outputs.get("reasoning")),
    )


def usage_from_token_usage(usage: Any) -> Usage | None:
    """A raw provider usage dict from ``llm_output`` (OpenAI, Anthropic, ... shapes) -> Usage."""
    return usage_from_provider(usage) if isinstance(usage, Mapping) else None


_LANGCHAIN_IDS = ("run-", "lc_run-")


class ResponseFacts:
    __slots__ = ("finish_reasons", "response_id", "response_model", "usage")

    def __init__(self) -> None:
        self.finish_reasons: list[str | None] = []  # one per generation, by position
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.usage: Usage | None = None


def response_facts(response: Any) -> ResponseFacts:
    """Finish reasons, ids, model and usage of an ``LLMResult`` for one run."""
    facts = ResponseFacts()
    generations = getattr(response, "generations", None) or ()
    llm_output = getattr(response, "llm_output", None) or {}
    for generation in generations[0] if generations else ():
        info = getattr(generation, "generation_info", None) or {}
        message = getattr(generation, "message", None)
        meta: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        reason = (
            info.get("finish_reason")
            or meta.get("finish_reason")
            or meta.get("stop_reason")
            or info.get("stop_reason")
        )
        facts.finish_reasons.append(reason if isinstance(reason, str) and reason else None)
        if facts.usage is None and message is not None:
            usage = getattr(message, "usage_metadata", None)
            if usage:
                facts.usage = usage_from_metadata(usage)
        if facts.response_model is None:
            model = meta.get("model_name") or info.get("model_name") or meta.get("model")
            if isinstance(model, str) and model:
                facts.response_model = model
        if facts.response_id is None:
            ident = meta.get("id")
            if not isinstance(ident, str) and message is not None:
                ident = getattr(message, "id", None)
            if isinstance(ident, str) and ident and not ident.startswith(_LANGCHAIN_IDS):
                facts.response_id = ident
    if isinstance(llm_output, (dict, Mapping)):  # dict first: an ABC check is slower
        model = llm_output.get("model_name") or llm_output.get("model")
        if isinstance(model, str) and model:
            facts.response_model = model
        ident = llm_output.get("id")
        if isinstance(ident, str) and ident:
            facts.response_id = ident
        if facts.usage is None:
            facts.usage = usage_from_token_usage(
                llm_output.get("token_usage") or llm_output.get("usage")
            )
    return facts


# --- content (capture on only) ------------------------------------------------------------------

_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "complete": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "tool_calls": "tool_call",
    "tool_call": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "error": "error",
}

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
# A chunk's type is its class name (a history often holds the sum of a streamed answer).
_CHUNK_TYPES = {
    "AIMessageChunk": "ai",
    "HumanMessageChunk": "human",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "ChatMessageChunk": "chat",
    "FunctionMessageChunk": "function",
}


def _role(message: Any) -> str:
    kind = getattr(message, "type", None)
    kind = _CHUNK_TYPES.get(kind, kind) if isinstance(kind, str) else kind
    if kind == "chat":
        role = getattr(message, "role", None)
        return role if isinstance(role, str) and role else "user"
    if kind == "function":
        return "tool"
    if isinstance(kind, str):
        return _ROLES.get(kind, kind)
    return "user"


def _block_part(block: Any) -> Part | None:
    if isinstance(block, str):
        return TextPart(block)
    if not isinstance(block, Mapping):
        return TextPart(str(block))
    kind = block.get("type")
    if kind == "text":
        return TextPart(str(block.get("text", "")))
    if kind in ("reasoning", "thinking"):
        text = block.get("reasoning") or block.get("thinking") or block.get("text") or ""
        return ReasoningPart(str(text))
    if kind in ("tool_use", "tool_call", "function_call"):
        return None  # carried by message.tool_calls
    if kind == "image_url":
        url = block.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if isinstance(url, str):
            return media_part("image", url)
    if kind in ("image", "audio", "video", "file"):
        mime = block.get("mime_type")
        mime = mime if isinstance(mime, str) else None
        if isinstance(block.get("url"), str):
            return media_part(kind, block["url"], mime)
        # LangChain's standard data blocks: base64 (v1) or source_type="base64" + data (0.3)
        data = block.get("base64")
        if data is None and block.get("source_type") == "base64":
            data = block.get("data")
        if isinstance(data, str):
            blob = media_part(kind, f"data:{mime or ''};base64,{data}")
            if isinstance(blob, BlobPart):
                return blob
    data = {str(k): v for k, v in block.items() if k != "type"}
    return GenericPart(type=str(kind or "unknown"), data=data)


def _content_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    if isinstance(content, list):
        for block in content:
            part = _block_part(block)
            if part is not None:
                parts.append(part)
    elif content is not None:
        parts.append(TextPart(str(content)))
    return parts


def _tool_call_parts(message: Any) -> list[Part]:
    calls = getattr(message, "tool_calls", None) or ()
    return [
        ToolCallRequestPart(
            name=str(call.get("name") or ""), id=call.get("id"), arguments=call.get("args")
        )
        for call in calls
        if isinstance(call, Mapping)
    ]


def input_messages(messages: Sequence[Any]) -> list[InputMessage]:
    out: list[InputMessage] = []
    for message in messages:
        role = _role(message)
        content = getattr(message, "content", message)
        if role == "tool":
            parts: list[Part] = [
                ToolCallResponsePart(
                    response=content, id=getattr(message, "tool_call_id", None) or None
                )
            ]
        else:
            parts = _content_parts(content)
            if role == "assistant":
                parts.extend(_tool_call_parts(message))
        name = getattr(message, "name", None)
        out.append(
            InputMessage(role=role, parts=parts, name=name if isinstance(name, str) else None)
        )
    return out


def prompt_messages(prompts: Sequence[str]) -> list[InputMessage]:
    return [InputMessage(role="user", parts=[TextPart(prompt)]) for prompt in prompts]


def output_messages(response: Any) -> list[OutputMessage]:
    out: list[OutputMessage] = []
    generations = getattr(response, "generations", None) or ()
    for generation in generations[0] if generations else ():
        message = getattr(generation, "message", None)
        info = getattr(generation, "generation_info", None) or {}
        meta = getattr(message, "response_metadata", None) or {}
        if message is not None:
            parts = _content_parts(getattr(message, "content", None))
            calls = _tool_call_parts(message)
            parts.extend(calls)
        else:
            calls = []
            parts = _content_parts(getattr(generation, "text", None))
        raw = info.get("finish_reason") or meta.get("finish_reason") or meta.get("stop_reason")
        reason = _FINISH_REASONS.get(str(raw).lower()) if raw else None
        if reason is None:
            reason = "tool_call" if calls else "stop"
        out.append(OutputMessage(parts=parts, finish_reason=reason))
    return out


# What defines a function tool in the shapes chat models bind: OpenAI's nested "function" (or its
# Responses API's flat "parameters"), Anthropic's "input_schema".
_FUNCTION_KEYS = ("function", "parameters", "input_schema")


def tool_definitions(tools: Any) -> list[ToolDefinition] | None:
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    out: list[ToolDefinition] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type")
        if (
            isinstance(kind, str)
            and kind not in ("function", "custom")
            and not any(key in tool for key in _FUNCTION_KEYS)
        ):
            # A provider's built-in tool, e.g. {"type": "web_search_preview"} (OpenAI) or
            # {"type": "web_search_20250305", "name": "web_search", "max_uses": 3} (Anthropic).
            name = tool.get("name")
            options = {str(k): v for k, v in tool.items() if k not in ("type", "name")}
            out.append(
                GenericToolDefinition(
                    kind, name if isinstance(name, str) and name else kind, options or None
                )
            )
            continue
        function = tool.get("function")
        spec: Mapping[str, Any] = function if isinstance(function, Mapping) else tool
        name = spec.get("name")
        if not isinstance(name, str):
            continue
        description = spec.get("description")
        parameters = spec.get("parameters") or spec.get("input_schema")
        out.append(
            FunctionToolDefinition(
                name=name,
                description=description if isinstance(description, str) else None,
                parameters=parameters if isinstance(parameters, Mapping) else None,
            )
        )
    return out or None


def tool_result(output: Any) -> Any:
    """What a tool returned: a ToolMessage's content, or the value itself."""
    if hasattr(output, "tool_call_id") and hasattr(output, "content"):
        return output.content
    return output


def documents(docs: Sequence[Any]) -> list[RetrievalDocument]:
    out: list[RetrievalDocument] = []
    for doc in docs:
        metadata = getattr(doc, "metadata", None) or {}
        ident = getattr(doc, "id", None) or metadata.get("id")
        score = metadata.get("score", metadata.get("relevance_score"))
        out.append(
            RetrievalDocument(
                id=str(ident) if ident is not None else None,
                score=float(score) if isinstance(score, (int, float)) else None,
                content=str(getattr(doc, "page_content", doc)),
            )
        )
    return out
