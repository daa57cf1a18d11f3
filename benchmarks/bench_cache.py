"""The response cache: hit latency next to an HTTP round trip, write cost as the file grows, load time.

Why: the cache exists so that a repeated call costs next to nothing, so a hit must stay far
below even the cheapest real request (a loopback round trip to tests/fake_server.py, latency
0, timed in the same run in alternating blocks so drift hits both equally), and close to its
floor, the work a hit cannot skip: the canonical key, one lookup and a fresh copy of the answer
(floors.KeyLookup), timed in the same alternation. The old module
re-pickled the whole dict on every write, so a write got slower as the cache grew; the
append-only file must keep the cost of a write flat, which is measured side by side with a
small re-implementation of the old approach at the same sizes. Finally, a large file must
load in reasonable time, since the first call of every process pays for it, and without a peak
of memory far above what the loaded cache keeps (the whole file read, then a copy of each
record, peaked at 2x), measured in fresh processes.

Everything happens in temporary directories that are removed afterwards; the environment,
`default` and the process-wide table of open caches are left as they were found.
"""

from __future__ import annotations

import gc
import hashlib
import json
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from floors import KeyLookup
from timing import (
    BENCH_KEY,
    BENCH_MESSAGES,
    BENCH_MODEL,
    Row,
    info_row,
    interleaved,
    loopback,
    median,
    percentile,
    ratio_row,
)

from openai_utils import OpenAIClient
from openai_utils.cache import HEADER, ResponseCache
from openai_utils.cache_file import PICKLE_PROTOCOL, encode_record

__all__ = ["run"]

TOPIC = "cache"
GOAL_HIT_OVER_FLOOR = 2.0
"""A hit costs little more than the key: at most twice the key-plus-lookup floor of the same run
(issue 16: ~10 us where that floor is ~5 us). A ratio, since absolute microseconds depend on the
machine; the absolute time is shown beside it for context."""
GOAL_ROUND_TRIP_OVER_HIT = 50.0
GOAL_WRITE_GROWTH = 1.5
GOAL_LOAD_PEAK = 1.3
"""Loading may briefly hold at most this much more than the loaded cache keeps (issue 16)."""
SMALL, LARGE = 100, 10_000
"""The two cache sizes at which a write is timed."""


@dataclass(frozen=True)
class Plan:
    """How much to measure; see FULL and QUICK."""

    hit_warmup: int
    hits: int  # cache hits timed, in `blocks` blocks alternating with the round trips
    round_trips: int
    blocks: int
    write_rounds: int  # sub-batches per size, alternating small/large
    writes_per_round: int  # appends per sub-batch (write_rounds * writes_per_round in all)
    old_writes_per_round: int  # the same for the whole-file rewrite, far slower at 10k
    load_entries: int
    loads: int


FULL = Plan(
    hit_warmup=200,
    hits=6000,
    round_trips=600,
    blocks=12,
    write_rounds=10,
    writes_per_round=20,
    old_writes_per_round=20,
    load_entries=100_000,
    loads=5,
)
QUICK = Plan(
    hit_warmup=50,
    hits=1000,
    round_trips=100,
    blocks=4,
    write_rounds=5,
    writes_per_round=20,
    old_writes_per_round=10,
    load_entries=20_000,
    loads=3,
)


def run(quick: bool) -> list[Row]:
    """Hit latency vs one loopback round trip, write cost at 100 vs 10,000 entries, load time."""
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="openai_utils-bench-cache-") as folder:
        tmp = Path(folder)
        rows = _hit_latency(plan, tmp / "hits.pickle")
        rows += _write_cost(plan, tmp)
        rows += _load_time(plan, tmp / "load.pickle")
    return rows


# -- 1. hit latency ---------------------------------------------------------------------------


