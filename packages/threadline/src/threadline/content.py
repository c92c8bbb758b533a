"""Typed content parts: messages, system instructions, tool definitions, retrieval documents.

The dataclasses mirror the JSON schemas of the GenAI conventions (``gen-ai-input-messages.json``
and friends) field for field, so ``to_json`` of any of them validates against its schema.
Content is only converted when capture is on; integrations check :func:`capture_enabled` first
so a run with capture off never builds these objects at all.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from threadline import config, semconv
from threadline._failopen import report

_logger = logging.getLogger("threadline")


@dataclasses.dataclass(frozen=True, slots=True)
class TextPart:
    content: str
    type: Literal["text"] = "text"


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallRequestPart:
    name: str
    id: str | None = None
    arguments: Any = None
    type: Literal["tool_call"] = "tool_call"


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallResponsePart:
    response: Any
    id: str | None = None
    type: Literal["tool_call_response"] = "tool_call_response"


@dataclasses.dataclass(frozen=True, slots=True)
class ReasoningPart:
    content: str
    type: Literal["reasoning"] = "reasoning"


@dataclasses.dataclass(frozen=True, slots=True)
class BlobPart:
    modality: str
    content: bytes
    mime_type: str | None = None
    type: Literal["blob"] = "blob"


@dataclasses.dataclass(frozen=True, slots=True)
class UriPart:
    modality: str
    uri: str
    mime_type: str | None = None
    type: Literal["uri"] = "uri"


@dataclasses.dataclass(frozen=True, slots=True)
class FilePart:
    modality: str
    file_id: str
    mime_type: str | None = None
    type: Literal["file"] = "file"


@dataclasses.dataclass(frozen=True, slots=True)
class ServerToolCallPart:
    """A call of a tool the provider runs itself (web search, code execution): ``name`` is the
    tool's, which is also the ``type`` of its details; ``details`` are the provider's fields of
    the call (its arguments, ...)."""

    name: str
    id: str | None = None
    details: Mapping[str, Any] | None = None
    type: Literal["server_tool_call"] = "server_tool_call"


@dataclasses.dataclass(frozen=True, slots=True)
class ServerToolCallResponsePart:
    """What a tool the provider runs returned: ``name`` is the tool's (the ``type`` of its
    details), ``id`` the call's; ``details`` are the provider's fields of the result."""

    name: str
    id: str | None = None
    details: Mapping[str, Any] | None = None
    type: Literal["server_tool_call_response"] = "server_tool_call_response"


@dataclasses.dataclass(frozen=True, slots=True)
class GenericPart:
    """A part of a kind the conventions do not name; ``data`` holds its fields."""

    type: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Part: TypeAlias = (
    TextPart
    | ToolCallRequestPart
    | ToolCallResponsePart
    | ReasoningPart
    | BlobPart
    | UriPart
    | FilePart
    | ServerToolCallPart
    | ServerToolCallResponsePart
    | GenericPart
)


@dataclasses.dataclass(frozen=True, slots=True)
class InputMessage:
    role: str
    parts: Sequence[Part]
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OutputMessage:
    parts: Sequence[Part]
    role: str = "assistant"
    name: str | None = None
    finish_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionToolDefinition:
    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    type: Literal["function"] = "function"


@dataclasses.dataclass(frozen=True, slots=True)
class GenericToolDefinition:
    """A tool that is not a function the app runs: a provider's built-in tool (web search, code
    execution), told by its ``type``. ``options``: the provider's own settings for it, of which
    only plain values (strings, numbers, lists of them) under names that do not look like
    credentials are recorded, and URLs without their user info and query: a remote MCP server
    tool's settings carry its authorization."""

    type: str
    name: str
    options: Mapping[str, Any] | None = None


ToolDefinition: TypeAlias = FunctionToolDefinition | GenericToolDefinition


@dataclasses.dataclass(frozen=True, slots=True)
class RetrievalDocument:
    id: str | None = None
    score: float | None = None
    content: str | None = None
    """Extra field the schema allows (``additionalProperties``); recorded only with capture on."""


