"""Settings: which providers threadline uses, content capture, limits, and the baggage allow-list.

Every setting has an environment variable; ``threadline.configure(...)`` overrides it in code.
Settings are an immutable snapshot swapped atomically, so hot paths read them without locks.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from threadline import semconv

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from threadline.content import Part

_logger = logging.getLogger("threadline")

ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_MAX_CONTENT_LENGTH: Final = "THREADLINE_MAX_CONTENT_LENGTH"
ENV_MAX_OPEN_RUNS: Final = "THREADLINE_MAX_OPEN_RUNS"
ENV_RUN_TTL: Final = "THREADLINE_RUN_TTL_SECONDS"
ENV_BAGGAGE_ALLOWLIST: Final = "THREADLINE_BAGGAGE_ALLOWLIST"
ENV_METRIC_BAGGAGE_KEYS: Final = "THREADLINE_METRIC_BAGGAGE_KEYS"
ENV_COST: Final = "THREADLINE_COST"
ENV_SUPPRESS_PROVIDER_SPANS: Final = "THREADLINE_SUPPRESS_PROVIDER_SPANS"
ENV_MAX_INBOUND_BAGGAGE_BYTES: Final = "THREADLINE_MAX_INBOUND_BAGGAGE_BYTES"

ENVIRONMENT_VARIABLES: Final = (
    ENV_CAPTURE_CONTENT,
    ENV_MAX_CONTENT_LENGTH,
    ENV_MAX_OPEN_RUNS,
    ENV_RUN_TTL,
    ENV_BAGGAGE_ALLOWLIST,
    ENV_METRIC_BAGGAGE_KEYS,
    ENV_COST,
    ENV_SUPPRESS_PROVIDER_SPANS,
    ENV_MAX_INBOUND_BAGGAGE_BYTES,
)


class ContentCapture(enum.Enum):
    """Where prompt/response content goes.

    The values of ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
    """

    NO_CONTENT = "NO_CONTENT"
    SPAN_ONLY = "SPAN_ONLY"
    EVENT_ONLY = "EVENT_ONLY"
    SPAN_AND_EVENT = "SPAN_AND_EVENT"

    @property
    def on_span(self) -> bool:
        return self in _ON_SPAN

    @property
    def on_event(self) -> bool:
        return self in _ON_EVENT

    @property
    def enabled(self) -> bool:
        return self is not NO_CONTENT


# Module constants: checked on every run, and a member lookup on an Enum class is slow.
NO_CONTENT = ContentCapture.NO_CONTENT
_ON_SPAN = (ContentCapture.SPAN_ONLY, ContentCapture.SPAN_AND_EVENT)
_ON_EVENT = (ContentCapture.EVENT_ONLY, ContentCapture.SPAN_AND_EVENT)


Redactor = Callable[["Part"], "Part | None"]
"""Sees every content part before it is recorded; returns the part to record (possibly a
modified copy) or ``None`` to drop it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """One immutable snapshot of threadline's configuration."""

    tracer_provider: TracerProvider | None = None
    """``None`` means the global tracer provider (resolved at each span start, so a provider
    installed after import is honoured)."""
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    capture_content: ContentCapture = ContentCapture.NO_CONTENT
    max_content_length: int = 16_384
    """Upper bound on each captured text value, in characters; longer values are cut."""
    redactor: Redactor | None = None
    max_open_runs: int = 10_000
    """Most runs kept open at once; beyond it the oldest is ended as abandoned."""
    run_ttl_seconds: float = 600.0
    """A run left open longer than this is ended by the reaper as abandoned."""
    baggage_allowlist: frozenset[str] = frozenset(semconv.SESSION_BAGGAGE_KEYS)
    """Baggage keys that may cross a process boundary (outbound and inbound) and that land on
    spans as attributes."""
    metric_baggage_keys: frozenset[str] = frozenset()
    """Low-cardinality baggage keys (e.g. ``feature``) copied onto metric attributes."""
    cost: bool = True
    """Put an estimated cost on inference spans when ``genai-prices`` is installed."""
    suppress_provider_spans: bool = True
    """While a model call's span is current, ask provider SDK instrumentations to record no span
    of their own for it (the ``suppress_language_model_instrumentation`` context key that
    OpenLLMetry's honour): it would be the same call again, its tokens counted twice."""
    max_inbound_baggage_bytes: int = 8192


