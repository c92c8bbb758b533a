"""Translation of LangChain objects (invocation params, messages, results) into threadline terms.

Everything that builds content (messages, tool definitions, documents) is only called when
content capture is on.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from threadline import RequestParams, Usage
from threadline.content import (
    BlobPart,
    FilePart,
    FunctionToolDefinition,
    GenericPart,
    GenericToolDefinition,
    InputMessage,
    OutputMessage,
    Part,
    ReasoningPart,
    RetrievalDocument,
    ServerToolCallPart,
    ServerToolCallResponsePart,
    TextPart,
    ToolCallRequestPart,
    ToolCallResponsePart,
    ToolDefinition,
    UriPart,
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


# Environment variables a model class's client takes its base URL from when none is configured,
# in the order it reads them: such a URL is not in the callbacks' serialized kwargs.
_ENV_BASE_URLS = {
    "ChatOpenAI": ("OPENAI_API_BASE", "OPENAI_BASE_URL"),
    "ChatAnthropic": ("ANTHROPIC_API_URL", "ANTHROPIC_BASE_URL"),
}
# serialized dict id -> (that dict, its endpoint). LangChain serializes a model once and passes
# the same dict on every call: its endpoint is worked out once (environment reads cost
# microseconds each).
_servers: dict[int, tuple[Mapping[str, Any], tuple[str | None, int | None]]] = {}
_MAX_SERVERS = 64


def server(serialized: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` from the model's configured base URL, else the one its
    client takes from the environment, else its class's default host."""
    if not serialized:
        return None, None
    cached = _servers.get(id(serialized))
    if cached is not None and cached[0] is serialized:
        return cached[1]
    found = _server(serialized)
    if len(_servers) >= _MAX_SERVERS:
        _servers.clear()
    _servers[id(serialized)] = (serialized, found)  # the dict is kept: its id stays its own
    return found


def _server(serialized: Mapping[str, Any]) -> tuple[str | None, int | None]:
    kwargs = serialized.get("kwargs")
    if isinstance(kwargs, Mapping):
        for key in _BASE_URL_KEYS:
            url = kwargs.get(key)
            if isinstance(url, str) and url:
                return server_address(url)
    name = _class_name(serialized) or ""
    for env_key in _ENV_BASE_URLS.get(name, ()):
        url = os.environ.get(env_key)
        if url:
            return server_address(url)
    host = _DEFAULT_HOSTS.get(name)
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
        url = first_text_field(embedder, _BASE_URL_KEYS) or _client_base_url(embedder)
        if url:
            self.server_address, self.server_port = server_address(url)
        else:
            host = _EMBEDDINGS_DEFAULT_HOSTS.get(cls.__name__)
            self.server_address, self.server_port = (host, 443) if host else (None, None)


def _client_base_url(embedder: Any) -> str | None:
    """The base URL of the SDK client behind the model (``OpenAIEmbeddings.client`` is a
    resource of an ``openai.OpenAI``): what it resolved, from the environment too."""
    try:
        root = getattr(getattr(embedder, "client", None), "_client", None)
        url = getattr(root, "base_url", None)
    except Exception:  # noqa: BLE001 - a client object of some other kind
        return None
    if isinstance(url, str):
        return url
    return str(url) if hasattr(url, "host") else None  # httpx's URL


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


def _output_type(value: Any) -> str | None:
    """``gen_ai.output.type`` of a structured-output setting: OpenAI's ``response_format`` (a
    dict, or the schema class ``with_structured_output`` binds), Ollama's ``format`` ("json" or
    a JSON schema), Gemini's ``response_mime_type``."""
    if isinstance(value, Mapping):
        return "text" if value.get("type") == "text" else "json"
    if isinstance(value, str):
        if value in ("json", "json_object", "json_schema", "application/json"):
            return "json"
        return "text" if value in ("text", "text/plain") else None
    return "json" if isinstance(value, type) else None