Redactable: TypeAlias = Part | ToolDefinition | RetrievalDocument

# Media inside other content (a tool's result) is recorded as the part it is.
_MEDIA_PARTS = (BlobPart, UriPart, FilePart)


def capture_enabled() -> bool:
    """Whether content is recorded anywhere; integrations skip building content when False."""
    # config.current(), without the call: integrations ask this on every run
    return config._settings.capture_content is not config.NO_CONTENT


_TRUNCATION_MARK = "…[truncated]"
# Levels of nesting kept within one value (tool arguments, a result, a schema). On the details
# event the value is an OTLP AnyValue, three protobuf levels per mapping, beneath the message's
# own; the collector's and the SDK's decoders stop at 100, and refuse the whole batch past it.
_MAX_DEPTH = 20
# Items kept within one value, nested ones included: a structure that holds itself (or one
# object many times over) would otherwise be copied out exponentially, a long list in full.
_MAX_ITEMS = 10_000
# OTLP's AnyValue holds a signed 64-bit integer; a larger one is kept as its digits.
_MIN_INT = -(2**63)
_MAX_INT = 2**63 - 1


class _Limiter:
    """Applies the redactor and the length limit; remembers whether anything was cut."""

    __slots__ = ("_items", "limit", "redactor", "truncated")

    def __init__(self, settings: config.Settings) -> None:
        self.limit = settings.max_content_length
        self.redactor: Callable[[Any], Any] | None = settings.redactor
        self.truncated = False
        self._items: int | None = None  # items left in the value being copied (None: none is)

    def redact(self, item: Redactable) -> Redactable | None:
        if self.redactor is None:
            return item
        try:
            result: Redactable | None = self.redactor(item)
        except Exception as error:  # noqa: BLE001 - the app's redactor: its item is dropped
            _redactor_failed(error)
            return None
        return result

    def text(self, value: str) -> str:
        if not value.isascii():
            value = _valid_unicode(value)
        if len(value) <= self.limit:
            return value
        self.truncated = True
        return value[: self.limit] + _TRUNCATION_MARK

    def blob(self, content: Any) -> Any:
        """Base64 of ``content``'s bytes. Over the limit, of its leading bytes only: still valid
        base64 (no mark appended), the cut told by the content-truncated flag alone."""
        if not isinstance(content, (bytes, bytearray, memoryview)):  # the schema takes a string
            return self.text(content if isinstance(content, str) else str(content))
        data = bytes(content)
        keep = self.limit // 4 * 3
        if len(data) > keep:
            self.truncated = True
            data = data[:keep]
        return base64.b64encode(data).decode("ascii")

    def value(self, value: Any, depth: int = 0) -> Any:
        """A JSON-compatible copy of ``value`` with every string cut to the limit, and at most
        ``_MAX_ITEMS`` items in all: the rest of a container is one truncation mark."""
        if self._items is not None:  # within a value being copied: its budget goes on
            return self._value(value, depth)
        self._items = _MAX_ITEMS
        try:
            return self._value(value, depth)
        finally:
            self._items = None

    def _spend(self) -> bool:
        """Take one item of the value's budget; False (and the flag) once it is spent."""
        items = self._items
        if items is not None:
            if items <= 0:
                self.truncated = True
                return False
            self._items = items - 1
        return True

    def _value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            return value if _MIN_INT <= value <= _MAX_INT else str(value)
        if depth >= _MAX_DEPTH:
            self.truncated = True
            return _TRUNCATION_MARK
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.text(base64.b64encode(bytes(value)).decode("ascii"))
        if isinstance(value, Mapping):  # keys are content too: cut them as well
            mapping: dict[str, Any] = {}
            for k, v in value.items():
                if not self._spend():
                    mapping[_TRUNCATION_MARK] = _TRUNCATION_MARK
                    break
                mapping[self.text(str(k))] = self._value(v, depth + 1)
            return mapping
        if isinstance(value, (list, tuple, set, frozenset)):
            out: list[Any] = []
            for item in value:
                if not self._spend():
                    out.append(_TRUNCATION_MARK)
                    break
                if isinstance(item, _MEDIA_PARTS):
                    kept = self.media(item)
                    if kept is not None:
                        out.append(kept)
                else:
                    out.append(self._value(item, depth + 1))
            return out
        if isinstance(value, _MEDIA_PARTS):
            return self.media(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # Its public fields, read as they are: asdict() deep-copies every value (a lock or
            # a client in a field fails it) and keeps private fields and those kept out of its
            # repr (often secrets) that the app never shows.
            fields: dict[str, Any] = {}
            for field in dataclasses.fields(value):
                if field.name.startswith("_") or not field.repr:
                    continue
                if not self._spend():
                    fields[_TRUNCATION_MARK] = _TRUNCATION_MARK
                    break
                fields[self.text(field.name)] = self._value(
                    getattr(value, field.name, None), depth + 1
                )
            return fields
        dump = getattr(value, "model_dump", None)  # pydantic models
        if callable(dump):
            try:
                return self._value(dump(mode="json"), depth + 1)
            except Exception:  # noqa: BLE001 - fall back to str() below
                pass
        return self.text(str(value))

    def media(self, part: BlobPart | UriPart | FilePart) -> dict[str, Any] | None:
        """A media part inside other content (an image a tool returned): passed through the
        redactor on its own, as in a message, and recorded as that part (None: redacted away)."""
        kept = self.redact(part)
        if kept is None:
            return None
        try:
            return _part_json(kept, self)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - a malformed part loses only itself
            report("content.part", error)
            return None


def _redactor_failed(error: BaseException) -> None:
    """A redactor that raised: the item is left out (never recorded unredacted), the rest
    stays. Logged as the app's error, with its traceback the first time."""
    if not _redactor_warned[0]:
        _redactor_warned[0] = True
        _logger.warning(
            "threadline: the content redactor raised; the item it was given is left out "
            "(further failures are logged at debug level)",
            exc_info=error,
        )
    else:
        _logger.debug("threadline: the content redactor raised", exc_info=error)


_redactor_warned = [False]


def _name(value: Any) -> str | None:
    """A name, id or enum value within content: not cut, but made valid Unicode like text, and
    a string as the schemas take it (an int id as its digits). None stays None."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():
        return _valid_unicode(text)
    return text


def _valid_unicode(value: str) -> str:
    """``value`` with lone surrogates (text decoded with ``surrogateescape``) replaced: an
    exporter cannot encode them as UTF-8 and would drop the whole attribute."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


# The fields each kind of part the conventions define requires besides its type.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "reasoning": ("content",),
    "tool_call": ("name",),
    "tool_call_response": ("response",),
    "server_tool_call": ("name", "server_tool_call"),
    "server_tool_call_response": ("server_tool_call_response",),
    "blob": ("modality", "content"),
    "uri": ("modality", "uri"),
    "file": ("modality", "file_id"),
}


