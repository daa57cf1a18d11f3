"""Shared helpers for the benchmarks: summary statistics, result rows and the table printer.

Every benchmark module returns a list of `Row`s, so run.py can print all topics in one table
and each row says by itself whether its goal was met.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "BENCH_MODEL",
    "BENCH_KEY",
    "BENCH_MESSAGES",
    "Row",
    "median",
    "percentile",
    "info_row",
    "ratio_row",
    "check_row",
    "print_table",
    "time_calls",
    "loopback",
]


BENCH_MODEL = "gpt-4o-mini"
BENCH_KEY = "sk-bench"
BENCH_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the benchmark."},
]
"""What every loopback benchmark sends, so their per-call numbers compare."""


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    `met` is None for an informational row (no goal), so only real goals print a verdict.
    """

    topic: str
    measure: str
    value: str
    goal: str = ""
    met: bool | None = None

    @property
    def status(self) -> str:
        if self.met is None:
            return ""
        return "goal met" if self.met else "goal MISSED"


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linearly interpolated between ranks like numpy's default.

    Interpolation keeps p90 stable on the few hundred samples a quick run collects.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    """The median: robust to the scheduler hiccups that ruin a mean on a shared machine."""
    return percentile(samples, 50.0)


def info_row(topic: str, measure: str, value: str) -> Row:
    """A measurement shown for context, with no goal attached."""
    return Row(topic, measure, value)


def ratio_row(topic: str, measure: str, ratio: float, limit: float) -> Row:
    """A ratio whose goal is to stay at or below `limit`."""
    return Row(topic, measure, f"{ratio:.2f}x", f"<= {limit:.2f}x", ratio <= limit)


def check_row(topic: str, measure: str, ok: bool, good: str, bad: str) -> Row:
    """A yes/no property: shows `good` when it holds, `bad` when it does not."""
    return Row(topic, measure, good if ok else bad, good, ok)


def print_table(rows: Sequence[Row]) -> None:
    """Print rows as an aligned text table, with a rule between topics so each reads as a block."""
    headers = ("topic", "measure", "value", "goal", "status")
    cells = [(r.topic, r.measure, r.value, r.goal, r.status) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    right = {2, 3}  # numbers and goals line up on the right

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    print(line(headers))
    print(rule)
    previous = None
    for row, values in zip(rows, cells, strict=True):
        if previous is not None and row.topic != previous:
            print(rule)
        print(line(values))
        previous = row.topic


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    """Run `call` `count` times; return each call's duration in microseconds."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        start = clock()
        call()
        samples.append((clock() - start) / 1000.0)
    return samples


@contextmanager
def loopback(api_key: str = BENCH_KEY, model: str = BENCH_MODEL, latency: float = 0.0) -> Iterator[object]:
    """A running loopback server, with the key and base_url that OpenAIClient reads at call time.

    Everything set here is undone on exit (`default.reset()` drops forced values), so the next
    benchmark topic starts clean.
    """
    import tests.fake_server as fake_server
    from openai_utils import default, force_default_value

    saved_key = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = api_key
    server = fake_server.FakeOpenAIServer(latency=latency).start()
    try:
        force_default_value("base_url", server.base_url)
        force_default_value("model", model)
        yield server
    finally:
        server.stop()
        default.reset()
        if saved_key is None:
            del os.environ["OPENAI_API_KEY"]
        else:
            os.environ["OPENAI_API_KEY"] = saved_key
