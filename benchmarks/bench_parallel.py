"""Many calls at 100 ms latency from sync code: send_messages over a thread pool, cold and from the cache.

The loopback server adds 100 ms to every request. The ideal for N requests at concurrency C is
ceil(N / C) x 0.1 s; the cold run is shown as a ratio to it. The warm run sends the same list
again with every answer already in the cache, so it measures the pool and the cache alone.
"""

from __future__ import annotations

import math
import tempfile
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
            TOPIC, f"send_messages x {count} again, every answer cached", f"{warm_seconds:.2f} s",
            f"< {GOAL_WARM_SECONDS:.2f} s", warm_seconds < GOAL_WARM_SECONDS,
        ),
        check_row(TOPIC, "results in input order, both runs", cold == expected and warm == expected, "all in order", "WRONG"),
        check_row(TOPIC, "requests sent: cold / warm", (cold_requests, warm_requests) == (count, 0), f"{count} / 0", f"{cold_requests} / {warm_requests}"),
        Row(TOPIC, "most requests in flight seen by the server", str(most_in_flight), f"<= {CONCURRENCY}", most_in_flight <= CONCURRENCY),
    ]
