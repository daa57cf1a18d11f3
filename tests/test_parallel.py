"""Many calls at once from sync code: order, failures, the limit, Ctrl-C, the progress bar."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    InvalidRequestError,
    LLMCall,
    OpenAIClient,
    TemplateVariableError,
    force_api_cache,
    force_default_value,
    parallel,
)
from openai_utils.parallel import (
    THREAD_NAME_PREFIX,
    map_calls,
    map_llm_call,
    send_messages,
)
from tests.fake_server import FakeOpenAIServer, Fault, _last_user_text, default_reply


def conversation(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}"}]


def echo(i: int) -> dict[str, str]:
    return {"role": "assistant", "content": f"echo: question {i}"}


def workers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def wait_for_workers_to_exit(seconds: float = 30.0) -> list[threading.Thread]:
    deadline = time.monotonic() + seconds
    while workers_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return workers_alive()


# -- order, the concurrency limit, failures --------------------------------------------------


def send_messages_while_held(
    oai: OpenAIClient, server: FakeOpenAIServer, items: int, max_workers: int, in_flight: int
) -> list[Any]:
    """send_messages with every answer held at the server until `in_flight` requests are there."""
    release = threading.Event()
    server.fail_always(Fault.hold(release))
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.extend(send_messages(oai, [conversation(i) for i in range(items)], max_workers))
    )
    runner.start()
    try:
        assert server.wait_in_flight(in_flight)
    finally:
        release.set()
        runner.join(30)
    return results


def test_200_conversations_come_back_in_order_with_16_in_flight(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("max_concurrent_model_calls", 16)
    results = send_messages_while_held(oai, server, items=200, max_workers=16, in_flight=16)
    assert results == [echo(i) for i in range(200)]
    assert len(server.requests) == 200
    assert server.max_in_flight == 16
    assert wait_for_workers_to_exit() == []


def test_more_workers_than_slots_still_respect_the_limit(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("max_concurrent_model_calls", 4)
    results = send_messages_while_held(oai, server, items=40, max_workers=12, in_flight=4)
    assert results == [echo(i) for i in range(40)]
    assert server.max_in_flight == 4


def test_one_invalid_conversation_is_reported_in_its_slot_and_the_rest_succeed(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    conversations: list[Any] = [conversation(i) for i in range(50)]
    conversations[17] = [{"content": "no role"}]
    results = send_messages(oai, conversations, max_workers=8)
    assert isinstance(results[17], InvalidRequestError) and "role" in str(results[17])
    assert results[17].__traceback__ is not None
    assert [r for i, r in enumerate(results) if i != 17] == [echo(i) for i in range(50) if i != 17]
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [17]
    assert len(server.requests) == 49  # rejected before sending
    assert "1 of 50 item(s) raised" in caplog.text and "item 17" in caplog.text


def failing_on(prompt: str) -> Any:
    """A server reply that dies on one prompt: the connection closes with no answer, a retryable error."""

    def reply(body: dict[str, Any]) -> str:
        if _last_user_text(body) == prompt:
            raise RuntimeError("the handler dies")
        return default_reply(body)

    return reply


def test_retries_exhausted_leave_none_as_send_message_returns(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.reply = failing_on("question 23")
    results = send_messages(oai, [conversation(i) for i in range(30)], max_workers=6, params={"max_attempts": 2})
    assert results[23] is None
    assert [r for i, r in enumerate(results) if i != 23] == [echo(i) for i in range(30) if i != 23]
    assert len(server.requests) == 31  # item 23 tried twice


def test_with_raise_on_failure_exhausted_retries_are_exceptions_in_their_slot(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    from openai_utils import RetriesExhaustedError

    force_default_value("raise_on_failure", True)
    server.reply = failing_on("question 2")
    results = send_messages(oai, [conversation(i) for i in range(5)], params={"max_attempts": 1})
    assert isinstance(results[2], RetriesExhaustedError)
    assert results[:2] == [echo(0), echo(1)] and results[3:] == [echo(3), echo(4)]


def test_params_reach_every_request(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    send_messages(oai, [conversation(i) for i in range(5)], params={"temperature": 0.3, "seed": 7})
    assert all(r.body["temperature"] == 0.3 and r.body["seed"] == 7 for r in server.requests)


def test_streaming_is_refused_up_front(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    with pytest.raises(InvalidRequestError, match="stream"):
        send_messages(oai, [conversation(0)], params={"stream": True})
    assert server.requests == []


def test_an_empty_list_returns_at_once_without_threads() -> None:
    assert map_calls(lambda x: x, []) == []
    assert workers_alive() == []


def test_cached_answers_are_served_again_without_requests(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "cache.pickle"))
    first = send_messages(oai, [conversation(i) for i in range(30)], max_workers=8)
    again = send_messages(oai, [conversation(i) for i in range(30)], max_workers=8)
    assert first == again == [echo(i) for i in range(30)]
    assert len(server.requests) == 30
    assert (oai.cache_misses, oai.cache_hits) == (30, 30)


def test_a_generator_of_items_is_accepted() -> None:
    assert map_calls(lambda x: x * 2, (i for i in range(5)), max_workers=2) == [0, 2, 4, 6, 8]


# -- how many threads --------------------------------------------------------------------------


def record_threads(names: set[str], lock: threading.Lock, expected: int) -> Any:
    """Items that note their thread, the first ones waiting until `expected` threads have one."""
    all_in = threading.Event()

    def function(item: int) -> int:
        with lock:
            names.add(threading.current_thread().name)
            if len(names) >= expected:
                all_in.set()
        all_in.wait(30)
        return item

    return function


@pytest.mark.parametrize(("limit", "items", "expected"), [(4, 40, 4), (0, 40, 16), (16, 3, 3)])
def test_default_workers_follow_the_concurrency_limit(limit: int, items: int, expected: int) -> None:
    force_default_value("max_concurrent_model_calls", limit)
    names: set[str] = set()
    assert map_calls(record_threads(names, threading.Lock(), expected), range(items)) == list(range(items))
    assert len(names) == expected
    assert all(name.startswith(THREAD_NAME_PREFIX) for name in names)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_a_bad_max_workers_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        map_calls(lambda x: x, [1], max_workers=bad)


def test_base_exceptions_from_an_item_stop_the_map() -> None:
    def function(item: int) -> int:
        if item == 3:
            raise SystemExit(3)
        return item

    with pytest.raises(SystemExit):
        map_calls(function, range(10), max_workers=2)
    assert wait_for_workers_to_exit() == []


# -- Ctrl-C ------------------------------------------------------------------------------------


class Tracker:
    """Which items started and finished, from the worker threads.

    An item started once `hold_after` items have finished waits until `interrupted` is set
    (after the map re-raised), so how many start does not depend on how fast the calling
    thread reacts; `stuck` lists any that waited in vain, which a map that did not re-raise
    at once would cause.
    """

    def __init__(self, hold_after: int) -> None:
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.hold_after = hold_after
        self.interrupted = threading.Event()
        self.stuck: list[int] = []

    def start(self, i: int) -> None:
        with self.lock:
            self.started.append(i)
            late = len(self.finished) >= self.hold_after
        if late and not self.interrupted.wait(30):
            self.stuck.append(i)

    def finish(self, i: int) -> int:
        with self.lock:
            self.finished.append(i)
            return len(self.finished)


def test_ctrl_c_cancels_pending_items_and_leaves_no_thread(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.latency = 0.2  # requests are in flight when Ctrl-C comes
    tracker = Tracker(hold_after=6)
    main = threading.main_thread().ident
    assert main is not None  # a started thread has its ident
    assert threading.current_thread() is threading.main_thread()

    def function(i: int) -> Any:
        tracker.start(i)
        reply = oai.send_message(conversation(i))
        if tracker.finish(i) == 6:
            signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C does to the main thread
        return reply

    with pytest.raises(KeyboardInterrupt):
        map_calls(function, range(100), max_workers=4)
    tracker.interrupted.set()
    assert wait_for_workers_to_exit() == []  # in-flight requests finished, threads gone
    assert tracker.stuck == []  # it re-raised without waiting for the items in flight
    assert 6 <= len(tracker.started) <= 6 + 2 * 4  # those running, and at most one more each
    assert sorted(tracker.started) == sorted(tracker.finished)  # nothing was cut mid-request
    assert len(server.requests) == len(tracker.started) < 100


def test_a_keyboard_interrupt_from_the_progress_callback_stops_cleanly(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    server.latency = 0.2
    tracker = Tracker(hold_after=5)
    seen: list[tuple[int, int]] = []

    def function(i: int) -> Any:
        tracker.start(i)
        reply = oai.send_message(conversation(i))
        tracker.finish(i)
        return reply

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        map_calls(function, range(60), max_workers=3, progress=progress)
    tracker.interrupted.set()
    assert seen == [(n, 60) for n in range(1, 6)]
    assert wait_for_workers_to_exit() == []
    assert tracker.stuck == []
    assert 5 <= len(tracker.started) <= 5 + 2 * 3
    assert len(server.requests) == len(tracker.started)


def test_answers_finished_before_ctrl_c_are_in_the_cache(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "cache.pickle"))
    server.latency = 0.02
    tracker = Tracker(hold_after=10)

    class Tracked(OpenAIClient):
        def send_message(self, *args: Any, **kwargs: Any) -> Any:
            tracker.start(0)
            reply = super().send_message(*args, **kwargs)
            tracker.finish(0)
            return reply

    tracked = Tracked(oai.cache_api_calls, oai.cache_file_name, sleep=lambda seconds: None)

    def progress(done: int, total: int) -> None:
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send_messages(tracked, [conversation(i) for i in range(40)], max_workers=4, progress=progress)
    tracker.interrupted.set()
    assert wait_for_workers_to_exit() == []
    assert tracker.stuck == []
    sent_before = len(server.requests)
    assert 10 <= sent_before < 40
    results = send_messages(oai, [conversation(i) for i in range(40)], max_workers=4)
    assert results == [echo(i) for i in range(40)]
    assert len(server.requests) == 40  # the rerun sent only what had not been answered


# -- LLMCall.map -----------------------------------------------------------------------------


def test_llm_call_map_returns_contents_in_order_and_keeps_each_items_state(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    server.latency = 0.01
    call = LLMCall("greet.system", "greet.user", temperature=0)
    configs = [{"who": f"P{i}", "lang": "French"} for i in range(30)]
    results = map_llm_call(call, configs, max_workers=8)
    assert results == [f"echo: Say hello to P{i} in French." for i in range(30)]
    assert call.messages == [
        [
            {"role": "system", "content": f"You greet P{i}."},
            {"role": "user", "content": f"Say hello to P{i} in French."},
        ]
        for i in range(30)
    ]
    assert call.model_output == [{"role": "assistant", "content": r} for r in results]
    assert all(r.body["temperature"] == 0 for r in server.requests)
    # the LLMCall still works one call at a time afterwards
    assert call.call(who="Z", lang="Dutch") == "echo: Say hello to Z in Dutch."
    assert call.messages[0] == {"role": "system", "content": "You greet Z."}


def test_llm_call_map_reports_a_missing_variable_in_its_slot(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    call = LLMCall("greet.system", "greet.user")
    configs: list[dict[str, Any]] = [{"who": "A", "lang": "x"}, {"who": "B"}, {"who": "C", "lang": "y"}]
    results = map_llm_call(call, configs)
    assert isinstance(results[1], TemplateVariableError)
    assert results[0] == "echo: Say hello to A in x." and results[2] == "echo: Say hello to C in y."
    assert call.messages is not None and call.messages[1] is None
    assert call.model_output is not None and call.model_output[1] is None
    assert len(server.requests) == 2


def test_llm_call_map_passes_allow_missing_variables_per_item(oai: OpenAIClient, prompts: Path) -> None:
    results = map_llm_call(LLMCall("greet.system", "greet.user"), [{"who": "B", "allow_missing_variables": True}])
    assert results == ["echo: Say hello to B in ."]


def test_llm_call_map_refuses_items_that_are_not_dicts(prompts: Path) -> None:
    with pytest.raises(TypeError, match="item 1"):
        map_llm_call(LLMCall("greet.system"), [{"who": "A"}, "B"])  # type: ignore[list-item]


# -- the progress bar ------------------------------------------------------------------------


def test_no_progress_bar_when_output_is_not_interactive(capsys: pytest.CaptureFixture[str]) -> None:
    assert map_calls(lambda x: x, range(50)) == list(range(50))
    assert capsys.readouterr().err == ""


def test_interactive_long_runs_get_a_bar_and_short_ones_do_not(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(parallel, "_interactive", lambda: True)
    map_calls(lambda x: x, range(parallel.PROGRESS_MIN_ITEMS))
    assert capsys.readouterr().err == ""
    map_calls(lambda x: x, range(50), description="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "50/50" in err
    map_calls(lambda x: x, range(50), progress=False)
    assert capsys.readouterr().err == ""


def test_interactive_maps_of_two_items_already_get_a_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(parallel, "_interactive", lambda: True)
    map_calls(lambda x: x, range(2), description="pair")
    assert "pair" in capsys.readouterr().err


def test_progress_true_forces_the_bar(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    map_calls(lambda x: x, range(3), progress=True, description="forced")
    err = capsys.readouterr().err
    assert "forced" in err and "3/3" in err


def test_the_bar_counts_failures(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")

    def function(x: int) -> int:
        if x % 5 == 0:
            raise ValueError(x)
        return x

    results = map_calls(function, range(20), progress=True)
    assert sum(isinstance(r, ValueError) for r in results) == 4
    assert "failed=4" in capsys.readouterr().err


def test_progress_true_without_tqdm_warns_once_and_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "_tqdm", lambda: None)
    monkeypatch.setattr(parallel, "_warned_no_tqdm", False)
    with pytest.warns(RuntimeWarning, match="tqdm"):
        assert map_calls(lambda x: x, range(20), progress=True) == list(range(20))
    assert map_calls(lambda x: x, range(20), progress=True) == list(range(20))  # no second warning
    assert capsys.readouterr().err == ""


def test_a_jupyter_kernel_counts_as_interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    class Shell:
        kernel = object()

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: Shell()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert parallel._interactive()
    fake.get_ipython = lambda: None  # type: ignore[attr-defined]  # plain IPython in a terminal, not a kernel
    assert not parallel._interactive()


# -- the public entry points -------------------------------------------------------------------


def test_client_send_messages_returns_replies_in_order(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    from openai_utils import client

    conversations = [[{"role": "user", "content": f"item {i}"}] for i in range(30)]
    conversations[7] = []  # rejected before sending
    results = client().send_messages(conversations, max_workers=4, temperature=0, progress=False)
    assert isinstance(results[7], InvalidRequestError)
    assert [r["content"] for i, r in enumerate(results) if i != 7] == [f"echo: item {i}" for i in range(30) if i != 7]
    assert len(server.requests) == 29 and all(r.body["temperature"] == 0 for r in server.requests)


def test_llmcall_map_keeps_each_items_messages(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    from openai_utils import LLMCall

    call = LLMCall("answer.system", "answer.user", temperature=0)
    answers = call.map([{"question": f"q{i}?"} for i in range(12)], max_workers=3, progress=False)
    assert call.messages is not None  # map fills it, one entry per item
    assert [a.strip() for a in answers] == [f"echo: q{i}?" for i in range(12)]
    assert [m[1]["content"].strip() for m in call.messages] == [f"q{i}?" for i in range(12)]
    assert repr(call).endswith("mapped over 12 items, 0 without an answer")
