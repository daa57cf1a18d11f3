"""Shared fixtures: the loopback server, a clean configuration per test, and a client wired to both."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_utils import OpenAIClient, default, force_api_cache, force_api_type, forksafe, register_client, registry
from openai_utils.ratelimit import rate_gate
from tests import shared_files
from tests.fake_server import FakeOpenAIServer
from tests.valkey import store_url, valkey  # noqa: F401 -- the store tests' server fixtures

SHARED_TIKTOKEN = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"
if SHARED_TIKTOKEN.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN))

SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_BASE_URL",
    "AZURE_OPENAI_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_UTILS_CONFIG",
)


def _live_clients() -> list[OpenAIClient]:
    """Every client alive in this process (each registers for fork safety when it is made)."""
    return [obj for obj in list(forksafe._registered) if isinstance(obj, OpenAIClient)]


@pytest.fixture(autouse=True)
def clean_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts in an empty folder with no secrets, no forced values and the stock clients."""
    monkeypatch.chdir(tmp_path)
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    saved_clients = dict(registry._clients)
    before = weakref.WeakSet(_live_clients())
    default.reset()
    force_api_type(None)
    force_api_cache(None)
    rate_gate.reset()
    yield
    rate_gate.reset()
    default.reset()
    force_api_type(None)
    force_api_cache(None)
    for made in _live_clients():
        if made not in before:
            made.close()  # a client the test made, registered or not: its connections end with the test
    registry._clients.clear()
    registry._clients.update(saved_clients)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


class Sleeps(list[float]):
    """The waits a client asked for, recorded instead of slept."""


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def oai(server: FakeOpenAIServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> OpenAIClient:
    """The "openai" client, pointed at the loopback server, with waits recorded and no jitter."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    default.force("base_url", server.base_url)
    fresh = OpenAIClient(sleep=sleeps.append, random_value=lambda: 0.5)
    register_client("openai", fresh)
    return fresh


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A prompts/ folder in the working directory with a greet.system / greet.user pair."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "greet.system.mustache").write_text("You greet {{{who}}}.")
    (folder / "greet.user.mustache").write_text("Say hello to {{{who}}} in {{lang}}.")
    return folder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With OPENAI_UTILS_REQUIRE_SHARED=1 (CI), a skip for want of the specs or tiktoken's files fails the run."""
    passed = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if os.environ.get(shared_files.REQUIRE_VARIABLE) == "1" and shared_files.skipped() and passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if os.environ.get(shared_files.REQUIRE_VARIABLE) == "1" and shared_files.skipped():
        terminalreporter.section(f"{shared_files.REQUIRE_VARIABLE}=1: these tests must run here", red=True)
        for reason in shared_files.skipped():
            terminalreporter.write_line(f"skipped, but required: {reason}", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Collect what the session left before pytest's own last collection does.

    Objects a test dropped inside a reference cycle (a client with its connection pool, a
    failed call's traceback) are freed only by the collector; when that happens at the very
    end, the finalizers of a cycle run in no fixed order, so a socket may be finalized before
    the client that would have closed it, and its ResourceWarning would fail a run that passed.
    Sockets left open *during* a test are still reported by pytest against that test.
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
