"""Contract tests: every request shape the library builds, checked by Prism against the published
OpenAI and Azure OpenAI OpenAPI specs.

Requests go through the real clients (`send_message`, `get_embedding`): Prism answers 422 to a
body the spec rejects, which the library raises as InvalidRequestError, so "the call returned"
means "the request matched the official schema". Prism's answers are schema-valid placeholders
(content "string", one choice, one embedding); the library must parse them.

The specs are the `.prism` copies in the folder OPENAI_UTILS_SPECS names, by default
../shared/specs/ (see the README there: the published ones let Prism skip validation silently).
`test_tripwire_*` fail if validation is ever switched off. Prism is installed on first use by
.ci/install-prism. The module skips, in one line, without the specs or without npm; CI sets
OPENAI_UTILS_REQUIRE_SHARED=1, which turns that skip into a failure (tests/shared_files.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import openai_utils
from openai_utils import (
    AuthenticationError,
    AzureClient,
    InvalidRequestError,
    MalformedResponseError,
    OpenAIClient,
    RetriesExhaustedError,
    force_default_value,
)
from tests.prism import SPECS, PrismServer, prism_available, prism_servers
from tests.shared_files import missing_specs, skip_reason

SPECS_MISSING = missing_specs()
if SPECS_MISSING is not None:
    pytest.skip(skip_reason(SPECS_MISSING), allow_module_level=True)
UNAVAILABLE = prism_available()
if UNAVAILABLE is not None:
    pytest.skip(skip_reason(f"contract tests need Prism: {UNAVAILABLE}"), allow_module_level=True)

OPENAI_SPEC = SPECS / "openai-openapi.prism-core.yaml"
AZURE_SPEC = SPECS / "azure-openai-inference-2024-10-21.prism.yaml"
AZURE_API_VERSION = "2024-10-21"
"""The version of the Azure spec; the library's AZURE_API_VERSION default must be one Prism serves."""

USER = [{"role": "user", "content": "Say hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TOOL_CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 21}'},
]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}

# Each shape: send_message's keyword arguments, and the conversation (USER unless given).
CHAT_SHAPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "temperature": {"temperature": 0.7},
    "max_tokens": {"max_tokens": 50},
    "top_p": {"top_p": 0.9},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "presence_penalty": {"presence_penalty": -0.5},
    "stop-str": {"stop": "\n"},
    "stop-list": {"stop": ["\n", "END"]},
    "seed": {"seed": 42},
    "user": {"user": "user-1234"},
    "logprobs": {"logprobs": True, "top_logprobs": 3},
    "every-sampling-parameter": {
        "temperature": 0,
        "max_tokens": 20,
        "top_p": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "stop": ["\n"],
        "seed": 1,
        "user": "u",
    },
    "tools-auto": {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
    "tools-named": {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    "tool-call-conversation": {"messages": TOOL_CONVERSATION, "tools": [WEATHER_TOOL]},
    "reasoning-model": {"model": "o3-mini", "max_completion_tokens": 100, "reasoning_effort": "low"},
    # What the library makes of a reasoning model called like a chat model (REASONING_MODELS).
    "reasoning-model-adapted": {"model": "o3-mini", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9},
}
# Structured output: Prism's placeholder content ("string") is not JSON, so the library may
# refuse to parse it (ResponseFormatError); what matters here is that no 422 came back.
FORMAT_SHAPES: dict[str, dict[str, Any]] = {
    "json_schema": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
        }
    },
    "json_object": {
        "messages": [{"role": "system", "content": "Answer in JSON."}, *USER],
        "response_format": {"type": "json_object"},
    },
    "bare-schema": {"response_format": ANSWER_SCHEMA},
}


class Recording:
    """Mixin keeping the last body a client sent, to show it when Prism rejects it.

    Its `super()` calls reach the client class it is mixed into, which mypy cannot see from here:
    hence their `type: ignore[misc]`."""

    sent: list[dict[str, Any]]

    def _raw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.sent.append(dict(request))
        reply: dict[str, Any] = super()._raw_model_call(request, timeout)  # type: ignore[misc]
        return reply

    def _raw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.sent.append(dict(request))
        reply: dict[str, Any] = super()._raw_embedding_call(request, timeout)  # type: ignore[misc]
        return reply

    def _raw_stream_call(self, request: Mapping[str, Any], timeout: float) -> Any:
        self.sent.append(dict(request))
        return super()._raw_stream_call(request, timeout)  # type: ignore[misc]


