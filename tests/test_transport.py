"""The boundary with the server, over real HTTP: what an attempt may cost in time and memory,
and what a hostile or broken server can make the library say."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from openai_utils import (
    APITimeoutError,
    AuthenticationError,
    AzureClient,
    MalformedResponseError,
    OpenAIClient,
    RetriesExhaustedError,
    default,
    register_client,
)
from tests.fake_server import FakeOpenAIServer, Fault, gzip_bomb

HI = [{"role": "user", "content": "Hi"}]
LONG = [{"role": "user", "content": "tell me a story about seven small brave birds"}]
HANG_BOUND = 30.0
"""Seconds: only catches an attempt that ran on with the trickle (which lasts over a minute)."""


def sync_plain(oai: OpenAIClient, **kwargs: Any) -> Any:
    return oai.send_message(HI, **kwargs)


def async_plain(oai: OpenAIClient, **kwargs: Any) -> Any:
    return asyncio.run(oai.asend_message(HI, **kwargs))


def sync_stream(oai: OpenAIClient, **kwargs: Any) -> Any:
    chunks = oai.send_message(HI, stream=True, **kwargs)
    return None if chunks is None else {"role": "assistant", "content": "".join(chunks)}


def async_stream(oai: OpenAIClient, **kwargs: Any) -> Any:
    async def main() -> Any:
        chunks = await oai.asend_message(HI, stream=True, **kwargs)
        return None if chunks is None else {"role": "assistant", "content": "".join([c async for c in chunks])}

    return asyncio.run(main())


EVERY_PATH = pytest.mark.parametrize(
    "call", [sync_plain, async_plain, sync_stream, async_stream], ids=["sync", "async", "sync-stream", "async-stream"]
)
ECHO = {"role": "assistant", "content": "echo: Hi"}


def retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The error type of each failed attempt that was retried, from the log."""
    return re.findall(r"attempt \d+ of \d+ failed \((\w+):", caplog.text)


