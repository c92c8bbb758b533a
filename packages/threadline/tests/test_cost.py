"""Cost attribution: an estimate on inference spans and a low-cardinality cost metric."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import threadline
from threadline import config, cost, semconv
from threadline.testing import Telemetry, find

pytest.importorskip("genai_prices")


@pytest.fixture(autouse=True)
def prices_loaded() -> Iterator[None]:
    assert cost.load_prices()
    previous = config.current()
    yield
    config.restore(previous)


def test_cost_on_span_and_metric_with_session_keys(telemetry: Telemetry) -> None:
    threadline.configure(metric_baggage_keys=["feature"])
    with threadline.session("s-1", user_id="u-1", feature="search"):
        with threadline.inference("gpt-4o", provider="openai") as run:
            run.update(usage=threadline.Usage(input_tokens=1000, output_tokens=100))
    span = find(telemetry.spans(), "chat gpt-4o")
    # gpt-4o: $2.50 / 1M input, $10 / 1M output
    assert span.attributes[semconv.THREADLINE_COST_USD] == pytest.approx(0.0035)
    assert span.attributes[semconv.SESSION_ID] == "s-1"  # a backend can sum spend per session
    [point] = telemetry.metric_points(semconv.METRIC_THREADLINE_COST)
    assert point["value"] == pytest.approx(0.0035)
    # low cardinality only: no session or user ids on the metric
    assert point["attributes"] == {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "feature": "search",
    }


@pytest.mark.parametrize("value", ["caf\udce9", "a\x00b", "x" * 65])
def test_a_metric_baggage_value_no_exporter_takes_is_left_off(
    telemetry: Telemetry, value: str
) -> None:
    """Baggage the app set itself is not checked as ``session()`` checks it: a value with a
    lone surrogate would make the OTLP encoding of the whole metrics batch fail."""
    from opentelemetry import baggage, context
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    threadline.configure(metric_baggage_keys=["feature", "tier"])
    app_baggage = baggage.set_baggage("tier", "pro", baggage.set_baggage("feature", value))
    token = context.attach(app_baggage)
    try:
        with threadline.inference("gpt-4o", provider="openai") as run:
            run.update(usage=threadline.Usage(input_tokens=1000, output_tokens=100))
    finally:
        context.detach(token)
    [point] = telemetry.metric_points(semconv.METRIC_THREADLINE_COST)
    assert point["attributes"]["tier"] == "pro"
    assert "feature" not in point["attributes"]
    encode_metrics(telemetry.metric_reader.get_metrics_data()).SerializeToString()


def test_cost_metric_names_the_models_known(telemetry: Telemetry) -> None:
    """A call started without a model is priced by the model that answered: the metric says
    which, and has no empty request model."""
    with threadline.inference(None, provider="openai") as run:
        run.update(response_model="gpt-4o", usage=threadline.Usage(1000, 100))
    [point] = telemetry.metric_points(semconv.METRIC_THREADLINE_COST)
    assert point["value"] == pytest.approx(0.0035)
    assert point["attributes"] == {
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-4o",
    }


def test_unknown_model_or_no_usage_means_no_cost(telemetry: Telemetry) -> None:
    with threadline.inference("no-such-model-xyz", provider="openai") as run:
        run.update(usage=threadline.Usage(10, 10))
    with threadline.inference("gpt-4o", provider="openai"):
        pass
    for span in telemetry.spans():
        assert semconv.THREADLINE_COST_USD not in span.attributes


def test_cost_can_be_disabled(telemetry: Telemetry) -> None:
    threadline.configure(cost=False)
    with threadline.inference("gpt-4o", provider="openai") as run:
        run.update(usage=threadline.Usage(1000, 100))
    assert semconv.THREADLINE_COST_USD not in telemetry.spans()[0].attributes
