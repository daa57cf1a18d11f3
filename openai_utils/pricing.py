"""The built-in price table, and how a model name finds its price.

List prices in US dollars per million tokens, as published by OpenAI in 2025: input, output, and
where the model has them the cached-input rate (input tokens the server had cached, billed at a
discount and reported as `cached_tokens` in the usage details) and the Batch API's rates (half
the online ones for every model listed). The embedded local models (api_type local) cost nothing.
They are never fetched from the network: override or extend them in the [Prices] section of
config.ini (`gpt-4o-mini = 0.15, 0.60, 0.075`) when they change or for your own deployments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["DEFAULT_PRICES", "Price", "price_for"]


class Price(NamedTuple):
    """US dollars per million tokens. A rate left as None is worked out from the others (see the
    properties), so a two-number line `model = input, output` keeps meaning what it always did."""

    input: float
    output: float
    cached_input: float | None = None
    """Input tokens the server had cached; None: no discount, billed as input."""
    batch_input: float | None = None
    """Input tokens of a Batch API request; None: half the input rate, as OpenAI bills."""
    batch_output: float | None = None
    """Output tokens of a Batch API request; None: half the output rate."""

    def rates(self, batch: bool = False) -> tuple[float, float, float]:
        """(input, cached input, output) for an online or a batch call. A batch's cached input is
        billed at the cached rate with the batch's discount on input applied to it."""
        cached = self.input if self.cached_input is None else self.cached_input
        if not batch:
            return self.input, cached, self.output
        batch_input = self.input / 2 if self.batch_input is None else self.batch_input
        batch_output = self.output / 2 if self.batch_output is None else self.batch_output
        batch_cached = cached * batch_input / self.input if self.input else batch_input
        return batch_input, batch_cached, batch_output


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o1": Price(15.00, 60.00, 7.50),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "text-embedding-3-small": Price(0.02, 0.00),
    "text-embedding-3-large": Price(0.13, 0.00),
    "text-embedding-ada-002": Price(0.10, 0.00),
    "SmolLM2-135M-Instruct": Price(0.00, 0.00),
    "all-MiniLM-L6-v2": Price(0.00, 0.00),
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
