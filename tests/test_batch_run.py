"""send_messages / LLMCall.map / get_embedding with batch=True, against the fake server's batches."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    AzureClient,
    BatchError,
    BatchUnsupportedError,
    ConfigError,
    InvalidRequestError,
    LLMCall,
    OpenAIClient,
    default,
    register_client,
)
from openai_utils.cache import open_cache
from tests.fake_server import FakeOpenAIServer


def conversations(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(count)]


@pytest.fixture(autouse=True)
def cache_on() -> None:
    default.force("cache_api_calls", True)


def posts(server: FakeOpenAIServer, suffix: str) -> list[Any]:
    return [r for r in server.requests_to(suffix) if r.method == "POST"]


def uploaded_lines(server: FakeOpenAIServer, index: int = 0) -> list[dict[str, Any]]:
    data = server.batch_api.files[f"file-{index + 1}"]["data"]
    return [json.loads(line) for line in data.splitlines()]


def test_1000_prompts_10_cached_one_upload_one_batch_all_cached_rerun_sends_nothing(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    prompts = conversations(1000)
    for index in range(0, 1000, 100):  # 10 answered online first
        oai.send_message(prompts[index])
    server.reset()

    results = oai.send_messages(prompts, batch=True)

    assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(1000)]
    assert len(posts(server, "/files")) == 1 and len(uploaded_lines(server)) == 990
    assert len(posts(server, "/batches")) == 1
    assert len(server.requests_to("/batches/batch_1")) == len(server.batch_api.progress)
    assert sleeps == [30.0] * (len(server.batch_api.progress) - 1)  # BATCH_POLL_INTERVAL, never slept for real
    assert [r.cached for r in results].count(True) == 10
    cache = open_cache(default["cache_file_name"])
    assert len(cache) == 1000
    assert oai.cache_misses == 1000 and oai.cache_hits == 10  # 10 online misses, 990 batch ones

    server.reset()
    again = oai.send_messages(prompts, batch=True)
    assert server.requests == []
    assert again == results and all(r.cached for r in again)


def test_a_rerun_online_finds_every_batch_answer_in_the_cache(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    prompts = conversations(5)
    oai.send_messages(prompts, batch=True)
    server.reset()
    assert [oai.send_message(p)["content"] for p in prompts] == [f"echo: q{i}" for i in range(5)]
    assert server.requests == []


class Killed(BaseException):
    """What a kernel restart or a closed laptop does to the cell: it stops, mid-poll."""


def killed_while_polling(prompts: list[list[dict[str, str]]]) -> None:
    """send_messages(batch=True) from a client whose first wait between polls never returns."""

    def dies(seconds: float) -> None:
        raise Killed()

    dying = OpenAIClient(sleep=dies)
    register_client("openai", dying)
    with pytest.raises(Killed):
        dying.send_messages(prompts, batch=True)


def test_killed_while_polling_the_rerun_resumes_the_same_batch(
    oai: OpenAIClient, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = conversations(50)
    killed_while_polling(prompts)
    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1
    record = json.loads(next(Path(f"{default['cache_file_name']}.batches").glob("job-*.json")).read_text())
    assert record["parts"][0]["batch_id"] == "batch_1"  # written down before the first poll

    waits: list[float] = []
    fresh = OpenAIClient(sleep=waits.append)
    results = fresh.send_messages(prompts, batch=True)

    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1  # nothing paid twice
    assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(50)]
    assert server.batch_api.batches.keys() == {"batch_1"}


def test_a_crash_between_create_and_recording_it_adopts_the_batch_made(
    oai: OpenAIClient, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai_utils.batch_job import BatchJob

    def crash(part: dict[str, Any], batch: Any) -> None:
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(BatchJob, "_note", staticmethod(crash))
        with pytest.raises(Killed):
            oai.send_messages(conversations(3), batch=True)
    assert len(posts(server, "/batches")) == 1
    results = oai.send_messages(conversations(3), batch=True)
    assert len(posts(server, "/batches")) == 1 and len(posts(server, "/files")) == 1
    assert [r["content"] for r in results] == ["echo: q0", "echo: q1", "echo: q2"]


def test_three_failed_lines_997_replies_and_3_exceptions_with_the_servers_message(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    bad = {"q5", "q500", "q999"}
    server.batch_api.fail_line = lambda line: (
        "This model's maximum context length is exceeded." if line["body"]["messages"][0]["content"] in bad else None
    )
    results = oai.send_messages(conversations(1000), batch=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [5, 500, 999]
    assert all(isinstance(results[i], InvalidRequestError) for i in failed)
    assert "maximum context length" in str(results[5]) and results[5].status_code == 400
    assert len(open_cache(default["cache_file_name"])) == 997  # failures are not cached

    server.reset()
    server.batch_api.fail_line = lambda line: None
    retried = oai.send_messages(conversations(1000), batch=True)  # only the 3 go out again
    assert len(uploaded_lines(server)) == 3
    assert not any(isinstance(r, Exception) for r in retried)


def test_60000_prompts_make_two_batches_at_the_real_limits(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    assert default["batch_max_requests"] == 50_000 and default["batch_max_bytes"] == 200 * 1024 * 1024
    server.batch_api.progress = ["completed"]
    results = oai.send_messages(conversations(60_000), batch=True, progress=False)
    assert len(posts(server, "/files")) == 2 and len(posts(server, "/batches")) == 2
    assert [len(uploaded_lines(server, 0)), len(uploaded_lines(server, 1))] == [50_000, 10_000]
    assert results[59_999]["content"] == "echo: q59999"


def test_the_split_limits_come_from_config(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    default.force("batch_max_requests", 4)
    results = oai.send_messages(conversations(10), batch=True)
    assert [len(uploaded_lines(server, i)) for i in range(3)] == [4, 4, 2]
    assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(10)]
    server.reset()
    default.force("batch_max_requests", 50_000)
    default.force("batch_max_bytes", 1024)  # ~100 bytes a line: about ten lines a file
    oai.send_messages(
        conversations(
            40,
        ),
        batch=True,
    )
    sizes = [len(entry["data"]) for entry in server.batch_api.files.values() if entry["purpose"] == "batch"]
    assert len(sizes) >= 3 and max(sizes) <= 1024


def test_an_expired_batch_returns_what_it_answered_and_says_how_many_remain(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.batch_api.progress = ["validating", "in_progress", "expired"]
    server.batch_api.answer_limit = 7
    with caplog.at_level(logging.WARNING, "openai_utils"):
        results = oai.send_messages(conversations(10), batch=True)
    assert [r["content"] for r in results[:7]] == [f"echo: q{i}" for i in range(7)]
    assert all(isinstance(r, BatchError) and r.batch_id == "batch_1" for r in results[7:])
    assert "expired" in str(results[8]) and "3 of 10 request(s) were not answered" in caplog.text

    server.reset()
    again = oai.send_messages(conversations(10), batch=True)
    assert len(uploaded_lines(server)) == 3  # just the remainder
    assert [r["content"] for r in again] == [f"echo: q{i}" for i in range(10)]


def test_a_failed_batch_gives_each_item_the_servers_reasons(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.batch_api.progress = ["validating", "failed"]
    server.batch_api.batch_errors = ["Line 1: the model gpt-x does not exist"]
    results = oai.send_messages(conversations(4), batch=True)
    assert all(isinstance(r, BatchError) and "gpt-x does not exist" in str(r) for r in results)


def test_submit_then_cancel_keeps_what_was_answered(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.batch_api.progress = ["validating"] + ["in_progress"] * 20 + ["completed"]
    job = oai.submit_batch(conversations(10))
    assert job.status()["status"] == "validating"
    assert job.status()["status"] == "in_progress"
    assert job.cancel()["status"] in ("cancelling", "cancelled")
    results = job.results()
    assert job.status()["parts"][0]["status"] == "cancelled"
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(answered) == 5 and all(isinstance(r, BatchError) for r in results[5:])
    assert len(posts(server, "/cancel")) == 1


def test_states_are_each_polled_until_the_batch_ends(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.batch_api.progress = ["validating", "in_progress", "finalizing", "completed"]
    job = oai.submit_batch(conversations(3))
    seen = []
    calls: list[tuple[int, int]] = []
    while not job.finished():
        seen.append(job.status()["status"])
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    job.wait(progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 3)]


def test_progress_follows_request_counts(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.batch_api.progress = ["validating", "in_progress", "in_progress", "in_progress", "completed"]
    seen: list[tuple[int, int]] = []
    oai.send_messages(conversations(8), batch=True, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 8), (4, 8), (6, 8), (8, 8)]


def test_a_server_without_batches_is_a_clear_error_or_with_auto_the_online_path(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.batch_api.supported = False
    with pytest.raises(BatchUnsupportedError) as raised:
        oai.send_messages(conversations(3), batch=True)
    assert server.base_url in str(raised.value) and "without batch=True" in str(raised.value)
    with caplog.at_level(logging.WARNING, "openai_utils"):
        results = oai.send_messages(conversations(3), batch="auto")
    assert [r["content"] for r in results] == ["echo: q0", "echo: q1", "echo: q2"]
    assert len(server.requests_to("/chat/completions")) == 3
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING and "auto" in r.message] != []
    assert sum('batch="auto"' in r.message for r in caplog.records) == 1


def test_the_local_model_has_no_batches_and_says_so_before_starting_anything() -> None:
    from openai_utils.local.client import LocalBackend, LocalClient

    local = LocalClient()
    with pytest.raises(BatchUnsupportedError) as raised:
        local.send_messages(conversations(2), batch=True)
    assert "local" in str(raised.value) and "without batch=True" in str(raised.value)
    assert isinstance(local.backend, LocalBackend) and local.backend._sdks == {}  # no server was started


def test_wait_gives_up_at_its_timeout_on_the_injected_clock(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    from openai_utils.batch_job import BatchJob
    from tests.fake_clock import FakeClock

    server.batch_api.progress = ["validating"] + ["in_progress"] * 100 + ["completed"]
    submitted = oai.submit_batch(conversations(2))
    clock = FakeClock()
    job = BatchJob(oai, submitted.record, sleep=clock.sleep, clock=clock)
    assert job.wait(poll_interval=10, timeout=60) is False
    assert clock.sleeps == [10] * 6 and len(server.requests_to("/batches/batch_1")) == 7
    assert not job.finished()


def test_batch_needs_the_cache_and_a_valid_batch_argument(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    default.force("cache_api_calls", False)
    with pytest.raises(ConfigError, match="CACHE_API_CALLS"):
        oai.send_messages(conversations(2), batch=True)
    with pytest.raises(InvalidRequestError, match="batch must be"):
        oai.send_messages(conversations(2), batch="yes")
    assert server.requests == []


def test_an_item_that_cannot_be_prepared_holds_its_error_in_place(oai: OpenAIClient) -> None:
    items: list[Any] = [
        [{"role": "user", "content": "q0"}],
        [{"content": "no role"}],
        [{"role": "user", "content": "q2"}],
    ]
    results = oai.send_messages(items, batch=True)
    assert results[0]["content"] == "echo: q0" and isinstance(results[1], InvalidRequestError)
    assert results[2]["content"] == "echo: q2"


def test_llm_call_map_in_a_batch_gives_what_the_online_map_gives(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    configs = [{"who": "Ann", "lang": "French"}, {"who": "Bob"}, {"who": "Cy", "lang": "Greek"}]
    greet = LLMCall("greet.system", "greet.user")
    batched = greet.map(configs, batch=True)
    batched_messages = greet.messages
    assert len(posts(server, "/batches")) == 1
    online = LLMCall("greet.system", "greet.user").map(configs)
    assert batched[0] == online[0] and batched[2] == online[2] and batched[0].startswith("echo: Say hello to Ann")
    assert isinstance(batched[1], Exception) and type(batched[1]) is type(online[1])
    assert batched_messages is not None and batched_messages[1] is None
    assert len(server.requests_to("/chat/completions")) == 0  # the online map found it all cached


def test_embeddings_in_a_batch_are_the_online_vectors(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    texts = [f"text {i}" for i in range(3000)]  # two requests, as online
    vectors = oai.get_embedding(texts, batch=True)
    lines = uploaded_lines(server)
    assert [len(line["body"]["input"]) for line in lines] == [2048, 952]
    assert len(posts(server, "/batches")) == 1
    assert {line["url"] for line in lines} == {"/v1/embeddings"}
    server.reset()
    assert oai.get_embedding(texts) == vectors and server.requests == []
    assert oai.get_embedding("one", batch=True) == oai.get_embedding("one")


def test_azure_global_batch_paths_line_format_and_api_version(
    server: FakeOpenAIServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-secret")
    default.force("azure_api_version", "2025-03-01-preview")
    azure = AzureClient(sleep=sleeps.append)
    results = azure.send_messages(conversations(3), batch=True, model="my-deployment")
    assert [r["content"] for r in results] == ["echo: q0", "echo: q1", "echo: q2"]
    upload, create = posts(server, "/files")[0], posts(server, "/batches")[0]
    assert upload.path == "/openai/files" and create.path == "/openai/batches"
    assert upload.query == {"api-version": "2025-03-01-preview"} and create.headers["api-key"] == "azure-secret"
    assert create.body["endpoint"] == "/chat/completions"
    lines = uploaded_lines(server)
    assert {line["url"] for line in lines} == {"/chat/completions"}
    assert {line["body"]["model"] for line in lines} == {"my-deployment"}


def test_batch_answers_are_priced_at_the_batch_rate_and_counted_as_batch_calls(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    from openai_utils.usage import counted

    results = oai.send_messages(conversations(4), batch=True, model="gpt-4o-mini")
    stats = oai.get_cost_stats()
    assert stats["batch_calls"] == 4 and stats["model_calls"] == 4
    online = sum(counted("gpt-4o-mini", r.usage).cost for r in results)
    assert stats["cost_usd"] == pytest.approx(online / 2)
    oai.send_messages(conversations(4), batch=True, model="gpt-4o-mini")  # all hits now
    assert oai.get_cost_stats()["batch_calls"] == 4


def test_a_process_killed_while_polling_is_resumed_by_the_next_one(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """A real process, killed with SIGKILL mid-poll (no cleanup at all), then the same call here."""
    import os
    import signal
    import subprocess
    import sys

    server.batch_api.progress = ["validating"] + ["in_progress"] * 100_000 + ["completed"]
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS = True\nBATCH_POLL_INTERVAL = 0.01\n")
    script = (
        "from openai_utils import client\n"
        "client().send_messages([[{'role': 'user', 'content': f'q{i}'}] for i in range(20)], batch=True)\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env)
    try:
        assert len(server.wait_for_requests("/batches/batch_1", 3, timeout=120.0)) >= 3, "the child never polled"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1

    server.batch_api.progress = ["completed"]
    results = oai.send_messages(conversations(20), batch=True)
    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1
    assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(20)]


def test_two_submitters_of_the_same_job_at_once_pay_once(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    import threading

    jobs: list[Any] = []
    threads = [threading.Thread(target=lambda: jobs.append(oai.submit_batch(conversations(30)))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1
    assert [r["content"] for r in jobs[1].results()] == [f"echo: q{i}" for i in range(30)]


def test_a_client_with_its_own_raw_call_is_not_bypassed_by_a_batch(server: FakeOpenAIServer) -> None:
    class Custom(OpenAIClient):
        def _raw_model_call(self, request: Any, timeout: float) -> dict[str, Any]:
            return {"choices": [{"message": {"role": "assistant", "content": "mine"}, "finish_reason": "stop"}]}

    custom = Custom()
    with pytest.raises(BatchUnsupportedError, match="_raw_model_call"):
        custom.send_messages(conversations(2), batch=True)
    assert [r["content"] for r in custom.send_messages(conversations(2), batch="auto")] == ["mine", "mine"]
    assert server.requests == []


def test_a_line_the_job_did_not_ask_for_is_never_stored(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.batch_api.progress = ["completed"]
    job = oai.submit_batch(conversations(2))
    assert job.status()["status"] == "completed"
    output = server.batch_api.files[job.record.parts[0]["output_file_id"]]
    first = json.loads(output["data"].splitlines()[0])
    output["data"] += json.dumps({**first, "custom_id": "not-ours"}).encode() + b"\n"
    assert [r["content"] for r in job.results()] == ["echo: q0", "echo: q1"]
    cache = open_cache(default["cache_file_name"])
    assert len(cache) == 2 and "not-ours" not in cache


def test_embeddings_with_auto_on_a_server_without_batches_go_online(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.batch_api.supported = False
    with caplog.at_level(logging.WARNING, "openai_utils"):
        vectors = oai.get_embedding(["a", "b"], batch="auto", max_attempts=2)
    assert len(vectors) == 2 and len(server.requests_to("/embeddings")) == 1
    assert "sending the requests online instead" in caplog.text
    with pytest.raises(BatchUnsupportedError):
        oai.get_embedding(["c"], batch=True)


def test_an_embeddings_job_over_50000_texts_is_split_to_stay_within_the_input_limit(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    server.batch_api.progress = ["completed"]
    texts = [f"t{i}" for i in range(60_000)]  # 30 requests of up to 2,048 texts
    vectors = oai.get_embedding(texts, batch=True, model="text-embedding-3-small")
    inputs = [sum(len(line["body"]["input"]) for line in uploaded_lines(server, i)) for i in range(2)]
    assert inputs == [24 * 2048, 60_000 - 24 * 2048] and len(posts(server, "/batches")) == 2
    assert len(vectors) == 60_000


def test_with_a_shared_store_answers_go_to_the_store_and_a_killed_job_resumes(
    store_url: str, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    from openai_utils.cache_store import forget_store_caches, store_cache

    default.force("cache_backend", store_url)
    prompts = conversations(20)
    killed_while_polling(prompts)
    record_file = next(Path(f"{default['cache_file_name']}.batches").absolute().glob("job-*.json"))
    assert json.loads(record_file.read_text())["cache"] == store_url  # the job knows where its answers go
    assert not Path(default["cache_file_name"]).exists()  # the record sits beside it; no cache file is made

    forget_store_caches()  # as a new process would: no answer remembered in this one
    results = OpenAIClient(sleep=lambda seconds: None).send_messages(prompts, batch=True)
    assert len(posts(server, "/files")) == 1 and len(posts(server, "/batches")) == 1  # resumed, not paid twice
    assert [r["content"] for r in results] == [f"echo: q{i}" for i in range(20)]
    assert len(list(store_cache(store_url).keys())) == 20  # every answer in the shared store

    server.reset()
    forget_store_caches()
    again = OpenAIClient().send_messages(prompts, batch=True)
    assert server.requests == [] and all(r.cached for r in again)
