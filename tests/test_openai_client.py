"""OpenAIClient and AzureClient over real HTTP: requests made, bodies sent, waits asked for, errors raised."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import pytest

from openai_utils import (
    APITimeoutError,
    AuthenticationError,
    AzureClient,
    InvalidRequestError,
    MissingCredentialsError,
    NonTerminalError,
    OpenAIClient,
    QuotaExceededError,
    RateLimitError,
    RetriesExhaustedError,
    client,
    default,
    force_api_cache,
    force_default_value,
    register_client,
)
from tests.fake_server import FakeOpenAIServer, Fault, embedding_vector
from tests.shared_files import require_encodings

HI = [{"role": "user", "content": "Hi"}]


def chat_requests(server: FakeOpenAIServer) -> list[Any]:
    return server.requests_to("/chat/completions")


# -- the happy path and what is sent ------------------------------------------------------


def test_send_message_returns_the_assistant_message_as_a_plain_dict(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    reply = client().send_message(HI, temperature=0)
    assert reply == {"role": "assistant", "content": "echo: Hi"}
    assert isinstance(reply, dict) and dict(reply) == reply
    assert chat_requests(server)[0].body == {"messages": HI, "model": "gpt-4o-mini", "temperature": 0}


def test_unset_sampling_parameters_are_not_sent(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    oai.send_message(HI, stop=[])
    body = chat_requests(server)[0].body
    for absent in ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "stop", "n"):
        assert absent not in body


def test_every_parameter_and_pass_through_reaches_the_server(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    oai.send_message(
        HI,
        model="m",
        temperature=0.3,
        max_tokens=50,
        top_p=0.9,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        stop=["\n"],
        seed=7,
        user="u1",
        logprobs=True,
    )
    body = chat_requests(server)[0].body
    assert body == {
        "messages": HI,
        "model": "m",
        "temperature": 0.3,
        "max_tokens": 50,
        "top_p": 0.9,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "stop": ["\n"],
        "seed": 7,
        "user": "u1",
        "logprobs": True,
    }


def test_defaults_are_read_at_call_time(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    oai.send_message(HI)
    force_default_value("model", "gpt-x")
    force_default_value("temperature", 0.7)
    oai.send_message(HI)
    first, second = chat_requests(server)
    assert first.body["model"] == "gpt-4o-mini" and "temperature" not in first.body
    assert second.body["model"] == "gpt-x" and second.body["temperature"] == 0.7


def test_config_file_values_are_sent(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nMODEL=from-file\nTOP_P=0.5\n")
    default.reload()
    oai.send_message(HI)
    body = chat_requests(server)[0].body
    assert body["model"] == "from-file" and body["top_p"] == 0.5


def test_n_choices_come_back_as_a_list_in_order(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    replies = oai.send_message(HI, n=3)
    assert isinstance(replies, list)
    assert [r["content"] for r in replies] == ["echo: Hi", "echo: Hi [1]", "echo: Hi [2]"]
    assert chat_requests(server)[0].body["n"] == 3


def test_echo_returns_the_conversation_and_the_reply(oai: OpenAIClient) -> None:
    convo = oai.send_message(HI, echo=True)
    assert convo == [HI[0], {"role": "assistant", "content": "echo: Hi"}]


def test_tool_calls_come_back_as_plain_dicts(oai: OpenAIClient) -> None:
    reply = oai.send_message(
        [{"role": "user", "content": "__tool__"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    assert reply is not None and not isinstance(reply, list)
    assert reply["content"] is None
    assert reply["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_callers_messages_are_not_mutated(oai: OpenAIClient) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    oai.send_message(messages, echo=True)
    assert messages == [{"role": "user", "content": "Hi"}]


def test_bad_messages_are_rejected_before_any_request(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    for bad in ([], "Hi", [{"content": "no role"}], [{"role": "user"}], [None]):
        with pytest.raises(InvalidRequestError):
            oai.send_message(bad)  # type: ignore[arg-type]
    assert server.requests == []


# -- retries and the error contract --------------------------------------------------------


def test_persistent_429_makes_exactly_max_attempts_requests_then_returns_none(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_always(Fault.status(429))
    with caplog.at_level(logging.INFO, logger="openai_utils"):
        assert oai.send_message(HI, max_attempts=4, waiting_time=1, exponential_backoff_factor=3) is None
    assert len(chat_requests(server)) == 4
    assert sleeps == [1, 3, 9]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "4 attempts" in errors[0].getMessage() and "RateLimitError" in errors[0].getMessage()


def test_waits_follow_the_config_and_are_capped(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    force_default_value("max_attempts", 6)
    force_default_value("waiting_time", 2)
    force_default_value("exponential_backoff_factor", 2)
    force_default_value("max_waiting_time", 10)
    server.fail_always(Fault.status(503))
    assert oai.send_message(HI) is None
    assert len(chat_requests(server)) == 6
    assert sleeps == [2, 4, 8, 10, 10]


def test_no_sleep_before_the_first_attempt(oai: OpenAIClient, sleeps: list[float]) -> None:
    oai.send_message(HI)
    assert sleeps == []


def test_raise_on_failure_raises_with_attempts_and_last_error(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("raise_on_failure", True)
    server.fail_always(Fault.status(500))
    with pytest.raises(RetriesExhaustedError) as caught:
        oai.send_message(HI, max_attempts=3)
    assert caught.value.attempts == 3
    assert caught.value.status_code == 500
    assert isinstance(caught.value.last_error, NonTerminalError)
    assert caught.value.request_id == caught.value.last_error.request_id
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(oai: OpenAIClient, server: FakeOpenAIServer, status: int) -> None:
    server.script(Fault.status(status))
    assert oai.send_message(HI) == {"role": "assistant", "content": "echo: Hi"}
    assert len(chat_requests(server)) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_invalid_requests_raise_at_once_with_the_server_message(
    oai: OpenAIClient, server: FakeOpenAIServer, status: int
) -> None:
    server.script(
        Fault.status(
            status, body={"error": {"message": "you sent nonsense", "type": "invalid_request_error", "code": "bad"}}
        )
    )
    with pytest.raises(InvalidRequestError) as caught:
        oai.send_message(HI)
    assert len(chat_requests(server)) == 1
    assert caught.value.status_code == status
    assert "you sent nonsense" in str(caught.value)
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_errors_name_the_variable(oai: OpenAIClient, server: FakeOpenAIServer, status: int) -> None:
    server.script(Fault.status(status))
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        oai.send_message(HI)
    assert len(chat_requests(server)) == 1


def test_insufficient_quota_is_not_retried(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(
        Fault.status(
            429,
            body={
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        )
    )
    with pytest.raises(QuotaExceededError, match="quota"):
        oai.send_message(HI)
    assert len(chat_requests(server)) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "150"}, 0.15), ({"Retry-After": "500"}, 60.0)],
)
def test_server_wait_hints_win_within_the_cap(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float], headers: dict[str, str], expected: float
) -> None:
    server.script(Fault.status(429, headers=headers))
    assert oai.send_message(HI) is not None
    assert sleeps == [expected]


def test_http_date_retry_after_is_honoured(oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]) -> None:
    server.script(Fault.status(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert oai.send_message(HI) is not None
    assert sleeps == [0.0]  # a date in the past: retry at once


def test_connection_reset_and_malformed_json_are_retried(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.reset(), Fault.malformed())
    assert oai.send_message(HI) == {"role": "assistant", "content": "echo: Hi"}
    assert len(chat_requests(server)) == 3


def test_a_hung_server_times_out_and_is_retried(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("raise_on_failure", True)
    server.fail_always(Fault.hang(5))
    with pytest.raises(RetriesExhaustedError) as caught:
        oai.send_message(HI, timeout=1.0, max_attempts=2)
    assert isinstance(caught.value.last_error, APITimeoutError)
    assert len(server.wait_for_requests("/chat/completions", 2)) == 2


def test_every_attempt_sends_the_same_body(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.status(500), Fault.status(429))
    oai.send_message(HI, temperature=0.5, seed=3)
    bodies = [r.body for r in chat_requests(server)]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]


def test_the_sdk_does_not_retry_on_its_own(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.fail_always(Fault.status(500))
    oai.send_message(HI, max_attempts=1)
    assert len(chat_requests(server)) == 1


def test_a_custom_client_raising_nonterminal_error_is_retried(sleeps: list[float]) -> None:
    class Flaky(OpenAIClient):
        calls = 0

        def _raw_model_call(self, request: Any, timeout: float) -> dict[str, Any]:
            Flaky.calls += 1
            if Flaky.calls < 3:
                raise NonTerminalError("busy, try later")
            return {
                "model": request["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}}],
            }

    register_client("flaky", Flaky(sleep=sleeps.append, random_value=lambda: 0.5))
    from openai_utils import _get_client_for_api_type

    assert _get_client_for_api_type("flaky").send_message(HI) == {"role": "assistant", "content": "done"}
    assert Flaky.calls == 3 and sleeps == [1.0, 2.0]


def test_secrets_are_never_logged(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Fault.status(500), Fault.status(401))
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError):
        oai.send_message(HI)
    assert caplog.records, "expected retry logs"
    assert all("sk-test-secret" not in r.getMessage() for r in caplog.records)


def test_token_counts_are_computed_only_when_debug_is_on(
    oai: OpenAIClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import openai_utils.call as clients_module
    from openai_utils.tokens import count_tokens as real  # what clients_module calls

    counted: list[str] = []

    def counting(m: Any, model: str) -> int | None:
        counted.append(model)
        return real(m, model)

    monkeypatch.setattr(clients_module, "count_tokens", counting)
    oai.send_message(HI)
    assert counted == []
    with caplog.at_level(logging.DEBUG, logger="openai_utils"):
        oai.send_message(HI)
    assert counted == ["gpt-4o-mini"]
    assert any("prompt tokens" in r.getMessage() for r in caplog.records)


# -- credentials and the SDK client ----------------------------------------------------------


def test_missing_key_names_the_variable_and_sends_nothing(server: FakeOpenAIServer) -> None:
    with pytest.raises(MissingCredentialsError, match="OPENAI_API_KEY") as caught:
        OpenAIClient().send_message(HI)
    assert caught.value.variables == ("OPENAI_API_KEY",)
    assert server.requests == []


@pytest.mark.parametrize("api_type", ["openai", "azure", "azure-without-identity"])
def test_missing_credentials_name_the_offline_way_out(api_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if api_type == "azure-without-identity":
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setitem(sys.modules, "azure.identity", None)  # not installed
    chosen = OpenAIClient() if api_type == "openai" else AzureClient()
    with pytest.raises(MissingCredentialsError) as caught:
        chosen.send_message(HI, model="d")
    assert 'force_api_type("local")' in str(caught.value) and "API_TYPE = local" in str(caught.value)


def test_a_base_url_server_needs_no_key(server: FakeOpenAIServer) -> None:
    force_default_value("base_url", server.base_url)
    assert OpenAIClient().send_message(HI) is not None


def test_the_sdk_client_is_reused_and_rebuilt_when_the_key_changes(
    oai: OpenAIClient, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    oai.send_message(HI)
    first = oai._sdk()
    oai.send_message(HI)
    assert oai._sdk() is first
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    oai.send_message(HI)
    assert oai._sdk() is not first
    auth = [r.headers["authorization"] for r in chat_requests(server)]
    assert auth == ["Bearer sk-test-secret", "Bearer sk-test-secret", "Bearer sk-other"]


# -- embeddings ------------------------------------------------------------------------------


def test_get_embedding_works_on_a_fresh_client(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    force_default_value("base_url", server.base_url)
    vector = OpenAIClient().get_embedding("hello")
    assert isinstance(vector, list) and len(vector) == 8 and all(isinstance(x, float) for x in vector)
    assert server.requests_to("/embeddings")[0].body == {"model": "text-embedding-3-small", "input": "hello"}


def test_get_embedding_takes_a_list_and_keeps_the_order(oai: OpenAIClient) -> None:
    singles = [oai.get_embedding(t) for t in ("a", "b", "c")]
    batch = oai.get_embedding(["a", "b", "c"])
    assert batch == singles
    assert singles[0] != singles[1]


def test_get_embedding_retries_and_caches(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any) -> None:
    force_api_cache(True, str(tmp_path / "e.pickle"))
    server.script(Fault.status(503), path="/embeddings")
    first = oai.get_embedding("x")
    assert oai.get_embedding("x") == first
    assert len(server.requests_to("/embeddings")) == 2  # one failure, one success, then a hit


MANY_TEXTS = [f"text number {i}" for i in range(5000)]


def embedding_inputs(server: FakeOpenAIServer) -> list[Any]:
    return [r.body["input"] for r in server.requests_to("/embeddings")]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_long_list_of_texts_goes_out_in_parts_the_spec_allows(
    oai: OpenAIClient, server: FakeOpenAIServer, asynchronous: bool
) -> None:
    import asyncio

    vectors = asyncio.run(oai.aget_embedding(MANY_TEXTS)) if asynchronous else oai.get_embedding(MANY_TEXTS)
    assert vectors == [embedding_vector(t) for t in MANY_TEXTS]
    sent = embedding_inputs(server)
    assert len(sent) == math.ceil(5000 / 2048)
    assert all(len(part) <= 2048 for part in sent)
    assert [t for part in sent for t in part] == MANY_TEXTS


def test_each_part_of_a_long_list_is_retried_on_its_own(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    server.script(Fault.delay(0), Fault.status(503), path="/embeddings")  # the second part fails once
    assert oai.get_embedding(MANY_TEXTS) == [embedding_vector(t) for t in MANY_TEXTS]
    sent = embedding_inputs(server)
    assert [len(part) for part in sent] == [2048, 2048, 2048, 904]
    assert sent[1] == sent[2] == MANY_TEXTS[2048:4096]
    assert sleeps == [1.0]


def test_parts_are_cached_one_by_one_so_a_failed_long_call_resumes(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any
) -> None:
    force_api_cache(True, str(tmp_path / "e.pickle"))
    server.script(Fault.delay(0), Fault.delay(0), *[Fault.status(503)] * 5, path="/embeddings")
    assert oai.get_embedding(MANY_TEXTS) is None  # the third part ran out of attempts
    assert len(embedding_inputs(server)) == 2 + 5
    server.reset()
    assert oai.get_embedding(MANY_TEXTS) == [embedding_vector(t) for t in MANY_TEXTS]
    assert embedding_inputs(server) == [MANY_TEXTS[4096:]]  # the first two parts came from the cache
    assert oai.get_embedding(MANY_TEXTS[:2048]) == [embedding_vector(t) for t in MANY_TEXTS[:2048]]
    assert len(embedding_inputs(server)) == 1  # a list of up to 2048 is one part, with the same key


# -- the cache in send_message ---------------------------------------------------------------


def test_a_cache_hit_makes_no_request(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    first = oai.send_message(HI, temperature=0)
    second = oai.send_message(HI, temperature=0, timeout=5, max_attempts=2)  # not part of the key
    assert first == second
    assert len(chat_requests(server)) == 1
    assert (oai.cache_hits, oai.cache_misses) == (1, 1)
    oai.send_message(HI, temperature=0.1)
    assert len(chat_requests(server)) == 2


def test_a_changed_default_reaches_the_very_next_call_hit_or_miss(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    oai.send_message(HI)
    oai.send_message(HI)
    assert (oai.cache_hits, oai.cache_misses) == (1, 1)
    force_default_value("temperature", 0.5)  # part of the key: the next call is a miss
    oai.send_message(HI)
    assert chat_requests(server)[-1].body["temperature"] == 0.5 and oai.cache_misses == 2
    oai.send_message(HI)
    assert (oai.cache_hits, oai.cache_misses) == (2, 2)
    (tmp_path / "config.ini").write_text("[OpenAI]\nMODEL=from-file\n")
    default.reload()
    oai.send_message(HI)
    assert chat_requests(server)[-1].body["model"] == "from-file" and oai.cache_misses == 3
    force_default_value("model", "gpt-4o-mini")  # back to the body of the third call: a hit at once
    oai.send_message(HI)
    assert (oai.cache_hits, oai.cache_misses) == (3, 3)
    force_default_value("max_attempts", 1)  # not in the key, but the next miss retries no more
    server.script(Fault.status(500))
    assert oai.send_message([{"role": "user", "content": "new"}]) is None
    assert len(chat_requests(server)) == 4


def test_a_cached_answer_can_be_edited_by_the_caller_without_changing_the_cache(
    oai: OpenAIClient, tmp_path: Any
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    reply = oai.send_message(HI)
    assert isinstance(reply, dict)
    reply["content"] = "changed"
    assert oai.send_message(HI) == {"role": "assistant", "content": "echo: Hi"}


def test_a_call_rate_limited_once_is_a_hit_next_time(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    server.script(Fault.status(429))
    oai.send_message(HI)
    oai.send_message(HI)
    assert len(chat_requests(server)) == 2 and oai.cache_hits == 1


def test_failures_are_not_cached(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    server.fail_always(Fault.status(500))
    assert oai.send_message(HI, max_attempts=2) is None
    server.fail_always(None)
    assert oai.send_message(HI) is not None
    assert len(chat_requests(server)) == 3


# -- Azure -----------------------------------------------------------------------------------


@pytest.fixture
def azure(server: FakeOpenAIServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> AzureClient:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-secret")
    fresh = AzureClient(sleep=sleeps.append, random_value=lambda: 0.5)
    register_client("azure", fresh)
    return fresh


def test_azure_uses_the_deployment_url_api_version_and_api_key_header(
    azure: AzureClient, server: FakeOpenAIServer
) -> None:
    reply = azure.send_message(HI, model="my-deployment")
    assert reply == {"role": "assistant", "content": "echo: Hi"}
    sent = server.requests[0]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-secret"
    assert "authorization" not in sent.headers


def test_azure_api_version_comes_from_config(azure: AzureClient, server: FakeOpenAIServer) -> None:
    force_default_value("azure_api_version", "2025-01-01-preview")
    azure.send_message(HI, model="d")
    assert server.requests[0].query == {"api-version": "2025-01-01-preview"}


def test_azure_embeddings_use_the_embedding_deployment(azure: AzureClient, server: FakeOpenAIServer) -> None:
    force_default_value("embedding_model", "emb-deploy")
    assert azure.get_embedding("x") is not None
    assert server.requests[0].path == "/openai/deployments/emb-deploy/embeddings"


def test_azure_accepts_the_alternative_key_variable(
    azure: AzureClient, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_KEY")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "other-secret")
    azure.send_message(HI, model="d")
    assert server.requests[0].headers["api-key"] == "other-secret"


def test_azure_errors_name_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingCredentialsError, match="AZURE_OPENAI_ENDPOINT"):
        AzureClient().send_message(HI)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(MissingCredentialsError, match="AZURE_OPENAI_KEY") as caught:
        AzureClient().send_message(HI)
    assert "AZURE_OPENAI_API_KEY" in str(caught.value)


def test_azure_auth_error_names_the_azure_variables(azure: AzureClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.status(401))
    with pytest.raises(AuthenticationError, match="AZURE_OPENAI_KEY"):
        azure.send_message(HI, model="d")


def test_rate_limit_error_carries_the_retry_hint(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("raise_on_failure", True)
    server.fail_always(Fault.status(429, headers={"Retry-After": "3"}))
    with pytest.raises(RetriesExhaustedError) as caught:
        oai.send_message(HI, max_attempts=1)
    last = caught.value.last_error
    assert isinstance(last, RateLimitError) and last.retry_after == 3.0 and last.attempts == 1


# -- reasoning models ------------------------------------------------------------------------


def test_reasoning_models_get_max_completion_tokens_and_no_sampling(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    force_default_value("temperature", 0.7)
    force_default_value("reasoning_effort", "low")
    oai.send_message(HI, model="o3-mini", max_tokens=300, top_p=0.5, presence_penalty=0.1, seed=1)
    body = chat_requests(server)[0].body
    assert body == {
        "messages": HI,
        "model": "o3-mini",
        "max_completion_tokens": 300,
        "reasoning_effort": "low",
        "seed": 1,
    }


def test_a_call_can_set_reasoning_effort_and_retries_send_the_same(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.status(500))
    oai.send_message(HI, model="gpt-5-mini", reasoning_effort="high", temperature=0)
    first, second = chat_requests(server)
    assert first.body == second.body
    assert first.body["reasoning_effort"] == "high" and "temperature" not in first.body


def test_reasoning_deployments_are_named_in_config(azure: AzureClient, server: FakeOpenAIServer) -> None:
    force_default_value("reasoning_models", "o1,o3,o4,gpt-5,my-thinker")
    azure.send_message(HI, model="my-thinker-eu", max_tokens=50, temperature=0.2)
    azure.send_message(HI, model="plain-deploy", max_tokens=50, temperature=0.2)
    thinker, plain = server.requests
    assert "temperature" not in thinker.body and thinker.body["max_completion_tokens"] == 50
    assert plain.body["temperature"] == 0.2 and plain.body["max_tokens"] == 50


def test_ordinary_models_keep_their_parameters(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    oai.send_message(HI, model="gpt-4o", max_tokens=30, temperature=0.2)
    body = chat_requests(server)[0].body
    assert body["max_tokens"] == 30 and body["temperature"] == 0.2 and "reasoning_effort" not in body


# -- finish reasons and content filters --------------------------------------------------------


def filtered_completion(finish_reason: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": None},
                "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "medium"},
                },
            }
        ],
    }


def test_a_filtered_answer_raises_with_its_categories(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Any
) -> None:
    from openai_utils import ContentFilterError

    force_api_cache(True, str(tmp_path / "c.pickle"))
    server.script(
        Fault.status(200, body=filtered_completion("content_filter")),
        Fault.status(200, body=filtered_completion("content_filter")),
    )
    with pytest.raises(ContentFilterError) as caught:
        oai.send_message(HI)
    assert caught.value.categories == ["violence"]
    assert caught.value.results["violence"]["severity"] == "medium"
    with pytest.raises(ContentFilterError):
        oai.send_message(HI)  # a filtered answer is a failure: never cached, asked again
    assert len(chat_requests(server)) == 2
    assert oai.send_message(HI) is not None and len(chat_requests(server)) == 3


def test_azures_content_filter_400_names_the_categories(azure: AzureClient, server: FakeOpenAIServer) -> None:
    from openai_utils import ContentFilterError

    body = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": True, "severity": "high"},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "medium"},
                },
            },
        }
    }
    server.script(Fault.status(400, body=body))
    with pytest.raises(ContentFilterError, match="filtered: hate, violence") as caught:
        azure.send_message(HI, model="d")
    assert isinstance(caught.value, InvalidRequestError) and caught.value.status_code == 400
    assert caught.value.categories == ["hate", "violence"]
    assert len(server.requests) == 1


def test_a_cut_off_answer_is_flagged_and_logged(oai: OpenAIClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        reply = oai.send_message([{"role": "user", "content": "one two three four five"}], max_tokens=2)
    assert reply.truncated and reply.finish_reason == "length"
    assert reply["content"] == "echo: one"
    assert any("cut off" in r.getMessage() for r in caplog.records)
    complete = oai.send_message(HI)
    assert complete.finish_reason == "stop" and not complete.truncated
    assert complete.usage["total_tokens"] > 0 and complete.model == "gpt-4o-mini"


# -- tools -------------------------------------------------------------------------------------


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def test_a_tool_conversation_is_sent_and_counted(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    require_encodings()
    first = oai.send_message([{"role": "user", "content": "__tool__"}], tools=TOOLS, tool_choice="auto")
    conversation = [
        {"role": "user", "content": "Weather in Paris?"},
        dict(first),
        {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": '{"temp_c": 21}'},
    ]
    final = oai.send_message(conversation, tools=TOOLS)
    assert final is not None
    sent = chat_requests(server)[1].body
    assert sent["messages"][1] == {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]}
    assert sent["tools"] == TOOLS and chat_requests(server)[0].body["tool_choice"] == "auto"
    without_tools = oai._count_tokens(conversation, "gpt-4o")
    with_tools = oai._count_tokens(conversation, "gpt-4o", TOOLS)
    assert without_tools is not None and with_tools is not None and with_tools > without_tools > 20


# -- Azure Entra ID ----------------------------------------------------------------------------


def test_azure_uses_an_entra_token_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "entra-token-1")
    AzureClient().send_message(HI, model="d")
    headers = server.requests[0].headers
    assert headers["authorization"] == "Bearer entra-token-1" and "api-key" not in headers


def test_azure_signs_in_with_azure_identity_and_refreshes(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """azure-identity cannot reach Entra ID here, so a stand-in module plays its documented API:
    DefaultAzureCredential() and get_bearer_token_provider(credential, scope) -> callable."""
    import sys
    import types

    issued: list[str] = []
    scopes: list[str] = []

    def get_bearer_token_provider(credential: object, scope: str) -> Any:
        scopes.append(scope)

        def issue() -> str:
            issued.append(f"token-{len(issued) + 1}")
            return issued[-1]

        return issue

    identity = types.ModuleType("azure.identity")
    identity.DefaultAzureCredential = object  # type: ignore[attr-defined]
    identity.get_bearer_token_provider = get_bearer_token_provider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure", types.ModuleType("azure"))
    monkeypatch.setitem(sys.modules, "azure.identity", identity)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    client = AzureClient()
    with caplog.at_level(logging.DEBUG):
        client.send_message(HI, model="d")
        client.send_message([{"role": "user", "content": "again"}], model="d")
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer token-1", "Bearer token-2"]
    assert scopes == ["https://cognitiveservices.azure.com/.default"]
    assert all("token-" not in r.getMessage() for r in caplog.records)


def test_azure_without_any_credential_says_every_way_to_fix_it(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # not installed
    with pytest.raises(MissingCredentialsError) as caught:
        AzureClient().send_message(HI, model="d")
    message = str(caught.value)
    for hint in ("AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN", "openai_utils[azure]"):
        assert hint in message
    assert server.requests == []


# -- bad arguments are refused before any request ----------------------------------------------

BAD_CALLS: list[tuple[str, str, tuple[Any, ...], dict[str, Any], tuple[str, ...]]] = [
    (
        "surrogate",
        "send_message",
        ([{"role": "user", "content": "a\ud800b"}],),
        {},
        ("messages[0]['content']", "surrogate"),
    ),
    (
        "set-content",
        "send_message",
        ([{"role": "user", "content": {"a", "b"}}],),
        {},
        ("messages[0]['content']", "set", "list of content parts"),
    ),
    (
        "nested-set",
        "send_message",
        ([{"role": "user", "content": [{"type": "text", "text": {"a"}}]}],),
        {},
        ("messages[0]['content'][0]['text']", "set"),
    ),
    ("temperature-nan", "send_message", (HI,), {"temperature": float("nan")}, ("temperature=nan", "from 0 to 2")),
    ("temperature-str", "send_message", (HI,), {"temperature": "0.5"}, ("temperature='0.5'", "a number from 0 to 2")),
    ("top_p-big", "send_message", (HI,), {"top_p": 2}, ("top_p=2", "from 0 to 1")),
    ("max_tokens-float", "send_message", (HI,), {"max_tokens": 2.5}, ("max_tokens=2.5", "a whole number")),
    ("model-int", "send_message", (HI,), {"model": 123}, ("model=123", "str")),
    ("timeout-negative", "send_message", (HI,), {"timeout": -1}, ("timeout=-1", "from 0.001 to 86400")),
    ("timeout-inf", "send_message", (HI,), {"timeout": float("inf")}, ("timeout=inf", "from 0.001 to 86400")),
    ("max_attempts-zero", "send_message", (HI,), {"max_attempts": 0}, ("max_attempts=0", "from 1 to 1000")),
    ("max_attempts-huge", "send_message", (HI,), {"max_attempts": 1200}, ("max_attempts=1200", "from 1 to 1000")),
    ("waiting_time-huge", "send_message", (HI,), {"waiting_time": 1e300}, ("waiting_time=1e+300", "from 0 to 86400")),
    (
        "factor-huge",
        "send_message",
        (HI,),
        {"exponential_backoff_factor": 1e300},
        ("exponential_backoff_factor=1e+300", "from 1 to 100"),
    ),
    ("n-zero", "send_message", (HI,), {"n": 0}, ("n=0", "from 1 to 128")),
    ("n-none", "send_message", (HI,), {"n": None}, ("n=None", "from 1 to 128")),
    ("stream-str", "send_message", (HI,), {"stream": "yes"}, ("stream='yes'", "True or False")),
    ("extra-nan", "send_message", (HI,), {"seed": float("nan")}, ("seed", "finite")),
    ("stop-set", "send_message", (HI,), {"stop": {"a"}}, ("stop", "set")),
    ("embedding-none", "get_embedding", (None,), {}, ("text", "NoneType", "a str or a list of str")),
    ("embedding-set", "get_embedding", ({"a", "b"},), {}, ("text", "set")),
    ("embedding-item", "get_embedding", (["ok", 3],), {}, ("text[1]", "int")),
    ("embedding-surrogate", "get_embedding", (["ok", "b\udc80"],), {}, ("text[1]", "surrogate")),
    ("embedding-model", "get_embedding", ("x",), {"model": 5}, ("model=5",)),
    ("embedding-timeout", "get_embedding", ("x",), {"timeout": 0}, ("timeout=0", "from 0.001")),
]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("method", "args", "kwargs", "fragments"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_a_bad_argument_is_an_invalid_request_error_before_any_request(
    oai: OpenAIClient,
    server: FakeOpenAIServer,
    asynchronous: bool,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fragments: tuple[str, ...],
) -> None:
    import asyncio

    with pytest.raises(InvalidRequestError) as info:
        if asynchronous:
            asyncio.run(getattr(oai, "a" + method)(*args, **kwargs))
        else:
            getattr(oai, method)(*args, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert server.requests == []


def test_good_arguments_at_the_ends_of_their_ranges_are_sent(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    assert (
        oai.send_message(
            HI,
            temperature=2,
            top_p=0,
            max_tokens=1,
            frequency_penalty=-2,
            presence_penalty=2,
            timeout=86_400,
            max_attempts=1000,
            waiting_time=0,
            exponential_backoff_factor=100,
            n=1,
            stream=False,
        )
        is not None
    )
    assert oai.get_embedding("x", timeout=5.0, max_attempts=1) is not None
    assert len(server.requests) == 2
