"""MAX_SHARED_CALLS (store_slots.py) on a real Valkey server: requests in flight over every worker
of the store stay within it, a dead worker's slots come back, and a store that is down holds
nobody up."""

from __future__ import annotations

import threading
import time
from typing import Any

from openai_utils import OpenAIClient, default
from openai_utils.flow import Sleep, Step, drive
from openai_utils.store import SharedStore
from openai_utils.store_slots import OPEN, SharedSlots
from tests.fake_server import FakeOpenAIServer, Fault
from tests.valkey import ValkeyServer


def raw_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def held(store_url: str, server: FakeOpenAIServer, limit: int) -> threading.Event:
    """MAX_SHARED_CALLS of `limit` on the store, and a server holding every request until the
    event is set: the requests that reach it are exactly those given a slot."""
    default.force("cache_backend", store_url)
    default.force("max_shared_calls", limit)
    release = threading.Event()
    server.fail_always(Fault.hold(release))
    return release


def test_requests_in_flight_stay_within_the_shared_limit(
    store_url: str, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    release = held(store_url, server, 2)
    replies: list[Any] = []
    threads = [
        threading.Thread(target=lambda i=i: replies.append(oai.send_message([{"role": "user", "content": f"p{i}"}])))
        for i in range(5)
    ]
    for thread in threads:
        thread.start()
    assert server.wait_in_flight(2)
    time.sleep(0.3)  # time for a third request to arrive if the limit let one through
    assert len(server.requests_to("/chat/completions")) == 2
    with raw_client(store_url) as client:
        assert client.zcard("openai_utils:slots") == 2
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 5 and all(reply is not None for reply in replies)
    with raw_client(store_url) as client:
        assert client.zcard("openai_utils:slots") == 0


def test_a_dead_workers_slot_comes_back_when_its_hold_expires(store_url: str) -> None:
    slots = SharedSlots(SharedStore(store_url, 1.0), "ns")
    with raw_client(store_url) as client:
        now_ms = int(client.time()[0]) * 1000 + int(client.time()[1]) // 1000
        client.zadd("ns:slots", {"a worker that died": now_ms + 2000})
    assert slots.take(1) is None
    slept: list[float] = []

    def sleep(step: Step) -> None:
        assert isinstance(step, Sleep)
        slept.append(step.seconds)
        time.sleep(step.seconds)

    token = drive(slots.waits(1), sleep)
    assert token not in (None, OPEN) and slept[:3] == [0.01, 0.02, 0.04] and max(slept) == 0.1
    with raw_client(store_url) as client:
        assert client.zrange("ns:slots", 0, -1) == [token.encode()]
    slots.give_back(token)
    slots.store.close()


def test_a_hold_is_renewed_while_its_request_runs(store_url: str) -> None:
    slots = SharedSlots(SharedStore(store_url, 1.0), "ns", seconds=60)
    token = slots.take(1)
    assert token is not None
    with raw_client(store_url) as client:
        before = client.zscore("ns:slots", token)
        time.sleep(0.01)
        slots._renew([token])
        assert client.zscore("ns:slots", token) > before
    slots.give_back(token)
    slots.store.close()


def test_a_store_that_is_down_holds_nobody_up(valkey: ValkeyServer, oai: OpenAIClient) -> None:
    down = ValkeyServer(valkey.binary)  # nothing listens there
    default.force("cache_backend", down.url)
    default.force("max_shared_calls", 1)
    assert [oai.send_message([{"role": "user", "content": f"p{i}"}]) is not None for i in range(3)] == [True] * 3
    slots = SharedSlots(SharedStore(down.url, 1.0), "ns")
    assert slots.take(1) == OPEN
    slots.give_back(OPEN)


def test_async_calls_wait_for_a_shared_slot_without_blocking_their_loop(
    store_url: str, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    import asyncio

    release = held(store_url, server, 1)

    async def main() -> list[Any]:
        calls = [asyncio.ensure_future(oai.asend_message([{"role": "user", "content": f"p{i}"}])) for i in range(3)]
        await asyncio.to_thread(server.wait_in_flight, 1)
        await asyncio.sleep(0.3)  # the loop runs meanwhile: a second request would arrive now if let through
        assert len(server.requests_to("/chat/completions")) == 1
        release.set()
        replies = await asyncio.gather(*calls)
        await oai.aclose()
        return replies

    assert all(reply is not None for reply in asyncio.run(main()))
    assert len(server.requests_to("/chat/completions")) == 3
