"""Which price a model name finds."""

from __future__ import annotations

from openai_utils.pricing import DEFAULT_PRICES, price_for


def test_exact_names_and_dated_versions() -> None:
    assert price_for("gpt-4o-mini", DEFAULT_PRICES) == (0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("o3-mini-2025-01-31", DEFAULT_PRICES) == DEFAULT_PRICES["o3-mini"]


def test_no_match_without_a_dash_boundary() -> None:
    assert price_for("gpt-4orange", DEFAULT_PRICES) is None
    assert price_for("unknown", DEFAULT_PRICES) is None
    assert price_for(None, DEFAULT_PRICES) is None
