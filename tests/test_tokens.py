"""Tests for openai_utils.tokens: encoding choice, cookbook counts, laziness, offline failure."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from openai_utils import tokens
from openai_utils.exceptions import ConfigError, EncodingUnavailableError
from openai_utils.tokens import count_text_tokens, count_tokens, encoding_name_for, has_known_encoding, load_encoding
from tests.shared_files import require_encodings


# Tests that compare against tiktoken's own encodings need its encoding files: from
# TIKTOKEN_CACHE_DIR (tests/conftest.py points it at ../shared/tiktoken when that exists) or
# the network. Without them they skip, all in one line; CI provides them and insists.
@pytest.fixture
def encoding_files() -> None:
    require_encodings()


needs_encodings = pytest.mark.usefixtures("encoding_files")

# The example conversation from OpenAI's cookbook "How to count tokens with tiktoken".
COOKBOOK_MESSAGES: list[dict[str, str]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a timezone.",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string", "description": "IANA timezone"}},
            "required": ["tz"],
        },
    },
}


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    tokens._reset_encoding_cache()
    yield
    tokens._reset_encoding_cache()


def _reference_encoding(name: str) -> Any:
    import tiktoken

    return tiktoken.get_encoding(name)


def _cookbook_hand_count(messages: Sequence[Mapping[str, str]], encoding_name: str) -> int:
    """The cookbook's own num_tokens_from_messages, written out independently."""
    encoding = _reference_encoding(encoding_name)
    total = 0
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(encoding.encode(value))
            if key == "name":
                total += 1
    return total + 3


def _n(text: str, encoding_name: str = "o200k_base") -> int:
    return len(_reference_encoding(encoding_name).encode(text))


# --- encoding choice -------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "chatgpt-4o-latest",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-mini",
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o4-mini",
        "some-new-model",
        "ft:gpt-4o-mini:acme::abc",
        "ft:gpt-4o-2024-08-06:acme:custom:abc123",
        "azure/gpt-4o",
        "GPT-4o",
    ],
)
def test_o200k_models(model: str) -> None:
    assert encoding_name_for(model) == "o200k_base"


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4",
        "gpt-4-0613",
        "gpt-4-32k",
        "gpt-4-turbo",
        "gpt-4-turbo-2024-04-09",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0125",
        "gpt-35-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "davinci-002",
        "ft:gpt-3.5-turbo-0613:acme::abc",
        "ft:gpt-4-0613:acme::abc",
        "openai/gpt-4-turbo",
    ],
)
def test_cl100k_models(model: str) -> None:
    assert encoding_name_for(model) == "cl100k_base"


@pytest.mark.parametrize("model", ["text-davinci-003", "text-davinci-002", "code-davinci-002", "code-cushman-001"])
def test_p50k_models(model: str) -> None:
    assert encoding_name_for(model) == "p50k_base"


@pytest.mark.parametrize(
    "model", ["gpt-4o", "azure/gpt-4.1-mini", "ft:gpt-4o-mini:acme::abc", "gpt-35-turbo", "code-davinci-002"]
)
def test_known_families_are_known(model: str) -> None:
    assert has_known_encoding(model)


@pytest.mark.parametrize("model", ["some-new-model", "llama3", "my-deployment", "mistral/mixtral-8x7b"])
def test_unknown_names_are_assumed_o200k(model: str) -> None:
    assert not has_known_encoding(model)
    assert encoding_name_for(model) == "o200k_base"


# --- known values ------------------------------------------------------------------------


@needs_encodings
@pytest.mark.parametrize("model", ["gpt-3.5-turbo-0613", "gpt-4-0613", "gpt-4"])
def test_cookbook_example_cl100k(model: str) -> None:
    counted = count_tokens(COOKBOOK_MESSAGES, model)
    assert counted == _cookbook_hand_count(COOKBOOK_MESSAGES, "cl100k_base")
    assert counted == 129  # the cookbook's printed value, confirmed there by the API


