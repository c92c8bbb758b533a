"""Provider facts every integration needs the same way: ``gen_ai.provider.name`` values,
``server.address``/``server.port`` from a base URL, and token usage from provider responses.

Frameworks name providers differently (LangChain's ``ls_provider``, LlamaIndex's package names,
Pydantic AI's model classes), but the wire formats they wrap are the same few: OpenAI chat
completions and Responses, Anthropic messages, Gemini, Bedrock Converse.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from threadline._runs import Usage

# Common provider identifiers -> gen_ai.provider.name (values from the conventions' registry).
PROVIDER_ALIASES: Mapping[str, str] = {
    "openai": "openai",
    "openai-chat": "openai",
    "openai_like": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure-openai-chat": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "azure_inference": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic-chat": "anthropic",
    "google_gemini": "gcp.gemini",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",  # Pydantic AI's Gemini API provider
    "google-gla": "gcp.gemini",
    "google-cloud": "gcp.vertex_ai",  # Pydantic AI's Vertex AI provider
    "google-vertex": "gcp.vertex_ai",
    "google_vertexai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "google_anthropic_vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "bedrock-mantle": "aws.bedrock",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "grok": "x_ai",
    "cohere": "cohere",
    "ibm": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
    "perplexity": "perplexity",
    "moonshotai": "moonshot_ai",
}


def provider_name(raw: str, overrides: Mapping[str, str] | None = None) -> str:
    """``gen_ai.provider.name`` for a framework's provider identifier; unknown identifiers are
    reported as given (lower-cased), as the conventions ask for providers they do not list."""
    key = raw.strip().lower()
    if overrides and key in overrides:
        return overrides[key]
    return PROVIDER_ALIASES.get(key, key)


_DEFAULT_PORTS = {"https": 443, "http": 80, "wss": 443, "ws": 80}
_endpoints: dict[str, tuple[str | None, int | None]] = {}
_endpoints_lock = threading.Lock()
_MAX_ENDPOINTS = 512


def server_address(url: str | None) -> tuple[str | None, int | None]:
    """``(server.address, server.port)`` of a base URL, the port defaulting from the scheme;
    ``(None, None)`` when there is no usable URL. Cached: called on every model request."""
    if not url:
        return None, None
    found = _endpoints.get(url)
    if found is not None:
        return found
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (_DEFAULT_PORTS.get(parts.scheme) if host else None)
        found = (host, port) if host else (None, None)
    except ValueError:
        found = (None, None)
    with _endpoints_lock:
        if len(_endpoints) >= _MAX_ENDPOINTS:
            _endpoints.clear()
        _endpoints[url] = found
    return found


def field_value(obj: Any, key: str) -> Any:
    """``obj[key]`` of a mapping, else attribute ``key`` of an object; None when absent.
    Provider payloads reach integrations as dicts or as SDK objects."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


_fields_present: dict[tuple[type, tuple[str, ...]], tuple[str, ...]] = {}
_MAX_FIELD_CLASSES = 1024