# The fields each kind of part holds as a string (or null), per its schema.
_STRING_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "reasoning": ("content",),
    "compaction": ("id", "content"),
    "tool_call": ("id", "name"),
    "tool_call_response": ("id",),
    "server_tool_call": ("id", "name"),
    "server_tool_call_response": ("id",),
    "blob": ("modality", "content", "mime_type", "transcript"),
    "uri": ("modality", "uri", "mime_type", "transcript"),
    "file": ("modality", "file_id", "mime_type", "transcript"),
}
# The fields each kind of part holds as an object told by its own "type".
_OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "server_tool_call": ("server_tool_call",),
    "server_tool_call_response": ("server_tool_call_response",),
}


def _part_json(part: Part, lim: _Limiter) -> dict[str, Any] | None:
    """The part as its schema has it; None for one missing a field the schema requires (a
    streamed tool call's chunk without its name, a text part of None): no shape to record."""
    if isinstance(part, GenericPart):
        kind = _name(part.type)
        if kind is None:
            return None
        required = _REQUIRED_FIELDS.get(kind)
        if required is not None and any(part.data.get(field) is None for field in required):
            # it names a kind of the conventions but lacks what that kind holds (a file block
            # without data, URL or id): no shape to record, as for a typed part
            _logger.debug("dropping a %s part without %s", kind, ", ".join(required))
            return None
        strings = _STRING_FIELDS.get(kind, ())
        out = {}
        for k, v in part.data.items():
            key = lim.text(str(k))
            if key in strings and v is not None and not isinstance(v, str):
                # a field the kind's schema takes as a string (an int's digits, say)
                out[key] = lim.blob(v) if kind == "blob" and key == "content" else lim.text(str(v))
            else:
                out[key] = lim.value(v)
        for field in _OBJECT_FIELDS.get(kind, ()):
            details = out.get(field)
            if isinstance(details, dict) and "type" not in details and "name" in out:
                details["type"] = out["name"]  # told by the tool's name, as for a typed part
            if not isinstance(details, dict) or not isinstance(details.get("type"), str):
                _logger.debug("dropping a %s part whose %s is no object with a type", kind, field)
                return None
        out["type"] = kind
        return out
    if isinstance(part, (TextPart, ReasoningPart)):
        content: Any = part.content
        if not isinstance(content, str):  # None: a reply of tool calls only (OpenAI's content)
            return (
                None if content is None else {"type": part.type, "content": lim.text(str(content))}
            )
        return {"type": part.type, "content": lim.text(content)}
    if isinstance(part, ToolCallRequestPart):
        name = _name(part.name)
        if name is None:
            return None
        out = {"type": part.type, "name": name}
        if part.id is not None:
            out["id"] = _name(part.id)
        if part.arguments is not None:
            out["arguments"] = lim.value(_maybe_json(part.arguments))
        return out
    if isinstance(part, ToolCallResponsePart):
        out = {"type": part.type, "response": lim.value(_maybe_json(part.response))}
        if part.id is not None:
            out["id"] = _name(part.id)
        return out
    if isinstance(part, (ServerToolCallPart, ServerToolCallResponsePart)):
        name = _name(part.name)
        if name is None:  # the details are told by it
            return None
        # the details are an object told by its "type": the tool's name, whatever they hold
        details = lim.value(dict(part.details)) if part.details else {}
        details["type"] = name
        out = {"type": part.type}
        if isinstance(part, ServerToolCallPart):
            out["name"] = name
        if part.id is not None:
            out["id"] = _name(part.id)
        out[part.type] = details
        return out
    modality = _name(part.modality)
    if modality is None:
        return None
    if isinstance(part, BlobPart):
        data: Any = part.content
        if data is None:
            return None
        out = {"type": part.type, "modality": modality, "content": lim.blob(data)}
    elif isinstance(part, UriPart):
        uri: Any = part.uri
        if uri is None:
            return None
        out = {"type": part.type, "modality": modality, "uri": lim.text(str(uri))}
    else:
        file_id = _name(part.file_id)
        if file_id is None:
            return None
        out = {"type": part.type, "modality": modality, "file_id": file_id}
    if part.mime_type is not None:
        out["mime_type"] = _name(part.mime_type)
    return out


