"""Validation of captured content against the semantic conventions' JSON schemas.

The schemas ship in ``threadline/testing/schemas`` (copies of semantic-conventions-genai
``model/gen-ai/*.json``); ``threadline.semconv.CONTENT_SCHEMAS`` maps attributes to them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from threadline import semconv

_MAX_ERRORS = 3


@functools.cache
def load_schema(file_name: str) -> dict[str, Any]:
    """One shipped schema, e.g. ``load_schema("gen-ai-input-messages.json")``."""
    text = (resources.files("threadline.testing") / "schemas" / file_name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(file_name: str) -> jsonschema.Draft202012Validator:
    # The schemas carry no "$schema"; they are generated as 2020-12 (they use "$defs").
    return jsonschema.Draft202012Validator(load_schema(file_name))


def _json_shape(value: Any) -> Any:
    # jsonschema's "array" type means list only; event values arrive as tuples from the SDK.
    if isinstance(value, (list, tuple)):
        return [_json_shape(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_shape(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    # Python's parser accepts NaN and Infinity; JSON (RFC 8259) and most backends do not.
    raise ValueError(f"{name} is not JSON")


def content_errors(attribute: str, value: Any, *, structured: bool = False) -> list[str]:
    """Why ``value`` is not valid content for ``attribute``; empty when valid.

    Span attributes carry content as a JSON string (``structured=False``); events carry the
    structured value itself (``structured=True``; a JSON string is still accepted there).
    Attributes without a schema are always valid.
    """
    file_name = semconv.CONTENT_SCHEMAS.get(attribute)
    if file_name is None:
        return []
    if isinstance(value, str):
        try:
            document = json.loads(value, parse_constant=_reject_constant)
        except ValueError as error:
            return [f"{attribute} is not valid JSON: {error}"]
    elif structured:
        document = _json_shape(value)
    else:
        return [f"{attribute} must be a JSON string on spans; got {type(value).__name__}"]
    validator = _validator(file_name)
    errors = list(validator.iter_errors(document)) or _typed_errors(attribute, document)
    if not errors:
        return []
    # The best match first: anyOf failures otherwise hide the part that actually broke.
    first = best_match(errors)
    ordered = [first, *(e for e in errors if e is not first)][:_MAX_ERRORS]
    messages = [
        f"{attribute} fails {file_name} at {_path(e.absolute_path)}: {e.message}" for e in ordered
    ]
    if len(errors) > _MAX_ERRORS:
        messages.append(f"{attribute}: {len(errors) - _MAX_ERRORS} more schema error(s)")
    return messages


# Where the items a "type" tells apart are: in each message's parts, or the list itself.
_IN_PARTS = frozenset((semconv.GEN_AI_INPUT_MESSAGES, semconv.GEN_AI_OUTPUT_MESSAGES))
_TYPED_ITEMS = frozenset((semconv.GEN_AI_SYSTEM_INSTRUCTIONS, semconv.GEN_AI_TOOL_DEFINITIONS))


@functools.cache
def _typed_validators(file_name: str) -> dict[str, jsonschema.Draft202012Validator]:
    """A validator of each definition in ``file_name`` whose ``type`` is a constant, by it."""
    definitions = load_schema(file_name).get("$defs", {})
    validators = {}
    for name, definition in definitions.items():
        kind = definition.get("properties", {}).get("type", {}).get("const")
        if isinstance(kind, str):
            schema = {"$defs": definitions, "$ref": f"#/$defs/{name}"}
            validators[kind] = jsonschema.Draft202012Validator(schema)
    return validators


def _typed_errors(attribute: str, document: Any) -> list[jsonschema.ValidationError]:
    """Errors of the items whose ``type`` names a kind the conventions define, each checked
    against that kind's definition: the schemas' catch-all (``GenericPart``,
    ``GenericToolDefinition``: any type, any fields) would otherwise take a malformed one,
    such as a tool call without its name. System instructions hold the parts messages do."""
    if not isinstance(document, list):
        return []
    items: list[tuple[tuple[Any, ...], Any]] = []
    if attribute in _IN_PARTS:
        for i, message in enumerate(document):
            parts = message.get("parts") if isinstance(message, dict) else None
            if isinstance(parts, list):
                items.extend(((i, "parts", j), part) for j, part in enumerate(parts))
    elif attribute in _TYPED_ITEMS:
        items = [((i,), item) for i, item in enumerate(document)]
    else:
        return []
    file_name = semconv.CONTENT_SCHEMAS[attribute]
    if attribute == semconv.GEN_AI_SYSTEM_INSTRUCTIONS:
        file_name = semconv.CONTENT_SCHEMAS[semconv.GEN_AI_INPUT_MESSAGES]
    validators = _typed_validators(file_name)
    errors = []
    for path, item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        validator = validators.get(kind) if isinstance(kind, str) else None
        if validator is not None:
            for error in validator.iter_errors(item):
                error.path.extendleft(reversed(path))
                errors.append(error)
    return errors


def _path(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
