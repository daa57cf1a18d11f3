"""The shared store: a hit next to a bare GET, the in-process tier next to a file hit, shared limits.

Why: a shared hit cannot skip one round trip to the store, so its cost is measured as a ratio to
a bare redis-py GET of the same key on the same server (goal <= 2x: the library adds little to the
round trip); with the in-process tier in front, a repeated hit skips the round trip, and must cost
about what a file-cache hit costs (goal <= 2x). Both are timed in the same run, in alternating
blocks, so drift hits both alike. Then throughput: 4 worker processes x N calls to a fake server
answering after 100 ms, under one REQUESTS_PER_MINUTE shared through the store, as a ratio of the
rate the server saw to the limit (goal >= 0.9: sharing the limit costs little of it), with the
server refusing (429) above the limit: the shared run must see none, and the same workers with
limits per process (CACHE_BACKEND=file) show the storm they cause.

Needs a Valkey/Redis server binary and redis-py (tests/valkey.py finds them); without them the
topic reports one row saying so. Everything runs on 127.0.0.1 and is removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from timing import BENCH_KEY, BENCH_MESSAGES, BENCH_MODEL, Row, check_row, info_row, interleaved, loopback, median

from openai_utils import OpenAIClient
from openai_utils.cache_store import StoreCache, forget_store_caches

__all__ = ["run"]

TOPIC = "store"
GOAL_HIT_OVER_GET = 2.0
GOAL_TIER_OVER_FILE_HIT = 2.0
GOAL_THROUGHPUT = 0.9
ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
LATENCY = 0.1


@dataclass(frozen=True)
class Plan:
    hits: int  # timed hits of each kind, in `blocks` alternating blocks
    blocks: int
    calls: int  # per worker process, under the shared limit
    rate: int  # the shared REQUESTS_PER_MINUTE
    storm_calls: int  # per worker process, with limits per process


FULL = Plan(hits=4000, blocks=8, calls=1000, rate=6000, storm_calls=200)
QUICK = Plan(hits=200, blocks=2, calls=15, rate=3000, storm_calls=15)


def run(quick: bool) -> list[Row]:
    sys.path.insert(0, str(ROOT))
    from tests.valkey import ValkeyServer, server_binary, skip_reason

    reason = skip_reason()
    if reason is not None:
        return [info_row(TOPIC, "not measured", reason)]
    plan = QUICK if quick else FULL
    binary = server_binary()
    assert binary is not None
    server = ValkeyServer(binary).start()
    try:
        return _hits(plan, server.url) + _throughput(plan, server.url)
    finally:
        forget_store_caches()
        server.close()


def _hits(plan: Plan, url: str) -> list[Row]:
    with loopback(BENCH_KEY, BENCH_MODEL), tempfile.TemporaryDirectory(prefix="openai_utils-bench-store-") as folder:
        shared = OpenAIClient(cache_api_calls=True, cache_file_name=url)
        tiered = OpenAIClient(cache_api_calls=True, cache_file_name=url)
        filed = OpenAIClient(cache_api_calls=True, cache_file_name=str(Path(folder) / "c.pickle"))
        first = shared.send_message(BENCH_MESSAGES)
        filed.send_message(BENCH_MESSAGES)
        cache = shared._cache()
        assert isinstance(cache, StoreCache)
        untiered = StoreCache(cache.store, cache.namespace, local_entries=0)
        shared._cache = lambda: untiered  # type: ignore[method-assign]
        [key] = list(untiered.keys())
        raw = untiered.store.client
        answer_key = untiered.answer_key(key)
        if shared.send_message(BENCH_MESSAGES) != first or raw.get(answer_key) is None:
            raise RuntimeError("the shared hit did not answer what the miss stored")
        per_block = plan.hits // plan.blocks
        hit_us, get_us, tier_us, file_us = interleaved(
            [
                lambda: shared.send_message(BENCH_MESSAGES),
                lambda: raw.get(answer_key),
                lambda: tiered.send_message(BENCH_MESSAGES),
                lambda: filed.send_message(BENCH_MESSAGES),
            ],
            rounds=plan.blocks,
            per_round=per_block,
            warmup=per_block // 4,
        )
        hits = shared.cache_hits + tiered.cache_hits + filed.cache_hits
        expected = (per_block // 4 + len(hit_us)) * 3 + 1  # the warm-ups, the timed ones, the check above
        if hits != expected:
            raise RuntimeError(f"not every timed call was a hit: {hits} of {expected}")
        for client in (shared, tiered, filed):
            client.close()
    hit, get, tier, file_hit = median(hit_us), median(get_us), median(tier_us), median(file_us)
    return [
        info_row(TOPIC, "shared hit / bare GET, median", f"{hit:.1f} / {get:.1f} us"),
        Row(
            TOPIC,
            "shared hit / bare GET",
            f"{hit / get:.2f}x",
            f"<= {GOAL_HIT_OVER_GET:.2f}x",
            hit / get <= GOAL_HIT_OVER_GET,
        ),
        info_row(TOPIC, "in-process tier hit / file-cache hit, median", f"{tier:.1f} / {file_hit:.1f} us"),
        Row(
            TOPIC,
            "in-process tier hit / file-cache hit",
            f"{tier / file_hit:.2f}x",
            f"<= {GOAL_TIER_OVER_FILE_HIT:.2f}x",
            tier / file_hit <= GOAL_TIER_OVER_FILE_HIT,
        ),
    ]


def _workers(url: str, base_url: str, calls: int, settings: dict[str, object], namespace: str) -> list[dict[str, int]]:
    options = {"store": url, "base_url": base_url, "count": calls, "threads": 16, "settings": settings}
    options["namespace"] = namespace
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": BENCH_KEY}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store_workers", "limited", json.dumps({**options, "worker": w})],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    results = []
    for worker in started:
        out, _ = worker.communicate(timeout=3600)
        if worker.returncode != 0:
            raise RuntimeError(f"a worker failed with status {worker.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _throughput(plan: Plan, url: str) -> list[Row]:
    from tests.limited_server import RateLimitedServer

    in_flight = PROCESSES * 16  # requests admitted and not yet arrived: at most one per thread
    server = RateLimitedServer(plan.rate, capacity=plan.rate / 60 + in_flight, latency=LATENCY)
    server.start()
    try:
        settings: dict[str, object] = {"requests_per_minute": plan.rate, "max_attempts": 1}
        started = time.monotonic()
        failed = sum(r["failed"] for r in _workers(url, server.base_url, plan.calls, settings, "bench-shared"))
        arrivals = sorted(r.time for r in server.requests_to("/chat/completions"))
        seen = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 60
        refused = server.refused
        storm_settings = {**settings, "cache_backend": "file"}
        server.reset()
        _workers(url, server.base_url, plan.storm_calls, storm_settings, "bench-storm")
        storm = server.refused
    finally:
        server.stop()
    ratio = seen / plan.rate
    total = PROCESSES * plan.calls
    return [
        info_row(
            TOPIC,
            f"{PROCESSES} processes x {plan.calls} calls at {LATENCY * 1000:.0f} ms, shared {plan.rate}/min",
            f"{seen:.0f}/min at the server, {time.monotonic() - started:.1f} s in all",
        ),
        Row(TOPIC, "rate seen / shared limit", f"{ratio:.2f}x", f">= {GOAL_THROUGHPUT:.2f}x", ratio >= GOAL_THROUGHPUT),
        check_row(
            TOPIC, f"429s under the shared limit ({total} calls)", refused == 0 and failed == 0, "none", f"{refused}"
        ),
        info_row(
            TOPIC,
            f"429s with limits per process ({PROCESSES} x {plan.storm_calls} calls)",
            f"{storm} of {PROCESSES * plan.storm_calls}",
        ),
    ]