# Invocation-param keys of sampling parameters -> (RequestParams field, conversion), in order of
# precedence: the first key present with a usable value sets its field. The keys most models
# always pass come first: the search stops once every key present was seen.
_PARAMS: tuple[tuple[str, str, Any], ...] = (
    ("n", "choice_count", _int),
    ("stop", "stop_sequences", _stop),
    ("stop_sequences", "stop_sequences", _stop),
    ("temperature", "temperature", _number),
    ("max_tokens", "max_tokens", _int),
    ("max_completion_tokens", "max_tokens", _int),
    ("max_output_tokens", "max_tokens", _int),
    ("max_tokens_to_sample", "max_tokens", _int),
    ("top_p", "top_p", _number),
    ("top_k", "top_k", _int),
    ("frequency_penalty", "frequency_penalty", _number),
    ("presence_penalty", "presence_penalty", _number),
    ("seed", "seed", _int),
    ("response_format", "output_type", _output_type),
    ("format", "output_type", _output_type),
    ("response_mime_type", "output_type", _output_type),
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
        left = len(present)
        for key, name, convert in table:
            if key in present:
                if name not in found:
                    value = convert(source[key])
                    if value is not None:
                        found[name] = value
                left -= 1
                if not left:
                    break


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
        facts.finish_reasons.append(_raw_finish_reason(info, meta, message))
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


def _other_finish_reason(
    info: Mapping[str, Any], meta: Mapping[str, Any], message: Any
) -> str | None:
    """The finish reason of providers that do not call it ``finish_reason``/``stop_reason``:
    Ollama's ``done_reason``, Bedrock Converse's ``stopReason``; OpenAI's Responses API has a
    status instead: an incomplete response says why, a completed one stopped or called tools."""
    reason = info.get("done_reason") or meta.get("done_reason") or meta.get("stopReason")
    if reason or meta.get("object") != "response":
        return reason if isinstance(reason, str) else None
    status = meta.get("status")
    if status == "completed":
        return "tool_call" if getattr(message, "tool_calls", None) else "stop"
    if status == "incomplete":
        details = meta.get("incomplete_details")
        why = details.get("reason") if isinstance(details, Mapping) else None
        return why if isinstance(why, str) and why else "incomplete"
    return "error" if status == "failed" else None


def _raw_finish_reason(
    info: Mapping[str, Any], meta: Mapping[str, Any], message: Any
) -> str | None:
    """A generation's finish reason as the provider gave it."""
    reason = (
        info.get("finish_reason")
        or meta.get("finish_reason")
        or meta.get("stop_reason")
        or info.get("stop_reason")
        or _other_finish_reason(info, meta, message)
    )
    return reason if isinstance(reason, str) and reason else None


# --- content (capture on only) ------------------------------------------------------------------

# Providers' finish reasons -> the conventions' values; any other is recorded as given.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "complete": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",  # OpenAI's Responses API
    "model_length": "length",  # Mistral
    "model_context_window_exceeded": "length",  # Bedrock
    "content_filter": "content_filter",
    "safety": "content_filter",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
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


# Block types whose content is told elsewhere: the message's tool_calls / invalid_tool_calls.
_CALL_BLOCKS = frozenset(
    ("tool_use", "tool_call", "function_call", "invalid_tool_call", "tool_call_chunk")
)
_TEXT_BLOCKS = frozenset(("text", "input_text", "output_text"))
# "reasoning": LangChain's standard block and OpenAI's Responses item (its text in "summary"),
# "thinking": Anthropic's, "reasoning_content": Bedrock Converse's.
_REASONING_BLOCKS = frozenset(("reasoning", "thinking", "reasoning_content"))
# Media block types -> modality: LangChain's standard blocks (v1, and 0.3's source_type ones),
# OpenAI's chat and Responses input shapes, Anthropic's (a "source"), Gemini's "media". A file's
# modality comes from its MIME type when that names one. A plain-text document (v1's "text-plain",
# Anthropic's "text" source) is a document too: its text is its inline data.
_MEDIA_BLOCKS = {
    "image": "image",
    "image_url": "image",
    "input_image": "image",
    "audio": "audio",
    "input_audio": "audio",
    "video": "video",
    "file": "document",
    "input_file": "document",
    "document": "document",
    "media": "document",
    "text-plain": "document",
}
_MIME_MODALITIES = frozenset(("image", "audio", "video"))


def _block_part(block: Any) -> Part | None:
    if isinstance(block, str):
        return TextPart(block)
    if not isinstance(block, Mapping):
        return TextPart(str(block))
    kind = block.get("type")
    if kind in _TEXT_BLOCKS:
        return TextPart(str(block.get("text", "")))
    if kind in _REASONING_BLOCKS:
        return ReasoningPart(_reasoning_text(block))
    if kind in _CALL_BLOCKS:
        return None
    if kind in _SERVER_TOOL_BLOCKS:
        return _server_tool_part(kind, block)
    modality = _MEDIA_BLOCKS.get(kind) if isinstance(kind, str) else None
    if modality is not None:
        part = _media_block(modality, block)
        if part is not None:
            return part
    elif kind == "image_generation_call" and isinstance(block.get("result"), str):
        # OpenAI's built-in image tool: the generated image, inline
        fmt = block.get("output_format")
        return _blob("image", block["result"], f"image/{fmt}" if isinstance(fmt, str) else None)
    data = {str(k): v for k, v in block.items() if k != "type"}
    return GenericPart(type=str(kind or "unknown"), data=data)


# LangChain's standard blocks of a tool the provider runs (v1 content: OpenAI's web search,
# Anthropic's, Gemini's code execution): the conventions' server tool call parts, which hold the
# tool's details in an object of their own (a block's "type" would otherwise claim a part type
# whose required fields it lacks).
_SERVER_TOOL_BLOCKS = frozenset(
    ("server_tool_call", "server_tool_call_chunk", "server_tool_result")
)


def _server_tool_part(kind: str, block: Mapping[str, Any]) -> Part:
    details = {str(k): v for k, v in block.items() if k not in _SERVER_TOOL_FIELDS}
    if kind == "server_tool_result":
        for key in ("status", "output"):
            if key in block:
                details[key] = block[key]
        # the tool's name is on its call: _content_parts puts it in place of ""
        return ServerToolCallResponsePart("", _block_id(block.get("tool_call_id")), details)
    name = block.get("name")
    if block.get("args") is not None:
        details["arguments"] = block["args"]
    return ServerToolCallPart(
        name if isinstance(name, str) and name else "unknown",
        _block_id(block.get("id")),
        details,
    )


def _block_id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_SERVER_TOOL_FIELDS = frozenset(
    ("type", "id", "name", "args", "tool_call_id", "status", "output", "index")
)


def _name_server_responses(parts: list[Part]) -> None:
    """Give each server tool response the name of its call (from the same message)."""
    names = {
        part.id: part.name
        for part in parts
        if isinstance(part, ServerToolCallPart) and part.id is not None
    }
    for index, part in enumerate(parts):
        if isinstance(part, ServerToolCallResponsePart) and not part.name:
            name = names.get(part.id) if part.id is not None else None
            parts[index] = dataclasses.replace(part, name=name or "unknown")


def _reasoning_text(block: Mapping[str, Any]) -> str:
    text = block.get("reasoning") or block.get("thinking") or block.get("text")
    if isinstance(text, str):
        return text
    nested = block.get("reasoning_content")
    if isinstance(nested, Mapping) and isinstance(nested.get("text"), str):
        return str(nested["text"])
    summary = block.get("summary")
    if isinstance(summary, list):
        return "\n\n".join(
            str(item["text"])
            for item in summary
            if isinstance(item, Mapping) and isinstance(item.get("text"), str)
        )
    return ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _media_block(modality: str, block: Mapping[str, Any]) -> Part | None:
    """A blob, URI or file part for a media block of any known shape; None if it has none of
    data, text, URL and file id. Inline data always makes a blob part, so that a redactor that drops
    blob parts drops every image, recording, video and document sent inline."""
    mime = _text(block.get("mime_type")) or _text(block.get("media_type"))
    url: Any = None
    data: Any = None
    file_id: Any = None
    text: Any = None
    source = block.get("source")
    if isinstance(source, Mapping):  # Anthropic: {"type": "base64" | "text" | "url" | "file"}
        mime = _text(source.get("media_type")) or mime
        kind = source.get("type")
        if kind == "base64":
            data = source.get("data")
        elif kind == "text":
            text = source.get("data")
            mime = mime or "text/plain"
        elif kind == "url":
            url = source.get("url")
        elif kind == "file":
            file_id = source.get("file_id")
    else:
        # OpenAI: {"image_url": {"url"} or a URL}, {"input_audio": {"data", "format"}},
        # {"file": {"file_data" (a data URL) or "file_id"}}
        nested = block.get("image_url") or block.get("input_audio") or block.get("file")
        if isinstance(nested, str):
            url = nested
        elif isinstance(nested, Mapping):
            url = nested.get("url")
            data = nested.get("data") or nested.get("file_data")
            file_id = nested.get("file_id")
            audio_format = _text(nested.get("format"))
            if audio_format and not mime:
                mime = f"audio/{audio_format}"
        # LangChain's standard blocks (v1: "base64"; 0.3: source_type + "data" or "id"),
        # Responses' input_file ("file_data", "file_url"), Gemini's media ("data", "file_uri").
        source_type = block.get("source_type")
        data = data or block.get("base64") or block.get("file_data")
        if data is None and (source_type == "base64" or block.get("type") == "media"):
            data = block.get("data")
        url = url or block.get("url") or block.get("file_url") or block.get("file_uri")
        file_id = file_id or block.get("file_id")
        if file_id is None and source_type == "id":
            file_id = block.get("id")
        if block.get("type") == "text-plain":
            text = block.get("text")
            mime = mime or "text/plain"
    if isinstance(data, (bytes, bytearray)) or (isinstance(data, str) and data):
        return _blob(modality, data, mime)
    if isinstance(text, str) and text:
        return BlobPart(_modality(modality, mime), text.encode(), mime)
    if isinstance(url, str) and url:
        if url.startswith("data:"):
            return _blob(modality, url, mime)
        return UriPart(_modality(modality, mime), url, mime)
    if isinstance(file_id, str) and file_id:
        return FilePart(_modality(modality, mime), file_id, mime)
    return None


def _modality(modality: str, mime: str | None) -> str:
    if modality == "document" and mime:
        major = mime.partition("/")[0]
        if major in _MIME_MODALITIES:
            return major
    return modality


def _blob(modality: str, data: str | bytes | bytearray, mime: str | None) -> BlobPart:
    """Inline media: raw bytes, base64 text or a ``data:`` URL. Whatever does not decode is
    still recorded as a blob (of its text's bytes), never as text."""
    if isinstance(data, (bytes, bytearray)):
        return BlobPart(_modality(modality, mime), bytes(data), mime)
    payload = data
    if data.startswith("data:"):
        header, _, payload = data.partition(",")
        declared = header[5:].split(";", 1)[0]
        mime = declared or mime
        if not header.endswith(";base64"):
            return BlobPart(_modality(modality, mime), unquote_to_bytes(payload), mime)
    try:
        content = base64.b64decode(payload)  # lenient: line breaks and the like are skipped
    except ValueError:
        content = payload.encode("utf-8", "replace")
    return BlobPart(_modality(modality, mime), content, mime)


def _content_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    if isinstance(content, list):
        responses = False
        for block in content:
            part = _block_part(block)
            if part is not None:
                parts.append(part)
                responses = responses or isinstance(part, ServerToolCallResponsePart)
        if responses:
            _name_server_responses(parts)
    elif content is not None:
        parts.append(TextPart(str(content)))
    return parts


def _tool_call_parts(message: Any) -> list[Part]:
    """The message's tool calls, then those whose arguments did not parse (with their raw
    arguments text): the model asked for them all."""
    parts: list[Part] = [
        ToolCallRequestPart(
            name=str(call.get("name") or ""), id=call.get("id"), arguments=call.get("args")
        )
        for call in getattr(message, "tool_calls", None) or ()
        if isinstance(call, Mapping)
    ]
    invalid = getattr(message, "invalid_tool_calls", None)
    if invalid:
        parts.extend(
            ToolCallRequestPart(
                name=str(call.get("name") or ""), id=call.get("id"), arguments=call.get("args")
            )
            for call in invalid
            if isinstance(call, Mapping)
        )
    return parts


_MEDIA_PARTS = (BlobPart, UriPart, FilePart)


def _tool_response_parts(content: Any, call_id: str | None) -> list[Part]:
    """A tool message's parts: its content as the response, with the media it holds (an image
    a tool returned) taken out as media parts of their own."""
    if isinstance(content, list):
        rest: list[Any] = []
        media: list[Part] = []
        for block in content:
            if isinstance(block, Mapping) and block.get("type") in _MEDIA_BLOCKS:
                part = _block_part(block)
                if isinstance(part, _MEDIA_PARTS):
                    media.append(part)
                    continue
            rest.append(block)
        if media:
            return [ToolCallResponsePart(response=rest, id=call_id), *media]
    return [ToolCallResponsePart(response=content, id=call_id)]


def input_messages(messages: Sequence[Any]) -> list[InputMessage]:
    out: list[InputMessage] = []
    for message in messages:
        role = _role(message)
        content = getattr(message, "content", message)
        if role == "tool":
            parts = _tool_response_parts(content, getattr(message, "tool_call_id", None) or None)
        else:
            parts = _content_parts(content)
            if role == "assistant":
                parts.extend(_tool_call_parts(message))
        name = getattr(message, "name", None)
        out.append(
            InputMessage(role=role, parts=parts, name=name if isinstance(name, str) else None)
        )
    return out


# Providers whose API takes the system prompt apart from the messages -> which of a history's
# system messages their LangChain integration sends there (merged, in order):
# - the first run of consecutive ones: langchain-anthropic (it refuses any later one);
# - all, if the history (tool messages and empty human messages aside) starts with one:
#   langchain-google-genai (it drops them all otherwise); with its deprecated
#   ``convert_system_message_to_human``, a leading one followed by a human message is merged
#   into that message instead, and the later ones are dropped;
# - all, wherever they are: ChatVertexAI, ChatBedrockConverse.
_FIRST_RUN, _ALL_IF_LEADING, _ALL = 1, 2, 3
_SYSTEM_APART = {
    "anthropic": _FIRST_RUN,
    "gcp.gemini": _ALL_IF_LEADING,
    "gcp.vertex_ai": _ALL,
    "aws.bedrock": _ALL,
}
_SYSTEM_TYPES = frozenset(("system", "SystemMessageChunk"))


def system_instructions(
    messages: Sequence[Any], provider: str, serialized: Mapping[str, Any] | None = None
) -> tuple[Sequence[Any], list[Part] | None]:
    """The messages that stay in the input messages, and the system instructions: the parts of
    the system messages the provider's integration sends apart from them (None: it sends none
    apart, and every system message stays an input message). ``serialized`` is the model's, for
    options that change what is sent (they are not in the invocation params)."""
    rule = _SYSTEM_APART.get(provider)
    if rule is None:
        return messages, None
    if rule == _ALL_IF_LEADING and any(_empty_human(m) for m in messages):
        # langchain-google-genai leaves empty human messages out of the request
        messages = [m for m in messages if not _empty_human(m)]
    apart = [i for i, message in enumerate(messages) if _is_system(message)]
    if not apart:
        return messages, None
    if rule == _FIRST_RUN:
        run = len(apart)
        for n, index in enumerate(apart):
            if index != apart[0] + n:
                run = n
                break
        apart = apart[:run]
    elif rule == _ALL_IF_LEADING:
        # what langchain-google-genai numbers: it sends tool messages with their call
        sent = [m for m in messages if _kind(m) != "tool"][:2]
        if not sent or not _is_system(sent[0]):
            return messages, None
        if len(sent) == 2 and _kind(sent[1]) == "human" and _merges_system(serialized):
            system, human = sent
            content = _blocks(getattr(system, "content", None))
            content.extend(_blocks(getattr(human, "content", None)))
            merged = human.model_copy(update={"content": content})
            return [merged if m is human else m for m in messages if not _is_system(m)], None
    parts: list[Part] = []
    for index in apart:
        parts.extend(_content_parts(getattr(messages[index], "content", None)))
    lifted = set(apart)
    return [m for i, m in enumerate(messages) if i not in lifted], parts or None


def _kind(message: Any) -> Any:
    kind = getattr(message, "type", None)
    return _CHUNK_TYPES.get(kind, kind) if isinstance(kind, str) else kind


def _empty_human(message: Any) -> bool:
    return _kind(message) == "human" and not getattr(message, "content", None)


def _merges_system(serialized: Mapping[str, Any] | None) -> bool:
    """Whether the model was made with ``convert_system_message_to_human=True`` (in its
    serialized constructor arguments: it is no invocation param)."""
    kwargs = serialized.get("kwargs") if serialized else None
    return isinstance(kwargs, Mapping) and kwargs.get("convert_system_message_to_human") is True


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return list(content)
    return [] if content is None else [content]


def _is_system(message: Any) -> bool:
    kind = getattr(message, "type", None)
    return isinstance(kind, str) and kind in _SYSTEM_TYPES


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
            extra = getattr(message, "additional_kwargs", None)
            if extra:
                _add_kwargs_parts(extra, parts)
            calls = _tool_call_parts(message)
            parts.extend(calls)
        else:
            calls = []
            parts = _content_parts(getattr(generation, "text", None))
        raw = _raw_finish_reason(info, meta, message)
        reason = _FINISH_REASONS.get(raw.lower(), raw) if raw else None
        if reason is None:
            reason = "tool_call" if calls else "stop"
        out.append(OutputMessage(parts=parts, finish_reason=reason))
    return out


def _add_kwargs_parts(extra: Mapping[str, Any], parts: list[Part]) -> None:
    """What a model put beside the content: reasoning (``reasoning_content`` of DeepSeek, Ollama,
    ...; the Responses API's reasoning item with ``output_version="v0"``) first, and a refusal
    (OpenAI's chat completions; the Responses API has it in the content) last."""
    if not any(isinstance(part, ReasoningPart) for part in parts):
        text = extra.get("reasoning_content")
        if not isinstance(text, str):
            item = extra.get("reasoning")
            text = _reasoning_text(item) if isinstance(item, Mapping) else None
        if text:
            parts.insert(0, ReasoningPart(text))
    refusal = extra.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(GenericPart("refusal", {"refusal": refusal}))


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


def tool_result(output: Any, call_id: str | None = None) -> Any:
    """What a tool returned: a ToolMessage's content, or the value itself (media blocks in it as
    media parts). A LangGraph ``Command`` (a tool that updates the graph's state) is recorded as
    the content of the ToolMessage it adds for this call (with no ``call_id``, the first it
    adds), else its update."""
    if hasattr(output, "tool_call_id") and hasattr(output, "content"):
        return _result_media(output.content)
    if type(output).__name__ == "Command" and hasattr(output, "update"):
        update = output.update
        for message in _update_messages(update):
            found = getattr(message, "tool_call_id", None)
            if found is not None and call_id in (None, found) and hasattr(message, "content"):
                return _result_media(message.content)
        return update
    return _result_media(output)


def _result_media(content: Any) -> Any:
    """Content blocks a tool returned, each media block as the part the next model call's history
    records it as: core passes such parts through the redactor on their own and records them as
    parts, so a redactor that drops blob parts drops these too."""
    if not isinstance(content, list):
        return content
    out: list[Any] | None = None
    for index, block in enumerate(content):
        part = None
        if isinstance(block, Mapping) and block.get("type") in _MEDIA_BLOCKS:
            part = _block_part(block)
        if isinstance(part, _MEDIA_PARTS):
            if out is None:
                out = content[:index]
            out.append(part)
        elif out is not None:
            out.append(block)
    return content if out is None else out


def _update_messages(update: Any) -> Sequence[Any]:
    """The ``messages`` a Command's update writes: a mapping, or (key, value) pairs."""
    messages: Any = None
    if isinstance(update, Mapping):
        messages = update.get("messages")
    elif isinstance(update, (list, tuple)):
        for item in update:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "messages":
                messages = item[1]
    if isinstance(messages, (list, tuple)):
        return messages
    return () if messages is None else (messages,)


def documents(docs: Sequence[Any]) -> list[RetrievalDocument]:
    out: list[RetrievalDocument] = []
    for doc in docs:
        metadata = getattr(doc, "metadata", None) or {}
        ident = getattr(doc, "id", None) or metadata.get("id")
        score = metadata.get("score", metadata.get("relevance_score"))
        out.append(
            RetrievalDocument(
                id=str(ident) if ident is not None else None,
                score=_score(score),
                content=str(getattr(doc, "page_content", doc)),
            )
        )
    return out


def _score(value: Any) -> float | None:
    """A relevance score as a float: numpy and decimal ones too; a bool is no score."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
