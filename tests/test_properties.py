"""Properties over hostile input: whatever the messages, call arguments, config values or
templates, only errors from openai_utils' own tree escape, and nothing hangs.

Calls that pass validation go to the loopback fake server, one attempt each. Every example runs
under an alarm that only a hang can reach (EXAMPLE_LIMIT), and the number of examples is small
enough for a busy 2-core machine; the point is breadth of odd input, not volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openai_utils import OpenAIClient, OpenAIUtilsError, default, force_default_value
from openai_utils.backend import Backend
from openai_utils.config import SETTINGS
from openai_utils.ratelimit import rate_gate
from openai_utils.retry import RetryPolicy
from openai_utils.sdk_backend import OpenAIBackend, OpenAISettings
from openai_utils.templates import render_template
from tests.fake_server import FakeOpenAIServer

EXAMPLE_LIMIT = 30.0
"""Seconds one example may take: far above any real run, so reaching it means a hang."""


def bounded(max_examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings for these tests: few examples, no deadline (the machine is shared),
    no example database written into the repository, one server shared by a test's examples."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def no_hang(seconds: float = EXAMPLE_LIMIT) -> Iterator[None]:
    """Fail the example if it runs past `seconds`, even if the library swallows the interruption."""
    fired = []

    def hung(signum: int, frame: Any) -> None:
        fired.append(signum)
        raise TimeoutError(f"an example ran past {seconds} s")

    if not hasattr(signal, "setitimer"):  # not on Windows: the example bound is max_examples alone
        yield
        return
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired, "an example hung"


def only_ours(action: Callable[[], Any]) -> None:
    """Run `action`; an error from openai_utils' tree is an accepted outcome, anything else fails."""
    with no_hang(), contextlib.suppress(OpenAIUtilsError):
        action()


class LoopbackBackend(OpenAIBackend):
    """Refuses any server but loopback: a fuzzed request must never reach a real API."""

    def settings_now(self, kind: str) -> OpenAISettings:
        found = super().settings_now(kind)
        assert str(found.base_url).startswith("http://127.0.0.1:"), found
        return found


class LoopbackClient(OpenAIClient):
    """An OpenAIClient over LoopbackBackend."""

    def _make_backend(self) -> Backend:
        return LoopbackBackend()


@pytest.fixture
def loopback(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackClient:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    return LoopbackClient(sleep=lambda seconds: None)


def safe_defaults(server: FakeOpenAIServer) -> None:
    """What every call here runs under, forced over whatever an example set: the loopback server,
    one attempt, no cache file, no rate limit that could make a call wait a minute."""
    for name, value in (
        ("base_url", server.base_url),
        ("max_attempts", 1),
        ("timeout", 10.0),
        ("cache_api_calls", False),
        ("requests_per_minute", 0),
        ("tokens_per_minute", 0),
        ("raise_on_failure", False),
    ):
        force_default_value(name, value)
    rate_gate.reset()


# -- strategies ------------------------------------------------------------------------------------

surrogate = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.text(max_size=20) | st.lists(st.text(max_size=3) | surrogate, min_size=1, max_size=4).map("".join)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | texts
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e300, b"bytes", 1j])
    | st.builds(pow, st.just(10), st.just(5000))  # past Python's int-to-text digit limit
    | st.sets(st.integers(), max_size=2)
    | st.builds(object)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.tuples(inner) | st.dictionaries(texts | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)