def _hit_latency(plan: Plan, cache_file: Path) -> list[Row]:
    with loopback(BENCH_KEY, BENCH_MODEL) as server:
        raw = openai.OpenAI(base_url=server.base_url, api_key=BENCH_KEY, max_retries=0)
        ours = OpenAIClient(cache_api_calls=True, cache_file_name=str(cache_file))
        expected = raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES).choices[0].message.content
        first = ours.send_message(BENCH_MESSAGES)  # the miss that fills the cache
        if not isinstance(first, dict) or first.get("content") != expected or ours.cache_misses != 1:
            raise RuntimeError(
                f"send_message answered {first!r} (misses {ours.cache_misses}), the raw SDK {expected!r}"
            )
        requests_before = len(server.requests)
        floor = KeyLookup(
            ours.api_type, server.base_url, server.requests[-1].body, list(ResponseCache(cache_file).items())
        )
        if floor(BENCH_MESSAGES) != first:
            raise RuntimeError(f"the key-plus-lookup floor answered {floor(BENCH_MESSAGES)!r}, send_message {first!r}")

        hit_us, trip_us, floor_us = interleaved(
            [
                lambda: ours.send_message(BENCH_MESSAGES),
                lambda: raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES),
                lambda: floor(BENCH_MESSAGES),
            ],
            rounds=plan.blocks,
            per_round=[plan.hits // plan.blocks, plan.round_trips // plan.blocks, plan.hits // plan.blocks],
            warmup=[plan.hit_warmup, plan.hit_warmup // 10, plan.hit_warmup],
        )
        raw.close()

        hits = ours.cache_hits
        expected_hits = plan.hit_warmup + len(hit_us)
        trips_seen = len(server.requests) - requests_before
        expected_trips = plan.hit_warmup // 10 + len(trip_us)
        if hits != expected_hits or ours.cache_misses != 1 or trips_seen != expected_trips:
            raise RuntimeError(
                f"not all timed calls were hits: {hits} hits of {expected_hits}, {ours.cache_misses} misses, "
                f"{trips_seen} requests reached the server for {expected_trips} round trips"
            )
        ours.close()  # the connection pool of the one miss

    hit_median, trip_median, floor_median = median(hit_us), median(trip_us), median(floor_us)
    times = trip_median / hit_median
    return [
        info_row(TOPIC, f"send_message cache hit, median ({len(hit_us)} hits)", f"{hit_median:.1f} us"),
        info_row(TOPIC, "send_message cache hit, p90", f"{percentile(hit_us, 90):.1f} us"),
        info_row(
            TOPIC,
            "floor: canonical key + dict lookup + fresh copy, median / p90",
            f"{floor_median:.1f} / {percentile(floor_us, 90):.1f} us",
        ),
        ratio_row(TOPIC, "cache hit / key-plus-lookup floor, median", hit_median / floor_median, GOAL_HIT_OVER_FLOOR),
        info_row(
            TOPIC,
            f"raw SDK loopback round trip, median / p90 ({len(trip_us)} calls)",
            f"{trip_median:.0f} / {percentile(trip_us, 90):.0f} us",
        ),
        Row(
            TOPIC,
            "round trip / cache hit, median",
            f"{times:.1f}x",
            f">= {GOAL_ROUND_TRIP_OVER_HIT:.0f}x",
            times >= GOAL_ROUND_TRIP_OVER_HIT,
        ),
    ]


# -- 2. write cost as the file grows ------------------------------------------------------------


def _key(i: int) -> str:
    """A key shaped like the real ones (a sha256 hex digest)."""
    return hashlib.sha256(b"bench-%d" % i).hexdigest()


def _value(i: int) -> dict[str, Any]:
    """A chat record as the client stores it, with a ~300-character answer unique to `i`."""
    content = (f"Answer {i}: " + "The quick brown fox jumps over the lazy dog. " * 7)[:300]
    return {
        "model": BENCH_MODEL,
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 25 + i % 50, "completion_tokens": 70, "total_tokens": 95 + i % 50},
    }


class _WholeFileCache:
    """The old module's approach: a dict in memory, the whole of it pickled to the file on every put."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        self.bytes_written = 0

    def fill(self, items: list[tuple[str, Any]]) -> None:
        """Reach a size without paying for a rewrite per entry: the file ends up the same."""
        self.entries.update(items)
        self._dump()

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self._dump()

    def _dump(self) -> None:
        with open(self.path, "wb") as handle:
            pickle.dump(self.entries, handle)
            self.bytes_written += handle.tell()


class _Writer:
    """Uniform access to both approaches: fill to a size, then time appends of new keys."""

    def __init__(self, make: Callable[[Path], Any], path: Path, size: int) -> None:
        self.cache = make(path)
        self.next = 0
        if isinstance(self.cache, _WholeFileCache):
            self.cache.fill([(_key(i), _value(i)) for i in range(size)])
        else:
            for i in range(size):
                self.cache.put(_key(i), _value(i))
        self.next = size

    def timed_writes(self, count: int) -> tuple[float, int]:
        """Seconds per write and bytes written per write, over `count` new keys."""
        items = [(_key(i), _value(i)) for i in range(self.next, self.next + count)]
        self.next += count
        put = self.cache.put
        bytes_before = self.cache.bytes_written
        start = time.perf_counter()
        for key, value in items:
            put(key, value)
        elapsed = time.perf_counter() - start
        return elapsed / count, (self.cache.bytes_written - bytes_before) // count


def _write_cost(plan: Plan, tmp: Path) -> list[Row]:
    rows = []
    for name, make, per_round in (
        ("append (ResponseCache.put)", ResponseCache, plan.writes_per_round),
        ("old whole-file rewrite", _WholeFileCache, plan.old_writes_per_round),
    ):
        small, large = _sizes_compared(make, tmp / name.split()[0], plan.write_rounds, per_round)
        (small_s, small_bytes), (large_s, large_bytes) = small, large
        writes = plan.write_rounds * per_round
        ratio = large_s / small_s
        rows += [
            info_row(
                TOPIC,
                f"{name}: per write at ~{SMALL} / ~{LARGE:,} entries ({writes} writes each)",
                f"{_duration(small_s)} / {_duration(large_s)}",
            ),
            info_row(
                TOPIC,
                f"{name}: bytes written per write at ~{SMALL} / ~{LARGE:,}",
                f"{_size(small_bytes)} / {_size(large_bytes)} ({large_bytes / small_bytes:.0f}x)",
            ),
        ]
        if make is ResponseCache:
            rows.append(ratio_row(TOPIC, f"{name}: per write, {LARGE:,} / {SMALL} entries", ratio, GOAL_WRITE_GROWTH))
        else:
            rows.append(info_row(TOPIC, f"{name}: per write, {LARGE:,} / {SMALL} entries (no goal)", f"{ratio:.2f}x"))
    return rows


def _sizes_compared(
    make: Callable[[Path], Any], folder: Path, rounds: int, per_round: int
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Median over `rounds` sub-batches of per-write cost near SMALL and near LARGE entries.

    The large cache is filled once and grows by rounds * per_round (2% at most); each small
    sub-batch gets a fresh cache of SMALL entries, so it too stays near its size. The sizes
    alternate, round by round, so drift hits both equally.
    """
    folder.mkdir()
    large = _Writer(make, folder / "large.pickle", LARGE)
    small_samples: list[tuple[float, int]] = []
    large_samples: list[tuple[float, int]] = []
    gc.collect()
    for r in range(rounds):
        small = _Writer(make, folder / f"small-{r}.pickle", SMALL)
        small_samples.append(small.timed_writes(per_round))
        large_samples.append(large.timed_writes(per_round))
    return _median_pair(small_samples), _median_pair(large_samples)


