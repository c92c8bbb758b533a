"""Carrying trace context and session baggage across processes in plain dict carriers
(HTTP headers, MCP ``params._meta``), for protocols that do not propagate context themselves.

Outbound, only allow-listed baggage keys leave the process. Inbound carriers are hostile input:
anything of the wrong type, oversized, malformed or beyond the W3C limits is dropped with a debug
log and never raises.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote_plus

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from threadline import _context, config
from threadline._failopen import report
from threadline._runs import _baggage_entries

_logger = logging.getLogger("threadline.propagation")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"

# W3C Trace Context: version 00 is exactly 55 characters; later versions may append fields.
_MAX_TRACEPARENT = 256
_MAX_TRACESTATE = 512
_MAX_TRACESTATE_MEMBERS = 32
# W3C Baggage limits.
_MAX_BAGGAGE_MEMBERS = 180
_MAX_BAGGAGE_PAIR = 4096
_MAX_BAGGAGE_BYTES = 8192
_MAX_VALUE = 256
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# W3C Trace Context list-member (key=value, with the multi-tenant key form); checked before the
# SDK's parser, which logs a warning for every malformed member it sees.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)

_tracecontext = TraceContextTextMapPropagator()
_FIELDS = (TRACEPARENT, TRACESTATE, BAGGAGE)
_FIELD_LENGTHS = frozenset(len(name) for name in _FIELDS)
# Keys has_context looks at for a field in another casing: a hostile carrier can have any number.
_MAX_KEYS_SCANNED = 64


def inject(carrier: MutableMapping[str, Any], context: Context | None = None) -> None:
    """Write ``traceparent``/``tracestate`` and the allow-listed ``baggage`` of ``context``
    (default: current) into ``carrier``. A ``baggage`` entry already in the carrier is replaced,
    so keys outside the allow-list never leave the process."""
    try:
        ctx = context if context is not None else otel_context.get_current()
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            # a new traceparent: a tracestate already in the carrier belongs to another trace
            _drop_fields(carrier, _FIELDS)
            # W3C trace context, as TraceContextTextMapPropagator.inject writes it, without
            # looking the span up a second time (once per outgoing request)
            carrier[TRACEPARENT] = (
                f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
                f"-{span_context.trace_flags:02x}"
            )
            if span_context.trace_state:
                carrier[TRACESTATE] = span_context.trace_state.to_header()
        else:
            _drop_fields(carrier, (BAGGAGE,))
        header = _baggage_header(ctx)
        if header:
            carrier[BAGGAGE] = header
    except Exception as error:  # noqa: BLE001 - fail-open
        report("threadline.inject", error)


def _drop_fields(carrier: MutableMapping[str, Any], names: tuple[str, ...]) -> None:
    """Remove ``names`` from ``carrier`` in any casing: a dict of HTTP headers may hold
    ``Baggage`` or ``Traceparent``, which the receiver reads as the same field as ours."""
    for name in names:
        carrier.pop(name, None)
    stale = None
    for key in carrier:  # a loop, not a comprehension: no frame of its own on the usual miss
        if isinstance(key, str) and len(key) in _FIELD_LENGTHS and key.lower() in names:
            if stale is None:
                stale = [key]
            else:
                stale.append(key)
    if stale is not None:
        for key in stale:
            del carrier[key]


def has_context(carrier: object) -> bool:
    """Whether ``carrier`` (a mapping) holds a ``traceparent``, ``tracestate`` or ``baggage``
    field, in any casing, as :func:`extract` reads them; other casings are looked for among its
    first keys only."""
    if not isinstance(carrier, Mapping):
        return False
    if TRACEPARENT in carrier or BAGGAGE in carrier or TRACESTATE in carrier:
        return True
    for key in itertools.islice(carrier, _MAX_KEYS_SCANNED):
        if isinstance(key, str) and len(key) in _FIELD_LENGTHS and key.lower() in _FIELDS:
            return True
    return False


def _baggage_header(ctx: Context) -> str:
    entries = _baggage_entries(ctx)
    if not entries:
        return ""
    allow = config.current().baggage_allowlist
    members: list[str] = []
    size = -1  # the first member has no comma before it
    for key, value in entries.items():
        # What the receiving side keeps (see _parse_baggage): a printable value (no lone
        # surrogate, which has no UTF-8 to percent-encode), within W3C's sizes.
        if (
            key not in allow
            or not isinstance(value, str)
            or not value
            or len(value) > _MAX_VALUE
            or not value.isprintable()
        ):
            continue
        member = f"{key}={quote(value, safe='')}"
        if len(member) > _MAX_BAGGAGE_PAIR or size + 1 + len(member) > _MAX_BAGGAGE_BYTES:
            continue
        size += 1 + len(member)
        members.append(member)
        if len(members) == _MAX_BAGGAGE_MEMBERS:
            break
    return ",".join(members)


def extract(carrier: object, context: Context | None = None) -> Context:
    """The context described by ``carrier`` on top of ``context`` (default: current).

    Only a well-formed ``traceparent`` becomes the remote parent; only allow-listed baggage
    entries within the size limits are kept. Never raises: bad input is dropped (debug log).
    """
    base = context if context is not None else otel_context.get_current()
    try:
        return _extract(carrier, base)
    except Exception as error:  # noqa: BLE001 - inbound data must never break the caller
        report("threadline.extract", error)
        return base


def _field(carrier: Mapping[Any, Any], name: str) -> str | None:
    value = carrier.get(name)
    if value is None:  # HTTP header casing
        for key, candidate in carrier.items():
            if isinstance(key, str) and len(key) == len(name) and key.lower() == name:
                value = candidate
                break
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            value = value[0]
        elif (
            name != TRACEPARENT
            and 1 < len(value) <= _MAX_BAGGAGE_MEMBERS
            and all(isinstance(line, str) for line in value)
        ):
            # several header lines of one list field (W3C baggage, tracestate) are one list:
            # joined, they are held to the same limits as a single line
            value = ",".join(value)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value is None:
        return None
    if not isinstance(value, str):
        _logger.debug("dropping %s: expected str, got %s", name, type(value).__name__)
        return None
    return value


def _extract(carrier: object, base: Context) -> Context:
    if not isinstance(carrier, Mapping):
        if carrier is not None:
            _logger.debug("ignoring carrier of type %s", type(carrier).__name__)
        return base
    ctx = base
    traceparent = _field(carrier, TRACEPARENT)
    if traceparent is not None:
        traceparent = traceparent.strip()
        if len(traceparent) > _MAX_TRACEPARENT:  # before the SDK's parser, which warns
            _logger.debug("dropping traceparent of %d characters", len(traceparent))
        else:
            fields: dict[str, str] = {TRACEPARENT: traceparent}
            tracestate = _field(carrier, TRACESTATE)
            if tracestate is not None:
                if _valid_tracestate(tracestate):
                    fields[TRACESTATE] = tracestate
                else:
                    _logger.debug("dropping malformed tracestate %.80r", tracestate)
            extracted = _tracecontext.extract(fields, ctx)
            # The SDK's parser checks the W3C format (and rejects version ff, zero ids, and
            # extra fields on version 00): anything else leaves no valid span context.
            if trace.get_current_span(extracted).get_span_context().is_valid:
                ctx = extracted
            else:
                _logger.debug("dropping malformed traceparent %.80r", traceparent)
    header = _field(carrier, BAGGAGE)
    if header is not None:
        for key, value in _parse_baggage(header):
            ctx = otel_baggage.set_baggage(key, value, ctx)
    return ctx


def _valid_tracestate(header: str) -> bool:
    if len(header) > _MAX_TRACESTATE or header.count(",") >= _MAX_TRACESTATE_MEMBERS:
        return False
    members = (member.strip(" \t") for member in header.split(","))
    return all(_TRACESTATE_MEMBER.fullmatch(member) for member in members if member)


def _parse_baggage(header: str) -> list[tuple[str, str]]:
    settings = config.current()
    # W3C baggage is ASCII (values are percent-encoded): a header that is not is measured in
    # its UTF-8 bytes, and its non-ASCII members are dropped below.
    size = len(header) if header.isascii() else len(header.encode("utf-8", "replace"))
    if size > settings.max_inbound_baggage_bytes:
        _logger.debug("dropping baggage header of %d bytes", size)
        return []
    allow = settings.baggage_allowlist
    kept: list[tuple[str, str]] = []
    members = header.split(",")
    if len(members) > _MAX_BAGGAGE_MEMBERS:
        _logger.debug("dropping baggage entries beyond %d", _MAX_BAGGAGE_MEMBERS)
        members = members[:_MAX_BAGGAGE_MEMBERS]
    for member in members:
        if len(member) > _MAX_BAGGAGE_PAIR or "=" not in member or not member.isascii():
            _logger.debug("dropping malformed baggage member %.80r", member)
            continue
        pair = member.split(";", 1)[0]  # properties are not used
        key, _, raw = pair.partition("=")
        key = key.strip()
        if key not in allow:  # not ours to read: no concern of the log
            continue
        if not _TOKEN.match(key):
            _logger.debug("dropping malformed baggage member %.80r", member)
            continue
        try:
            # unquote_plus, as OpenTelemetry's own baggage propagator: its peers (the MCP
            # SDK's injection among them) encode a space as "+"
            value = unquote_plus(raw.strip(), errors="strict")
        except UnicodeDecodeError:
            _logger.debug("dropping baggage value for %s: not UTF-8", key)
            continue
        if not value or len(value) > _MAX_VALUE or not value.isprintable():
            _logger.debug("dropping baggage value for %s", key)
            continue
        kept.append((key, value))
    return kept


@contextmanager
def continue_trace(carrier: object) -> Iterator[Context]:
    """Attach the context extracted from ``carrier`` for the block; always detaches."""
    ctx = extract(carrier)
    token = _context.attach(ctx)
    try:
        yield ctx
    finally:
        _context.detach(token)
