"""A forked child never shares a connection, a lock or a slot with its parent.

The proof is end to end against the loopback server, which echoes each prompt: after a fork,
parent and child both call at once, and every answer must be the one for its own prompt. With a
shared keep-alive connection they read each other's answers (as successes).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import select
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

from openai_utils import AzureClient, OpenAIClient, client, default, register_client
from openai_utils.concurrency import call_slots
from openai_utils.local import LocalClient
from openai_utils.openai_client import CHAT
from openai_utils.ratelimit import endpoint_pauses, rate_gate
from tests.fake_server import FakeOpenAIServer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns about forking a process that has threads (the loopback server's).
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

ROUNDS = 8
PROMPTS = 10


def ask(prompt: str) -> str | None:
    reply = client().send_message([{"role": "user", "content": prompt}])
    return None if reply is None else reply["content"]


def in_child(work: Callable[[], Any]) -> tuple[int, Callable[[], Any]]:
    """Fork; the child runs `work` and sends back its JSON result. Returns (pid, collect)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        try:
            result: Any = {"ok": work()}
        except BaseException as exc:  # report anything, then leave
            result = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(result))
        os._exit(0)
    os.close(write_end)

    def collect() -> Any:
        """The child's result; a child stuck for 60 s (a deadlock) is killed and fails the test."""
        with os.fdopen(read_end) as answer:
            ready, _, _ = select.select([answer], [], [], 60)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child hung (deadlocked) after the fork")
            text = answer.read()
        os.waitpid(pid, 0)
        found = json.loads(text)
        assert "error" not in found, found["error"]
        return found["ok"]

    return pid, collect


@pytest.fixture
def azure_client(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> AzureClient:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-secret")
    fresh = AzureClient(sleep=lambda s: None)
    register_client("azure", fresh)
    default.force("api_type", "azure")
    return fresh


@pytest.mark.parametrize("api_type", ["openai", "azure"])
def test_parent_and_child_calling_right_after_a_fork_each_get_their_own_answers(
    api_type: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("oai" if api_type == "openai" else "azure_client")
    default.force("timeout", 5)  # a crossed-up connection fails in seconds, not a minute
    assert ask("warm up") == "echo: warm up"  # the parent now holds a pooled keep-alive connection
    for round_ in range(ROUNDS):
        mine = [f"parent {round_}.{i}" for i in range(PROMPTS)]
        theirs = [f"child {round_}.{i}" for i in range(PROMPTS)]

        def child_asks(prompts: list[str] = theirs) -> list[str | None]:
            return [ask(p) for p in prompts]

        _, collect = in_child(child_asks)
        answers = [ask(p) for p in mine]
        assert collect() == [f"echo: {p}" for p in theirs]
        assert answers == [f"echo: {p}" for p in mine]


def test_async_calls_in_parent_and_child_after_a_fork_get_their_own_answers(oai: OpenAIClient) -> None:
    default.force("timeout", 5)

    async def ask_all(prompts: list[str]) -> list[Any]:
        replies = [await oai.asend_message([{"role": "user", "content": p}]) for p in prompts]
        return [r["content"] for r in replies]

    # A loop kept open across the fork: its async SDK client (and connection) must not be reused.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(ask_all(["warm up"])) == ["echo: warm up"]
        for round_ in range(ROUNDS):
            theirs = [f"child {round_}.{i}" for i in range(PROMPTS)]
            mine = [f"parent {round_}.{i}" for i in range(PROMPTS)]

            def child_asks(prompts: list[str] = theirs) -> list[Any]:
                return asyncio.run(ask_all(prompts))

            _, collect = in_child(child_asks)
            answers = loop.run_until_complete(ask_all(mine))
            assert collect() == [f"echo: {p}" for p in theirs]
            assert answers == [f"echo: {p}" for p in mine]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


_start: Any = None


def _wait_for_all(barrier: Any) -> None:
    global _start
    _start = barrier


def _ask_many(worker: int) -> list[tuple[str, str | None]]:
    _start.wait(60)  # all four start together, as a busy pool does
    prompts = [f"worker {worker} question {i}" for i in range(200)]
    return [(p, ask(p)) for p in prompts]


def test_a_fork_pool_of_4_workers_making_200_calls_each_gets_800_right_answers(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    default.force("timeout", 20)
    assert ask("warm up") == "echo: warm up"
    context = multiprocessing.get_context("fork")
    with context.Pool(4, initializer=_wait_for_all, initargs=(context.Barrier(4),)) as pool:
        results = pool.map(_ask_many, range(4), chunksize=1)
    pairs = [pair for worker in results for pair in worker]
    assert len(pairs) == 800
    assert [answer for _, answer in pairs] == [f"echo: {prompt}" for prompt, _ in pairs]
    assert len(server.requests) == 801  # each asked once: no attempt failed and was retried


@pytest.mark.parametrize("kind", [OpenAIClient, AzureClient, LocalClient])
def test_every_client_type_forgets_its_parents_sdk_clients_in_a_child(kind: type[OpenAIClient]) -> None:
    """Every client type keeps its SDK clients the same way; a child starts with none (and
    never closes the parent's: that could end the parent's TLS session on the shared socket)."""
    made = kind()
    made._sdks[CHAT] = (("settings",), object())

    async def keep_one() -> None:
        made._async_sdks.setdefault(asyncio.get_running_loop(), {})[CHAT] = (("settings",), object(), None)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(keep_one())
    try:
        _, collect = in_child(lambda: [len(made._sdks), len(made._async_sdks), made._sdk_lock.acquire(timeout=5)])
        with made._sdk_lock:  # held by the parent at the fork: the child must not wait for it
            _, collect_while_held = in_child(lambda: made._sdk_lock.acquire(timeout=5))
        assert collect() == [0, 0, True]
        assert collect_while_held() is True
        assert len(made._sdks) == 1 and len(made._async_sdks) == 1  # the parent keeps its own
    finally:
        loop.close()


def test_a_child_does_not_inherit_slots_or_locks_held_by_parent_threads(oai: OpenAIClient) -> None:
    """Slots held by parent threads (requests in flight at the fork) and locks they held are the
    parent's: a child would otherwise wait forever for threads that do not exist in it."""
    default.force("max_concurrent_model_calls", 2)
    default.force("requests_per_minute", 6000)
    holding, release = threading.Event(), threading.Event()

    def hold_everything() -> None:
        with call_slots.hold(), call_slots.hold(), rate_gate._lock, endpoint_pauses._lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_everything)
    holder.start()
    try:
        assert holding.wait(30)
        _, collect = in_child(lambda: [call_slots.in_use, ask("from the child")])
        assert collect() == [0, "echo: from the child"]
    finally:
        release.set()
        holder.join()