def _median_pair(samples: list[tuple[float, int]]) -> tuple[float, int]:
    return median([s for s, _ in samples]), int(median([b for _, b in samples]))


# -- 3. load time --------------------------------------------------------------------------------


def _load_time(plan: Plan, path: Path) -> list[Row]:
    """Build a file of N entries once, straight from the module's record encoder, then time fresh loads."""
    with open(path, "wb") as out:
        out.write(HEADER)
        for i in range(plan.load_entries):
            value_bytes = pickle.dumps(_value(i), protocol=PICKLE_PROTOCOL)
            out.write(encode_record(_key(i), value_bytes))
    size = path.stat().st_size
    seconds = []
    for _ in range(plan.loads):
        gc.collect()
        start = time.perf_counter()
        count = len(ResponseCache(path))
        seconds.append(time.perf_counter() - start)
        if count != plan.load_entries:
            raise RuntimeError(f"loaded {count} entries of {plan.load_entries} from {path}")
    load = median(seconds)
    return [
        info_row(
            TOPIC,
            f"load {plan.load_entries:,} entries ({_size(size)}), median of {plan.loads}",
            f"{load * 1000:.0f} ms",
        ),
        info_row(TOPIC, "load rate", f"{plan.load_entries / load:,.0f} entries/s"),
        *_load_memory(path, size),
    ]


ROOT = Path(__file__).resolve().parent.parent
_LOAD_CHILD = """
import gc, json, sys, tracemalloc
from pathlib import Path
from openai_utils.cache import ResponseCache

def resident():  # (now, peak) in bytes, of this process alone (Linux; getrusage counts the parent's peak)
    with open("/proc/self/status") as status:
        found = dict(line.split(":", 1) for line in status)
    return int(found["VmRSS"].split()[0]) * 1024, int(found["VmHWM"].split()[0]) * 1024

cache = ResponseCache(Path(sys.argv[1]))
gc.collect()
if sys.argv[2] == "trace":
    tracemalloc.start()
    count = len(cache)
    gc.collect()
    steady, peak = tracemalloc.get_traced_memory()
else:
    before = resident()[0]
    count = len(cache)
    gc.collect()
    now, high = resident()
    steady, peak = now - before, high - before
print(json.dumps({"count": count, "steady": steady, "peak": peak}))
"""


def _load_memory(path: Path, size: int) -> list[Row]:
    """Peak memory while loading against what the loaded cache keeps, each load in a fresh process:
    Python's own allocations (tracemalloc), and the resident size where Linux reports it."""
    traced = [_load_in_child(path, "trace") for _ in range(3)]
    steady = median([run["steady"] for run in traced])
    rows = [
        info_row(
            TOPIC, "load: memory kept after loading (tracemalloc)", f"{_size(steady)}, {steady / size:.2f}x the file"
        ),
        ratio_row(
            TOPIC,
            "load peak / steady state (tracemalloc)",
            median([r["peak"] / r["steady"] for r in traced]),
            GOAL_LOAD_PEAK,
        ),
    ]
    if Path("/proc/self/status").exists():
        resident = [_load_in_child(path, "resident") for _ in range(3)]
        rows.append(
            info_row(
                TOPIC,
                "load: peak / steady resident size growth",
                f"{median([r['peak'] / max(r['steady'], 1) for r in resident]):.2f}x",
            )
        )
    return rows


def _load_in_child(path: Path, how: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_CHILD, str(path), how], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"loading {path} failed in a fresh interpreter:\n{result.stderr}")
    answer: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _duration(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError
