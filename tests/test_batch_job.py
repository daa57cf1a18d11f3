"""batch_job: the handle's own behaviour (the whole path runs in test_batch_run.py)."""

from __future__ import annotations

import pytest

from openai_utils import OpenAIClient, RetriesExhaustedError, default
from tests.fake_server import FakeOpenAIServer, Fault


def test_import_loads_no_batch_module_until_one_is_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys, openai_utils\n"
        "print(sorted(m for m in sys.modules if m.startswith('openai_utils.batch')))\n"
        "openai_utils.BatchJob\n"
        "print(sorted(m for m in sys.modules if m.startswith('openai_utils.batch')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = result.stdout.splitlines()
    assert before == "[]" and "'openai_utils.batch_job'" in after


def test_a_transient_failure_of_a_batch_request_is_retried_without_paying_twice(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    default.force("cache_api_calls", True)
    server.script(Fault.status(503), path="/files")
    server.script(Fault.status(429), path="/batches")  # the look before creating: retried, then created once
    server.script(Fault.reset(), path="/batches/batch_1")
    results = oai.send_messages([[{"role": "user", "content": f"q{i}"}] for i in range(3)], batch=True)
    assert [r["content"] for r in results] == ["echo: q0", "echo: q1", "echo: q2"]
    assert len([r for r in server.requests_to("/files") if r.method == "POST"]) == 2
    assert len([r for r in server.requests_to("/batches") if r.method == "POST"]) == 1
    assert sleeps[:3] == [1.0, 1.0, 1.0]  # WAITING_TIME before each retry (no jitter at random 0.5)


def test_a_batch_request_that_keeps_failing_gives_up_after_max_attempts(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    default.force("cache_api_calls", True)
    default.force("max_attempts", 2)
    server.fail_always(Fault.status(500))
    with pytest.raises(RetriesExhaustedError):
        oai.send_messages([[{"role": "user", "content": "q"}]], batch=True)
    assert len(server.requests) == 2