class RecordingOpenAIClient(Recording, OpenAIClient):
    def __init__(self) -> None:
        super().__init__()
        self.sent = []


class RecordingAzureClient(Recording, AzureClient):
    """The real AzureClient, recording what it sends; AZURE_OPENAI_BASE_URL points it at Prism,
    which serves the /deployments/... paths at its root rather than under /openai."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = []


class SpecRejected(AssertionError):
    """Prism refused a body the library built: the message shows Prism's report and the body."""


def accepted(client: Any, call: Callable[[], Any]) -> Any:
    """Run a library call; fail with Prism's validation report if the spec rejected the body."""
    try:
        return call()
    except InvalidRequestError as exc:
        if exc.status_code is None:
            raise  # refused by the library itself, before sending
        sent = json.dumps(client.sent[-1] if client.sent else None, indent=1)[:3000]
        raise SpecRejected(
            f"the spec rejects the request the library built (status {exc.status_code}): {exc}\n"
            f"Prism says: {json.dumps(exc.body, indent=1)[:3000]}\nbody sent: {sent}"
        ) from exc


def send(client: Any, shape: Mapping[str, Any]) -> Any:
    arguments = dict(shape)
    messages = arguments.pop("messages", USER)
    return accepted(client, lambda: client.send_message(messages, **arguments))


# -- servers and clients ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prism() -> Iterator[dict[str, PrismServer]]:
    """Both Prism servers, started concurrently (the OpenAI spec takes ~4-7 s, Azure ~1-2 s)."""
    with prism_servers(OPENAI_SPEC, AZURE_SPEC) as (openai_server, azure_server):
        yield {"openai": openai_server, "azure": azure_server}


@pytest.fixture
def strict_calls() -> None:
    """One attempt, and a failure raises instead of returning None, so nothing is hidden."""
    force_default_value("max_attempts", 1)
    force_default_value("raise_on_failure", True)


@pytest.fixture
def openai_client(
    prism: dict[str, PrismServer], strict_calls: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingOpenAIClient]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")
    force_default_value("base_url", prism["openai"].base_url)
    made = RecordingOpenAIClient()
    yield made
    made.close()


@pytest.fixture
def azure_env(prism: dict[str, PrismServer], strict_calls: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", prism["azure"].base_url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-contract-test")
    force_default_value("azure_api_version", AZURE_API_VERSION)
    return prism["azure"].base_url


@pytest.fixture
def azure_client(azure_env: str) -> Iterator[RecordingAzureClient]:
    made = RecordingAzureClient()
    yield made
    made.close()


SERVERS = ["openai", "azure"]


def client_for(request: pytest.FixtureRequest, server: str) -> Any:
    return request.getfixturevalue(f"{server}_client")


AZURE_JSON_SCHEMA_ERRATUM = pytest.mark.xfail(
    strict=True,
    raises=SpecRejected,
    reason="erratum in the published Azure 2024-10-21 spec: ResponseFormatJsonSchema.json_schema "
    "has `required: [type, name]`, so a json_schema without an inner `type` gets 422 (the OpenAI "
    "spec requires only `name`, and the openai SDK never sends an inner `type`)",
)


def server_and_format_params() -> list[Any]:
    params = []
    for server in SERVERS:
        for name, shape in FORMAT_SHAPES.items():
            json_schema = name != "json_object"
            marks = [AZURE_JSON_SCHEMA_ERRATUM] if server == "azure" and json_schema else []
            params.append(pytest.param(server, shape, id=f"{server}-{name}", marks=marks))
    return params


# -- chat: every shape, against both specs ------------------------------------------------


@pytest.mark.parametrize("shape", CHAT_SHAPES.values(), ids=CHAT_SHAPES.keys())
@pytest.mark.parametrize("server", SERVERS)
def test_chat_request_matches_the_spec(request: pytest.FixtureRequest, server: str, shape: Mapping[str, Any]) -> None:
    reply = send(client_for(request, server), shape)
    assert reply is not None
    assert isinstance(reply, Mapping)
    assert reply["role"] == "assistant"
    assert isinstance(reply["content"], str)  # Prism's placeholder


def test_reasoning_request_sends_no_sampling_parameters(openai_client: RecordingOpenAIClient) -> None:
    send(openai_client, CHAT_SHAPES["reasoning-model"])
    body = openai_client.sent[-1]
    assert body["model"] == "o3-mini"
    assert body["max_completion_tokens"] == 100
    assert body["reasoning_effort"] == "low"
    assert "temperature" not in body and "max_tokens" not in body


