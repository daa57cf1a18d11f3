"""Token usage and cost, per client and for the whole process.

Every call that reaches a server adds its usage (from the server's own counts) to the client
that made it and to the process total; a cache hit counts as a cached call and as tokens saved,
never as billed tokens. Costs come from the price table in config (see pricing.py) and follow the
bill: input tokens the server had cached (its `cached_tokens`, not this library's cache) at the
cached-input rate, Batch API answers at the batch rates. Reasoning tokens are counted apart for
the reader; they are already part of the output tokens, and billed as such.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple, TextIO

from .config import default
from .forksafe import renew_in_child
from .pricing import Price, price_for

__all__ = ["UsageStats", "Counted", "counted", "process_usage", "format_stats"]

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "model_calls",
    "cached_calls",
    "saved_tokens",
    "cost_usd",
    "saved_cost_usd",
    "unpriced_calls",
    "cached_input_tokens",
    "reasoning_tokens",
    "batch_calls",
)


class _Tally:
    """One model's counts (a slotted class: dataclasses would be loaded at import for it alone)."""

    __slots__ = _FIELDS

    def __init__(self) -> None:
        self.input_tokens = self.output_tokens = self.total_tokens = 0
        self.model_calls = self.cached_calls = self.saved_tokens = self.unpriced_calls = 0
        self.cached_input_tokens = self.reasoning_tokens = self.batch_calls = 0
        self.cost_usd = self.saved_cost_usd = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def add(self, other: _Tally) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class UsageStats:
    """A thread-safe running total, broken down by model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, _Tally] = {}
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A forked child keeps the counts so far but not a lock a parent thread may hold."""
        self._lock = threading.Lock()

    def record(self, model: str | None, usage: Mapping[str, Any] | None, cached: bool, batch: bool = False) -> None:
        """Count one call: billed when it reached the server, saved when the cache answered."""
        self.add(model, counted(model, usage, batch), cached)

    def add(self, model: str | None, counts: Counted, cached: bool) -> None:
        """Count one call whose usage was `counted` already (a call counts in several totals)."""
        inputs, outputs, total, cost, priced = counts[:5]
        with self._lock:
            tally = self._by_model.get(model or "unknown")
            if tally is None:
                tally = self._by_model[model or "unknown"] = _Tally()
            if cached:
                tally.cached_calls += 1
                tally.saved_tokens += total
                tally.saved_cost_usd += cost
            else:
                tally.model_calls += 1
                tally.input_tokens += inputs
                tally.output_tokens += outputs
                tally.total_tokens += total
                tally.cost_usd += cost
                tally.unpriced_calls += 0 if priced or not total else 1
                tally.cached_input_tokens += counts.cached_input_tokens
                tally.reasoning_tokens += counts.reasoning_tokens
                tally.batch_calls += counts.batch

    def snapshot(self) -> dict[str, Any]:
        """The totals, plus `by_model` with the same fields per model."""
        with self._lock:
            total = _Tally()
            for tally in self._by_model.values():
                total.add(tally)
            result: dict[str, Any] = total.as_dict()
            result["by_model"] = {model: tally.as_dict() for model, tally in sorted(self._by_model.items())}
            return result

    def reset(self) -> None:
        with self._lock:
            self._by_model.clear()


