"""Rate limits and pauses kept in the store (store_limits.py) on a real Valkey server: the bucket's
arithmetic is the in-process bucket's, admissions from several processes are never lost or
doubled, pauses reach every worker, and the in-process ones stand in while the store is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from openai_utils import default
from openai_utils.pause import EndpointPause
from openai_utils.ratelimit import PLACE, SEND, RateGate
from openai_utils.store import SharedStore
from openai_utils.store_limits import StoreBucket, StorePauses, worker_id
from openai_utils.token_bucket import TokenBucket
from tests.cache_helpers import ROOT
from tests.fake_clock import FakeClock
from tests.valkey import ValkeyServer


def bucket(url: str, rpm: float, clock: Callable[[], float], key: str = "ns:rate:e") -> StoreBucket:
    return StoreBucket(SharedStore(url, 1.0), key, TokenBucket(rpm, clock), clock)


def test_the_store_bucket_waits_exactly_as_the_in_process_bucket(store_url: str) -> None:
    clock = FakeClock()
    shared, local = bucket(store_url, 120, clock), TokenBucket(120, clock)
    for amount, advance in [(1, 0), (1, 0), (1, 0.1), (3, 0.5), (1, 2.0), (0.5, 0), (1, 30)]:
        clock.now += advance
        assert shared.reserve(amount) == pytest.approx(local.reserve(amount), abs=1e-9)
        assert shared.level == pytest.approx(local.level, abs=1e-9)
    with pytest.raises(ValueError, match="negative"):
        shared.reserve(-1)


RESERVING = """
import json, sys
from openai_utils.store import SharedStore
from openai_utils.store_limits import StoreBucket
from openai_utils.token_bucket import TokenBucket
now = lambda: 1000.0
shared = StoreBucket(SharedStore(sys.argv[1], 5.0), "ns:rate:atomic", TokenBucket(600, now), now)
print(json.dumps([shared.reserve(1) for _ in range(50)]))
"""


def test_four_processes_reserving_at_once_get_every_place_in_line_exactly_once(store_url: str) -> None:
    """At one instant (an injected clock that stands still), 200 reservations of a bucket of 10 at
    10 a second must get the waits 0 (x10), 0.1, 0.2, ... 19.0: each place once. A lost update
    (two workers reading the same level) would give two the same wait; a limit per process would
    give each process its own 10 free ones. Nothing here depends on timing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-c", RESERVING, store_url], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    waits = sorted(w for worker in workers for w in json.loads(worker.communicate(timeout=120)[0]))
    assert all(worker.returncode == 0 for worker in workers)
    expected = [0.0] * 10 + [k / 10 for k in range(1, 191)]
    assert waits == pytest.approx(expected, abs=1e-6)


def test_a_bucket_falls_back_to_this_process_while_the_store_is_down(valkey: ValkeyServer) -> None:
    clock = FakeClock()
    down = ValkeyServer(valkey.binary)  # nothing listens there
    shared = bucket(down.url, 60, clock)
    assert [shared.reserve(1), shared.reserve(1)] == [0.0, pytest.approx(1.0)]
    assert shared.store.breaker.is_open and shared.level == pytest.approx(-1.0)
    shared.store.close()


def test_a_pause_holds_every_other_worker_and_not_the_one_who_saw_the_429(store_url: str) -> None:
    clock = FakeClock()
    mine = StorePauses(SharedStore(store_url, 1.0), "ns", EndpointPause(clock), clock)
    theirs = StorePauses(SharedStore(store_url, 1.0), "ns", EndpointPause(clock), clock)
    mine.pause_for("e", 30, owner=("thread", 1))
    assert theirs.local.resume_time("e") is None  # nothing in their process: only the store says so
    assert 29 < theirs.remaining("e", owner=("thread", 2)) <= 30
    assert mine.resume_time("e", owner=("thread", 1)) is None
    theirs.pause_for("e", 5, owner=("thread", 2))  # a shorter pause does not cut the longer one
    assert 29 < mine.remaining("e", owner=("thread", 3)) <= 30
    assert worker_id(("thread", 1)).endswith(f":{os.getpid()}:('thread', 1)")


def test_a_shared_pause_expires_in_the_store(store_url: str) -> None:
    import redis

    pauses = StorePauses(SharedStore(store_url, 1.0), "ns", EndpointPause(), FakeClock())
    pauses.pause_for("e", 0.05, owner="a")
    with redis.Redis.from_url(store_url) as client:
        assert 0 < client.pttl("ns:pause:e") <= 50
        client.delete("ns:pause:e")  # as the store does when the time is up
    pauses.local.clear()
    assert pauses.resume_time("e", owner="b") is None


def test_the_gate_keeps_limits_and_pauses_in_the_store_cache_backend_names(store_url: str) -> None:
    clock = FakeClock()
    gate = RateGate(clock, clock.sleep, limits=lambda endpoint: (60, 0))
    assert isinstance(gate.bucket("e", "requests", 60, SEND), TokenBucket)
    default.force("cache_backend", store_url)
    default.force("cache_namespace", "exp1")
    shared = gate.bucket("e", "requests", 60, SEND)
    assert isinstance(shared, StoreBucket) and shared.key == "exp1:rate:e:requests:send:60"
    assert isinstance(gate.bucket("e", "requests", 60, PLACE), StoreBucket)
    tokens = gate.bucket("e", "tokens", 90_000, SEND)
    assert isinstance(tokens, StoreBucket) and tokens.key == "exp1:rate:e:tokens:send:90000"
    other = RateGate(clock, clock.sleep, limits=lambda endpoint: (60, 0))  # another worker, same store
    assert gate.before_request("e") == 0 and gate.before_send("e") == 0
    assert other.before_request("e") == pytest.approx(1.0)  # the first worker took the one token
    from openai_utils.exceptions import RateLimitError

    gate.after_error("e", RateLimitError("slow down", status_code=429, retry_after=20))
    seen: list[bool] = []
    elsewhere = threading.Thread(target=lambda: seen.append(other.paused("e")))
    elsewhere.start()
    elsewhere.join()
    assert seen == [True] and not gate.paused("e")


def test_a_half_imported_asyncio_does_not_break_admission(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py imports asyncio on a store's first use; another thread asking who it is meanwhile
    finds the module without current_task yet, and is a thread, not an error."""
    import types

    from openai_utils import ratelimit

    monkeypatch.setitem(sys.modules, "asyncio", types.ModuleType("asyncio"))
    assert ratelimit._owner() == ("thread", threading.get_ident())