def _maybe_json(value: Any) -> Any:
    """Tool arguments/results often arrive as JSON text; record them as objects when they are."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            return value
    return value


def _parts_json(parts: Iterable[Part], lim: _Limiter) -> list[dict[str, Any]]:
    out = []
    for part in parts:
        kept = lim.redact(part)
        if kept is None:
            continue
        try:
            item = _part_json(kept, lim)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - one malformed part loses only itself
            report("content.part", error)
            continue
        if item is not None:
            out.append(item)
    return out


def messages_json(
    messages: Iterable[InputMessage | OutputMessage], lim: _Limiter
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        role = _name(message.role)
        if role is None:  # the schemas require one
            continue
        item: dict[str, Any] = {"role": role, "parts": _parts_json(message.parts, lim)}
        if message.name is not None:
            item["name"] = _name(message.name)
        if isinstance(message, OutputMessage) and message.finish_reason is not None:
            item["finish_reason"] = _name(message.finish_reason)
        out.append(item)
    return out


def system_instructions_json(parts: Iterable[Part], lim: _Limiter) -> list[dict[str, Any]]:
    return _parts_json(parts, lim)


def tool_definitions_json(
    definitions: Iterable[ToolDefinition], lim: _Limiter
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for definition in definitions:
        kept = lim.redact(definition)
        if isinstance(kept, GenericToolDefinition):
            kind, name = _name(kept.type), _name(kept.name)
            if kind is None or name is None:  # the schema requires both
                continue
            item = {key: lim.value(value) for key, value in _safe_options(kept.options)}
            item.update(type=kind, name=name)
            out.append(item)
            continue
        if not isinstance(kept, FunctionToolDefinition):
            continue
        name = _name(kept.name)
        if name is None:
            continue
        item = {"type": kept.type, "name": name}
        if kept.description is not None:
            description: Any = kept.description
            item["description"] = lim.text(
                description if isinstance(description, str) else str(description)
            )
        parameters = _maybe_json(kept.parameters)  # a schema given as its JSON text
        if parameters is not None and not isinstance(parameters, (Mapping, bool)):
            # no draft-07 schema (one is an object or a boolean): left out, not guessed at
            _logger.debug("leaving out the parameters of tool %r: no JSON schema", name)
        elif isinstance(parameters, bool):
            item["parameters"] = parameters
        elif parameters is not None:
            lim._items = _MAX_ITEMS  # one value's budget, as in lim.value()
            try:
                item["parameters"] = _schema(parameters, lim)
            except _TooDeep:
                lim.truncated = True
                item["parameters"] = {}
            finally:
                lim._items = None
        out.append(item)
    return out


class _TooDeep(Exception):
    """A list in a schema reached the depth limit, or the schema its item budget; the nearest
    enclosing mapping gives way."""


# What a value in a tool's parameter schema is, for _schema: a schema (its keys are keywords),
# a mapping of names to schemas, a ``type`` (JSON type names), or anything else (data).
_SCHEMA, _NAMED, _TYPE, _DATA = range(4)
# Keywords holding names mapped to schemas (draft-07's and 2020-12's).
_NAMED_KEYWORDS = frozenset(
    ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")
)
# Keywords holding data or text, not schemas: whatever keys their values have are no keywords.
_DATA_KEYWORDS = frozenset(
    ("description", "title", "$comment", "examples", "example", "default", "enum", "const")
)
_JSON_TYPES = frozenset(("object", "array", "string", "number", "integer", "boolean", "null"))


def _schema(value: Any, lim: _Limiter, depth: int = 0, kind: int = _SCHEMA) -> Any:
    """``lim.value`` for a JSON Schema that keeps it a valid, looser schema. Strings are cut to
    the length limit as anywhere in content, property names and values alike, except what
    the schema's shape rests on: a schema's keywords that are no longer than the limit allows
    (``type``, ``properties``, ``$ref``, ...; a cut one would become an unknown keyword) and
    ``type``'s JSON type names. Where nesting reaches the limit, or the item budget runs out,
    the innermost mapping holding the cut becomes ``{}`` (any value, or no properties or
    definitions), never the truncation mark where a schema is."""
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            lim.truncated = True
            return {}
        try:
            schema: dict[str, Any] = {}
            for k, v in value.items():
                if not lim._spend():
                    raise _TooDeep
                key = str(k)
                if kind == _SCHEMA:
                    if key == "type":
                        inner = _TYPE
                    elif key in _NAMED_KEYWORDS:
                        inner = _NAMED
                    elif key in _DATA_KEYWORDS:
                        inner = _DATA
                    else:
                        inner = _SCHEMA
                    # a keyword is short: kept whole unless it is far over the limit
                    name = _name(key) if len(key) <= _MAX_KEYWORD else lim.text(key)
                else:
                    inner = _SCHEMA if kind == _NAMED else _DATA
                    name = lim.text(key)
                cut = _schema(v, lim, depth + 1, inner)
                if key in _UNIQUE_KEYWORDS and kind == _SCHEMA and isinstance(cut, list):
                    cut = _unique(cut)  # names cut to the limit may now be equal
                schema[name or ""] = cut
            return schema
        except _TooDeep:
            lim.truncated = True
            return {}
    if isinstance(value, (list, tuple)):
        if depth >= _MAX_DEPTH:
            raise _TooDeep
        items: list[Any] = []
        # items of a schema keyword's list (allOf, prefixItems) are schemas; of draft-07's
        # dependencies, names
        inner = _DATA if kind == _NAMED else kind
        for item in value:
            if not lim._spend():
                raise _TooDeep
            items.append(_schema(item, lim, depth + 1, inner))
        return items
    if isinstance(value, str):
        return value if kind == _TYPE and value in _JSON_TYPES else lim.text(value)
    if kind == _SCHEMA and type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        # a bound such as a uint64's maximum: a number still (its string would be no schema)
        with contextlib.suppress(OverflowError):
            return float(value)
    return lim.value(value, depth)


# Keywords whose list must hold unique items (draft-07's ``required`` and ``type``).
_UNIQUE_KEYWORDS = frozenset(("required", "type"))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _unique(items: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for item in items:
        if item not in unique:
            unique.append(item)
    return unique


# The longest keyword of the drafts threadline knows ("unevaluatedProperties"), with room.
_MAX_KEYWORD = 64


_CREDENTIAL_NAME = re.compile(
    r"auth|token|secret|passw|key|credential|cookie|header|signature|session", re.IGNORECASE
)
_PLAIN = (str, int, float, bool)


def _safe_options(options: Mapping[str, Any] | None) -> Iterator[tuple[str, Any]]:
    """The settings of a built-in tool that are safe to record (see GenericToolDefinition)."""
    for key, value in (options or {}).items():
        name = str(key)
        if value is None or _CREDENTIAL_NAME.search(name):
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value):
            values = [_without_credentials(v) if isinstance(v, str) else v for v in value]
            yield name, [v for v in values if v is not None]
        elif isinstance(value, str):
            text = _without_credentials(value)
            if text is not None:
                yield name, text
        elif isinstance(value, _PLAIN):
            yield name, value


def _without_credentials(value: str) -> str | None:
    """A URL without its user info, query and fragment (None if it does not parse); any other
    string as it is."""
    if "://" not in value:
        return value
    try:
        url = urlsplit(value)
        host = url.hostname or ""
        netloc = f"{host}:{url.port}" if url.port else host
    except ValueError:
        return None
    return urlunsplit((url.scheme, netloc, url.path, "", ""))


def documents_json(documents: Iterable[RetrievalDocument], lim: _Limiter) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for document in documents:
        kept = lim.redact(document)
        if not isinstance(kept, RetrievalDocument):
            continue
        # Retrievers hand over what their stores hold: an int id, a numpy score. The schema
        # takes a string and a number.
        item: dict[str, Any] = {}
        if kept.id is not None:
            item["id"] = _name(kept.id if isinstance(kept.id, str) else str(kept.id))
        if kept.score is not None:
            score = _number(kept.score)
            if score is not None:
                item["score"] = score
        if kept.content is not None:
            content: Any = kept.content
            item["content"] = lim.text(content if isinstance(content, str) else str(content))
        out.append(item)
    return out


def _number(value: Any) -> float | int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(value)  # numpy and decimal scores
    except (TypeError, ValueError):
        return None


def tool_payload_json(value: Any, lim: _Limiter, *, request: bool, call_id: str | None) -> Any:
    """Tool arguments or result, passed through the redactor as the matching message part.
    None if redacted away, or if it cannot be recorded (then it loses only itself)."""
    part: Part = (
        ToolCallRequestPart(name="", id=call_id, arguments=value)
        if request
        else ToolCallResponsePart(response=value, id=call_id)
    )
    kept = lim.redact(part)
    try:
        if isinstance(kept, ToolCallRequestPart):
            return lim.value(_maybe_json(kept.arguments))
        if isinstance(kept, ToolCallResponsePart):
            return lim.value(_maybe_json(kept.response))
    except Exception as error:  # noqa: BLE001 - the app's object failed to convert
        report("content.tool_payload", error)
    return None


_MAX_PROMPT_VARIABLES = 32
# A variable's name becomes part of an attribute's key: plain identifiers only (it comes from
# the wire, where anything goes).
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def prompt_variables_json(variables: object, lim: _Limiter) -> dict[str, str]:
    """A prompt template's variables (MCP ``prompts/get`` arguments) as
    ``gen_ai.prompt.variable.<name>`` attributes, each value a string, passed through the
    redactor as the text it is. At most ``_MAX_PROMPT_VARIABLES``; a name that is no plain
    identifier is dropped (debug log)."""
    out: dict[str, str] = {}
    if not isinstance(variables, Mapping):
        return out
    for name, value in variables.items():
        if len(out) == _MAX_PROMPT_VARIABLES:
            _logger.debug("dropping prompt variables beyond %d", _MAX_PROMPT_VARIABLES)
            break
        if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
            _logger.debug("dropping a prompt variable named %.80r", name)
            continue
        text = value if isinstance(value, str) else dumps(value)
        kept = lim.redact(TextPart(text))
        if isinstance(kept, TextPart) and isinstance(kept.content, str):
            out[semconv.GEN_AI_PROMPT_VARIABLE_PREFIX + name] = lim.text(kept.content)
    return out


def dumps(value: Any) -> str:
    """Compact JSON, as the conventions ask for content on span attributes. Strict JSON: a
    non-finite float (``NaN``, ``Infinity``, which most parsers reject) is written as null."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
        )
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)


