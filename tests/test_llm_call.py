"""LLMCall: templates rendered, sent through client(), results kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_utils import LLMCall, OpenAIClient, TemplateNotFoundError, TemplateVariableError, force_default_value
from tests.fake_server import FakeOpenAIServer, Fault


def test_call_renders_sends_and_returns_the_content(oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path) -> None:
    call = LLMCall("greet.system", "greet.user", temperature=0.2)
    assert call.call(who="Ana", lang="French") == "echo: Say hello to Ana in French."
    assert call.messages == [
        {"role": "system", "content": "You greet Ana."},
        {"role": "user", "content": "Say hello to Ana in French."},
    ]
    assert call.model_output == {"role": "assistant", "content": "echo: Say hello to Ana in French."}
    body = server.requests[0].body
    assert body["messages"] == call.messages and body["temperature"] == 0.2


def test_system_template_alone_and_names_with_suffix(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    call = LLMCall("greet.system.mustache")
    call.call(who="Bo")
    assert call.messages == [{"role": "system", "content": "You greet Bo."}]


def test_model_params_and_defaults_reach_the_request(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    force_default_value("model", "from-default")
    LLMCall("greet.system", "greet.user", max_tokens=30).call(who="A", lang="B")
    body = server.requests[0].body
    assert body["model"] == "from-default" and body["max_tokens"] == 30


def test_n_greater_than_one_returns_every_choice(oai: OpenAIClient, prompts: Path) -> None:
    out = LLMCall("greet.system", "greet.user", n=2).call(who="A", lang="B")
    assert out == ["echo: Say hello to A in B.", "echo: Say hello to A in B. [1]"]


def test_a_failed_call_returns_none_and_is_kept(oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path) -> None:
    server.fail_always(Fault.status(503))
    call = LLMCall("greet.system", "greet.user", max_attempts=2)
    assert call.call(who="A", lang="B") is None
    assert call.model_output is None and call.messages is not None


def test_a_missing_variable_is_named_and_nothing_is_sent(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    with pytest.raises(TemplateVariableError, match="lang"):
        LLMCall("greet.system", "greet.user").call(who="A")
    assert server.requests == []
    LLMCall("greet.system", "greet.user").call(who="A", allow_missing_variables=True)
    assert server.requests[0].body["messages"][1]["content"] == "Say hello to A in ."


def test_a_missing_template_lists_the_folders_searched(prompts: Path) -> None:
    with pytest.raises(TemplateNotFoundError) as caught:
        LLMCall("nope.system").call()
    assert str(prompts) in str(caught.value)


def test_shipped_templates_are_found_from_any_folder(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    text = LLMCall("summarize.system", "summarize.user").call(text="A long text.", max_sentences=2)
    assert text is not None and "A long text." in text
    assert "at most 2 sentences" in server.requests[0].body["messages"][0]["content"]


def test_repr_before_and_after_a_call(oai: OpenAIClient, prompts: Path) -> None:
    call = LLMCall("greet.system", "greet.user", temperature=0)
    assert repr(call) == "LLMCall('greet.system', 'greet.user', temperature=0) [not called yet]"
    call.call(who="A", lang="B")
    assert repr(call) == "LLMCall('greet.system', 'greet.user', temperature=0) -> 'echo: Say hello to A in B.'"
