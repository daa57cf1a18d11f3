"""`openai-utils batch list|status|results|cancel` against the fake server's batches."""

from __future__ import annotations

import json

import pytest

from openai_utils import OpenAIClient, default
from openai_utils.cache import open_cache
from openai_utils.cli import main
from tests.fake_server import FakeOpenAIServer


@pytest.fixture(autouse=True)
def cache_on() -> None:
    default.force("cache_api_calls", True)


def submitted(oai: OpenAIClient, count: int) -> str:
    job = oai.submit_batch([[{"role": "user", "content": f"q{i}"}] for i in range(count)])
    return str(job.job_id)


def test_list_shows_each_job_without_asking_the_server(
    oai: OpenAIClient, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "list"]) == 0
    assert "no batch jobs recorded" in capsys.readouterr().out
    job = submitted(oai, 3)
    server.reset()
    assert main(["batch", "list"]) == 0
    out = capsys.readouterr().out
    assert job in out and "3 request(s)" in out and "batch_1 validating" in out
    assert server.requests == []


def test_status_then_results_store_the_answers_and_print_a_line_each(
    oai: OpenAIClient, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submitted(oai, 3)
    assert main(["batch", "status", job[:10]]) == 0
    assert json.loads(capsys.readouterr().out)["parts"][0]["status"] == "validating"
    assert main(["batch", "results", job, "--no-wait"]) == 1
    assert "not finished" in capsys.readouterr().err
    default.force("batch_poll_interval", 0.001)
    assert main(["batch", "results", job]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["answer"]["choices"][0]["message"]["content"] for line in lines] == [
        "echo: q0",
        "echo: q1",
        "echo: q2",
    ]
    assert len(open_cache(default["cache_file_name"])) == 3
    server.reset()
    answered = oai.send_messages([[{"role": "user", "content": f"q{i}"}] for i in range(3)])
    assert server.requests == [] and all(reply.cached for reply in answered)


def test_cancel_stops_the_batches(
    oai: OpenAIClient, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submitted(oai, 4)
    assert main(["batch", "cancel", job]) == 0
    assert json.loads(capsys.readouterr().out)["parts"][0]["status"] in ("cancelling", "cancelled")
    assert len([r for r in server.requests_to("/cancel") if r.method == "POST"]) == 1


def test_an_unknown_job_is_a_usage_error(oai: OpenAIClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", "status", "job-nope"]) == 2
    assert "no job" in capsys.readouterr().err