def _finite(value: Any, depth: int = 0) -> Any:
    """``value`` with every non-finite float replaced by None (containers copied)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {key: _finite(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item, depth + 1) for item in value]
    return value


def query_text(query: str, lim: _Limiter) -> str | None:
    """A retrieval query, passed through the redactor as a text part (None: redacted away)."""
    kept = lim.redact(TextPart(query))
    if kept is None:
        return None
    if isinstance(kept, TextPart):
        return lim.text(kept.content)
    return None


def media_part(modality: str, uri: str, mime_type: str | None = None) -> BlobPart | UriPart:
    """A part for media given by URL: a ``data:...;base64,`` URL is inline data, so a blob part
    (the conventions' URI part is for references, not data URLs); anything else a URI part."""
    if uri.startswith("data:"):
        header, comma, payload = uri.partition(",")
        if comma and header.endswith(";base64"):
            declared = header[5:-7].split(";", 1)[0]
            try:
                data = base64.b64decode(payload, validate=True)
            except ValueError:
                pass  # not base64 after all: kept as the URI it is
            else:
                return BlobPart(modality, data, mime_type=declared or mime_type)
    return UriPart(modality, uri, mime_type=mime_type)


def text_input(role: str, text: str) -> InputMessage:
    """Shorthand for the common one-text-part message."""
    return InputMessage(role=role, parts=(TextPart(text),))


__all__ = [
    "BlobPart",
    "FilePart",
    "FunctionToolDefinition",
    "GenericPart",
    "GenericToolDefinition",
    "InputMessage",
    "OutputMessage",
    "Part",
    "ReasoningPart",
    "Redactable",
    "RetrievalDocument",
    "ServerToolCallPart",
    "ServerToolCallResponsePart",
    "TextPart",
    "ToolCallRequestPart",
    "ToolCallResponsePart",
    "ToolDefinition",
    "UriPart",
    "capture_enabled",
    "media_part",
    "text_input",
]