numbers = st.none() | st.integers(-5, 2000) | st.floats() | st.sampled_from([0, 0.5, 1, 2, -1, 1e300, "1", True, [1]])


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` nine times in ten, else `odd`: enough calls pass validation to reach the server."""
    return st.integers(0, 9).flatmap(lambda roll: odd if roll == 0 else valid)


roles = mostly(st.sampled_from(["system", "developer", "user", "assistant"]), texts | st.none() | st.integers())
parts = st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": mostly(st.text(max_size=20), texts)}),
    min_size=1,
    max_size=2,
)
contents = mostly(st.text(max_size=30) | parts, texts | st.none() | values)
messages = mostly(
    st.lists(st.fixed_dictionaries({"role": roles, "content": contents}), min_size=1, max_size=3),
    st.lists(st.fixed_dictionaries({"role": roles}) | values, max_size=3) | values,
)


def argument(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] = numbers | values) -> st.SearchStrategy[Any]:
    return mostly(st.none() | valid, odd)


chat_arguments = st.fixed_dictionaries(
    {},
    optional={
        "model": argument(st.sampled_from(["gpt-4o-mini", "o3-mini", "org/model:v1"]), texts | st.integers()),
        "temperature": argument(st.floats(0, 2)),
        "top_p": argument(st.floats(0, 1)),
        "max_tokens": argument(st.integers(1, 50)),
        "frequency_penalty": argument(st.floats(-2, 2)),
        "presence_penalty": argument(st.floats(-2, 2)),
        "timeout": argument(st.just(10.0), st.sampled_from([0, -1, math.nan, math.inf, 1e300, "5", True])),
        # max_attempts stays 1 or invalid: a valid larger value would only add attempts
        "max_attempts": argument(st.just(1), st.sampled_from([0, -1, 1001, 2.5, "1", True])),
        "waiting_time": argument(st.floats(0, 86_400)),
        "exponential_backoff_factor": argument(st.floats(1, 100)),
        "n": argument(st.integers(1, 3), st.sampled_from([0, 129, 1.5, "2", True])),
        "stream": argument(st.booleans(), st.sampled_from(["yes", 1])),
        "echo": argument(st.booleans(), st.just("no")),
        "stop": argument(texts | st.lists(st.text(max_size=5), max_size=3), values),
        "seed": argument(st.integers(0, 2**31), values),
        "user": argument(st.text(max_size=10), values),
        "metadata": argument(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), values),
        "reasoning_effort": argument(st.sampled_from(["low", "medium", "high"]), values),
        "response_format": argument(
            st.sampled_from([{"type": "json_object"}, {"type": "text"}, {"title": "x"}]), values
        ),
    },
)
embedding_texts = mostly(
    st.text(min_size=1, max_size=20) | st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4),
    st.none() | texts | values,
)
embedding_arguments = st.fixed_dictionaries(
    {},
    optional={
        "model": argument(st.just("text-embedding-3-small"), texts | st.integers()),
        "timeout": argument(st.just(10.0), st.sampled_from([0, -1, math.nan, "5"])),
        "max_attempts": argument(st.just(1), st.sampled_from([0, 1001, 1.5])),
    },
)


# -- calls -----------------------------------------------------------------------------------------


def consume(result: Any) -> Any:
    """Read a streamed answer to its end, so that errors raised while streaming count too."""
    if hasattr(result, "__next__"):
        return list(result)
    return result


async def aconsume(result: Any) -> Any:
    if hasattr(result, "__anext__"):
        return [chunk async for chunk in result]
    return result


chat_calls = st.tuples(st.just("chat"), messages, chat_arguments)
embedding_calls = st.tuples(st.just("embedding"), embedding_texts, embedding_arguments)


@bounded(max_examples=180)
@given(call=chat_calls | embedding_calls, asynchronous=st.booleans())
def test_any_call_raises_only_our_errors(
    loopback: LoopbackClient, server: FakeOpenAIServer, call: tuple[str, Any, dict[str, Any]], asynchronous: bool
) -> None:
    kind, given_input, arguments = call
    safe_defaults(server)

    def sync() -> Any:
        if kind == "chat":
            return consume(loopback.send_message(given_input, **arguments))
        return loopback.get_embedding(given_input, **arguments)

    async def asynchronously() -> Any:
        if kind == "chat":
            return await aconsume(await loopback.asend_message(given_input, **arguments))
        return await loopback.aget_embedding(given_input, **arguments)

    only_ours(lambda: asyncio.run(asynchronously()) if asynchronous else sync())


# -- config values ---------------------------------------------------------------------------------

KEYS = [s.key for s in SETTINGS]
NAMES = [s.name for s in SETTINGS]
config_text = st.text(max_size=15) | st.sampled_from(
    ["1e300", "-1", "nan", "inf", "0", "0.0005", "1200", "true", "", " ", "0x10", "1_000", "１２", "%(x)s", "2, 3"]  # noqa: RUF001 - full-width digits on purpose
)
config_lines = st.lists(
    st.tuples(st.sampled_from(KEYS) | st.text(string.ascii_letters + "_", min_size=1, max_size=10), config_text).map(
        lambda pair: f"{pair[0]} = {pair[1]}"
    )
    | st.sampled_from(["[OpenAI]", "[openai]", "[OPENAI]", "[Prices]", "[prices]", "[OpenIA]", "[Other]", "[DEFAULT]"])
    | st.text(max_size=15),
    max_size=8,
)
config_files = st.tuples(st.sampled_from(["[OpenAI]", "[openai]", "\ufeff[OpenAI]", ""]), config_lines).map(
    lambda f: "\n".join([f[0], *f[1]])
).map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)
forced = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=8), numbers | values | config_text), max_size=3)


@bounded(max_examples=80)
@given(contents=config_files, overrides=forced)
def test_any_config_raises_only_config_errors_and_calls_still_work(
    loopback: LoopbackClient,
    server: FakeOpenAIServer,
    tmp_path: Path,
    contents: bytes,
    overrides: list[tuple[str, Any]],
) -> None:
    (tmp_path / "config.ini").write_bytes(contents)
    default.reset()

    def load() -> None:
        for name, value in overrides:
            with contextlib.suppress(OpenAIUtilsError):
                force_default_value(name, value)
        dict(default)
        default.prices()
        for name in NAMES:
            default.source(name)

    only_ours(load)
    (tmp_path / "config.ini").unlink()  # what remains forced is what the calls run with
    safe_defaults(server)
    only_ours(lambda: loopback.send_message([{"role": "user", "content": "Hi"}]))
    only_ours(lambda: loopback.get_embedding(["a", "b"]))


def accepted(name: str) -> st.SearchStrategy[float]:
    """Every value the setting `name` accepts, from its declared range."""
    setting = next(s for s in SETTINGS if s.name == name)
    assert setting.minimum is not None and setting.maximum is not None
    if setting.kind == "int":
        return st.integers(int(setting.minimum), int(setting.maximum))
    return st.floats(setting.minimum, setting.maximum)


@bounded(max_examples=300)
@given(
    max_attempts=accepted("max_attempts"),
    waiting_time=accepted("waiting_time"),
    factor=accepted("exponential_backoff_factor"),
    cap=accepted("max_waiting_time"),
    retry=accepted("max_attempts"),
    random_value=st.floats(0, 1),
    hint=st.none() | st.floats(),
)
def test_every_accepted_backoff_gives_a_finite_capped_wait(
    max_attempts: int,
    waiting_time: float,
    factor: float,
    cap: float,
    retry: int,
    random_value: float,
    hint: float | None,
) -> None:
    policy = RetryPolicy(
        max_attempts=max_attempts, waiting_time=waiting_time, backoff_factor=factor, max_waiting_time=cap
    )
    wait = policy.wait_before_retry(retry, hint, random_value)
    assert math.isfinite(wait) and 0.0 <= wait <= cap


# -- templates -------------------------------------------------------------------------------------

TAG_NAMES = ["a", "b", "part", "items", "x.y", "."]
fragments = (
    st.sampled_from(
        ["{{", "}}", "{{{", "}}}", "{{#", "{{^", "{{/", "{{>", "{{&", "{{!", "{{=", "=}}", "<% %>", "\n", " ", "{", "}"]
    )
    | st.sampled_from(TAG_NAMES)
    | st.text(max_size=4)
)
template_files = st.lists(fragments, max_size=12).map("".join).map(
    lambda t: t.encode("utf-8", "surrogatepass")
) | st.binary(max_size=20)
template_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(TAG_NAMES) | texts, inner, max_size=3),
    max_leaves=8,
)
template_names = (
    st.just("main")
    | st.sampled_from(["part", "missing", "", "../main", "main.mustache", "x" * 300, "a\x00b"])
    | st.text(max_size=10)
    | st.integers()
    | st.none()
)


@bounded(max_examples=200)
@given(
    main=template_files,
    partials=st.dictionaries(st.sampled_from(["part", "a", "b"]), template_files, max_size=3),
    name=template_names,
    variables=st.dictionaries(st.sampled_from(TAG_NAMES) | texts, template_values, max_size=4) | values,
    allow_missing=st.booleans(),
)
def test_any_template_renders_to_text_or_raises_a_template_error(
    tmp_path: Path, main: bytes, partials: dict[str, bytes], name: Any, variables: Any, allow_missing: bool
) -> None:
    folder = tmp_path / "fuzzed-prompts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "main.mustache").write_bytes(main)
    for partial, contents in partials.items():
        (folder / f"{partial}.mustache").write_bytes(contents)
    force_default_value("prompts_path", str(folder))

    def render() -> None:
        assert isinstance(render_template(name, variables, allow_missing), str)

    only_ours(render)
