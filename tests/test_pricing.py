"""Which price a model name finds."""

from __future__ import annotations

from openai_utils.pricing import DEFAULT_PRICES, Price, price_for


def test_exact_names_and_dated_versions() -> None:
    assert price_for("gpt-4o-mini", DEFAULT_PRICES) == Price(0.15, 0.60, 0.075)
    assert price_for("gpt-4o-2024-08-06", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("o3-mini-2025-01-31", DEFAULT_PRICES) == DEFAULT_PRICES["o3-mini"]


def test_no_match_without_a_dash_boundary() -> None:
    assert price_for("gpt-4orange", DEFAULT_PRICES) is None
    assert price_for("unknown", DEFAULT_PRICES) is None
    assert price_for(None, DEFAULT_PRICES) is None


def test_rates_left_out_are_worked_out_as_openai_bills() -> None:
    two = Price(2.0, 8.0)
    assert two.rates() == (2.0, 2.0, 8.0)  # no cached-input rate: no discount
    assert two.rates(batch=True) == (1.0, 1.0, 4.0)  # batch: half of each
    three = Price(2.0, 8.0, 0.5)
    assert three.rates() == (2.0, 0.5, 8.0)
    assert three.rates(batch=True) == (1.0, 0.25, 4.0)  # the batch discount applies to cached input too
    five = Price(2.0, 8.0, 0.5, 1.5, 6.0)
    assert five.rates(batch=True) == (1.5, 0.375, 6.0)
    assert Price(0.0, 0.0).rates(batch=True) == (0.0, 0.0, 0.0)


def test_every_built_in_cached_rate_is_a_discount() -> None:
    for model, price in DEFAULT_PRICES.items():
        online_input, cached, _ = price.rates()
        assert cached <= online_input, model