@needs_encodings
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini"])
def test_cookbook_example_o200k(model: str) -> None:
    counted = count_tokens(COOKBOOK_MESSAGES, model)
    assert counted == _cookbook_hand_count(COOKBOOK_MESSAGES, "o200k_base")
    assert counted == 124  # the cookbook's printed value, confirmed there by the API


@needs_encodings
def test_encodings_give_distinct_counts() -> None:
    text = "Grüße aus München! 東京の天気はどうですか？ def f(x):\n\treturn x**2"  # noqa: RUF001 - a full-width question mark on purpose
    o200k, cl100k = _n(text, "o200k_base"), _n(text, "cl100k_base")
    assert o200k != cl100k
    assert count_text_tokens(text, "gpt-4o") == o200k
    assert count_text_tokens(text, "gpt-4") == cl100k
    messages = [{"role": "user", "content": text}]
    assert count_tokens(messages, "gpt-4o") != count_tokens(messages, "gpt-4")


@needs_encodings
def test_text_tokens_treat_special_markers_as_text() -> None:
    text = "ends with <|endoftext|>"
    assert count_text_tokens(text, "gpt-4o") == len(
        _reference_encoding("o200k_base").encode(text, disallowed_special=())
    )
    assert count_text_tokens("", "gpt-4o") == 0


# --- message shapes ----------------------------------------------------------------------


@needs_encodings
def test_list_content_counts_text_parts_only() -> None:
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "Describe this picture."},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "input_text", "text": "Be brief."},
    ]
    expected = 3 + _n("user") + _n("Describe this picture.") + _n("Be brief.") + 3
    assert count_tokens([{"role": "user", "content": parts}], "gpt-4o") == expected
    text_only = [p for p in parts if p["type"] != "image_url"]
    assert count_tokens([{"role": "user", "content": text_only}], "gpt-4o") == expected


@needs_encodings
def test_none_content_counts_zero() -> None:
    message = {"role": "assistant", "content": None}
    assert count_tokens([message], "gpt-4o") == 3 + _n("assistant") + 3


@needs_encodings
def test_name_adds_its_tokens_plus_one() -> None:
    plain = {"role": "user", "content": "hi"}
    named = {**plain, "name": "alice_smith"}
    with_name = count_tokens([named], "gpt-4o")
    without_name = count_tokens([plain], "gpt-4o")
    assert with_name is not None and without_name is not None
    assert with_name - without_name == _n("alice_smith") + 1