def fields_present(obj: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``names`` the class of ``obj`` has, asked once per class: model objects are
    often pydantic models, where reading a missing attribute raises (and costs) each time."""
    key = (type(obj), names)
    found = _fields_present.get(key)
    if found is None:
        found = tuple(name for name in names if hasattr(obj, name))
        if len(_fields_present) < _MAX_FIELD_CLASSES:
            _fields_present[key] = found
    return found


def first_text_field(obj: Any, names: tuple[str, ...]) -> str | None:
    """The first of ``obj``'s attributes ``names`` that holds a non-empty string."""
    for name in fields_present(obj, names):
        value = getattr(obj, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def dimension_count(vectors: Any) -> int | None:
    """``gen_ai.embeddings.dimension.count`` of what an embeddings call returned: the length of
    its (first) vector; None for anything else."""
    if not isinstance(vectors, list) or not vectors:
        return None
    first = vectors[0]
    if isinstance(first, list):
        return len(first) or None
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return len(vectors)  # one vector
    return None


def int_value(value: Any) -> int | None:
    """``value`` if it is an int (a bool is not), else None."""
    return value if type(value) is int else None


def number_value(value: Any) -> float | None:
    """``value`` if it is an int or a float (a bool is neither), else None."""
    return value if type(value) is float or type(value) is int else None


def usage_from_provider(usage: Any) -> Usage | None:
    """Token usage from a provider's usage object (a mapping or an SDK object) in any of the
    OpenAI chat, OpenAI Responses, Anthropic, Gemini (``usage_metadata``) and Bedrock Converse
    shapes; ``None`` when it reports no tokens. Input tokens always include cached ones."""
    if usage is None:
        return None
    prompt = int_value(field_value(usage, "prompt_tokens"))
    if prompt is not None:  # OpenAI chat completions and compatible APIs
        return Usage(
            input_tokens=prompt,
            output_tokens=int_value(field_value(usage, "completion_tokens")),
            cache_read_input_tokens=int_value(
                field_value(field_value(usage, "prompt_tokens_details"), "cached_tokens")
            ),
            reasoning_output_tokens=int_value(
                field_value(field_value(usage, "completion_tokens_details"), "reasoning_tokens")
            ),
        )
    gemini = int_value(field_value(usage, "prompt_token_count"))
    if gemini is not None:
        candidates = int_value(field_value(usage, "candidates_token_count"))
        thoughts = int_value(field_value(usage, "thoughts_token_count"))
        if thoughts is not None:
            # Gemini counts thinking apart from the candidates (and leaves the candidates'
            # count out when it only thought); the conventions' output tokens include reasoning.
            candidates = thoughts + (candidates or 0)
        return Usage(
            input_tokens=gemini,
            output_tokens=candidates,
            cache_read_input_tokens=int_value(field_value(usage, "cached_content_token_count")),
            reasoning_output_tokens=thoughts,
        )
    input_tokens = int_value(field_value(usage, "input_tokens"))
    if input_tokens is None:
        bedrock = int_value(field_value(usage, "inputTokens"))
        if bedrock is None:
            return None
        bedrock_read = int_value(field_value(usage, "cacheReadInputTokens"))
        bedrock_write = int_value(field_value(usage, "cacheWriteInputTokens"))
        return Usage(
            # Bedrock Converse counts cache reads and writes apart from inputTokens (its
            # TokenUsage), as Anthropic does; the conventions' input tokens include them.
            input_tokens=bedrock + (bedrock_read or 0) + (bedrock_write or 0),
            output_tokens=int_value(field_value(usage, "outputTokens")),
            cache_read_input_tokens=bedrock_read,
            cache_write_input_tokens=bedrock_write,
        )
    cache_read = int_value(field_value(usage, "cache_read_input_tokens"))
    cache_write = int_value(field_value(usage, "cache_creation_input_tokens"))
    if cache_read is not None or cache_write is not None:
        # Anthropic counts cached input apart from input_tokens; the conventions include it.
        input_tokens += (cache_read or 0) + (cache_write or 0)
    else:  # OpenAI Responses API
        cache_read = int_value(
            field_value(field_value(usage, "input_tokens_details"), "cached_tokens")
        )
    return Usage(
        input_tokens=input_tokens,
        output_tokens=int_value(field_value(usage, "output_tokens")),
        cache_read_input_tokens=cache_read,
        cache_write_input_tokens=cache_write,
        reasoning_output_tokens=int_value(
            field_value(field_value(usage, "output_tokens_details"), "reasoning_tokens")
        ),
    )


__all__ = [
    "PROVIDER_ALIASES",
    "dimension_count",
    "field_value",
    "fields_present",
    "first_text_field",
    "int_value",
    "number_value",
    "provider_name",
    "server_address",
    "usage_from_provider",
]
