"""Reading LlamaIndex objects: provider and endpoint of a model, request parameters, usage,
response facts, and (only with content capture on) messages, tool definitions and documents.

Everything here reads attributes defensively: LlamaIndex objects differ between releases and
between provider packages, and a field we cannot read is simply not recorded.
"""

from __future__ import annotations

import base64
import enum
import io
import json
import os
import pathlib
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import threadline
from threadline.content import (
    BlobPart,
    FunctionToolDefinition,
    GenericPart,
    InputMessage,
    OutputMessage,
    Part,
    ReasoningPart,
    RetrievalDocument,
    TextPart,
    ToolCallRequestPart,
    ToolCallResponsePart,
    UriPart,
    media_part,
)
from threadline.providers import field_value as _get
from threadline.providers import (
    fields_present,
    first_text_field,
    provider_name,
    server_address,
    usage_from_provider,
)
from threadline.providers import int_value as _int
from threadline.providers import number_value as _number

# LlamaIndex package names whose provider differs from core's common aliases: the
# google-genai SDK reaches both Gemini API and Vertex AI, so only the family is known.
_PROVIDER_OVERRIDES: Mapping[str, str] = {"google_genai": "gcp.gen_ai"}
# Models that run inside this process (LlamaIndex's own mocks): INTERNAL inference spans.
IN_PROCESS_PROVIDER = "llama_index"

_FINISH_REASONS: Mapping[str, str] = {
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "max_output_tokens": "length",  # OpenAI's Responses API
}


_providers: dict[type, str] = {}
_MAX_CLASSES = 1024


def provider_of(cls: type) -> str:
    """``gen_ai.provider.name`` for a model class, from the package it comes from."""
    found = _providers.get(cls)
    if found is None:
        found = _provider_of_class(cls)
        if len(_providers) < _MAX_CLASSES:
            _providers[cls] = found
    return found


def _provider_of_class(cls: type) -> str:
    """From the class's own package, or from the integration it subclasses (an app's
    ``class MyOpenAI(OpenAI)`` still calls OpenAI). A model of LlamaIndex's core (its mocks)
    runs in this process; any other (an app's own ``CustomLLM``) is named by its class, lower
    case, as the LangChain integration names an unknown model class: its module names the
    app, not the provider."""
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(_INTEGRATION_PACKAGES):
            return _provider_of_module(module)
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("llama_index.core."):
        return IN_PROCESS_PROVIDER
    return cls.__name__.lower() or "unknown"


# Where LlamaIndex's integration packages of models live, named by their provider.
_INTEGRATION_PACKAGES = (
    "llama_index.llms.",
    "llama_index.embeddings.",
    "llama_index.multi_modal_llms.",
    "llama_index.sparse_embeddings.",
)


def _provider_of_module(module: str) -> str:
    """The provider of an integration package's module (see _INTEGRATION_PACKAGES)."""
    for prefix in _INTEGRATION_PACKAGES:
        if module.startswith(prefix):
            package = module[len(prefix) :].partition(".")[0]
            return provider_name(package, _PROVIDER_OVERRIDES)
    return "unknown"


_BASE_URL_ATTRIBUTES = ("api_base", "azure_endpoint", "base_url")
_MODEL_ATTRIBUTES = ("model", "model_name", "model_id")


