"""The async half of the clients: same results as sync, a bounded number in flight, clean loops."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    AuthenticationError,
    LLMCall,
    OpenAIClient,
    RetriesExhaustedError,
    default,
    force_api_cache,
    force_default_value,
    register_client,
)
from tests.fake_server import FakeOpenAIServer, Fault

HI = [{"role": "user", "content": "Hi"}]


def test_asend_message_returns_what_send_message_returns(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    async def main() -> Any:
        return await oai.asend_message(HI, temperature=0, n=2)

    assert asyncio.run(main()) == oai.send_message(HI, temperature=0, n=2)
    assert server.requests[0].body == server.requests[1].body


def test_async_retries_use_the_same_policy(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    force_default_value("base_url", server.base_url)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    client = OpenAIClient(async_sleep=record, random_value=lambda: 0.5)
    server.script(Fault.status(429), Fault.status(500), Fault.status(429, headers={"retry-after-ms": "250"}))
    assert asyncio.run(client.asend_message(HI)) == {"role": "assistant", "content": "echo: Hi"}
    assert waits == [1.0, 2.0, 0.25] and len(server.requests) == 4

    server.fail_always(Fault.status(503))
    assert asyncio.run(client.asend_message(HI, max_attempts=2)) is None
    force_default_value("raise_on_failure", True)
    with pytest.raises(RetriesExhaustedError):
        asyncio.run(client.asend_message(HI, max_attempts=2))
    server.fail_always(Fault.status(401))
    with pytest.raises(AuthenticationError):
        asyncio.run(client.asend_message(HI))


def test_100_concurrent_calls_never_exceed_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer() as slow:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        force_default_value("base_url", slow.base_url)
        force_default_value("max_concurrent_model_calls", 10)
        client = OpenAIClient()
        release = threading.Event()
        slow.fail_always(Fault.hold(release))  # every answer waits until 10 requests are there

        async def main() -> list[Any]:
            calls = asyncio.gather(*(client.asend_message([{"role": "user", "content": f"q{i}"}]) for i in range(100)))
            try:
                assert await asyncio.to_thread(slow.wait_in_flight, 10)
            finally:
                release.set()
            return await calls

        results = asyncio.run(main())
        assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(100)]
        assert len(slow.requests) == 100
        assert slow.max_in_flight == 10


def test_identical_async_calls_in_flight_make_one_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeOpenAIServer(latency=0.2) as slow:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        force_default_value("base_url", slow.base_url)
        client = OpenAIClient(cache_api_calls=True, cache_file_name=str(tmp_path / "c.pickle"))

        async def main() -> list[Any]:
            return await asyncio.gather(*(client.asend_message(HI) for _ in range(8)))

        assert asyncio.run(main()) == [{"role": "assistant", "content": "echo: Hi"}] * 8
        assert len(slow.requests) == 1
        assert (client.cache_hits, client.cache_misses) == (7, 1)


def test_asyncio_run_twice_and_async_after_sync_leave_no_loop_errors(oai: OpenAIClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert oai.send_message(HI) is not None
        for _ in range(3):
            assert asyncio.run(oai.asend_message(HI)) is not None
            assert asyncio.run(oai.aget_embedding("x")) is not None
        gc.collect()
    assert oai.send_message(HI) is not None


def test_the_async_client_is_closed_when_its_loop_ends(oai: OpenAIClient) -> None:
    seen: list[Any] = []

    async def main() -> None:
        await oai.asend_message(HI)
        seen.append(await oai._async_sdk())

    asyncio.run(main())
    assert seen[0].is_closed()


def test_a_key_change_rebuilds_the_async_client(
    oai: OpenAIClient, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        await oai.asend_message(HI)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-new")
        await oai.asend_message(HI)

    asyncio.run(main())
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer sk-test-secret", "Bearer sk-new"]


def test_the_sync_api_works_inside_a_running_loop(oai: OpenAIClient) -> None:
    async def notebook_cell() -> Any:
        return oai.send_message(HI)  # a Jupyter cell calling the sync API

    assert asyncio.run(notebook_cell()) == {"role": "assistant", "content": "echo: Hi"}


def test_aget_embedding_matches_get_embedding(oai: OpenAIClient) -> None:
    async def main() -> Any:
        return await oai.aget_embedding(["a", "b"])

    assert asyncio.run(main()) == oai.get_embedding(["a", "b"])


def test_acall_renders_and_awaits(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "q.system.mustache").write_text("Answer {{topic}} questions.")
    (tmp_path / "prompts" / "q.user.mustache").write_text("What is {{x}}?")
    call = LLMCall("q.system", "q.user", temperature=0)
    assert asyncio.run(call.acall(topic="math", x="pi")) == "echo: What is pi?"
    assert call.messages == [
        {"role": "system", "content": "Answer math questions."},
        {"role": "user", "content": "What is pi?"},
    ]
    assert server.requests[0].body["temperature"] == 0


def test_a_custom_sync_client_also_serves_async_calls() -> None:
    class Canned(OpenAIClient):
        def _raw_model_call(self, request: Any, timeout: float) -> dict[str, Any]:
            return {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "canned"}}]}

    register_client("canned", Canned())
    assert asyncio.run(Canned().asend_message(HI)) == {"role": "assistant", "content": "canned"}


def test_async_cache_hits_make_no_request(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    sync_answer = oai.send_message(HI)
    assert asyncio.run(oai.asend_message(HI)) == sync_answer
    assert len(server.requests) == 1
    assert default["cache_api_calls"] is False  # forced on the clients, not in config


def test_asyncio_run_per_call_keeps_no_loop_or_async_client_alive(oai: OpenAIClient) -> None:
    """Each asyncio.run makes a loop and an async SDK client for it; once the loop is closed,
    nothing may keep either alive (1,000 such calls used to keep 740 MB)."""
    import weakref

    import openai

    loops: list[weakref.ref[Any]] = []

    async def one_call() -> Any:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await oai.asend_message(HI)

    for _ in range(30):
        assert asyncio.run(one_call()) == {"role": "assistant", "content": "echo: Hi"}
    gc.collect()
    assert [ref() for ref in loops] == [None] * 30
    assert not [o for o in gc.get_objects() if isinstance(o, openai.AsyncOpenAI)]
    assert len(oai._async_sdks) == 0
