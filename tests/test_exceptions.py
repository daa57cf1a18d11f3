"""Tests for openai_utils.exceptions: the documented tree is the real one."""

from __future__ import annotations

import re

import pytest

import openai_utils
from openai_utils import exceptions
from openai_utils.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigError,
    InvalidRequestError,
    MalformedResponseError,
    MissingCredentialsError,
    NonTerminalError,
    OpenAIUtilsError,
    RateLimitError,
    RetriesExhaustedError,
    ServerError,
    StreamInterruptedError,
    TemplateError,
    TemplateNotFoundError,
    TemplateSyntaxError,
    TemplateVariableError,
)

ALL_CLASSES = [getattr(exceptions, name) for name in exceptions.__all__]
TREE_LINE = re.compile(r"^(?P<prefix>[ │├└─]*)(?P<name>[A-Z]\w+)(?P<rest>.*)$")


def documented_tree() -> list[tuple[int, str, str]]:
    """(column, class name, rest of line) for each line of the module docstring's tree drawing."""
    doc = exceptions.__doc__
    assert doc is not None and "::" in doc
    block = doc.split("::", 1)[1].strip("\n").split("\n\n")[0]
    rows = []
    for line in block.splitlines():
        match = TREE_LINE.match(line)
        assert match, f"cannot read tree line {line!r}"
        rows.append((len(match["prefix"]), match["name"], match["rest"]))
    return rows


def test_all_lists_only_exception_classes() -> None:
    assert len(set(exceptions.__all__)) == len(exceptions.__all__)
    for cls in ALL_CLASSES:
        assert isinstance(cls, type) and issubclass(cls, Exception), cls


@pytest.mark.parametrize("name", exceptions.__all__)
def test_every_error_is_reexported_and_an_openai_utils_error(name: str) -> None:
    cls = getattr(exceptions, name)
    assert getattr(openai_utils, name) is cls
    assert name in openai_utils.__all__
    assert issubclass(cls, OpenAIUtilsError)


def test_docstring_tree_names_every_class() -> None:
    assert {name for _, name, _ in documented_tree()} == set(exceptions.__all__)


def test_docstring_tree_matches_the_real_hierarchy() -> None:
    rows = documented_tree()
    assert rows[0][1] == "OpenAIUtilsError"
    stack: list[tuple[int, str]] = []
    checked = 0
    for column, name, _ in rows:
        while stack and stack[-1][0] >= column:
            stack.pop()
        cls = getattr(exceptions, name)
        if stack:
            parent = getattr(exceptions, stack[-1][1])
            assert parent in cls.__bases__, f"the tree draws {name} under {parent.__name__}"
            checked += 1
        stack.append((column, name))
    assert checked == len(exceptions.__all__) - 1


def test_docstring_marks_exactly_the_direct_value_errors() -> None:
    marked = {name for _, name, rest in documented_tree() if "(also ValueError)" in rest}
    direct = {cls.__name__ for cls in ALL_CLASSES if ValueError in cls.__bases__}
    assert marked == direct == {"ConfigError", "TemplateError", "InvalidRequestError"}


def test_non_terminal_errors_are_exactly_the_retryable_ones() -> None:
    retryable = {cls for cls in ALL_CLASSES if issubclass(cls, NonTerminalError) and cls is not NonTerminalError}
    # StreamInterruptedError is worth sending again, but only by the caller: it is raised after
    # part of the answer reached them, so the library never retries it itself.
    assert retryable == {
        RateLimitError,
        ServerError,
        APIConnectionError,
        APITimeoutError,
        MalformedResponseError,
        StreamInterruptedError,
    }
    assert issubclass(APITimeoutError, APIConnectionError)
    assert not issubclass(RetriesExhaustedError, NonTerminalError)


def test_value_errors() -> None:
    assert issubclass(InvalidRequestError, ValueError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(MissingCredentialsError, ValueError)
    assert not issubclass(APIError, ValueError)
    assert not issubclass(RateLimitError, ValueError)


def test_api_error_str_mentions_status_code_request_id_and_attempts() -> None:
    err = APIError("m", status_code=429, request_id="r1", code="c", attempts=2)
    text = str(err)
    assert text.startswith("m")
    assert "429" in text
    assert "r1" in text
    assert "code c" in text
    assert "attempt 2" in text
    assert err.message == "m"
    assert (err.status_code, err.request_id, err.code, err.attempts) == (429, "r1", "c", 2)


def test_api_error_str_without_details_is_the_message() -> None:
    assert str(APIError("just this")) == "just this"
    assert str(RateLimitError("slow", status_code=429)) == "slow (status 429)"


def test_attempts_set_later_shows_in_str() -> None:
    err = ServerError("boom", status_code=503)
    assert "attempt" not in str(err)
    err.attempts = 3
    assert "attempt 3" in str(err)


def test_retries_exhausted_copies_status_and_request_id() -> None:
    last = RateLimitError("slow", status_code=429, request_id="req-1")
    err = RetriesExhaustedError("gave up", attempts=4, last_error=last)
    assert err.last_error is last
    assert (err.status_code, err.request_id, err.attempts) == (429, "req-1", 4)
    exhausted_by_connection = RetriesExhaustedError("gave up", attempts=1, last_error=APIConnectionError("down"))
    assert exhausted_by_connection.status_code is None


def test_template_errors_keep_their_details() -> None:
    not_found = TemplateNotFoundError("no template", ["/a", "/b"])
    assert not_found.searched == ["/a", "/b"]
    assert isinstance(not_found, LookupError)
    missing = TemplateVariableError("uses x", ["x"])
    assert missing.missing == ["x"]
    assert str(missing) == "uses x"  # not KeyError's quoted repr
    assert isinstance(missing, KeyError)
    syntax = TemplateSyntaxError("unclosed tag", "/p/t.mustache", 3)
    assert (syntax.path, syntax.line) == ("/p/t.mustache", 3)
    assert isinstance(syntax, TemplateError) and isinstance(syntax, ValueError)


def test_missing_credentials_names_variables() -> None:
    err = MissingCredentialsError("set OPENAI_API_KEY", ("OPENAI_API_KEY",))
    assert err.variables == ("OPENAI_API_KEY",)
    assert isinstance(err, ConfigError)
