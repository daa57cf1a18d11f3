"""Secrets are masked in every message the library makes, whoever wrote the text.

End to end, with a server echoing the key it received, in test_transport.py.
"""

from __future__ import annotations

import logging

import pytest

from openai_utils import APIError, ContentFilterError, NonTerminalError, StreamInterruptedError
from openai_utils.redact import MASK, redact, redact_value, remember

KEY = "sk-proj-ABCDEFGH12345678"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def test_the_configured_key_is_masked_in_text_and_in_every_string_of_a_body(key: str) -> None:
    assert redact(f"Incorrect API key provided: Bearer {key}.") == f"Incorrect API key provided: Bearer {MASK}."
    body = {"error": {"message": f"bad key {key}", "seen": [key, 1, None, {"deeper": key + "!"}]}}
    assert redact_value(body) == {
        "error": {"message": f"bad key {MASK}", "seen": [MASK, 1, None, {"deeper": MASK + "!"}]}
    }
    assert body["error"]["seen"][0] == key  # the caller's value is not changed


def test_a_body_without_secrets_is_returned_as_it_is(key: str) -> None:
    body = {"error": {"message": "nothing secret"}}
    assert redact_value(body) is body


def test_short_values_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "abc")
    assert redact("abc is not worth hiding") == "abc is not worth hiding"


def test_a_remembered_secret_stays_masked_after_its_variable_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    remember("tok-remembered-0123456789")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert redact("token tok-remembered-0123456789") == f"token {MASK}"


def test_a_secret_containing_another_is_masked_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key-0123")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "azure-key-0123-and-more")
    assert redact("got azure-key-0123-and-more") == f"got {MASK}"


def test_every_error_masks_its_message_code_request_id_and_body(key: str) -> None:
    error = NonTerminalError(f"echo {key}", code=key, request_id=key, body={"k": key})
    assert key not in str(error) + repr(error) + error.message + repr(error.body) + str(error.code) + str(
        error.request_id
    )
    filtered = ContentFilterError(f"echo {key}", categories=[], results={"k": key})
    assert key not in repr(filtered.results) + str(filtered)
    broken = StreamInterruptedError("partial", 1, APIError(f"cause {key}"))
    assert key not in str(broken)


def test_the_library_log_masks_secrets_in_messages_and_arguments(key: str, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("openai_utils")
    with caplog.at_level(logging.DEBUG, logger="openai_utils"):
        log.warning("server said %s", f"bad key {key}")
        log.info(f"inline {key}")
    assert key not in caplog.text and caplog.text.count(MASK) == 2