@needs_encodings
def test_tool_calls_and_tool_messages() -> None:
    arguments = json.dumps({"city": "Paris"})
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    tool_reply = {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"}
    assert count_tokens([assistant], "gpt-4o") == (
        3 + _n("assistant") + _n("get_weather") + _n(arguments) + _n("get_time") + _n("{}") + 3
    )
    assert count_tokens([tool_reply], "gpt-4o") == (3 + _n("tool") + _n("call_1") + _n("18°C and sunny") + 3)
    # Reply priming is paid once per request, not once per message.
    assert count_tokens([assistant, tool_reply], "gpt-4o") == (
        3
        + _n("assistant")
        + _n("get_weather")
        + _n(arguments)
        + _n("get_time")
        + _n("{}")
        + 3
        + _n("tool")
        + _n("call_1")
        + _n("18°C and sunny")
        + 3
    )


@needs_encodings
def test_tools_estimate_is_positive_and_grows() -> None:
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    base = count_tokens(messages, "gpt-4o")
    one = count_tokens(messages, "gpt-4o", tools=[WEATHER_TOOL])
    two = count_tokens(messages, "gpt-4o", tools=[WEATHER_TOOL, TIME_TOOL])
    assert base is not None and one is not None and two is not None
    assert base < one < two
    serialised = json.dumps([WEATHER_TOOL], separators=(",", ":"), sort_keys=True)
    assert one - base == _n(serialised)
    assert count_tokens(messages, "gpt-4o", tools=[]) == base


# --- loading -----------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) any download or DNS lookup, and empty tiktoken's in-process cache
    so an encoding loaded by an earlier test cannot hide a load attempt."""
    import tiktoken.load
    import tiktoken.registry

    attempts: list[str] = []

    def refuse_download(blobpath: str) -> bytes:
        attempts.append(blobpath)
        raise ConnectionError(f"test forbids downloading {blobpath}")

    def refuse_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(str(host))
        raise OSError(f"test forbids resolving {host}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse_download)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return attempts


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "openai_utils" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("variable", ["TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"])
def test_missing_cached_file_fails_fast_with_one_warning(
    variable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_network: list[str],
) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    caplog.set_level(logging.WARNING, logger="openai_utils")

    results = [count_tokens(COOKBOOK_MESSAGES, "gpt-4o") for _ in range(5)]
    results.append(count_text_tokens("hello", "gpt-5-mini"))

    assert results == [None] * 6
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "TIKTOKEN_CACHE_DIR" in warnings[0].getMessage()
    assert "o200k_base" in warnings[0].getMessage()
    assert no_network == []


def test_failed_load_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_network: list[str]
) -> None:
    # An empty TIKTOKEN_CACHE_DIR disables tiktoken's file cache, so tiktoken goes straight
    # to its (refused) download: the path taken when no cache folder is pinned.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    caplog.set_level(logging.WARNING, logger="openai_utils")

    results = [count_tokens(COOKBOOK_MESSAGES, "gpt-4") for _ in range(5)]

    assert results == [None] * 5
    assert len(no_network) == 1
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "cl100k_base" in message and "TIKTOKEN_CACHE_DIR" in message and "network" in message


def test_load_encoding_raises_a_config_error_for_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_network: list[str]
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING, logger="openai_utils")

    with pytest.raises(EncodingUnavailableError) as first:
        load_encoding("gpt-4o")
    with pytest.raises(EncodingUnavailableError) as second:
        load_encoding("o3-mini")

    assert isinstance(first.value, ConfigError)
    assert (first.value.encoding, first.value.cache_dir) == ("o200k_base", str(tmp_path))
    message = str(first.value)
    assert "\n" not in message and str(tmp_path) in message and "TIKTOKEN_CACHE_DIR" in message
    assert str(second.value) == message
    assert no_network == []
    assert _warnings(caplog) == []  # raising is the report; the advisory counters warn
    assert count_text_tokens("hello", "gpt-4o") is None
    assert len(_warnings(caplog)) == 1 and message in _warnings(caplog)[0].getMessage()


def test_load_encoding_names_a_failed_download_in_one_line(
    monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")

    with pytest.raises(EncodingUnavailableError) as raised:
        load_encoding("gpt-4")
    with pytest.raises(EncodingUnavailableError):
        load_encoding("gpt-4")

    message = str(raised.value)
    assert "\n" not in message and "cl100k_base" in message
    assert "could not be downloaded (ConnectionError)" in message
    assert "TIKTOKEN_CACHE_DIR" in message and "network" in message
    assert "test forbids" not in message  # the cause stays on __cause__, not in the one line
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert len(no_network) == 1


def test_import_does_not_import_tiktoken() -> None:
    script = (
        "import sys\n"
        "from openai_utils import tokens\n"
        "tokens.encoding_name_for('gpt-4o'), tokens.has_known_encoding('llama3')\n"
        "assert 'tiktoken' not in sys.modules, 'tiktoken imported eagerly'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(tokens.__file__).resolve().parents[1],
    )
    assert completed.returncode == 0, completed.stderr


@needs_encodings
def test_each_encoding_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken

    calls: Counter[str] = Counter()
    real_get_encoding = tiktoken.get_encoding

    def spy(name: str) -> Any:
        calls[name] += 1
        return real_get_encoding(name)

    monkeypatch.setattr(tiktoken, "get_encoding", spy)

    def hammer() -> None:
        for _ in range(20):
            assert count_tokens(COOKBOOK_MESSAGES, "gpt-4o") == 124
            assert count_tokens(COOKBOOK_MESSAGES, "gpt-4-0613") == 129
            assert count_text_tokens("hello world", "o3-mini") == 2

    errors: list[BaseException] = []

    def run() -> None:
        try:
            hammer()
        except BaseException as exc:  # a worker's failure must fail the test, not vanish
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert errors == []
    assert calls == {"o200k_base": 1, "cl100k_base": 1}