_settings: Settings = Settings()
_UNSET: Any = object()


# RFC 7230 token characters, which W3C baggage keys must use (``\Z``, not ``$``, which would
# let a trailing newline through into a header).
BAGGAGE_KEY: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}\Z")


def _parse_keys(value: str) -> frozenset[str]:
    keys = {k.strip() for k in value.split(",") if k.strip()}
    invalid = sorted(k for k in keys if not BAGGAGE_KEY.match(k))
    if invalid:
        _logger.warning("threadline: ignoring invalid baggage keys %s", ", ".join(invalid))
    return frozenset(keys.difference(invalid))


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_bool(value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in _TRUE:
        return True
    if normalized in _FALSE:
        return False
    raise ValueError("not a boolean")


def parse_capture_mode(value: str | ContentCapture | bool | None) -> ContentCapture:
    """Read a content-capture mode; invalid strings fall back to ``NO_CONTENT`` with a warning."""
    if value is None:
        return ContentCapture.NO_CONTENT
    if isinstance(value, ContentCapture):
        return value
    if isinstance(value, bool):
        return ContentCapture.SPAN_AND_EVENT if value else ContentCapture.NO_CONTENT
    normalized = value.strip().upper()
    if normalized in ("TRUE", "1"):  # the older boolean form of the same variable
        return ContentCapture.SPAN_AND_EVENT
    if normalized in ("", "FALSE", "0"):
        return ContentCapture.NO_CONTENT
    try:
        return ContentCapture[normalized]
    except KeyError:
        _logger.warning("threadline: ignoring invalid %s=%r", ENV_CAPTURE_CONTENT, value)
        return ContentCapture.NO_CONTENT


def _from_env(environ: dict[str, str] | os._Environ[str]) -> Settings:
    changes: dict[str, Any] = {}
    if ENV_CAPTURE_CONTENT in environ:
        changes["capture_content"] = parse_capture_mode(environ[ENV_CAPTURE_CONTENT])
    numeric: tuple[tuple[str, str, type[int] | type[float]], ...] = (
        (ENV_MAX_CONTENT_LENGTH, "max_content_length", int),
        (ENV_MAX_OPEN_RUNS, "max_open_runs", int),
        (ENV_RUN_TTL, "run_ttl_seconds", float),
        (ENV_MAX_INBOUND_BAGGAGE_BYTES, "max_inbound_baggage_bytes", int),
    )
    for env, field, kind in numeric:
        if env in environ:
            try:
                parsed = kind(environ[env])
                if not 0 < parsed < math.inf:  # also refuses nan
                    raise ValueError("must be positive and finite")
                changes[field] = parsed
            except ValueError:
                _logger.warning("threadline: ignoring invalid %s=%r", env, environ[env])
    if ENV_BAGGAGE_ALLOWLIST in environ:
        changes["baggage_allowlist"] = _parse_keys(environ[ENV_BAGGAGE_ALLOWLIST])
    if ENV_METRIC_BAGGAGE_KEYS in environ:
        changes["metric_baggage_keys"] = _parse_keys(environ[ENV_METRIC_BAGGAGE_KEYS])
    for field, env in (
        ("cost", ENV_COST),
        ("suppress_provider_spans", ENV_SUPPRESS_PROVIDER_SPANS),
    ):
        if env in environ:
            try:
                changes[field] = _parse_bool(environ[env])
            except ValueError:
                _logger.warning("threadline: ignoring invalid %s=%r", env, environ[env])
    return Settings(**changes)


def current() -> Settings:
    """The settings in force now."""
    return _settings


def restore(settings: Settings) -> None:
    """Put back a snapshot taken with :func:`current` (tests use this to undo ``configure``)."""
    global _settings
    _settings = settings
    _on_change(settings)


def reload_from_env() -> Settings:
    """Re-read every environment variable, dropping changes made with ``configure``."""
    restore(_from_env(os.environ))
    return _settings


def configure(
    *,
    tracer_provider: TracerProvider | None = _UNSET,
    meter_provider: MeterProvider | None = _UNSET,
    logger_provider: LoggerProvider | None = _UNSET,
    capture_content: ContentCapture | str | bool = _UNSET,
    max_content_length: int = _UNSET,
    redactor: Redactor | None = _UNSET,
    max_open_runs: int = _UNSET,
    run_ttl_seconds: float = _UNSET,
    baggage_allowlist: Iterable[str] = _UNSET,
    metric_baggage_keys: Iterable[str] = _UNSET,
    cost: bool = _UNSET,
    suppress_provider_spans: bool = _UNSET,
    max_inbound_baggage_bytes: int = _UNSET,
) -> Settings:
    """Change threadline's settings; arguments left out keep their current value.

    Providers default to the global ones. Passing ``None`` for a provider returns to the global.
    Returns the new settings. Raises ``ValueError``/``TypeError`` on invalid values.
    """
    changes: dict[str, Any] = {}
    for name, provider, method in (
        ("tracer_provider", tracer_provider, "get_tracer"),
        ("meter_provider", meter_provider, "get_meter"),
        ("logger_provider", logger_provider, "get_logger"),
    ):
        if provider is not _UNSET:
            # by what it does (a proxy or a vendor's provider is no SDK subclass): a wrong one
            # would make every later run inert
            if provider is not None and not callable(getattr(provider, method, None)):
                raise TypeError(f"{name} must have a {method}() method; got {provider!r}")
            changes[name] = provider
    if capture_content is not _UNSET:
        if capture_content is not None and not isinstance(
            capture_content, (str, ContentCapture, bool)
        ):
            raise TypeError(
                "capture_content must be a ContentCapture, one of its names or a bool; "
                f"got {capture_content!r}"
            )
        if isinstance(capture_content, str) and capture_content.strip().upper() not in (
            *ContentCapture.__members__,
            "TRUE",
            "FALSE",
            "1",
            "0",
        ):
            raise ValueError(
                f"capture_content must be one of {', '.join(ContentCapture.__members__)}; "
                f"got {capture_content!r}"
            )
        changes["capture_content"] = parse_capture_mode(capture_content)
    for name, value in (
        ("max_content_length", max_content_length),
        ("max_open_runs", max_open_runs),
        ("max_inbound_baggage_bytes", max_inbound_baggage_bytes),
    ):
        if value is not _UNSET:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
            changes[name] = value
    if run_ttl_seconds is not _UNSET:
        if (
            not isinstance(run_ttl_seconds, (int, float))
            or isinstance(run_ttl_seconds, bool)
            or not 0 < run_ttl_seconds < math.inf  # also refuses nan
        ):
            raise ValueError(
                f"run_ttl_seconds must be a positive finite number; got {run_ttl_seconds!r}"
            )
        changes["run_ttl_seconds"] = float(run_ttl_seconds)
    if redactor is not _UNSET:
        if redactor is not None and not callable(redactor):
            raise TypeError("redactor must be a callable taking a content part, or None")
        changes["redactor"] = redactor
    for name, keys in (
        ("baggage_allowlist", baggage_allowlist),
        ("metric_baggage_keys", metric_baggage_keys),
    ):
        if keys is not _UNSET:
            if isinstance(keys, str) or not isinstance(keys, Iterable):
                raise TypeError(f"{name} must be an iterable of str keys; got {keys!r}")
            listed = list(keys)
            for key in listed:
                if not isinstance(key, str):
                    raise TypeError(f"{name}: keys must be str; got {key!r}")
                if not BAGGAGE_KEY.match(key):
                    raise ValueError(f"{name}: {key!r} is not a valid baggage key")
            checked = frozenset(listed)
            changes[name] = checked
    for name, flag in (("cost", cost), ("suppress_provider_spans", suppress_provider_spans)):
        if flag is not _UNSET:
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool; got {flag!r}")
            changes[name] = flag
    restore(dataclasses.replace(_settings, **changes))
    return _settings


_listeners: list[Callable[[Settings], None]] = []


def on_change(listener: Callable[[Settings], None]) -> None:
    """Call ``listener`` with the new settings after every change (caches use this)."""
    _listeners.append(listener)


def _on_change(settings: Settings) -> None:
    for listener in _listeners:
        listener(settings)


_settings = _from_env(os.environ)
