"""Identical calls in flight at once share one computation, in threads and tasks alike (coalesce.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from openai_utils import OpenAIClient, force_api_cache, register_client
from openai_utils.cache import ResponseCache, open_cache
from tests.fake_server import FakeOpenAIServer


def test_eight_threads_asking_the_same_prompt_at_once_make_one_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAIServer(latency=0.3) as slow:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        force_api_cache(True, str(tmp_path / "c.pickle"))
        client = OpenAIClient()
        register_client("openai", client)
        from openai_utils import default

        default.force("base_url", slow.base_url)
        results: list[Any] = []
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            results.append(client.send_message([{"role": "user", "content": "same"}]))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(slow.requests) == 1
        assert results == [{"role": "assistant", "content": "echo: same"}] * 8


def test_when_the_first_of_identical_calls_fails_the_next_one_tries(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c.pickle")
    calls: list[int] = []
    gate = threading.Event()

    def failing() -> Any:
        calls.append(1)
        gate.wait()
        raise RuntimeError("first one failed")

    outcome: list[Any] = []

    def first() -> None:
        try:
            cache.get_or_compute("k", failing)
        except RuntimeError as exc:
            outcome.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    while not calls:
        time.sleep(0.001)
    t2_result: list[Any] = []
    t2 = threading.Thread(target=lambda: t2_result.append(cache.get_or_compute("k", lambda: "second")))
    t2.start()
    gate.set()
    t1.join()
    t2.join()
    assert isinstance(outcome[0], RuntimeError)
    assert t2_result == [("second", False)]


def test_a_task_waits_for_the_same_call_in_flight_in_a_thread(tmp_path: Path) -> None:
    """Identical calls coalesce per cache file, whether they run in threads or in tasks."""
    import asyncio

    cache = ResponseCache((tmp_path / "shared.cache").resolve())
    started, release = threading.Event(), threading.Event()
    computed: list[str] = []
    results: list[Any] = []

    def in_thread() -> dict[str, int]:
        computed.append("thread")
        started.set()
        release.wait(30)
        return {"v": 1}

    thread = threading.Thread(target=lambda: results.append(cache.get_or_compute("k", in_thread)))
    thread.start()
    assert started.wait(30)

    async def in_task() -> dict[str, int]:
        computed.append("task")
        return {"v": 2}

    async def main() -> Any:
        waiter = asyncio.ensure_future(cache.aget_or_compute("k", in_task))
        await asyncio.sleep(0)  # the task finds the call in flight and waits for it
        release.set()
        return await asyncio.wait_for(waiter, 30)

    assert asyncio.run(main()) == ({"v": 1}, True)
    thread.join(30)
    assert computed == ["thread"] and results == [({"v": 1}, False)]


def test_tasks_of_one_loop_share_one_computation(tmp_path: Path) -> None:
    import asyncio

    cache = ResponseCache((tmp_path / "shared.cache").resolve())
    computed: list[int] = []

    async def compute() -> dict[str, int]:
        computed.append(1)
        await asyncio.sleep(0)
        return {"v": len(computed)}

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(cache.aget_or_compute("k", compute) for _ in range(5))))

    outcomes = asyncio.run(main())
    assert computed == [1] and outcomes == [({"v": 1}, False)] + [({"v": 1}, True)] * 4
