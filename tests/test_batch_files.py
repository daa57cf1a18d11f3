"""batch_files: reading output and error files, each line's error from the one tree."""

from __future__ import annotations

import logging

import pytest

from openai_utils import AuthenticationError, BatchError, InvalidRequestError, RateLimitError, ServerError
from openai_utils.batch_files import json_lines, line_error


def line(status: int | None, message: str = "nope", code: str | None = None) -> dict[str, object]:
    body = {"error": {"message": message, "code": code}}
    return {"custom_id": "k", "response": {"status_code": status, "request_id": "req_9", "body": body}}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequestError),
        (404, InvalidRequestError),
        (401, AuthenticationError),
        (429, RateLimitError),
        (500, ServerError),
        (418, BatchError),
    ],
)
def test_each_failed_line_becomes_the_error_its_status_calls_for(status: int, kind: type[Exception]) -> None:
    error = line_error(line(status, "the server's words", "some_code"), "batch_7")
    assert type(error) is kind
    assert "the server's words" in str(error) and "batch_7" in str(error)
    assert error.status_code == status and error.request_id == "req_9" and error.code == "some_code"


def test_a_line_with_only_an_error_object_is_a_batch_error() -> None:
    error = line_error({"custom_id": "k", "response": None, "error": {"code": "x", "message": "expired"}}, "b")
    assert isinstance(error, BatchError) and error.batch_id == "b" and "expired" in str(error)


def test_a_line_that_is_not_json_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "openai_utils"):
        assert json_lines(b'{"a": 1}\n\nnot json\n[1]\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    assert "line 3" in caplog.text and "line 4" in caplog.text
