"""Structured outputs: what is sent for each response_format, and what comes back, hit or miss."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from openai_utils import (
    InvalidRequestError,
    LLMCall,
    OpenAIClient,
    ResponseFormatError,
    force_default_value,
)
from openai_utils.structured import response_format_for_wire
from tests.fake_server import FakeOpenAIServer, Fault

if TYPE_CHECKING:
    import pydantic
else:
    pydantic = pytest.importorskip(
        "pydantic", reason="structured outputs with a model class need pydantic (extra 'structured')"
    )

HI = [{"role": "user", "content": "Who is on the team?"}]
ANSWER: dict[str, Any] = {"name": "Ana", "age": 41, "tags": ["lead"]}


class Person(pydantic.BaseModel):
    name: str
    age: int
    tags: list[str] = []  # noqa: RUF012 - pydantic copies a field default for each instance


@pytest.fixture
def json_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeOpenAIServer(reply=lambda body: json.dumps(ANSWER)) as running:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        force_default_value("base_url", running.base_url)
        yield running


def completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def test_a_model_class_is_sent_as_a_strict_schema_and_parsed_back(json_server: FakeOpenAIServer) -> None:
    reply = OpenAIClient().send_message(HI, response_format=Person)
    assert isinstance(reply.parsed, Person) and reply.parsed == Person(**ANSWER)
    assert json.loads(reply["content"]) == ANSWER and "parsed" not in reply
    sent = json_server.requests[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"
    assert sent["json_schema"]["strict"] is True
    schema = sent["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "age", "tags"]
    assert "default" not in schema["properties"]["tags"]


def test_a_cached_structured_answer_is_rebuilt_on_a_hit(json_server: FakeOpenAIServer, tmp_path: Path) -> None:
    client = OpenAIClient(cache_api_calls=True, cache_file_name=str(tmp_path / "c.pickle"))
    first = client.send_message(HI, response_format=Person)
    second = client.send_message(HI, response_format=Person)
    assert len(json_server.requests) == 1 and second.cached and not first.cached
    assert second.parsed == first.parsed and second.parsed is not first.parsed


def test_llmcall_returns_the_parsed_object(json_server: FakeOpenAIServer) -> None:
    call = LLMCall("answer.system", "answer.user", response_format=Person)
    result = call.call(question="Who leads?")
    assert result == Person(**ANSWER)
    assert call.model_output.parsed == result


def test_json_schema_and_json_object_dicts_are_sent_as_given_and_parsed(json_server: FakeOpenAIServer) -> None:
    client = OpenAIClient()
    full = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": False}}
    assert client.send_message(HI, response_format=full).parsed == ANSWER
    assert client.send_message(HI, response_format={"type": "json_object"}).parsed == ANSWER
    assert [r.body["response_format"] for r in json_server.requests] == [full, {"type": "json_object"}]


def test_a_bare_schema_is_wrapped(json_server: FakeOpenAIServer) -> None:
    bare = {
        "title": "person",
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "additionalProperties": False,
    }
    assert OpenAIClient().send_message(HI, response_format=bare).parsed == ANSWER
    assert json_server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": bare, "strict": True},
    }
    wire, _ = response_format_for_wire({"type": "object", "properties": {}})
    assert wire["json_schema"]["strict"] is False and wire["json_schema"]["name"] == "response"


def test_text_format_is_not_parsed(json_server: FakeOpenAIServer) -> None:
    assert OpenAIClient().send_message(HI, response_format={"type": "text"}).parsed is None


def test_a_refusal_is_surfaced_not_parsed(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    refused = completion({"role": "assistant", "content": None, "refusal": "I can't help with that."})
    server.script(Fault.status(200, body=refused), Fault.status(200, body=refused))
    reply = oai.send_message(HI, response_format=Person)
    assert reply["refusal"] == "I can't help with that." and reply.parsed is None
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        assert LLMCall("answer.system", "answer.user", response_format=Person).call(question="x") is None
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_an_answer_that_does_not_parse_is_a_clear_error_and_not_cached(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    oai.set_api_cache(True, str(tmp_path / "c.pickle"))
    for _ in range(2):
        with pytest.raises(ResponseFormatError) as caught:
            oai.send_message(HI, response_format=Person)  # the loopback server echoes text, not JSON
        assert caught.value.content == "echo: Who is on the team?" and caught.value.finish_reason == "stop"
    assert len(server.requests) == 2


def test_a_truncated_structured_answer_says_so(json_server: FakeOpenAIServer) -> None:
    with pytest.raises(ResponseFormatError, match="cut off at the token limit") as caught:
        OpenAIClient().send_message(HI, response_format=Person, max_tokens=2)
    assert caught.value.finish_reason == "length"


def test_a_property_called_default_survives_strict_mode() -> None:
    class Setting(pydantic.BaseModel):
        default: str = "x"

    wire, _ = response_format_for_wire(Setting)
    schema = wire["json_schema"]["schema"]
    assert list(schema["properties"]) == ["default"] and schema["required"] == ["default"]


def test_nested_models_are_closed_too() -> None:
    class Team(pydantic.BaseModel):
        lead: Person
        members: list[Person]

    wire, parse = response_format_for_wire(Team)
    assert parse is not None  # a model class always comes with its parser
    person = wire["json_schema"]["schema"]["$defs"]["Person"]
    assert person["additionalProperties"] is False and person["required"] == ["name", "age", "tags"]
    assert parse(json.dumps({"lead": ANSWER, "members": [ANSWER]})).lead.name == "Ana"


def test_anything_else_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="response_format"):
        response_format_for_wire("json")