@pytest.mark.parametrize("server", SERVERS)
def test_sampling_defaults_from_config_match_the_spec(request: pytest.FixtureRequest, server: str) -> None:
    """The same parameters, taken from config rather than arguments."""
    any_client = client_for(request, server)
    configured = {"temperature": 0.2, "max_tokens": 16, "top_p": 0.5, "frequency_penalty": 0.1, "presence_penalty": 0.1}
    for name, value in configured.items():
        force_default_value(name, value)
    assert send(any_client, {}) is not None
    assert any_client.sent[-1]["temperature"] == 0.2


@pytest.mark.parametrize("server", SERVERS)
def test_n_greater_than_one_matches_the_spec(request: pytest.FixtureRequest, server: str) -> None:
    any_client = client_for(request, server)
    replies = send(any_client, {"n": 3})
    # Prism answers one placeholder choice whatever n is; the request is what is checked here.
    assert isinstance(replies, list) and len(replies) >= 1
    assert any_client.sent[-1]["n"] == 3


@pytest.mark.parametrize(("server", "shape"), server_and_format_params())
def test_response_format_matches_the_spec(
    request: pytest.FixtureRequest, server: str, shape: Mapping[str, Any]
) -> None:
    any_client = client_for(request, server)
    try:
        send(any_client, shape)
    except openai_utils.ResponseFormatError as exc:
        # Validation passed; the placeholder answer "string" is not JSON and is refused honestly.
        assert exc.content == "string"
    assert any_client.sent[-1]["response_format"]["type"] in ("json_schema", "json_object")


@pytest.mark.parametrize("server", ["openai", pytest.param("azure", marks=AZURE_JSON_SCHEMA_ERRATUM)])
def test_pydantic_response_format_matches_the_spec(request: pytest.FixtureRequest, server: str) -> None:
    pytest.importorskip("pydantic")
    import pydantic

    any_client = client_for(request, server)

    class Answer(pydantic.BaseModel):
        answer: str
        confidence: float = 0.5
        tags: tuple[str, ...] = ()

    try:
        send(any_client, {"response_format": Answer})
    except openai_utils.ResponseFormatError as exc:
        assert exc.content == "string"
    wire = any_client.sent[-1]["response_format"]
    assert wire["type"] == "json_schema" and wire["json_schema"]["strict"] is True


def test_the_azure_json_schema_erratum_is_the_only_objection(azure_client: RecordingAzureClient) -> None:
    """The xfails above fail for the spec's erratum alone: the library's own json_schema body
    (pydantic, the richest shape) passes once the inner `type` the erratum demands is added."""
    pytest.importorskip("pydantic")
    import pydantic

    from openai_utils.transport import post_json

    class Answer(pydantic.BaseModel):
        answer: str
        tags: tuple[str, ...] = ()

    with pytest.raises(SpecRejected):
        send(azure_client, {"response_format": Answer})
    body = azure_client.sent[-1]
    body["response_format"]["json_schema"]["type"] = "json_schema"
    answer = post_json(azure_client._sdk(), "/chat/completions", body, 10, "AZURE_OPENAI_KEY")
    assert answer["choices"]


# -- embeddings -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["one text", ["just one text"]], ids=["string", "list-of-one"])
@pytest.mark.parametrize("server", SERVERS)
def test_embedding_request_matches_the_spec(request: pytest.FixtureRequest, server: str, text: Any) -> None:
    any_client = client_for(request, server)
    vectors = accepted(any_client, lambda: any_client.get_embedding(text))
    vector = vectors if isinstance(text, str) else vectors[0]
    assert isinstance(vector, list) and vector and all(isinstance(x, (int, float)) for x in vector)


@pytest.mark.parametrize("server", SERVERS)
def test_embedding_list_request_matches_the_spec(request: pytest.FixtureRequest, server: str) -> None:
    """A list of two passes validation; Prism's placeholder holds one vector, which the library
    must refuse (one vector per input) rather than return short."""
    any_client = client_for(request, server)
    try:
        vectors = accepted(any_client, lambda: any_client.get_embedding(["first", "second"]))
    except RetriesExhaustedError as exc:
        assert isinstance(exc.last_error, MalformedResponseError), exc.last_error
        assert "expected 2 embedding(s), got 1" in str(exc.last_error)
    else:
        assert len(vectors) == 2
    assert any_client.sent[-1]["input"] == ["first", "second"]


@pytest.mark.parametrize("server", SERVERS)
def test_a_long_list_is_split_into_bodies_the_spec_accepts(request: pytest.FixtureRequest, server: str) -> None:
    """The spec caps `input` at 2,048 items: one body of 2,049 texts gets 422, while each of the
    parts get_embedding splits it into is accepted."""
    from openai_utils.request import build_embedding_request, build_embedding_requests

    any_client = client_for(request, server)
    texts = [f"text {i}" for i in range(2049)]
    with pytest.raises(InvalidRequestError) as refused:
        any_client._raw_embedding_call(build_embedding_request(texts, "text-embedding-3-small"), 30.0)
    assert refused.value.status_code == 422
    parts = build_embedding_requests(texts, "text-embedding-3-small")
    assert [len(part["input"]) for part in parts] == [2048, 1]
    for part in parts:
        assert isinstance(accepted(any_client, functools.partial(any_client._raw_embedding_call, part, 30.0)), dict)


# -- async: the other SDK client ---------------------------------------------------------------


def test_async_calls_match_the_spec(
    prism: dict[str, PrismServer], strict_calls: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")
    force_default_value("base_url", prism["openai"].base_url)
    plain = OpenAIClient()  # not the recording one: that would send from a thread

    async def main() -> tuple[Any, Any]:
        return await plain.asend_message(USER, temperature=0.5, seed=3), await plain.aget_embedding("text")

    reply, vector = asyncio.run(main())
    assert reply["role"] == "assistant" and vector


# -- streaming: Prism answers JSON, not server-sent events ---------------------------------------


def test_stream_request_matches_the_spec_and_a_json_answer_is_no_stream(openai_client: RecordingOpenAIClient) -> None:
    """The body (stream_options included) validates, so Prism answers 200; but it answers with
    plain JSON, zero chunks and no finish_reason, which must fail clearly (and be retried),
    never come back as an empty success."""
    with pytest.raises(RetriesExhaustedError) as caught:
        openai_client.send_message(USER, stream=True)
    assert isinstance(caught.value.last_error, MalformedResponseError)
    assert "does not stream" in str(caught.value.last_error)
    assert openai_client.sent[-1]["stream"] is True
    assert openai_client.sent[-1]["stream_options"] == {"include_usage": True}


# -- tripwires: validation and auth are really on ----------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_tripwire_an_invalid_body_gets_422(server: str, request: pytest.FixtureRequest) -> None:
    """If this fails with 'DID NOT RAISE', Prism has stopped validating (see ../shared/specs/README.md).

    The bad value is a pass-through parameter (seed must be an integer): the client checks its own
    arguments before sending, so temperature='hot' would never reach Prism."""
    client = client_for(request, server)
    try:
        client.send_message(USER, seed="hot")
    except InvalidRequestError as exc:
        assert exc.status_code == 422, exc
    else:
        pytest.fail(f"validation is off: the {server} Prism accepted seed='hot' (see ../shared/specs/README.md)")


@pytest.mark.parametrize("server", SERVERS)
def test_tripwire_a_request_without_credentials_gets_401(prism: dict[str, PrismServer], server: str) -> None:
    path = "/chat/completions"
    if server == "azure":
        path = f"/deployments/gpt-4o-mini/chat/completions?api-version={AZURE_API_VERSION}"
    body = json.dumps({"model": "gpt-4o-mini", "messages": USER}).encode()
    posted = urllib.request.Request(
        prism[server].base_url + path, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(posted, timeout=10).close()
    caught.value.close()
    assert caught.value.code == 401


def _without_credentials(request: Any) -> None:
    for header in ("authorization", "api-key"):
        if header in request.headers:
            del request.headers[header]


@pytest.mark.parametrize("server", SERVERS)
def test_a_401_becomes_authentication_error_naming_the_variable(server: str, request: pytest.FixtureRequest) -> None:
    """Prism's real 401, through the client's own error translation."""
    client = client_for(request, server)
    real_build = client.backend.build_sdk

    def build_without_credentials(settings: Any, asynchronous: bool) -> Any:
        import openai

        sdk = real_build(settings, asynchronous)
        stripped = sdk.with_options(
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [_without_credentials]})
        )
        sdk.close()
        return stripped

    client.backend.build_sdk = build_without_credentials
    with pytest.raises(AuthenticationError) as caught:
        client.send_message(USER)
    assert caught.value.status_code == 401
    assert ("OPENAI_API_KEY" if server == "openai" else "AZURE_OPENAI_KEY") in str(caught.value)


# -- Azure through the unmodified AzureClient ---------------------------------------------------


