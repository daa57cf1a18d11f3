"""The library's WARNINGs and ERRORs reach a user who configured no logging, once, and step aside after.

Each case runs a real script in a fresh interpreter (pytest itself configures logging, which is
exactly the situation the fallback handler must yield to) against the loopback server: one
answer cut off at max_tokens (a WARNING) and one call whose every attempt fails (an ERROR).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_utils.logs import StderrFallbackHandler, install_fallback_handler
from tests.fake_server import FakeOpenAIServer, Fault

ROOT = Path(__file__).resolve().parents[1]

CALLS = """
from openai_utils import client, force_default_value
force_default_value("max_attempts", 2)
force_default_value("waiting_time", 0)
force_default_value("base_url", {healthy!r})
reply = client().send_message([{{"role": "user", "content": "one two three four five"}}], max_tokens=2)
assert reply is not None and reply.truncated, reply
force_default_value("base_url", {failing!r})
assert client().send_message([{{"role": "user", "content": "hi"}}]) is None
print("done")
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    with FakeOpenAIServer() as healthy, FakeOpenAIServer() as failing:
        failing.fail_always(Fault.status(500))
        yield healthy.base_url, failing.base_url


def run_script(setup: str, servers: tuple[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    healthy, failing = servers
    script = textwrap.dedent(setup) + CALLS.format(healthy=healthy, failing=failing)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "AZURE_"))}
    env.update(OPENAI_API_KEY="sk-test-secret", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_logging_configured_each_warning_and_error_is_one_line_on_stderr(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    done = run_script("", servers, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("openai_utils WARNING: ") and "cut off" in lines[0]
    assert lines[1].startswith("openai_utils ERROR: ") and "2 attempt" in lines[1]
    assert "sk-test-secret" not in done.stderr


def test_basic_config_takes_over_and_nothing_prints_twice(servers: tuple[str, str], tmp_path: Path) -> None:
    done = run_script(
        """
        import logging
        logging.basicConfig(format="ROOT %(name)s %(levelname)s %(message)s")
        """,
        servers,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["ROOT", "openai_utils", "WARNING"],
        ["ROOT", "openai_utils", "ERROR"],
    ]


def test_a_handler_on_the_package_logger_takes_over(servers: tuple[str, str], tmp_path: Path) -> None:
    done = run_script(
        """
        import logging, sys
        mine = logging.StreamHandler(sys.stdout)
        mine.setFormatter(logging.Formatter("MINE %(levelname)s"))
        logging.getLogger("openai_utils").addHandler(mine)
        """,
        servers,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == "MINE WARNING\nMINE ERROR\ndone\n"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ('logging.getLogger("openai_utils").setLevel(logging.ERROR)', ["ERROR"]),
        ('logging.getLogger("openai_utils").addHandler(logging.NullHandler())', []),
    ],
)
def test_the_documented_ways_to_quieten_it(
    setup: str, expected: list[str], servers: tuple[str, str], tmp_path: Path
) -> None:
    done = run_script("import logging\n" + setup + "\n", servers, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1].rstrip(":") for line in done.stderr.splitlines()] == expected


# -- the handler itself, in this process ------------------------------------------------------


@contextlib.contextmanager
def bare_logging() -> Iterator[io.StringIO]:
    """No root handlers (pytest's own are set aside meanwhile) and stderr captured in a string."""
    root = logging.getLogger()
    saved, saved_stderr = root.handlers[:], sys.stderr
    root.handlers.clear()
    sys.stderr = io.StringIO()
    try:
        yield sys.stderr
    finally:
        sys.stderr = saved_stderr
        root.handlers[:] = saved


def test_one_line_even_for_a_multi_line_message_with_a_traceback() -> None:
    logger = logging.getLogger("openai_utils")
    with bare_logging() as stderr:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.warning("first line\nsecond line", exc_info=True)
    assert stderr.getvalue() == "openai_utils WARNING: first line second line (ValueError: bad value)\n"


def test_info_and_debug_stay_quiet() -> None:
    logger = logging.getLogger("openai_utils")
    with bare_logging() as stderr:
        logger.info("not shown")
        logger.error("shown")
    assert stderr.getvalue() == "openai_utils ERROR: shown\n"


def test_installed_once() -> None:
    package = logging.getLogger("openai_utils")
    assert install_fallback_handler() is install_fallback_handler()
    assert sum(isinstance(handler, StderrFallbackHandler) for handler in package.handlers) == 1
