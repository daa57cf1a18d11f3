"""Shared helpers for the benchmarks: summary statistics, result rows and the table printer.

Every benchmark module returns a list of `Row`s, so run.py can print all topics in one table
and each row says by itself whether its goal was met.
"""

from __future__ import annotations

import gc
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
    "Comparison",
    "comparison_cells",
    "print_comparisons",
    "time_calls",
    "interleaved",
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
    comparison: Comparison | None = None
    """Set on a row that also goes into the side-by-side table of peers (print_comparisons)."""

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


@dataclass(frozen=True)
class Comparison:
    """One measure taken for openai_utils, for each peer and for the floor, in one run.

    Every value is a cost in `unit` (lower is better); a peer's value is None where it was not
    measured (not installed, or it has no such feature), and so is the floor where there is none.
    """

    measure: str
    unit: str
    ours: float
    peers: tuple[tuple[str, float | None], ...]
    floor: float | None = None

    def summary(self) -> tuple[str, str]:
        """The measure and its values as one row of the main table: ours / each peer / floor."""
        names = " / ".join(["ours", *(name for name, _ in self.peers), "floor"])
        values = [self.ours, *(value for _, value in self.peers), self.floor]
        return f"{self.measure}: {names}", " / ".join(_amount(v) for v in values) + f" {self.unit}"


def _amount(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(numerator: float, denominator: float | None) -> str:
    return "-" if not denominator else f"{numerator / denominator:.2f}x"


def comparison_cells(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """The side-by-side table as cells, header first: measure, ours, each peer, floor, then
    ours/floor and ours/each peer (below 1: ours costs less). Peers are the columns in the order
    they first appear; "-" where a value was not measured."""
    names = list(dict.fromkeys(name for c in comparisons for name, _ in c.peers))
    table = [["measure", "ours", *names, "floor", "ours/floor", *(f"ours/{name}" for name in names)]]
    for c in comparisons:
        peers = dict(c.peers)
        values = [peers.get(name) for name in names]
        table.append(
            [
                f"{c.measure} ({c.unit})",
                _amount(c.ours),
                *(_amount(v) for v in values),
                _amount(c.floor),
                _ratio(c.ours, c.floor),
                *(_ratio(c.ours, v) for v in values),
            ]
        )
    return table


def print_comparisons(comparisons: Sequence[Comparison]) -> None:
    """Print comparison_cells aligned: the measure on the left, numbers on the right."""
    table = comparison_cells(comparisons)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in table
    ]
    print(lines[0])
    print("-" * len(lines[0]))
    for line in lines[1:]:
        print(line)


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    """Run `call` `count` times; return each call's duration in microseconds."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        start = clock()
        call()
        samples.append((clock() - start) / 1000.0)
    return samples


def interleaved(
    calls: Sequence[Callable[[], object]], rounds: int, per_round: int | Sequence[int], warmup: int | Sequence[int]
) -> list[list[float]]:
    """Time several calls in turns (ABCABC...), so that drift (CPU frequency, other load) hits
    all of them alike; return each one's durations in microseconds, in the order given.

    Each call first runs its `warmup` untimed, then `per_round` timed in each of `rounds` turns;
    both are one number for all or one per call.
    """
    counts = [per_round] * len(calls) if isinstance(per_round, int) else list(per_round)
    warmups = [warmup] * len(calls) if isinstance(warmup, int) else list(warmup)
    for call, count in zip(calls, warmups, strict=True):
        time_calls(call, count)
    gc.collect()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, count, got in zip(calls, counts, samples, strict=True):
            got += time_calls(call, count)
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