def raised_by(call: Callable[..., Any], oai: OpenAIClient, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        call(oai, **kwargs)
    return caught.value


# -- TIMEOUT bounds an attempt -------------------------------------------------------------------


@EVERY_PATH
def test_a_trickling_answer_ends_at_timeout_and_is_retried_as_a_timeout(
    call: Callable[..., Any], oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One byte every 0.2 s: no gap reaches TIMEOUT, but the answer would take over a minute."""
    server.script(Fault.trickle(0.2))
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="openai_utils"):
        assert call(oai, timeout=2) == ECHO  # the second attempt is answered at once
    assert time.monotonic() - started < HANG_BOUND
    assert retries(caplog) == ["APITimeoutError"]
    assert len(server.requests) == 2


@EVERY_PATH
def test_a_trickled_attempt_fails_as_a_timeout(
    call: Callable[..., Any], oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    server.fail_always(Fault.trickle(0.2))
    default.force("raise_on_failure", True)
    started = time.monotonic()
    error = raised_by(call, oai, timeout=2, max_attempts=1)
    assert time.monotonic() - started < HANG_BOUND
    assert isinstance(error, RetriesExhaustedError) and isinstance(error.last_error, APITimeoutError)


def test_timeout_bounds_each_wait_of_a_stream_not_the_whole_stream(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    """The wait for a chunk starts when it is asked for: a reader slower than TIMEOUT is no timeout."""
    chunks = oai.send_message(LONG, stream=True, timeout=1.5)
    received = []
    for chunk in chunks:
        received.append(chunk)
        if len(received) <= 2:
            time.sleep(2)
    assert "".join(received) == "echo: " + LONG[0]["content"] and len(server.requests) == 1


def test_an_async_stream_read_slowly_is_no_timeout(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    async def main() -> str:
        received = []
        async for chunk in await oai.asend_message(LONG, stream=True, timeout=1.5):
            received.append(chunk)
            if len(received) <= 2:
                await asyncio.sleep(2)
        return "".join(received)

    assert asyncio.run(main()) == "echo: " + LONG[0]["content"] and len(server.requests) == 1


# -- hostile answers -----------------------------------------------------------------------------


@EVERY_PATH
def test_json_nested_100000_deep_is_a_malformed_answer(
    call: Callable[..., Any], oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    server.fail_always(Fault.deep_json(100_000))
    default.force("raise_on_failure", True)
    error = raised_by(call, oai, max_attempts=2)
    assert isinstance(error, RetriesExhaustedError), repr(error)
    assert isinstance(error.last_error, MalformedResponseError) and "nested too deep" in str(error.last_error)


@EVERY_PATH
def test_a_deep_json_answer_is_retried(
    call: Callable[..., Any], oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Fault.deep_json(100_000))
    with caplog.at_level(logging.INFO, logger="openai_utils"):
        assert call(oai) == ECHO
    assert retries(caplog) == ["MalformedResponseError"]


@EVERY_PATH
def test_a_gzip_bomb_stops_at_max_response_bytes_in_bounded_memory(
    call: Callable[..., Any], oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    """64 MiB of padding in about 64 KB of gzip: the read stops at the 1 MiB cap, and the call
    never holds much more than that."""
    padding = 64 << 20
    for stream in (False, True):  # built before measuring: the server runs in this process
        gzip_bomb(b'data: {"choices": []}\n\ndata: ' if stream else b"", padding)
    server.fail_always(Fault.gzip_bomb(padding))
    default.force("max_response_bytes", 1 << 20)
    default.force("raise_on_failure", True)
    tracemalloc.start()
    try:
        error = raised_by(call, oai, max_attempts=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(error, RetriesExhaustedError), repr(error)
    assert isinstance(error.last_error, MalformedResponseError) and "MAX_RESPONSE_BYTES" in str(error.last_error)
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_a_gzip_answer_under_the_cap_is_read(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.gzip_bomb(1000), Fault.gzip_bomb(1000))
    assert oai.send_message(HI) == ECHO
    assert asyncio.run(oai.asend_message(HI)) == ECHO
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


# -- secrets the server echoes -------------------------------------------------------------------

OPENAI_KEY = "sk-live-0123456789abcdefSECRET"


def everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Every text a user could see: the message, repr, body, the traceback with its chained
    causes, and the log."""
    parts = [str(error), repr(error), repr(getattr(error, "body", None)), caplog.text]
    parts += traceback.format_exception(type(error), error, error.__traceback__)
    last = getattr(error, "last_error", None)
    if last is not None:
        parts += [str(last), repr(last), repr(getattr(last, "body", None))]
    return "\n".join(parts)


@pytest.fixture
def live_key(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIClient:
    """A client sending a realistic key to the loopback server."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    default.force("base_url", server.base_url)
    return OpenAIClient(sleep=lambda s: None)


@EVERY_PATH
def test_a_key_echoed_in_an_error_is_masked_everywhere(
    call: Callable[..., Any], live_key: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Fault.echo_credentials(401))
    with caplog.at_level(logging.DEBUG):
        error = raised_by(call, live_key)
    assert isinstance(error, AuthenticationError)
    assert server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"  # it was echoed
    said = everything_said(error, caplog)
    assert OPENAI_KEY not in said and "[redacted]" in str(error) and "[redacted]" in repr(error.body)


@EVERY_PATH
def test_a_key_echoed_by_a_failing_server_is_masked_in_the_log_and_the_final_error(
    call: Callable[..., Any], live_key: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_always(Fault.echo_credentials(500))
    with caplog.at_level(logging.DEBUG):
        assert call(live_key, max_attempts=2) is None  # logged, not raised
        default.force("raise_on_failure", True)
        error = raised_by(call, live_key, max_attempts=2)
    assert "attempt 1 of 2 failed" in caplog.text and "[redacted]" in caplog.text
    assert OPENAI_KEY not in everything_said(error, caplog)


@pytest.mark.parametrize("variable", ["AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN"])
def test_azure_keys_and_tokens_echoed_are_masked(
    variable: str, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"{variable.lower()}-0123456789abcdef"
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv(variable, secret)
    server.fail_always(Fault.echo_credentials(401))
    azure = AzureClient()  # kept until the test ends, when the test's clients are closed
    with caplog.at_level(logging.DEBUG):
        error = raised_by(sync_plain, azure, model="d")
    assert secret in server.requests[0].headers.get("api-key", "") + server.requests[0].headers.get("authorization", "")
    assert OPENAI_KEY not in everything_said(error, caplog) and secret not in everything_said(error, caplog)


def test_an_entra_token_from_a_provider_is_masked(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A token that lives in no variable: the provider hands it to the SDK, and it is remembered."""
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature"
    client = AzureClient()
    client._token_provider = lambda: token
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    server.fail_always(Fault.echo_credentials(401))
    register_client("azure", client)
    with caplog.at_level(logging.DEBUG):
        error = raised_by(sync_plain, client, model="d")
    assert server.requests[0].headers["authorization"] == f"Bearer {token}"
    assert token not in everything_said(error, caplog)
