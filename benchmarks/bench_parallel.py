"""Many calls at 100 ms latency from sync code: send_messages over a thread pool, cold and from the cache.

The loopback server adds 100 ms to every request. The ideal for N requests at concurrency C is
ceil(N / C) x 0.1 s; the cold run is shown as a ratio to it. The warm run sends the same list
again with every answer already in the cache, so it measures the pool and the cache alone.

Then REQUESTS_PER_MINUTE on the real clock, as the server sees it: the window of arrivals that
most exceeds the promise of rate/60 x (1 + w) requests in any w seconds, for 16 calls at once
from a client that has not built its SDK client yet, and for 6 calls held up by two slow
requests holding both concurrency slots. The tests check the same on a simulated clock, where
it holds exactly; here, between the moment a request takes its token and the moment the server
stamps it, the machine adds its own jitter (thread wake-ups, a fresh client's first connection),
so the goal allows 25 ms of it.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path

from timing import (
    BENCH_KEY,
    BENCH_MODEL,
    Row,
    check_row,
    info_row,
    loopback,
    ratio_row,
)

from openai_utils import OpenAIClient, force_default_value
from openai_utils.parallel import send_messages

TOPIC = "parallel"
LATENCY = 0.1
CONCURRENCY = 16
GOAL_VS_IDEAL = 1.2
GOAL_WARM_SECONDS = 1.0
RPM = 240
JITTER = 0.025
"""Seconds by which requests may reach the server early or late relative to each other."""


def run(quick: bool) -> list[Row]:
    """One list of conversations, sent twice through send_messages: cold, then from the cache."""
    count = 200 if quick else 1000
    ideal = math.ceil(count / CONCURRENCY) * LATENCY
    conversations = [[{"role": "user", "content": f"item {i}"}] for i in range(count)]
    expected = [{"role": "assistant", "content": f"echo: item {i}"} for i in range(count)]
    with tempfile.TemporaryDirectory() as folder, loopback(BENCH_KEY, BENCH_MODEL, latency=LATENCY) as server:
        force_default_value("max_concurrent_model_calls", CONCURRENCY)
        ours = OpenAIClient(cache_api_calls=True, cache_file_name=str(Path(folder) / "bench.pickle"))
        ours.send_message([{"role": "user", "content": "warm-up"}])  # connect and import once, outside the timings
        sent_before = len(server.requests)

        started = time.perf_counter()
        cold = send_messages(ours, conversations, max_workers=CONCURRENCY, progress=False)
        cold_seconds = time.perf_counter() - started
        cold_requests = len(server.requests) - sent_before

        started = time.perf_counter()
        warm = send_messages(ours, conversations, max_workers=CONCURRENCY, progress=False)
        warm_seconds = time.perf_counter() - started
        warm_requests = len(server.requests) - sent_before - cold_requests
        most_in_flight = server.max_in_flight
        ours.close()
    return [
        info_row(TOPIC, f"ideal for {count} calls at concurrency {CONCURRENCY}", f"{ideal:.2f} s"),
        info_row(TOPIC, f"send_messages x {count}, {CONCURRENCY} workers, cold", f"{cold_seconds:.2f} s"),
        ratio_row(TOPIC, "send_messages cold / ideal", cold_seconds / ideal, GOAL_VS_IDEAL),
        info_row(TOPIC, "sync one by one would take about", f"{count * LATENCY:.0f} s"),
        Row(
            TOPIC,
            f"send_messages x {count} again, every answer cached",
            f"{warm_seconds:.2f} s",
            f"< {GOAL_WARM_SECONDS:.2f} s",
            warm_seconds < GOAL_WARM_SECONDS,
        ),
        check_row(
            TOPIC, "results in input order, both runs", cold == expected and warm == expected, "all in order", "WRONG"
        ),
        check_row(
            TOPIC,
            "requests sent: cold / warm",
            (cold_requests, warm_requests) == (count, 0),
            f"{count} / 0",
            f"{cold_requests} / {warm_requests}",
        ),
        Row(
            TOPIC,
            "most requests in flight seen by the server",
            str(most_in_flight),
            f"<= {CONCURRENCY}",
            most_in_flight <= CONCURRENCY,
        ),
        *_rate_limit_rows(),
    ]


def _rate_limit_rows() -> list[Row]:
    """The densest arrivals at REQUESTS_PER_MINUTE = 240, cold and behind busy slots."""
    from openai_utils.ratelimit import rate_gate
    from tests.fake_server import Fault

    def conversations(name: str, count: int) -> list[list[dict[str, str]]]:
        return [[{"role": "user", "content": f"{name} {i}"}] for i in range(count)]

    with loopback(BENCH_KEY, BENCH_MODEL) as server:
        force_default_value("requests_per_minute", RPM)
        rate_gate.reset()
        fresh = OpenAIClient(cache_api_calls=False)
        send_messages(fresh, conversations("cold", 16), max_workers=16, progress=False)
        cold = _densest_row("RPM 240, 16 calls at once, SDK client not built yet", [r.time for r in server.requests])
        fresh.close()

        server.reset()
        rate_gate.reset()
        force_default_value("max_concurrent_model_calls", 2)
        server.script(Fault.delay(1.0), Fault.delay(1.0))
        held = OpenAIClient(cache_api_calls=False)
        slow = threading.Thread(target=send_messages, args=(held, conversations("slow", 2), 2, False))
        slow.start()
        server.wait_in_flight(2)
        send_messages(held, conversations("held", 6), max_workers=6, progress=False)
        slow.join()
        busy = _densest_row("RPM 240, 6 calls behind 2 slow ones holding both slots", [r.time for r in server.requests])
        held.close()
    rate_gate.reset()
    return [cold, busy]


def _densest_row(measure: str, times: list[float]) -> Row:
    """The window of arrivals that most exceeds rate/60 x (1 + w), against that promise."""
    per_second = RPM / 60
    times = sorted(times)
    windows = [(j - i + 1, times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times))]
    count, seconds = max(windows, key=lambda window: window[0] - per_second * (1 + window[1]))
    allowed = per_second * (1 + seconds)
    return Row(
        TOPIC,
        f"{measure}: densest arrivals",
        f"{count} in {seconds * 1000:.0f} ms",
        f"<= {allowed:.1f} (+{JITTER * 1000:.0f} ms)",
        count <= per_second * (1 + seconds + JITTER),
    )
