"""Offline semantic-convention conformance checks for GenAI and MCP telemetry.

Rule ids are the ones the OpenTelemetry semantic-conventions-conformance harness reports (its
rego policies), so findings here and from a Weaver live-check run read the same. The one rule of
our own, ``genai_attribute_unknown``, stands in for Weaver's registry check.

GenAI/MCP rules look only at spans carrying ``gen_ai.operation.name`` or ``mcp.method.name``;
the span status rules look at every span given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from threadline import semconv
from threadline.testing.content_schema import content_errors
from threadline.testing.records import SpanLike, SpanRecord, event_records, records
from threadline.testing.registry import is_known_attribute

OPERATION_NAME_UNKNOWN: Final = "genai_operation_name_unknown"
SPAN_NAME_FORMAT: Final = "genai_span_name_format"
SPAN_KIND_UNEXPECTED: Final = "genai_span_kind_unexpected"
EXPECTED_ATTRIBUTE_MISSING: Final = "genai_expected_attribute_missing"
ATTRIBUTE_UNKNOWN: Final = "genai_attribute_unknown"
CONTENT_SCHEMA: Final = "genai_content_schema"
STATUS_OK_SET: Final = "span_status_ok_set_by_instrumentation"
ERROR_TYPE_MISSING: Final = "error_type_missing_on_error"
ERROR_TYPE_WITHOUT_ERROR: Final = "error_type_without_error_status"

RULE_IDS: Final = (
    OPERATION_NAME_UNKNOWN,
    SPAN_NAME_FORMAT,
    SPAN_KIND_UNEXPECTED,
    EXPECTED_ATTRIBUTE_MISSING,
    ATTRIBUTE_UNKNOWN,
    CONTENT_SCHEMA,
    STATUS_OK_SET,
    ERROR_TYPE_MISSING,
    ERROR_TYPE_WITHOUT_ERROR,
)

_CLIENT, _SERVER, _INTERNAL = "CLIENT", "SERVER", "INTERNAL"
_MEMORY_OPERATIONS = frozenset(
    {
        "search_memory",
        "create_memory",
        "update_memory",
        "upsert_memory",
        "delete_memory",
        "create_memory_store",
        "delete_memory_store",
    }
)

# The attribute that follows the operation in the span name (`{op} {value}`).
_NAME_KEYS: Final[Mapping[str, str]] = {
    **dict.fromkeys(semconv.INFERENCE_OPERATIONS, semconv.GEN_AI_REQUEST_MODEL),
    semconv.OP_EMBEDDINGS: semconv.GEN_AI_REQUEST_MODEL,
    semconv.OP_RETRIEVAL: semconv.GEN_AI_DATA_SOURCE_ID,
    semconv.OP_CREATE_AGENT: semconv.GEN_AI_AGENT_NAME,
    semconv.OP_INVOKE_AGENT: semconv.GEN_AI_AGENT_NAME,
    semconv.OP_PLAN: semconv.GEN_AI_AGENT_NAME,
    semconv.OP_EXECUTE_TOOL: semconv.GEN_AI_TOOL_NAME,
    semconv.OP_INVOKE_WORKFLOW: semconv.GEN_AI_WORKFLOW_NAME,
}

_KINDS: Final[Mapping[str, frozenset[str]]] = {
    # Inference MAY be INTERNAL for models running in-process.
    **dict.fromkeys(semconv.INFERENCE_OPERATIONS, frozenset({_CLIENT, _INTERNAL})),
    semconv.OP_EMBEDDINGS: frozenset({_CLIENT}),
    semconv.OP_RETRIEVAL: frozenset({_CLIENT}),
    semconv.OP_CREATE_AGENT: frozenset({_CLIENT}),
    semconv.OP_INVOKE_AGENT: frozenset({_CLIENT, _INTERNAL}),
    semconv.OP_EXECUTE_TOOL: frozenset({_INTERNAL}),
    semconv.OP_INVOKE_WORKFLOW: frozenset({_INTERNAL}),
    semconv.OP_PLAN: frozenset({_INTERNAL}),
    "fetch_response": frozenset({_CLIENT}),
    **dict.fromkeys(_MEMORY_OPERATIONS, frozenset({_CLIENT, _INTERNAL})),
}
_MCP_KINDS: Final = frozenset({_CLIENT, _SERVER})

# Required beyond gen_ai.operation.name, which every checked GenAI span has by definition.
_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    **dict.fromkeys(
        (*semconv.INFERENCE_OPERATIONS, semconv.OP_EMBEDDINGS),
        (semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_REQUEST_MODEL),
    ),
    semconv.OP_CREATE_AGENT: (semconv.GEN_AI_PROVIDER_NAME,),
    semconv.OP_EXECUTE_TOOL: (semconv.GEN_AI_TOOL_NAME,),
    "fetch_response": (semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_RESPONSE_ID),
}
# invoke_agent needs the provider only when the agent is remote (CLIENT span).
_REQUIRED_ON_CLIENT: Final[Mapping[str, tuple[str, ...]]] = {
    semconv.OP_INVOKE_AGENT: (semconv.GEN_AI_PROVIDER_NAME,),
}
_RECOMMENDED: Final[Mapping[str, tuple[str, ...]]] = {
    **dict.fromkeys(
        semconv.INFERENCE_OPERATIONS,
        (
            semconv.GEN_AI_RESPONSE_MODEL,
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        ),
    ),
    semconv.OP_EMBEDDINGS: (semconv.GEN_AI_RESPONSE_MODEL, semconv.GEN_AI_USAGE_INPUT_TOKENS),
    semconv.OP_EXECUTE_TOOL: (semconv.GEN_AI_TOOL_CALL_ID,),
}
# A failed call has no response to take these from, so strict mode does not ask for them.
_FROM_RESPONSE: Final = frozenset(
    {
        semconv.GEN_AI_RESPONSE_MODEL,
        semconv.GEN_AI_USAGE_INPUT_TOKENS,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    }
)

_MCP_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "tools/call": (semconv.GEN_AI_TOOL_NAME,),
    "prompts/get": (semconv.GEN_AI_PROMPT_NAME,),
    **dict.fromkeys(
        (
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "notifications/resources/updated",
        ),
        (semconv.MCP_RESOURCE_URI,),
    ),
}
_MCP_RECOMMENDED: Final = (semconv.MCP_PROTOCOL_VERSION, semconv.NETWORK_TRANSPORT)


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken rule on one span (or event)."""

    rule_id: str
    span_name: str
    span_id: str
    detail: str
    subject: str = "span"
    """``span``, or ``event`` when ``span_name`` is an event name and ``span_id`` its span."""

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.subject} '{self.span_name}' ({self.span_id}): {self.detail}"


class ConformanceError(AssertionError):
    """Raised by :func:`assert_conformant`; ``violations`` holds what was found."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: list[Violation] = list(violations)
        lines = [f"{len(self.violations)} semantic-convention violation(s):"]
        lines.extend(str(violation) for violation in self.violations)
        super().__init__("\n".join(lines))


def _present(attributes: Mapping[str, Any], key: str) -> bool:
    return attributes.get(key) not in (None, "")


class _SpanCheck:
    """The GenAI/MCP rules for one span; each method yields ``(rule_id, detail)`` pairs."""

    def __init__(self, span: SpanRecord, strict: bool) -> None:
        self.span = span
        self.attributes = span.attributes
        self.strict = strict
        self.operation: Any = self.attributes.get(semconv.GEN_AI_OPERATION_NAME)
        self.method: Any = self.attributes.get(semconv.MCP_METHOD_NAME)
        self.known_operation = self.operation in semconv.OPERATION_NAMES

    def run(self) -> Iterator[tuple[str, str]]:
        yield from self.operation_name()
        if self.method is not None:
            yield from self.mcp_name()
            yield from self.kind(_MCP_KINDS, f"MCP span ({semconv.MCP_METHOD_NAME})")
            yield from self.mcp_attributes()
        elif self.known_operation:
            yield from self.genai_name()
            yield from self.kind(_KINDS.get(self.operation), f"operation {self.operation!r}")
            yield from self.genai_attributes()
        yield from self.unknown_attributes()
        yield from self.content()

    def operation_name(self) -> Iterator[tuple[str, str]]:
        if self.operation is not None and not self.known_operation:
            detail = f"{semconv.GEN_AI_OPERATION_NAME}={self.operation!r} is not a known operation"
            yield OPERATION_NAME_UNKNOWN, detail

    def genai_name(self) -> Iterator[tuple[str, str]]:
        key = _NAME_KEYS.get(self.operation)
        if key is not None and _present(self.attributes, key):
            expected = f"{self.operation} {self.attributes[key]}"
            why = f"{key} is set"
        else:
            expected = str(self.operation)
            why = f"{key} is not set" if key else "the operation has no name attribute"
        if self.span.name != expected:
            yield SPAN_NAME_FORMAT, f"expected name {expected!r} ({why})"

    def mcp_name(self) -> Iterator[tuple[str, str]]:
        method = str(self.method)
        if self.span.kind == _SERVER and method not in semconv.MCP_KNOWN_METHODS:
            # A method the server does not know (the peer chose it) is named like HTTP's.
            method = semconv.MCP_METHOD_OTHER
        for key in (semconv.GEN_AI_TOOL_NAME, semconv.GEN_AI_PROMPT_NAME):
            if _present(self.attributes, key):
                expected = [f"{method} {self.attributes[key]}"]
                break
        else:
            expected = [method]
            # The resource URI is an opt-in target (high cardinality), so allowed but not asked.
            if _present(self.attributes, semconv.MCP_RESOURCE_URI):
                expected.append(f"{method} {self.attributes[semconv.MCP_RESOURCE_URI]}")
        if self.span.name not in expected:
            yield SPAN_NAME_FORMAT, f"expected name {' or '.join(map(repr, expected))}"

    def kind(self, allowed: frozenset[str] | None, what: str) -> Iterator[tuple[str, str]]:
        if allowed is not None and self.span.kind not in allowed:
            expected = " or ".join(sorted(allowed))
            detail = f"kind {self.span.kind} not allowed for {what}; expected {expected}"
            yield SPAN_KIND_UNEXPECTED, detail

    def _missing(self, keys: Iterable[str], level: str) -> Iterator[tuple[str, str]]:
        for key in keys:
            if not _present(self.attributes, key):
                yield EXPECTED_ATTRIBUTE_MISSING, f"{level} attribute {key} is missing"

    def _port(self, level: str) -> Iterator[tuple[str, str]]:
        if (
            self.span.kind == _CLIENT
            and _present(self.attributes, semconv.SERVER_ADDRESS)
            and not _present(self.attributes, semconv.SERVER_PORT)
        ):
            detail = (
                f"{level} attribute {semconv.SERVER_PORT} is missing "
                f"({semconv.SERVER_ADDRESS} is set)"
            )
            yield EXPECTED_ATTRIBUTE_MISSING, detail

    def genai_attributes(self) -> Iterator[tuple[str, str]]:
        yield from self._missing(_REQUIRED.get(self.operation, ()), "required")
        if self.span.kind == _CLIENT:
            yield from self._missing(_REQUIRED_ON_CLIENT.get(self.operation, ()), "required")
        yield from self._port("conditionally required")
        if self.strict:
            recommended = _RECOMMENDED.get(self.operation, ())
            if self.span.status_code == "ERROR":
                recommended = tuple(k for k in recommended if k not in _FROM_RESPONSE)
            yield from self._missing(recommended, "recommended")

    def mcp_attributes(self) -> Iterator[tuple[str, str]]:
        yield from self._missing(_MCP_REQUIRED.get(str(self.method), ()), "required")
        if self.strict:
            yield from self._missing(_MCP_RECOMMENDED, "recommended")
            # MCP only recommends the port with the address (GenAI conditionally requires it).
            yield from self._port("recommended")

    def unknown_attributes(self) -> Iterator[tuple[str, str]]:
        for key in sorted(self.attributes):
            if not is_known_attribute(key):
                yield ATTRIBUTE_UNKNOWN, f"{key} is not declared by the semantic conventions"

    def content(self) -> Iterator[tuple[str, str]]:
        for key in semconv.CONTENT_SCHEMAS:
            if key in self.attributes:
                errors = content_errors(key, self.attributes[key])
                if errors:
                    yield CONTENT_SCHEMA, "; ".join(errors)


def _status(span: SpanRecord) -> Iterator[tuple[str, str]]:
    error_type = span.attributes.get(semconv.ERROR_TYPE)
    if span.status_code == "OK":
        yield STATUS_OK_SET, "status is OK; instrumentation must leave it UNSET on success"
    if span.status_code == "ERROR" and error_type in (None, ""):
        yield ERROR_TYPE_MISSING, f"status is ERROR but {semconv.ERROR_TYPE} is not set"
    if error_type not in (None, "") and span.status_code != "ERROR":
        detail = f"{semconv.ERROR_TYPE}={error_type!r} is set but status is {span.status_code}"
        yield ERROR_TYPE_WITHOUT_ERROR, detail


def _event(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    attributes: Mapping[str, Any] = event["attributes"]
    for key in sorted(attributes):
        if not is_known_attribute(key):
            yield ATTRIBUTE_UNKNOWN, f"{key} is not declared by the semantic conventions"
    body = event["body"]
    for source in (attributes, body if isinstance(body, Mapping) else {}):
        for key in semconv.CONTENT_SCHEMAS:
            if key in source:
                errors = content_errors(key, source[key], structured=True)
                if errors:
                    yield CONTENT_SCHEMA, "; ".join(errors)


def check_conformance(
    spans: Iterable[SpanLike],
    events: Iterable[Any] = (),
    *,
    strict: bool = False,
    ignore: Collection[str] = (),
) -> list[Violation]:
    """Every rule broken by ``spans`` and ``events``, in input order.

    ``events`` are log records (as the SDK's in-memory log exporter returns them) or dicts; their
    content is validated in structured form. ``strict`` also asks for Recommended attributes.
    ``ignore`` lists rule ids to skip (for a known, accepted deviation).
    """
    if isinstance(ignore, str) or set(ignore) - set(RULE_IDS):
        raise ValueError(f"ignore must be a collection of rule ids from {RULE_IDS}; got {ignore!r}")
    found: list[Violation] = []
    for span in records(spans):
        findings: list[tuple[str, str]] = []
        attributes = span.attributes
        if semconv.GEN_AI_OPERATION_NAME in attributes or semconv.MCP_METHOD_NAME in attributes:
            findings.extend(_SpanCheck(span, strict).run())
        findings.extend(_status(span))
        found.extend(Violation(rule, span.name, span.span_id, d) for rule, d in findings)
    for event in event_records(events):
        found.extend(
            Violation(rule, event["event_name"] or "", event["span_id"] or "", detail, "event")
            for rule, detail in _event(event)
        )
    return [violation for violation in found if violation.rule_id not in ignore]


def assert_conformant(
    spans: Iterable[SpanLike],
    events: Iterable[Any] = (),
    *,
    strict: bool = False,
    ignore: Collection[str] = (),
) -> None:
    """Raise :class:`ConformanceError` listing every violation :func:`check_conformance` finds."""
    violations = check_conformance(spans, events, strict=strict, ignore=ignore)
    if violations:
        raise ConformanceError(violations)
