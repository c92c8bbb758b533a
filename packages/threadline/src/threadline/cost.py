"""Estimated cost of inference calls, from the maintained price data of ``genai-prices``.

The estimate goes on inference spans as ``threadline.cost.usd`` and on the
``threadline.client.cost`` counter. Both names are threadline's, not the specification's. With
the ``cost`` extra missing, or for a model the price data does not know, nothing is recorded and
nothing fails.
"""

from __future__ import annotations

import datetime
import threading
from typing import TYPE_CHECKING, Any

from threadline._failopen import report

if TYPE_CHECKING:
    from threadline._runs import Usage

# genai-prices provider ids differ from gen_ai.provider.name values in a few places.
_PROVIDER_IDS = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
}
_MISSING: Any = object()
_lookups: dict[tuple[str, str], Any] = {}
_costs: dict[tuple[Any, ...], float | None] = {}
_lock = threading.Lock()
_MAX_LOOKUPS = 4096
_available: bool | None = None


def _snapshot() -> Any:
    global _available
    if _available is False:
        return None
    try:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
    except ImportError:
        _available = False
        return None
    _available = True
    return snapshot


_ready = threading.Event()
_loader_started = False


def prewarm() -> None:
    """Load the price data in a background thread: loading takes a few hundred milliseconds,
    which must not land inside a user's call. Calls ending before it is loaded get no cost."""
    global _loader_started
    with _lock:
        if _loader_started:
            return
        _loader_started = True
    threading.Thread(target=load_prices, name="threadline-prices", daemon=True).start()


def load_prices() -> bool:
    """Load the price data now (blocking); returns whether cost estimates are available.

    Applications that want a cost on their very first call can call this at start-up."""
    try:
        return _snapshot() is not None
    finally:
        _ready.set()


def _lookup(provider: str, model: str) -> Any:
    key = (provider, model)
    found = _lookups.get(key, _MISSING)
    if found is not _MISSING:
        return found
    snapshot = _snapshot()
    if snapshot is None:
        return None
    try:
        found = snapshot.find_provider_model(
            model, None, _PROVIDER_IDS.get(provider, provider), None
        )
    except LookupError:
        found = None
    with _lock:
        if len(_lookups) >= _MAX_LOOKUPS:  # model names come from responses: keep it bounded
            _lookups.clear()
        _lookups[key] = found
    return found


def estimate_cost(provider: str | None, model: str | None, usage: Usage) -> float | None:
    """USD estimate for one call, or ``None`` when it cannot be known."""
    if (
        _available is False  # no genai-prices
        or not provider
        or not model
        or (usage.input_tokens is None and usage.output_tokens is None)
    ):
        return None
    usage_key = (
        provider,
        model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_write_input_tokens,
    )
    cached = _costs.get(usage_key, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[no-any-return]
    if not _ready.is_set():
        prewarm()
        return None
    cost = _calculate(provider, model, usage)
    with _lock:
        if len(_costs) >= _MAX_LOOKUPS:
            _costs.clear()
        _costs[usage_key] = cost
    return cost


def _calculate(provider: str, model: str, usage: Usage) -> float | None:
    # genai-prices takes ~50 µs per calculation; identical usage repeats often (retries, the same
    # prompt), so results are cached above. Prices are per day at most, so a cache entry is valid
    # for the life of a process in practice.
    try:
        found = _lookup(provider, model)
        if found is None:
            return None
        from genai_prices import Usage as PriceUsage

        price_provider, price_model = found
        cache_read = usage.cache_read_input_tokens
        cache_write = usage.cache_write_input_tokens
        calculation = price_model.calc_price(
            PriceUsage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            price_provider,
            genai_request_timestamp=datetime.datetime.now(tz=datetime.timezone.utc),
        )
        return float(calculation.total_price)
    except Exception as error:  # noqa: BLE001 - price data is best effort
        report("threadline.cost.estimate_cost", error)
        return None
