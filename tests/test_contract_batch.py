"""The batch requests (/files and /batches) match the published OpenAI spec, served by Prism.

Only the full spec has these paths (the core one CI uses for chat lacks them), and it takes
~30 s to start, so this module starts it once. It skips in one line without the specs or Prism,
as tests/test_contract.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openai_utils import InvalidRequestError, OpenAIClient, default, force_default_value
from openai_utils.batch_transport import SDKBatchEndpoints
from tests.prism import SPECS, PrismServer, prism_available, prism_servers
from tests.shared_files import skip_reason

FULL_SPEC = SPECS / "openai-openapi.prism.yaml"
if not FULL_SPEC.is_file():
    pytest.skip(
        skip_reason(f"batch contract tests need the full OpenAI spec: {FULL_SPEC} not found"), allow_module_level=True
    )
UNAVAILABLE = prism_available()
if UNAVAILABLE is not None:
    pytest.skip(skip_reason(f"contract tests need Prism: {UNAVAILABLE}"), allow_module_level=True)


@pytest.fixture(scope="module")
def prism() -> Iterator[PrismServer]:
    with prism_servers(FULL_SPEC, timeout=180.0) as (server,):
        yield server


@pytest.fixture
def client(prism: PrismServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIClient]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")
    force_default_value("base_url", prism.base_url)
    force_default_value("max_attempts", 1)
    made = OpenAIClient()
    yield made
    made.close()


def endpoints(client: OpenAIClient) -> SDKBatchEndpoints:
    found = client.backend.batch_endpoints()
    assert isinstance(found, SDKBatchEndpoints)
    return found


def test_every_batch_request_is_one_the_spec_accepts(client: OpenAIClient) -> None:
    api = endpoints(client)
    uploaded = api.upload("job.jsonl", b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n')
    assert isinstance(uploaded.get("id"), str)
    created = api.create(
        {
            "input_file_id": uploaded["id"],
            "endpoint": client.backend.batch_url("chat"),
            "completion_window": "24h",
            "metadata": {"openai_utils_job": "job-x", "part": "0"},
        }
    )
    assert isinstance(created.get("id"), str)
    assert "status" in api.retrieve(created["id"])
    assert isinstance(api.list(limit=100).get("data"), list)
    assert "status" in api.cancel(created["id"])
    assert isinstance(api.content(uploaded["id"]), bytes)


def test_the_embeddings_endpoint_is_one_the_spec_accepts(client: OpenAIClient) -> None:
    api = endpoints(client)
    body: dict[str, Any] = {
        "input_file_id": "file-x",
        "endpoint": client.backend.batch_url("embedding"),
        "completion_window": "24h",
    }
    assert isinstance(api.create(body).get("id"), str)


def test_a_body_the_spec_rejects_is_refused_so_validation_is_on(client: OpenAIClient) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        endpoints(client).create(
            {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "48h"}
        )
    assert refused.value.status_code == 422


def test_submitting_a_job_sends_only_requests_the_spec_accepts(client: OpenAIClient) -> None:
    default.force("cache_api_calls", True)
    job = client.submit_batch([[{"role": "user", "content": f"q{i}"}] for i in range(3)])
    assert job.record.parts[0]["batch_id"] is not None