def endpoint(model: Any) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` from the model's API base URL, if it has one."""
    return server_address(first_text_field(model, _BASE_URL_ATTRIBUTES))


def model_field(model: Any) -> str | None:
    """The model's ``model``/``model_name``/``model_id`` field."""
    return first_text_field(model, _MODEL_ATTRIBUTES)


def model_name(model: Any) -> str | None:
    """The model's name: its ``model``/``model_name``/``model_id`` field, else what its
    ``metadata`` (LLMs) reports."""
    return model_field(model) or metadata_facts(model).model_name


class MetadataFacts(NamedTuple):
    model_name: str | None
    is_chat_model: bool


_NO_METADATA = MetadataFacts(None, False)
# The fields LLMs derive their metadata from: metadata is read again when one of them changes.
_METADATA_SOURCES = ("model", "model_name", "model_id", "model_path", "is_chat_model")
_MAX_MODELS = 1024
_T = TypeVar("_T")


class _PerObject(Generic[_T]):
    """Values read from model objects, kept while the object lives and what they were read
    from (its ``state``) is unchanged. Models are pydantic objects, unhashable, so they are no
    WeakKeyDictionary keys: entries go by id, and a weak reference tells a reused id apart."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ReferenceType[Any], tuple[Any, ...], _T]] = {}

    def get(self, obj: Any, state: tuple[Any, ...]) -> _T | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        try:
            return entry[2] if entry[1] == state else None
        except Exception:  # noqa: BLE001 - a value whose == raises: read again
            return None

    def put(self, obj: Any, state: tuple[Any, ...], value: _T) -> None:
        try:
            ref = weakref.ref(obj)
        except TypeError:  # not weak-referenceable: read again next time
            return
        if len(self._entries) >= _MAX_MODELS:
            self._entries.clear()
        self._entries[id(obj)] = (ref, state, value)


_metadata_facts: _PerObject[MetadataFacts] = _PerObject()


def metadata_facts(model: Any) -> MetadataFacts:
    """What a model's ``metadata`` says (its name, whether it is a chat model). ``metadata`` is
    a property that builds a new ``LLMMetadata`` on every read: it is read once per model
    object, and again when a field it is derived from changes."""
    sources = tuple(
        [getattr(model, name, None) for name in fields_present(model, _METADATA_SOURCES)]
    )
    cached = _metadata_facts.get(model, sources)
    if cached is not None:
        return cached
    meta = metadata(model)
    if meta is None:
        return _NO_METADATA
    name = getattr(meta, "model_name", None)
    facts = MetadataFacts(
        name if isinstance(name, str) and name else None,
        getattr(meta, "is_chat_model", False) is True,
    )
    _metadata_facts.put(model, sources, facts)
    return facts


def metadata(llm: Any) -> Any:
    """An LLM's ``LLMMetadata`` (a property that some LLMs compute), or ``None``."""
    try:
        return getattr(llm, "metadata", None)
    except Exception:  # noqa: BLE001 - a metadata property that fails is no metadata
        return None


class LLMFacts(NamedTuple):
    """What an LLM object's fields say, the same for every call until a field changes."""

    provider: str
    host: str | None
    port: int | None
    model: str | None  # its model field, else what its metadata names
    is_chat_model: bool
    params: threadline.RequestParams | None  # from its own fields, without additional_kwargs


_llm_facts: _PerObject[LLMFacts] = _PerObject()


def llm_facts(llm: Any) -> LLMFacts:
    """The facts of ``llm``, read once per object and again when one of its fields is given
    a new value (LLMs are pydantic models: their fields are the values of ``__dict__``)."""
    fields = getattr(llm, "__dict__", None)
    state = tuple(fields.values()) if type(fields) is dict else None
    if state is not None:
        cached = _llm_facts.get(llm, state)
        if cached is not None:
            return cached
    host, port = endpoint(llm)
    model = model_field(llm)
    meta = metadata_facts(llm)
    facts = LLMFacts(
        provider_of(type(llm)),
        host,
        port,
        model or meta.model_name,
        meta.is_chat_model,
        _own_params(llm),
    )
    if state is not None:
        _llm_facts.put(llm, state, facts)
    return facts


def _own_params(llm: Any) -> threadline.RequestParams | None:
    present = fields_present(llm, _PARAM_ATTRIBUTES)
    max_tokens = _own_max_tokens(llm, present)
    temperature = _number(getattr(llm, "temperature", None)) if "temperature" in present else None
    if max_tokens is None and temperature is None:
        return None
    return threadline.RequestParams(max_tokens=max_tokens, temperature=temperature)


# (OpenAI's Responses API LLM names its limit max_output_tokens, as that API does)
_PARAM_ATTRIBUTES = ("additional_kwargs", "max_tokens", "temperature", "max_output_tokens")


def request_params(
    llm: Any, call_kwargs: Mapping[str, Any] | None
) -> threadline.RequestParams | None:
    """Sampling parameters: the model's fields, its ``additional_kwargs``, then per-call kwargs."""
    present = fields_present(llm, _PARAM_ATTRIBUTES)
    extra = getattr(llm, "additional_kwargs", None) if "additional_kwargs" in present else None
    merged: Mapping[str, Any] | None
    if extra is None or not isinstance(extra, (dict, Mapping)) or not extra:
        merged = call_kwargs or None
    elif call_kwargs:
        merged = {**extra, **call_kwargs}
    else:
        merged = extra
    if merged is None:
        return _own_params(llm)
    max_tokens = _int(merged.get("max_tokens", merged.get("max_completion_tokens")))
    if max_tokens is None:
        max_tokens = _int(merged.get("max_output_tokens")) or _own_max_tokens(llm, present)
    temperature = _number(merged.get("temperature"))
    if temperature is None and "temperature" in present:
        temperature = _number(getattr(llm, "temperature", None))
    stop = merged.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    return threadline.RequestParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=_number(merged.get("top_p")),
        top_k=_int(merged.get("top_k")),
        stop_sequences=stop if isinstance(stop, list) else None,
        frequency_penalty=_number(merged.get("frequency_penalty")),
        presence_penalty=_number(merged.get("presence_penalty")),
        seed=_int(merged.get("seed")),
        choice_count=_int(merged.get("n")),
        output_type=_output_type(merged.get("response_format")),
    )


def _output_type(value: Any) -> str | None:
    """``gen_ai.output.type`` of OpenAI-style ``response_format`` (what ``structured_predict``
    and ``as_structured_llm`` of the OpenAI LLMs send: a dict, or the output class)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        kind = value.get("type")
        return "text" if kind == "text" else "json"
    if isinstance(value, str):
        return "json" if value in ("json_object", "json_schema") else None
    return "json" if isinstance(value, type) else None


def _own_max_tokens(llm: Any, present: tuple[str, ...]) -> int | None:
    """A model's own ``max_tokens`` (or ``max_output_tokens``) field; LlamaIndex models use -1
    or 0 for "no limit"."""
    for name in ("max_tokens", "max_output_tokens"):
        if name in present:
            value = getattr(llm, name, None)
            if type(value) is int and value > 0:
                return value
    return None


def usage_of(raw: Any) -> threadline.Usage | None:
    """Token usage from a provider response (``usage``, or Gemini's ``usage_metadata``), or
    ``None`` when the response reports none."""
    usage = _get(raw, "usage")
    if usage is None:
        usage = _get(raw, "usage_metadata")
        if usage is None:
            usage = _get(_responses_api_response(raw), "usage")
    return usage_from_provider(usage)


def finish_reason_of(raw: Any) -> str | None:
    """The provider's finish reason in a response or stream chunk."""
    choices = _get(raw, "choices")
    if choices:
        try:
            reason = _get(choices[0], "finish_reason")
        except (IndexError, KeyError, TypeError):
            reason = None
        return reason if isinstance(reason, str) and reason else None
    for field in _FINISH_FIELDS:
        reason = _get(raw, field)
        if reason is not None:
            if isinstance(reason, enum.Enum):  # google-genai's FinishReason
                reason = reason.value
            return reason if isinstance(reason, str) and reason else None
    response = _responses_api_response(raw)
    return _responses_api_finish_reason(response) if response is not None else None


# Where a response without ``choices`` names its finish reason: Anthropic, Gemini (LlamaIndex's
# google-genai LLM puts the top candidate's fields in ``raw``), Bedrock Converse, Ollama.
_FINISH_FIELDS = ("stop_reason", "finish_reason", "stopReason", "done_reason")


def _responses_api_response(raw: Any) -> Any:
    """The ``Response`` of OpenAI's Responses API in ``raw``: the response of a call, or the one
    a stream's last event (``response.completed``, ``.incomplete``, ``.failed``) carries."""
    if _get(raw, "object") == "response":
        return raw
    response = _get(raw, "response")
    return response if _get(response, "object") == "response" else None


# Output items of a Responses API response that ask the caller to run a tool.
_CLIENT_TOOL_CALLS = frozenset({"function_call", "custom_tool_call"})


def _responses_api_finish_reason(response: Any) -> str | None:
    """A Responses API response has a status, not a finish reason: an incomplete one says why
    it stopped (``max_output_tokens``, ``content_filter``: recorded as given, as a provider's
    finish reason is; its output message takes the conventions' value), a completed one
    stopped or called tools, a failed one is an ``error``, as the LangChain integration has it."""
    status = _get(response, "status")
    if status == "completed":
        output = _get(response, "output")
        for item in output if isinstance(output, list) else ():
            if _get(item, "type") in _CLIENT_TOOL_CALLS:
                return "tool_call"
        return "stop"
    if status == "incomplete":
        why = _get(_get(response, "incomplete_details"), "reason")
        return why if isinstance(why, str) and why else "incomplete"
    return "error" if status == "failed" else None  # none yet on the stream's earlier events


def response_facts(raw: Any) -> tuple[str | None, str | None]:
    """``(response id, response model)`` of a provider response."""
    response_id = _get(raw, "id")
    response_model = _get(raw, "model")
    if response_id is None and response_model is None:
        response = _responses_api_response(raw)  # a Responses API stream's last event
        if response is not None:
            response_id, response_model = _get(response, "id"), _get(response, "model")
    return (
        response_id if isinstance(response_id, str) and response_id else None,
        response_model if isinstance(response_model, str) and response_model else None,
    )


# --- content (built only when capture is on) ----------------------------------------------------


def _role(message: Any) -> str:
    role = getattr(message, "role", None)
    value = getattr(role, "value", role)
    return str(value) if value else "user"


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tool_call_parts(message: Any) -> list[Part]:
    parts: list[Part] = []
    extra = getattr(message, "additional_kwargs", None)
    calls = extra.get("tool_calls") if isinstance(extra, Mapping) else None
    for call in calls or ():
        function = _get(call, "function")
        name = _get(function, "name")
        if isinstance(name, str):
            call_id = _get(call, "id")
            parts.append(
                ToolCallRequestPart(
                    name=name,
                    id=call_id if isinstance(call_id, str) else None,
                    arguments=_arguments(_get(function, "arguments")),
                )
            )
    return parts


def _block_part(block: Any) -> Part | None:
    kind = getattr(block, "block_type", None)
    if kind == "text":
        text = getattr(block, "text", None)
        return TextPart(text) if text else None
    if kind == "thinking":
        content = getattr(block, "content", None)
        return ReasoningPart(content) if content else None
    if kind == "tool_call":
        return ToolCallRequestPart(
            name=str(getattr(block, "tool_name", "")),
            id=getattr(block, "tool_call_id", None),
            arguments=_arguments(getattr(block, "tool_kwargs", None)),
        )
    if kind == "cache":
        return None  # a CachePoint marks where the provider may cache the prompt: no content
    media = _MEDIA_FIELDS.get(kind) if isinstance(kind, str) else None
    if media is not None:
        part = _media_part(block, str(kind), *media)
        if part is not None:
            return part
    return GenericPart(type=str(kind or type(block).__name__))


# The media blocks (ImageBlock, AudioBlock, VideoBlock, DocumentBlock): their modality (the
# block type), the field holding their data and the one naming their MIME type.
_MEDIA_FIELDS: Mapping[str, tuple[str, str | None]] = {
    "image": ("image", "image_mimetype"),
    "audio": ("audio", None),
    "video": ("video", "video_mimetype"),
    "document": ("data", "document_mimetype"),
}
_AUDIO_TYPES: Mapping[str, str] = {"mp3": "audio/mpeg"}


def _media_part(
    block: Any,
    kind: str,
    data_field: str,
    mime_field: str | None,
    url_field: str = "url",
    path_field: str = "path",
) -> Part | None:
    """A media block: its URL, its data (which LlamaIndex keeps base64 encoded, or as a
    ``BytesIO`` on 0.14), or the ``file://`` URI of the file it names (not read here)."""
    mime = getattr(block, mime_field, None) if mime_field is not None else None
    if not isinstance(mime, str) or not mime:
        fmt = getattr(block, "format", None)
        mime = (
            _AUDIO_TYPES.get(fmt, f"audio/{fmt}")
            if kind == "audio" and isinstance(fmt, str) and fmt
            else None
        )
    url = getattr(block, url_field, None)
    if url is not None:
        return media_part(kind, str(url), mime)
    data = getattr(block, data_field, None)
    if isinstance(data, io.BytesIO):
        return BlobPart(kind, data.getvalue(), mime_type=mime)  # raw bytes, as LlamaIndex sends
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    if isinstance(data, (bytes, bytearray)):
        try:
            raw = base64.b64decode(bytes(data), validate=True)
        except ValueError:
            raw = bytes(data)
        return BlobPart(kind, raw, mime_type=mime)
    path = getattr(block, path_field, None)
    if isinstance(path, (str, os.PathLike)) and str(path):
        try:
            uri = pathlib.Path(os.path.abspath(path)).as_uri()
        except ValueError:
            return None
        return UriPart(kind, uri, mime_type=mime)
    return None


def _block_parts(blocks: list[Any], parts: list[Part]) -> None:
    for block in blocks:
        if getattr(block, "block_type", None) == "citable":
            # A source given for the model to cite (CitableBlock): its content is what it sends.
            inner = getattr(block, "content", None)
            if isinstance(inner, list):
                _block_parts(inner, parts)
            continue
        part = _block_part(block)
        if part is not None:
            parts.append(part)


def _parts(message: Any, role: str) -> list[Part]:
    if role == "tool":
        extra = getattr(message, "additional_kwargs", None)
        call_id = extra.get("tool_call_id") if isinstance(extra, Mapping) else None
        return [ToolCallResponsePart(response=getattr(message, "content", None), id=call_id)]
    parts: list[Part] = []
    blocks = getattr(message, "blocks", None)
    if isinstance(blocks, list):
        _block_parts(blocks, parts)
    else:
        content = getattr(message, "content", None)
        if content:
            parts.append(TextPart(str(content)))
    if not any(isinstance(part, ToolCallRequestPart) for part in parts):
        parts.extend(_tool_call_parts(message))
    return parts


def input_messages(messages: Iterable[Any]) -> list[InputMessage]:
    out = []
    for message in messages:
        role = _role(message)
        out.append(InputMessage(role=role, parts=_parts(message, role)))
    return out


def prompt_messages(prompt: Any, images: Any = None) -> list[InputMessage]:
    """A completion's prompt, and the images sent with it (a multi-modal LLM's)."""
    parts: list[Part] = [TextPart(str(prompt))]
    for image in images if isinstance(images, list) else ():
        part = _image_part(image)
        if part is not None:
            parts.append(part)
    return [InputMessage(role="user", parts=parts)]


def image_documents(arguments: Mapping[str, Any]) -> Any:
    """The images of a multi-modal LLM's ``complete(prompt, image_documents)`` call, as bound
    to LlamaIndex's ``(_self, *args, **kwargs)`` callback wrapper (or to the method itself)."""
    if "image_documents" in arguments:
        return arguments["image_documents"]
    args = arguments.get("args")
    if isinstance(args, tuple) and len(args) > 1:
        return args[1]
    kwargs = arguments.get("kwargs")
    return kwargs.get("image_documents") if isinstance(kwargs, Mapping) else None


def _image_part(image: Any) -> Part | None:
    """An ``ImageBlock``, or an ``ImageNode``/``ImageDocument`` (base64 data, URL or path)."""
    if getattr(image, "block_type", None) is not None:
        return _block_part(image)
    return _media_part(
        image, "image", "image", "image_mimetype", url_field="image_url", path_field="image_path"
    )


def output_message(response: Any, finish_reason: str | None) -> OutputMessage | None:
    reason = _FINISH_REASONS.get(finish_reason, finish_reason) if finish_reason else None
    message = getattr(response, "message", None)
    if message is not None:
        role = _role(message)
        return OutputMessage(parts=_parts(message, role), role=role, finish_reason=reason)
    text = getattr(response, "text", None)
    if isinstance(text, str):
        return OutputMessage(parts=[TextPart(text)], finish_reason=reason)
    return None


def output_finish_reason(finish_reason: str | None) -> str | None:
    return _FINISH_REASONS.get(finish_reason, finish_reason) if finish_reason else None


def tool_definitions(tools: Any) -> list[FunctionToolDefinition]:
    """OpenAI-style tool specs (``{"type": "function", "function": {...}}``) or LlamaIndex tools."""
    out = []
    for tool in tools if isinstance(tools, Sequence) else ():
        metadata = getattr(tool, "metadata", None)
        if metadata is not None and hasattr(metadata, "name"):
            schema = None
            try:
                schema = metadata.get_parameters_dict()
            except Exception:  # noqa: BLE001 - a schema we cannot build is left out
                schema = None
            out.append(
                FunctionToolDefinition(
                    name=str(metadata.name), description=metadata.description, parameters=schema
                )
            )
            continue
        function = _get(tool, "function") or tool
        name = _get(function, "name")
        if isinstance(name, str):
            parameters = _get(function, "parameters") or _get(function, "input_schema")
            description = _get(function, "description")
            out.append(
                FunctionToolDefinition(
                    name=name,
                    description=description if isinstance(description, str) else None,
                    parameters=parameters if isinstance(parameters, Mapping) else None,
                )
            )
    return out


def query_text(query: Any) -> str | None:
    """The text of a ``str`` or ``QueryBundle``."""
    if isinstance(query, str):
        return query
    text = getattr(query, "query_str", None)
    return text if isinstance(text, str) else None


def documents(nodes: Any, *, content: bool) -> list[RetrievalDocument]:
    out = []
    for item in nodes if isinstance(nodes, list) else ():
        node = getattr(item, "node", item)
        score = getattr(item, "score", None)
        text: str | None = None
        if content:
            get_content = getattr(node, "get_content", None)
            text = get_content() if callable(get_content) else None
        node_id = getattr(node, "node_id", None)
        out.append(
            RetrievalDocument(
                id=node_id if isinstance(node_id, str) else None,
                score=float(score) if isinstance(score, (int, float)) else None,
                content=text if isinstance(text, str) else None,
            )
        )
    return out
