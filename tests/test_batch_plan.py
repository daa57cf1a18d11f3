"""batch_plan: the lines, their split at the API's limits, and the job identity."""

from __future__ import annotations

import json

import pytest

from openai_utils import InvalidRequestError, default
from openai_utils.batch_plan import MAX_BYTES, MAX_REQUESTS, batch_line, job_identity, max_requests, split_lines


def test_the_real_limits_are_the_defaults() -> None:
    assert (MAX_REQUESTS, MAX_BYTES) == (50_000, 200 * 1024 * 1024)
    assert (default["batch_max_requests"], default["batch_max_bytes"]) == (MAX_REQUESTS, MAX_BYTES)


def test_a_line_is_one_json_object_with_its_custom_id_url_and_body() -> None:
    line = batch_line("k1", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "é"}]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "custom_id": "k1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "é"}]},
    }


def test_split_by_count_and_by_bytes_keeps_order() -> None:
    lines = [(f"k{i}", b"x" * 9 + b"\n") for i in range(7)]
    parts = split_lines(lines, max_requests=3)
    assert [p.custom_ids for p in parts] == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6"]]
    assert b"".join(p.data for p in parts) == b"".join(line for _, line in lines)
    by_bytes = split_lines(lines, max_bytes=25)
    assert [len(p.custom_ids) for p in by_bytes] == [2, 2, 2, 1] and all(len(p.data) <= 25 for p in by_bytes)
    assert split_lines([]) == []


def test_a_line_larger_than_a_file_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="batch=False"):
        split_lines([("k", b"x" * 100)], max_bytes=50)


def test_the_identity_is_the_set_of_keys() -> None:
    assert job_identity(["b", "a", "a"]) == job_identity(["a", "b"]) != job_identity(["a"])
    assert job_identity(["a"]).startswith("job-")


def test_an_embeddings_batch_stays_within_50000_inputs() -> None:
    from openai_utils.request import EMBEDDING_INPUTS_PER_REQUEST

    assert max_requests("chat", 50_000) == 50_000 and max_requests("chat", 7) == 7
    assert max_requests("embedding", 50_000) * EMBEDDING_INPUTS_PER_REQUEST <= 50_000
    assert max_requests("embedding", 50_000) == 24 and max_requests("embedding", 5) == 5
