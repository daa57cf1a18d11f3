"""Many calls at 100 ms latency: sync one by one, async with 16 in flight, and the raw AsyncOpenAI.

The loopback server adds 100 ms to every request, as a real API would, so the numbers show what
concurrency buys. The ideal for N requests at concurrency C is ceil(N / C) x 0.1 s; the async
run is printed as a ratio to it, and next to the raw SDK doing the same with a semaphore.
"""

from __future__ import annotations

import asyncio
import math
import time

import openai
from timing import (
    BENCH_KEY,
    BENCH_MODEL,
    Row,
    info_row,
    loopback,
    ratio_row,
)

from openai_utils import OpenAIClient, force_default_value

TOPIC = "async"
LATENCY = 0.1
CONCURRENCY = 16
GOAL_VS_IDEAL = 1.25
GOAL_VS_RAW = 1.10


def run(quick: bool) -> list[Row]:
    """Time the same batch three ways, each against a fresh loopback server with 100 ms latency."""
    requests = 64 if quick else 200
    sequential = 16 if quick else 50
    ideal = math.ceil(requests / CONCURRENCY) * LATENCY
    with loopback(BENCH_KEY, BENCH_MODEL, latency=LATENCY) as server:
        force_default_value("max_concurrent_model_calls", CONCURRENCY)
        ours = OpenAIClient(cache_api_calls=False)
        ours.send_message(_messages(-1))  # connect and import once, outside the timings
        started = time.perf_counter()
        for i in range(sequential):
            ours.send_message(_messages(i))
        sync_each = (time.perf_counter() - started) / sequential
        ours_async = asyncio.run(_ours_async(ours, requests))
        raw_async = asyncio.run(_raw_async(server.base_url, requests))
        most_in_flight = server.max_in_flight
    return [
        info_row(TOPIC, f"sync send_message one by one, per call ({sequential} calls)", f"{sync_each * 1000:.0f} ms"),
        info_row(TOPIC, f"sync estimate for {requests} calls", f"{sync_each * requests:.1f} s"),
        info_row(TOPIC, f"ideal for {requests} calls at concurrency {CONCURRENCY}", f"{ideal:.2f} s"),
        info_row(TOPIC, f"asend_message x {requests}, MAX_CONCURRENT_MODEL_CALLS={CONCURRENCY}", f"{ours_async:.2f} s"),
        info_row(TOPIC, f"raw AsyncOpenAI x {requests}, semaphore of {CONCURRENCY}", f"{raw_async:.2f} s"),
        ratio_row(TOPIC, "asend_message / ideal", ours_async / ideal, GOAL_VS_IDEAL),
        ratio_row(TOPIC, "asend_message / raw AsyncOpenAI", ours_async / raw_async, GOAL_VS_RAW),
        info_row(TOPIC, "speed-up of async over sync one by one", f"{sync_each * requests / ours_async:.1f}x"),
        Row(
            TOPIC,
            "most requests in flight seen by the server",
            str(most_in_flight),
            f"<= {CONCURRENCY}",
            most_in_flight <= CONCURRENCY,
        ),
    ]


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}"}]


async def _ours_async(client: OpenAIClient, requests: int) -> float:
    await client.asend_message(_messages(-2))  # the loop's client and connections, outside the timing
    started = time.perf_counter()
    await asyncio.gather(*(client.asend_message(_messages(i)) for i in range(requests)))
    return time.perf_counter() - started


async def _raw_async(base_url: str, requests: int) -> float:
    raw = openai.AsyncOpenAI(base_url=base_url, api_key=BENCH_KEY, max_retries=0)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with limit:
            await raw.chat.completions.create(model=BENCH_MODEL, messages=_messages(i))  # type: ignore[arg-type]

    await one(-3)
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    elapsed = time.perf_counter() - started
    await raw.close()
    return elapsed