class Counted(NamedTuple):
    """A call's usage as the tallies take it: its tokens, its cost, whether its model has a price."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float
    priced: bool
    cached_input_tokens: int = 0
    """Of the input tokens, those the server had cached (billed at the cached-input rate)."""
    reasoning_tokens: int = 0
    """Of the output tokens, those a reasoning model spent thinking."""
    batch: bool = False
    """Answered by the Batch API (billed at the batch rates)."""


def counted(model: str | None, usage: Mapping[str, Any] | None, batch: bool = False) -> Counted:
    """The server's token counts of one call, and their cost at `model`'s price.

    Reads both usage shapes: chat completions and embeddings (`prompt_tokens`,
    `completion_tokens`, `*_tokens_details`) and the Responses API (`input_tokens`,
    `output_tokens`, `input_tokens_details`, `output_tokens_details`)."""
    usage = usage or _NO_USAGE
    get = usage.get
    if "prompt_tokens" in usage:  # the usual shape first: this runs on every cache hit
        inputs, outputs = int(get("prompt_tokens") or 0), int(get("completion_tokens") or 0)
        in_details, out_details = get("prompt_tokens_details"), get("completion_tokens_details")
    else:
        inputs, outputs = int(get("input_tokens") or 0), int(get("output_tokens") or 0)
        in_details, out_details = get("input_tokens_details"), get("output_tokens_details")
    total = int(get("total_tokens") or 0) or inputs + outputs
    cached = min(inputs, _detail(in_details, "cached_tokens")) if in_details else 0
    reasoning = _detail(out_details, "reasoning_tokens") if out_details else 0
    rates = _rates(model, batch)
    cost = 0.0
    if rates is not None:
        cost = ((inputs - cached) * rates[0] + cached * rates[1] + outputs * rates[2]) / 1_000_000
    return Counted(inputs, outputs, total, cost, rates is not None, cached, reasoning, batch)


_NO_USAGE: Mapping[str, Any] = {}


def _detail(details: Any, name: str) -> int:
    """One count from a `*_tokens_details` object, which servers omit or send as null."""
    return int(details.get(name) or 0) if isinstance(details, Mapping) else 0


def _rates(model: str | None, batch: bool) -> tuple[float, float, float] | None:
    """`Price.rates` of `model`'s price, remembered like the price (a hit is counted too)."""
    memo = default.memo("rates by model")
    rates: tuple[float, float, float] | None
    try:
        rates = memo[model, batch]
    except KeyError:
        price = _price(model)
        rates = memo[model, batch] = None if price is None else price.rates(batch)
    return rates


def _price(model: str | None) -> Price | None:
    """price_for, remembered per model until `default` changes (a reload may change the table)."""
    memo = default.memo("price by model")
    if model not in memo:
        memo[model] = price_for(model, default.prices())
    price: Price | None = memo[model]
    return price


process_usage = UsageStats()
"""Every call of every client in this process."""


def format_stats(stats: Mapping[str, Any], out: TextIO | None = None) -> str:
    """A readable table of a snapshot: totals first, then one line per model."""
    lines = [
        f"model calls {stats['model_calls']}, cached calls {stats['cached_calls']}, "
        f"tokens {stats['total_tokens']} (input {stats['input_tokens']}, output {stats['output_tokens']}), "
        f"cost ${stats['cost_usd']:.4f}; saved by the cache: {stats['saved_tokens']} tokens, ${stats['saved_cost_usd']:.4f}"
    ]
    details = [
        f"{stats[name]} {words}"
        for name, words in (
            ("cached_input_tokens", "input tokens cached by the server (at the cached-input rate)"),
            ("reasoning_tokens", "reasoning tokens (in the output)"),
            ("batch_calls", "Batch API call(s) (at the batch rates)"),
        )
        if stats.get(name)
    ]
    if details:
        lines.append("of which: " + ", ".join(details))
    if stats["unpriced_calls"]:
        lines.append(f"{stats['unpriced_calls']} call(s) to models with no price in config: not in the cost")
    by_model = stats.get("by_model") or {}
    if by_model:
        width = max(len(m) for m in by_model)
        lines.append(
            f"{'model'.ljust(width)}  {'calls':>6}  {'cached':>6}  {'batch':>6}  {'input':>9}  "
            f"{'cached in':>9}  {'output':>9}  {'reasoning':>9}  {'cost $':>10}"
        )
        for model, tally in by_model.items():
            lines.append(
                f"{model.ljust(width)}  {tally['model_calls']:>6}  {tally['cached_calls']:>6}  "
                f"{tally['batch_calls']:>6}  {tally['input_tokens']:>9}  {tally['cached_input_tokens']:>9}  "
                f"{tally['output_tokens']:>9}  {tally['reasoning_tokens']:>9}  {tally['cost_usd']:>10.4f}"
            )
    text = "\n".join(lines)
    if out is not None:
        out.write(text + "\n")
    return text