def test_azure_client_reaches_the_azure_spec(azure_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", azure_env)
    made = AzureClient()
    try:
        reply = made.send_message(USER, temperature=0.5)
        vector = made.get_embedding("text")
    finally:
        made.close()
    assert reply["role"] == "assistant" and vector


# -- the Responses API: every request shape the library sends to /responses --------------------

RESPONSES_ONE_OF_ERRATUM = pytest.mark.xfail(
    strict=True,
    raises=SpecRejected,
    reason="erratum in the published OpenAI spec: InputItem is a oneOf whose branches EasyInputMessage "
    "and Item/InputMessage both match any user, system or developer message with a list of content "
    "parts (neither closes its properties), so such a message matches two branches and gets 422; the "
    "openai SDK sends the same shape for multi-part input, and the API takes it",
)

# Each shape: send_message's keyword arguments (and its conversation, USER unless given), sent
# with API_MODE = responses, so the body that reaches Prism is responses_wire.to_responses'.
RESPONSES_SHAPES: dict[str, Any] = {
    "plain": {},
    "instructions": {"messages": [{"role": "system", "content": "You answer briefly."}, *USER]},
    "later-system-and-assistant-turns": {
        "messages": [*USER, {"role": "assistant", "content": "Hi."}, {"role": "system", "content": "Be kind."}, *USER]
    },
    "multi-part": pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png", "detail": "low"}},
                    ],
                }
            ]
        },
        marks=RESPONSES_ONE_OF_ERRATUM,
    ),
    "sampling-and-length": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 50, "user": "u"},
    "reasoning-model": {"model": "o3-pro", "max_tokens": 100, "temperature": 0.5, "reasoning_effort": "low"},
    "tools-auto": {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
    "tools-named": {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    "tool-call-conversation": {"messages": TOOL_CONVERSATION, "tools": [WEATHER_TOOL]},
    **{f"format-{name}": shape for name, shape in FORMAT_SHAPES.items()},
}


@pytest.fixture
def responses_client(openai_client: RecordingOpenAIClient) -> RecordingOpenAIClient:
    force_default_value("api_mode", "responses")
    return openai_client


def sent_to_responses(client: RecordingOpenAIClient, call: Callable[[], Any]) -> Any:
    """Run a call through /responses; fail with Prism's report and the translated body if the
    spec rejected it. A structured answer may fail to parse Prism's placeholder text: that is
    after validation, so it counts as accepted."""
    from openai_utils.responses_wire import to_responses

    try:
        return accepted(client, call)
    except SpecRejected as rejected:
        raise SpecRejected(
            f"{rejected}\nsent to /responses: {json.dumps(to_responses(client.sent[-1]))[:3000]}"
        ) from None
    except openai_utils.ResponseFormatError:
        return None


@pytest.mark.parametrize("shape", RESPONSES_SHAPES.values(), ids=RESPONSES_SHAPES.keys())
def test_responses_request_matches_the_spec(responses_client: RecordingOpenAIClient, shape: Mapping[str, Any]) -> None:
    arguments = dict(shape)
    messages = arguments.pop("messages", USER)
    reply = sent_to_responses(responses_client, lambda: responses_client.send_message(messages, **arguments))
    if reply is not None:
        assert reply["role"] == "assistant" and (reply["content"] is not None or reply.get("tool_calls"))


def test_a_pydantic_format_through_responses_matches_the_spec(responses_client: RecordingOpenAIClient) -> None:
    pytest.importorskip("pydantic")
    import pydantic

    class Answer(pydantic.BaseModel):
        answer: str
        confidence: float = 0.5

    sent_to_responses(responses_client, lambda: responses_client.send_message(USER, response_format=Answer))


def test_a_responses_stream_request_matches_the_spec(responses_client: RecordingOpenAIClient) -> None:
    """The streamed body validates (Prism answers 200), but with JSON rather than events: no
    finish, which must fail clearly rather than come back as an empty success."""
    with pytest.raises(RetriesExhaustedError) as caught:
        responses_client.send_message(USER, stream=True, max_tokens=20)
    assert isinstance(caught.value.last_error, MalformedResponseError)


def test_tripwire_an_invalid_responses_body_gets_422(responses_client: RecordingOpenAIClient) -> None:
    """A pass-through parameter of the wrong type reaches Prism: if this passes without a 422,
    /responses is no longer validated."""
    with pytest.raises(InvalidRequestError) as caught:
        responses_client.send_message(USER, truncation="sometimes")
    assert caught.value.status_code == 422
