"""The shared cache (cache_store.py) on a real Valkey server: hits across cache objects, JSON
values only, namespaces, the TTL, leases, and answers while the store is down."""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
from typing import Any

import pytest

from openai_utils import ConfigError, OpenAIClient, default, force_api_cache
from openai_utils.cache import MISSING, cache_for_calls
from openai_utils.cache_store import StoreCache, forget_store_caches, store_cache
from openai_utils.store import PASSWORD_VARIABLE, SharedStore, shared_store
from tests.fake_server import FakeOpenAIServer
from tests.valkey import ValkeyServer

RECORD = {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}


def fresh(url: str, namespace: str = "openai_utils") -> StoreCache:
    """Another process's view of the store: its own connection and an empty in-process tier."""
    return StoreCache(SharedStore(url, 1.0), namespace)


def raw_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def test_force_api_cache_with_a_store_url_shares_answers_between_processes(
    store_url: str, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    force_api_cache(True, store_url)
    first = oai.send_message([{"role": "user", "content": "hello"}])
    again = oai.send_message([{"role": "user", "content": "hello"}])
    assert first is not None and again is not None and again.cached and not first.cached
    assert len(server.requests_to("/chat/completions")) == 1
    elsewhere = fresh(store_url)
    cache = cache_for_calls(store_url)
    assert isinstance(cache, StoreCache)
    [key] = list(elsewhere.keys())
    assert elsewhere.get(key) == cache.get(key)
    assert [request["messages"] for _, _, request in elsewhere.entries() if request] == [
        [{"role": "user", "content": "hello"}]
    ]


def test_cache_backend_names_the_store_for_every_client(
    store_url: str, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    default.force("cache_backend", store_url)
    default.force("cache_api_calls", True)
    oai.send_message([{"role": "user", "content": "hello"}])
    assert oai.send_message([{"role": "user", "content": "hello"}]).cached
    assert len(server.requests_to("/chat/completions")) == 1
    assert len(list(fresh(store_url).keys())) == 1


def test_values_are_json_and_a_pickle_in_the_store_is_never_loaded(store_url: str) -> None:
    cache = store_cache(store_url)
    cache.put("k", RECORD, {"model": "m", "messages": [], "timeout": 3})
    client = raw_client(store_url)
    assert json.loads(client.get("openai_utils:answer:k")) == RECORD
    assert json.loads(client.get("openai_utils:request:k")) == {"model": "m", "messages": []}
    client.set("openai_utils:answer:evil", pickle.dumps(RECORD))
    assert fresh(store_url).get("evil") is MISSING
    client.close()


def test_each_hit_is_a_fresh_copy_and_the_first_answer_stays(store_url: str) -> None:
    cache = store_cache(store_url)
    cache.put("k", RECORD)
    cache.get("k")["model"] = "edited"
    assert cache.get("k") == RECORD
    other = fresh(store_url)
    other.put("k", {"model": "second"})
    assert fresh(store_url).get("k") == RECORD


def test_only_plain_data_is_stored(store_url: str) -> None:
    with pytest.raises(TypeError, match="plain data"):
        store_cache(store_url).put("k", {"when": object()})


def test_namespaces_keep_experiments_apart(store_url: str) -> None:
    fresh(store_url, "one").put("k", RECORD)
    assert fresh(store_url, "two").get("k") is MISSING
    assert fresh(store_url, "one").get("k") == RECORD
    assert list(fresh(store_url, "two").keys()) == []


def test_answers_never_expire_unless_a_ttl_is_set(store_url: str) -> None:
    client = raw_client(store_url)
    store_cache(store_url).put("forever", RECORD)
    assert client.ttl("openai_utils:answer:forever") == -1
    default.force("cache_ttl", 3600)
    store_cache(store_url).put("soon", RECORD, {"model": "m"})
    assert 3500 < client.ttl("openai_utils:answer:soon") <= 3600
    assert 3500 < client.ttl("openai_utils:request:soon") <= 3600
    client.close()


def test_a_password_in_the_url_is_refused_naming_the_variable(oai: OpenAIClient) -> None:
    with pytest.raises(ConfigError, match=PASSWORD_VARIABLE) as caught:
        force_api_cache(True, "redis://user:s3cret@127.0.0.1:1/0")
        oai.send_message([{"role": "user", "content": "hello"}])
    assert "s3cret" not in str(caught.value)
    default.force("cache_backend", "memcached://127.0.0.1")
    with pytest.raises(ConfigError, match="neither file nor"):
        shared_store()
    force_api_cache(None)
    default.force("cache_backend", "redis")  # neither a URL nor file: never a file named so
    with pytest.raises(ConfigError, match="neither file nor"):
        oai.send_message([{"role": "user", "content": "hello"}])
    default.force("cache_backend", "File")
    assert shared_store() is None


def test_the_password_comes_from_the_environment(valkey: ValkeyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    guarded = ValkeyServer(valkey.binary)  # a server of its own, which asks for a password
    guarded.start()
    try:
        raw_client(guarded.url).config_set("requirepass", "pw-from-env")
        denied = StoreCache(SharedStore(guarded.url, 1.0), "ns")
        denied.put("k", RECORD)
        assert fresh(guarded.url).get("k") is MISSING
        monkeypatch.setenv(PASSWORD_VARIABLE, "pw-from-env")
        allowed = StoreCache(SharedStore(guarded.url, 1.0), "ns")
        allowed.put("k", RECORD)
        assert StoreCache(SharedStore(guarded.url, 1.0), "ns").get("k") == RECORD
    finally:
        guarded.close()
        forget_store_caches()


def test_a_store_that_is_down_costs_one_warning_and_calls_are_answered(
    valkey: ValkeyServer, oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    down = ValkeyServer(valkey.binary)  # never started: nothing listens on its port
    force_api_cache(True, down.url)
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        for _ in range(3):
            assert oai.send_message([{"role": "user", "content": "hello"}]) is not None
    assert len(server.requests_to("/chat/completions")) == 1  # this process still keeps what it was answered
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and down.url.split("//")[1].split("/")[0] in warnings[0].getMessage()
    cache = cache_for_calls(down.url)
    assert isinstance(cache, StoreCache) and cache.store.breaker.is_open
    assert cache.store.breaker.failures == 1  # every later operation skipped the store
    forget_store_caches()


def test_the_breaker_tries_the_store_again_and_uses_it_when_it_is_back(valkey: ValkeyServer) -> None:
    now = [0.0]
    store = SharedStore(valkey.url, 1.0, clock=lambda: now[0])
    valkey.stop()
    try:
        assert store.run("ping", lambda c: bool(c.ping()), False) is False
        valkey.start()
        assert store.run("ping", lambda c: bool(c.ping()), False) is False  # left alone for a while
        now[0] += 5.0
        assert store.run("ping", lambda c: bool(c.ping()), False) is True
        assert not store.breaker.is_open and store.breaker.failures == 1
    finally:
        store.close()
        if valkey.process is None:
            valkey.start()


def test_identical_misses_in_two_processes_make_one_call(store_url: str) -> None:
    """Two cache objects with their own connections stand for two processes: one computes, the
    other waits on the lease and gets the answer as a hit."""
    release, calls = threading.Event(), []
    first, second = fresh(store_url), fresh(store_url)

    def slow() -> dict[str, Any]:
        calls.append("first")
        release.wait(10)
        return RECORD

    results: list[tuple[Any, bool]] = []
    worker = threading.Thread(target=lambda: results.append(first.get_or_compute("k", slow)))
    worker.start()
    client = raw_client(store_url)
    while not client.exists("openai_utils:lease:k"):
        threading.Event().wait(0.005)
    waiter = threading.Thread(target=lambda: results.append(second.get_or_compute("k", lambda: calls.append("2"))))
    waiter.start()
    release.set()
    worker.join(10)
    waiter.join(10)
    assert calls == ["first"]
    assert sorted(results, key=lambda r: r[1]) == [(RECORD, False), (RECORD, True)]
    assert not client.exists("openai_utils:lease:k")
    client.close()


def test_a_dead_workers_lease_expires_and_the_call_is_made(store_url: str) -> None:
    client = raw_client(store_url)
    client.set("openai_utils:lease:k", "a worker that died", px=200)
    value, hit = fresh(store_url).get_or_compute("k", lambda: RECORD)
    assert (value, hit) == (RECORD, False)
    client.close()


def test_a_failed_call_lets_the_next_worker_try(store_url: str) -> None:
    def fails() -> Any:
        raise RuntimeError("the server said no")

    with pytest.raises(RuntimeError):
        fresh(store_url).get_or_compute("k", fails)
    assert fresh(store_url).get_or_compute("k", lambda: RECORD) == (RECORD, False)


def test_the_async_form_waits_for_another_process(store_url: str) -> None:
    import asyncio

    async def compute() -> dict[str, Any]:
        return RECORD

    async def both() -> list[tuple[Any, bool]]:
        return [
            await fresh(store_url).aget_or_compute("k", compute),
            await fresh(store_url).aget_or_compute("k", compute),
        ]

    assert asyncio.run(both()) == [(RECORD, False), (RECORD, True)]


def test_a_stalled_store_costs_one_timeout_then_nothing(
    valkey: ValkeyServer, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts connections but never answers (stopped with SIGSTOP): the first
    operation gives up after STORE_TIMEOUT, and the breaker spares every later one the wait."""
    import signal

    cache = StoreCache(SharedStore(store_url, 0.05), "ns")
    cache.store.run("connect", lambda c: c.ping(), None)
    assert valkey.process is not None
    os.kill(valkey.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="openai_utils"):
            assert cache.get_or_compute("k", lambda: RECORD) == (RECORD, False)
            assert cache.get("other") is MISSING
    finally:
        os.kill(valkey.process.pid, signal.SIGCONT)
    assert cache.store.breaker.failures == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Timeout" in warning
    cache.store.close()


def test_the_store_password_is_masked_in_everything_the_library_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from openai_utils.redact import redact

    monkeypatch.setenv(PASSWORD_VARIABLE, "store-pw-123456")
    assert redact("AUTH failed for store-pw-123456") == "AUTH failed for [redacted]"


def test_the_in_process_tier_keeps_the_newest_answers(store_url: str) -> None:
    cache = StoreCache(SharedStore(store_url, 1.0), "ns", local_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, {"k": key})
    assert [cache.holds(key) for key in ("a", "b", "c")] == [False, True, True]
    assert cache.get("a") == {"k": "a"}  # from the store, and kept again
    assert cache.holds("a") and not cache.holds("b")
    cache.store.close()
