"""Tracer, meter instruments and event logger, resolved from the settings and cached.

The cache is rebuilt whenever ``configure`` changes a provider. With no provider configured the
global one is used; OpenTelemetry's global tracer/meter are proxies, so a provider installed
after import (``opentelemetry-instrument`` does this) is still honoured.
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING

from opentelemetry import _logs as logs
from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider

from threadline import config, semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram

try:  # the stand-in the API returns until an application sets a global meter provider
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _UnsetMeterProvider
except ImportError:  # pragma: no cover - a future API without it: always record
    _UnsetMeterProvider = ()  # type: ignore[assignment,misc]
_initial = metrics.get_meter_provider()
_unset_proxy: _UnsetMeterProvider | None = (
    _initial
    if isinstance(_initial, _UnsetMeterProvider) and hasattr(_initial, "_real_meter_provider")
    else None
)

_SCOPE = "threadline"
try:
    from importlib.metadata import version as _dist_version

    _VERSION = _dist_version("threadline")
except Exception:  # noqa: BLE001 - running from a source tree
    _VERSION = "0.0.0"


class Instruments:
    """Every metric instrument threadline records, created once per meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        def histogram(name: str, unit: str, desc: str, buckets: tuple[float, ...]) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=desc,
                explicit_bucket_boundaries_advisory=list(buckets),
            )

        self.operation_duration = histogram(
            semconv.METRIC_CLIENT_OPERATION_DURATION, "s", "GenAI operation duration.",
            semconv.DURATION_BUCKETS,
        )  # fmt: skip
        self.token_usage = histogram(
            semconv.METRIC_CLIENT_TOKEN_USAGE, "{token}", "Number of input and output tokens used.",
            semconv.TOKEN_BUCKETS,
        )  # fmt: skip
        self.time_to_first_chunk = histogram(
            semconv.METRIC_CLIENT_TIME_TO_FIRST_CHUNK, "s",
            "Time to receive the first chunk of a streaming response.", semconv.DURATION_BUCKETS,
        )  # fmt: skip
        self.time_per_output_chunk = histogram(
            semconv.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, "s",
            "Time between consecutive chunks of a streaming response.", semconv.DURATION_BUCKETS,
        )  # fmt: skip
        self.agent_duration = histogram(
            semconv.METRIC_INVOKE_AGENT_DURATION, "s", "Duration of one agent invocation.",
            semconv.AGENT_DURATION_BUCKETS,
        )  # fmt: skip
        self.tool_duration = histogram(
            semconv.METRIC_EXECUTE_TOOL_DURATION, "s", "Duration of one tool execution.",
            semconv.DURATION_BUCKETS,
        )  # fmt: skip
        self.workflow_duration = histogram(
            semconv.METRIC_WORKFLOW_DURATION, "s", "Duration of one workflow invocation.",
            semconv.WORKFLOW_DURATION_BUCKETS,
        )  # fmt: skip
        self.mcp_client_duration = histogram(
            semconv.METRIC_MCP_CLIENT_OPERATION_DURATION, "s", "MCP request duration (client).",
            semconv.MCP_DURATION_BUCKETS,
        )  # fmt: skip
        self.mcp_server_duration = histogram(
            semconv.METRIC_MCP_SERVER_OPERATION_DURATION, "s", "MCP request duration (server).",
            semconv.MCP_DURATION_BUCKETS,
        )  # fmt: skip
        self.mcp_client_session_duration = histogram(
            semconv.METRIC_MCP_CLIENT_SESSION_DURATION, "s", "MCP session duration (client).",
            semconv.MCP_DURATION_BUCKETS,
        )  # fmt: skip
        self.mcp_server_session_duration = histogram(
            semconv.METRIC_MCP_SERVER_SESSION_DURATION, "s", "MCP session duration (server).",
            semconv.MCP_DURATION_BUCKETS,
        )  # fmt: skip
        self.cost: Counter = meter.create_counter(
            semconv.METRIC_THREADLINE_COST,
            unit="USD",
            description="Estimated cost of inference calls (threadline's own, not the spec's).",
        )
        self._unmeasured: Instruments | None = None

    def without_durations(self) -> Instruments:
        """These instruments with every operation-duration histogram a no-op: for a run whose
        end was not observed (ended by the reaper), whose usage, cost and time to first chunk
        count but whose "duration" would only measure how long threadline waited."""
        view = self._unmeasured
        if view is None:
            view = copy.copy(self)
            for name in _DURATIONS:
                setattr(view, name, _NO_HISTOGRAM)
            view._unmeasured = view
            self._unmeasured = view
        return view


_DURATIONS = (
    "operation_duration",
    "agent_duration",
    "tool_duration",
    "workflow_duration",
    "mcp_client_duration",
    "mcp_server_duration",
)
_NO_HISTOGRAM: Histogram = NoOpMeterProvider().get_meter(_SCOPE).create_histogram("unmeasured")


class _Resolved:
    __slots__ = ("_metering", "event_logger", "instruments", "tracer")

    def __init__(self, settings: config.Settings) -> None:
        tracer_provider = settings.tracer_provider
        meter_provider = settings.meter_provider
        logger_provider = settings.logger_provider
        self.tracer = (
            tracer_provider.get_tracer(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
            if tracer_provider is not None
            else trace.get_tracer(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
        )
        meter = (
            meter_provider.get_meter(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
            if meter_provider is not None
            else metrics.get_meter(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
        )
        self.instruments = Instruments(meter)
        # Whether the instruments record anything: with the global meter provider unset or a
        # no-op one, building metric attributes at the end of every run is wasted work. None:
        # the global is unset and may be set later (checked again on use).
        self._metering: bool | None = (
            not isinstance(meter_provider, NoOpMeterProvider)
            if meter_provider is not None
            else _global_metering()
        )
        self.event_logger = (
            logger_provider.get_logger(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
            if logger_provider is not None
            else logs.get_logger(_SCOPE, _VERSION, schema_url=semconv.SCHEMA_URL)
        )

    def recording_instruments(self) -> Instruments | None:
        """The instruments, or None while no meter provider would record what they get."""
        metering = self._metering
        if metering is None:
            proxy = _unset_proxy
            if proxy is not None and proxy._real_meter_provider is None:
                return None  # still unset (_global_metering's first check, without its call)
            metering = _global_metering()
            if metering is None:
                return None
            self._metering = metering
        return self.instruments if metering else None


def _global_metering() -> bool | None:
    """Whether the global meter provider records; None while none is set."""
    proxy = _unset_proxy
    if proxy is not None:
        # The API's stand-in learns when a provider is set; reading that is cheaper than
        # get_meter_provider(), which looks at the environment on every call while unset.
        real = proxy._real_meter_provider
        return None if real is None else not isinstance(real, NoOpMeterProvider)
    provider = metrics.get_meter_provider()
    if isinstance(provider, _UnsetMeterProvider):
        return None
    return not isinstance(provider, NoOpMeterProvider)


_resolved: _Resolved | None = None
_lock = threading.Lock()


def resolved() -> _Resolved:
    current = _resolved
    if current is not None:
        return current
    return _rebuild(config.current())


def _rebuild(settings: config.Settings) -> _Resolved:
    global _resolved
    with _lock:
        _resolved = _Resolved(settings)
        return _resolved


def _invalidate(_settings: config.Settings) -> None:
    global _resolved
    _resolved = None


config.on_change(_invalidate)
