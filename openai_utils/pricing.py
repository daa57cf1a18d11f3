"""The built-in price table, and how a model name finds its price.

List prices in US dollars per million tokens (input, output), as published by OpenAI in 2025,
and the embedded local models (api_type local), which cost nothing.
They are never fetched from the network: override or extend them in the [Prices] section of
config.ini (`gpt-4o-mini = 0.15, 0.60`) when they change or for your own deployments. Cached
input discounts and batch prices are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_PRICES", "Price", "price_for"]

Price = tuple[float, float]
"""(input, output) US dollars per million tokens."""

DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "text-embedding-3-small": (0.02, 0.00),
    "text-embedding-3-large": (0.13, 0.00),
    "text-embedding-ada-002": (0.10, 0.00),
    "SmolLM2-135M-Instruct": (0.00, 0.00),
    "all-MiniLM-L6-v2": (0.00, 0.00),
}


def price_for(model: str | None, table: Mapping[str, Price]) -> Price | None:
    """The price of `model`: an exact entry, else the longest entry it starts with followed by a
    dash (so "gpt-4o-2024-08-06" is priced as "gpt-4o" but "gpt-4o-mini" never as "gpt-4o"
    when it has its own entry); None when nothing matches."""
    if not model:
        return None
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None
