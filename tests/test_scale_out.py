"""The scale-out proofs: separate worker processes (tests/store_workers.py) sharing one real Valkey
server and one fake OpenAI server: one request per distinct prompt, answers while the store is
killed and restarted, shared rate limits with no 429, and a 429's pause held by every worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cache_helpers import ROOT
from tests.fake_server import FakeOpenAIServer, Fault
from tests.limited_server import RateLimitedServer
from tests.store_workers import prompts
from tests.valkey import ValkeyServer


def start(mode: str, options: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_workers", mode, json.dumps(options)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(workers: list[subprocess.Popen[str]], timeout: float = 300) -> list[dict[str, Any]]:
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def chat_texts(server: FakeOpenAIServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.requests_to("/chat/completions")]


def store_keys(url: str, pattern: str) -> list[bytes]:
    import redis

    with redis.Redis.from_url(url) as client:
        return list(client.scan_iter(match=pattern, count=1000))


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def test_four_processes_send_one_request_per_distinct_prompt_and_a_rerun_sends_none(
    store_url: str, fake: FakeOpenAIServer
) -> None:
    """4 workers x 250 prompts, the first 125 the same in all of them (in the same order, so the
    workers miss them at the same moment): every distinct prompt reaches the server exactly once."""
    options = {"store": store_url, "base_url": fake.base_url, "count": 250, "shared": 125}
    finish([start("prompts", {**options, "worker": w}) for w in range(4)])
    expected = {text for w in range(4) for text in prompts(w, 250, 125)}
    assert len(expected) == 625
    sent = Counter(chat_texts(fake))
    assert set(sent) == expected and max(sent.values()) == 1
    assert len(store_keys(store_url, "openai_utils:answer:*")) == 625
    assert store_keys(store_url, "openai_utils:lease:*") == []
    again = finish([start("prompts", {**options, "worker": w}) for w in range(4)])
    assert len(fake.requests_to("/chat/completions")) == 625
    assert [result["hits"] for result in again] == [250] * 4


def test_calls_are_answered_while_the_store_is_killed_and_the_cache_fills_again_after_its_restart(
    valkey: ValkeyServer, store_url: str, fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    restarted = tmp_path / "restarted"
    options = {"store": store_url, "base_url": fake.base_url, "count": 250, "shared": 125}
    options |= {"restarted": str(restarted), "retry_seconds": 0.2}
    workers = [start("prompts", {**options, "worker": w}) for w in range(4)]
    fake.wait_for_requests("/chat/completions", 100, timeout=120)
    valkey.kill()  # SIGKILL, no persistence: the store comes back empty
    time.sleep(0.3)  # calls go on meanwhile; how many is up to the machine, and any number is fine
    valkey.start()
    restarted.touch()
    results = finish(workers)
    assert all(result["after"] >= 10 for result in results)
    refilled = store_keys(store_url, "openai_utils:answer:*")
    assert refilled, "nothing was stored after the restart"
    sent = Counter(chat_texts(fake))
    assert {text for w in range(4) for text in prompts(w, 250, 125)} <= set(sent)


def test_a_shared_limit_of_600_a_minute_over_four_processes_gets_no_429(store_url: str) -> None:
    """REQUESTS_PER_MINUTE=600 in each of 4 workers, shared through the store; the server refuses
    above 600 a minute, with a burst of the client's one second (10) plus 4.

    Why this cannot depend on the machine's speed: the store admits each request at a time t_i
    (its clock, when the request may leave) so that over any window of w seconds at most
    10 + 10 w admissions fall, for all workers together (one atomic script per admission). A
    request reaches the server no earlier than its t_i; a slow or stalled machine can only delay
    it. Each worker sends one request at a time, so at any moment at most 4 requests are admitted
    and not yet arrived: over any window of arrivals at most 10 + 4 + 10 w fall, which a token
    bucket of 14 at 10 a second admits. Delays spread requests out or bunch at most those 4; they
    can never make the server see more. Per-process limits (4 x 600) are refused within seconds
    (benchmarks/bench_store.py shows that storm)."""
    limited = RateLimitedServer(600, capacity=10 + 4)
    limited.start()
    try:
        options = {"store": store_url, "base_url": limited.base_url, "count": 25}
        options |= {"settings": {"requests_per_minute": 600, "max_attempts": 1}}
        results = finish([start("limited", {**options, "worker": w}) for w in range(4)])
        assert limited.refused == 0
        assert [result["failed"] for result in results] == [0, 0, 0, 0]
        assert len(limited.requests_to("/chat/completions")) == 100
    finally:
        limited.stop()


def test_a_429_seen_by_one_process_holds_every_other_process_until_its_pause_ends(
    store_url: str, fake: FakeOpenAIServer
) -> None:
    pause = 3.0  # long enough for this process to see the pause in the store before it ends
    fake.script(Fault.status(429, headers={"retry-after": str(pause)}), path="/chat/completions")
    options = {"store": store_url, "base_url": fake.base_url, "count": 1}
    first = start("limited", {**options, "worker": 0})
    [refused] = fake.wait_for_requests("/chat/completions", 1, timeout=120)
    deadline = time.monotonic() + 60
    while not store_keys(store_url, "openai_utils:pause:*"):
        assert time.monotonic() < deadline, "the pause never reached the store"
        time.sleep(0.01)
    others = [start("limited", {**options, "worker": w}) for w in (1, 2)]
    finish([first, *others])
    later = [r for r in fake.requests_to("/chat/completions") if "w0" not in r.body["messages"][-1]["content"]]
    assert len(later) == 2
    # The pause began no earlier than the 429 arrived, and is held to the millisecond in the store.
    assert all(r.time >= refused.time + pause - 0.002 for r in later)
