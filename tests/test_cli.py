"""`openai-utils` / `python -m openai_utils` run as a user would: real subprocesses, with real
pipes and terminals, against the loopback server."""

from __future__ import annotations

import configparser
import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openai_utils import OpenAIClient, default, tokens
from openai_utils.cli import main
from tests.fake_server import FakeOpenAIServer, Fault, embedding_vector
from tests.shared_files import require_encodings

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "openai-utils"


def _env(env: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment with no secrets, plus `env` (a None value unsets a variable)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    full_env["PYTHONPATH"] = str(ROOT)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    return full_env


def run_cli(
    *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m openai_utils ARGS`; standard input is a pipe (empty unless `input` is given)."""
    return subprocess.run(
        [sys.executable, "-m", "openai_utils", *args],
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd,
        timeout=60,
        input=input or "",
    )


def run_on_terminal(
    *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None, stdin_terminal: bool = False
) -> tuple[int, str, str]:
    """Run with standard output (or, with stdin_terminal, standard input) on a pseudo-terminal,
    as from an interactive shell; returns (status, what the terminal showed, stderr)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "openai_utils", *args],
        stdin=slave if stdin_terminal else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdin_terminal else slave,
        stderr=subprocess.PIPE,
        env=_env(env),
        cwd=cwd,
    )
    os.close(slave)
    shown = b""
    try:
        if not stdin_terminal:
            while select.select([master], [], [], 60)[0]:  # 60 s only catches a hang
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                shown += data
        out, err = process.communicate(timeout=60)
    finally:
        os.close(master)
    text = (out or shown).decode().replace("\r\n", "\n")
    return process.returncode, text, err.decode()


def openai_env(server: FakeOpenAIServer) -> dict[str, str | None]:
    return {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}


def one_line(stderr: str) -> str:
    """The single line an error must be: no traceback, no banner."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_chat_prints_the_reply(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run_cli(
        "chat",
        "Hello there",
        "--model",
        "m1",
        env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: Hello there\n"
    assert server.requests[0].body["model"] == "m1"


def test_chat_without_a_key_says_what_to_set(tmp_path: Path) -> None:
    result = run_cli("chat", "Hello", cwd=tmp_path)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert result.stdout == ""


def test_chat_reports_a_failed_call(server: FakeOpenAIServer, tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nMAX_ATTEMPTS=2\nWAITING_TIME=0\n")
    server.fail_always(Fault.status(503))
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 1
    assert "2 attempts" in result.stderr
    assert len(server.requests) == 2


def test_chat_reports_a_bad_config_value(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nTOP_P=abc\n")
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "TOP_P" in result.stderr and "'abc'" in result.stderr and "config.ini" in result.stderr


def test_chat_with_azure(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run_cli(
        "chat",
        "Hi",
        "--api-type",
        "azure",
        "--model",
        "dep",
        env={"AZURE_OPENAI_ENDPOINT": server.url, "AZURE_OPENAI_KEY": "k"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert server.requests[0].path == "/openai/deployments/dep/chat/completions"


def test_tokens_counts_offline(tmp_path: Path) -> None:
    require_encodings()
    result = run_cli("tokens", "--model", "gpt-4o", "hello world", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 tokens (o200k_base, model gpt-4o)\n"
    legacy = run_cli("tokens", "--model", "gpt-4", "hello world", cwd=tmp_path)
    assert "cl100k_base" in legacy.stdout


# --- the command itself ------------------------------------------------------------------


def setup_cfg_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser["metadata"]["version"]


def test_console_script_is_installed_and_is_the_same_command(server: FakeOpenAIServer, tmp_path: Path) -> None:
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} is missing: reinstall with `pip install -e .` (make setup does)"
    version = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout) == (0, f"openai-utils {setup_cfg_version()}\n")
    chat = subprocess.run(
        [str(CONSOLE_SCRIPT), "chat", "Hi from the script"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(openai_env(server)),
        cwd=tmp_path,
    )
    assert (chat.returncode, chat.stdout) == (0, "echo: Hi from the script\n"), chat.stderr


def test_version_of_python_m_is_the_package_version(tmp_path: Path) -> None:
    import openai_utils

    result = run_cli("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"openai-utils {setup_cfg_version()}\n")
    assert openai_utils.__version__ == setup_cfg_version()


@pytest.mark.parametrize(
    ("args", "shown"),
    [((), ["chat", "embed", "call", "tokens", "cache", "local"]), (("cache",), ["stats", "export", "compact"])],
)
def test_a_bare_command_prints_its_help_on_stderr_with_status_2(
    args: tuple[str, ...], shown: list[str], tmp_path: Path
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"usage: openai-utils {' '.join(args)}".rstrip() + " [-h]")
    for command in shown:
        assert f"\n    {command} " in result.stderr


# --- chat in a real process: pipes, terminals, exit codes --------------------------------


@pytest.mark.parametrize("args", [(), ("-",)])
def test_chat_reads_the_message_from_a_pipe(args: tuple[str, ...], server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run_cli("chat", *args, input="Hello from a pipe\n", env=openai_env(server), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "echo: Hello from a pipe\n"), result.stderr
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "Hello from a pipe"}]
    assert "stream" not in server.requests[0].body


def test_chat_with_nothing_to_read_is_a_usage_error(server: FakeOpenAIServer, tmp_path: Path) -> None:
    status, _, stderr = run_on_terminal("chat", env=openai_env(server), cwd=tmp_path, stdin_terminal=True)
    assert status == 2
    assert "no message" in one_line(stderr)
    empty = run_cli("chat", input="", env=openai_env(server), cwd=tmp_path)
    assert empty.returncode == 2 and "empty" in one_line(empty.stderr)
    assert server.requests == []


def test_chat_streams_to_a_terminal(server: FakeOpenAIServer, tmp_path: Path) -> None:
    status, shown, stderr = run_on_terminal("chat", "Stream this to me", env=openai_env(server), cwd=tmp_path)
    assert (status, shown) == (0, "echo: Stream this to me\n"), stderr
    assert server.requests[0].body["stream"] is True
    plain = run_on_terminal("chat", "--no-stream", "Not this one", env=openai_env(server), cwd=tmp_path)
    assert plain[:2] == (0, "echo: Not this one\n"), plain[2]
    assert "stream" not in server.requests[1].body


def test_a_refused_call_exits_1_with_one_line(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.fail_always(Fault.status(401))
    result = run_cli("chat", "Hello", env=openai_env(server), cwd=tmp_path)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("error: AuthenticationError: ")
    assert result.stdout == ""


# --- in process: main() against the loopback server through the `oai` client ----------


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run main(ARGS) in this process; `stdin` becomes standard input (a pipe, not a terminal).
    Returns (status, stdout, stderr), the status of a usage error included."""

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's usage errors and --help
            status = int(exc.code or 0)
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_chat_sends_the_system_message_and_sampling_options(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    status, out, err = cli(
        "chat",
        "Hello",
        "--system",
        "Be brief.",
        "--model",
        "m2",
        "--temperature",
        "0.5",
        "--max-tokens",
        "7",
        "--top-p",
        "0.9",
        "--seed",
        "42",
    )
    assert (status, out) == (0, "echo: Hello\n"), err
    body = server.requests[0].body
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"], body["seed"]) == (
        "m2",
        0.5,
        7,
        0.9,
        42,
    )
    assert "stream" not in body  # standard output is not a terminal


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--temperature", "3", "from 0 to 2"),
        ("--temperature", "warm", "from 0 to 2"),
        ("--max-tokens", "0", "from 1 to 1000000"),
        ("--max-tokens", "1.5", "whole number"),
        ("--top-p", "1.5", "from 0 to 1"),
        ("--seed", "x", "whole number"),
        ("--model", "", "non-empty"),
    ],
)
def test_bad_option_values_are_usage_errors(
    option: str, value: str, said: str, cli: Any, oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    status, out, err = cli("chat", "Hello", option, value)
    assert status == 2
    line = one_line(err)
    assert line.startswith(f"error: argument {option}: ") and said in line and repr(value) in line
    assert out == "" and server.requests == []


def test_stream_on_a_pipe_streams(cli: Any, oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    assert cli("chat", "--stream", "Hello there")[:2] == (0, "echo: Hello there\n")
    assert server.requests[0].body["stream"] is True


def test_chat_json_prints_the_whole_reply(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS = True\n")
    replies = []
    for _ in range(2):
        status, out, err = cli("chat", "--json", "--model", "m1", "Hello")
        assert status == 0, err
        replies.append(json.loads(out))
    first, second = replies
    assert first["role"] == "assistant" and first["content"] == "echo: Hello"
    assert (first["finish_reason"], first["truncated"], first["model"], first["cached"]) == ("stop", False, "m1", False)
    assert first["usage"]["completion_tokens"] == 2
    assert second == {**first, "cached": True}
    assert len(server.requests) == 1


def test_json_and_stream_together_are_a_usage_error(cli: Any, oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    status, _, err = cli("chat", "--json", "--stream", "Hello")
    assert status == 2 and "--json" in one_line(err)
    assert server.requests == []


def test_a_cut_off_answer_is_printed_with_one_warning(cli: Any, oai: OpenAIClient) -> None:
    status, out, err = cli("chat", "--max-tokens", "2", "one two three four")
    assert (status, out) == (0, "echo: one\n")
    assert one_line(err).startswith("warning: the answer from ") and "cut off" in err


def test_a_call_whose_attempts_run_out_says_so_once(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    default.force("max_attempts", 2)
    server.fail_always(Fault.status(503))
    status, out, err = cli("embed", "Hello")
    assert (status, out) == (1, "")
    line = one_line(err)
    assert line.startswith("error: embedding call to ") and "2 attempts" in line
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_an_unknown_api_type_is_a_usage_error(cli: Any, oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    status, _, err = cli("chat", "--api-type", "nope", "Hello")
    assert status == 2 and "'nope'" in one_line(err) and "openai" in err
    assert server.requests == []


# --- embed -------------------------------------------------------------------------------


def test_embed_prints_one_vector_per_line_in_order(cli: Any, oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    status, out, err = cli("embed", "first text", "second text")
    assert status == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        embedding_vector("first text"),
        embedding_vector("second text"),
    ]
    assert len(server.requests) == 1


def test_embed_reads_one_text_or_lines_from_a_pipe(cli: Any, oai: OpenAIClient) -> None:
    _, whole, _ = cli("embed", stdin="line one\nline two\n")
    assert [json.loads(line) for line in whole.splitlines()] == [embedding_vector("line one\nline two")]
    _, lines, _ = cli("embed", "--lines", stdin="line one\n\nline two\n")
    assert [json.loads(line) for line in lines.splitlines()] == [
        embedding_vector("line one"),
        embedding_vector("line two"),
    ]
    status, _, err = cli("embed", "--lines", "a text", stdin="x\n")
    assert status == 2 and "--lines" in one_line(err)


# --- call --------------------------------------------------------------------------------


def test_call_renders_the_template_pair_with_every_kind_of_variable(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path, tmp_path: Path
) -> None:
    (tmp_path / "who.txt").write_text("Ada Lovelace")
    (prompts / "greet.system.mustache").write_text("You greet {{{who}}}.{{#langs}} Also in {{.}}.{{/langs}}")
    status, out, err = cli(
        "call", "greet", "who=@who.txt", "lang=French", 'langs:=["Latin", "Greek"]', "--temperature", "0"
    )
    assert (status, out) == (0, "echo: Say hello to Ada Lovelace in French.\n"), err
    body = server.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": "You greet Ada Lovelace. Also in Latin. Also in Greek."}
    assert body["temperature"] == 0


def test_call_reads_a_variable_from_standard_input(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    status, out, _ = cli("call", "greet", "who=@-", "lang=Welsh", stdin="Grace\n")
    assert (status, out) == (0, "echo: Say hello to Grace in Welsh.\n")


def test_call_with_a_system_template_alone_and_json(
    cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    (prompts / "solo.system.mustache").write_text("Count to {{n}}.")
    status, out, err = cli("call", "solo", "n:=3", "--json")
    assert status == 0, err
    assert json.loads(out)["finish_reason"] == "stop"
    assert server.requests[0].body["messages"] == [{"role": "system", "content": "Count to 3."}]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("greet", "who=Ada"), "lang"),  # a variable the template needs
        (("nowhere", "who=Ada"), "searched"),  # no such template
        (("greet", "who"), "KEY=VALUE"),
        (("greet", "who=Ada", "lang:=French"), "not JSON"),
        (("greet", "who=Ada", "who=Bob", "lang=en"), "twice"),
        (("greet", "who=@missing.txt", "lang=en"), "missing.txt"),
        (("greet", "who=Ada", "lang=en", "--temperature", "-1"), "from 0 to 2"),
    ],
)
def test_call_usage_errors(
    args: tuple[str, ...], said: str, cli: Any, oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    status, _, err = cli("call", *args)
    assert status == 2
    assert said in one_line(err)
    assert server.requests == []


# --- cache export ------------------------------------------------------------------------


def test_cache_export_never_overwrites_without_force(cli: Any, oai: OpenAIClient, tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS = True\nCACHE_FILE_NAME = answers.pickle\n")
    assert cli("chat", "Hello")[0] == 0
    out = tmp_path / "out.jsonl"
    out.write_text("my notes\n")

    status, _, err = cli("cache", "export", "answers.pickle", "out.jsonl")
    assert status == 2 and "--force" in one_line(err)
    assert out.read_text() == "my notes\n"

    status, _, err = cli("cache", "export", "answers.pickle", "out.jsonl", "--force")
    assert status == 0, err
    assert "echo: Hello" in out.read_text() and "my notes" not in out.read_text()


# --- tokens ------------------------------------------------------------------------------


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("pinned", [True, False])
def test_tokens_without_the_encoding_file_says_what_is_missing(pinned: bool, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env: dict[str, str | None] = {"DATA_GYM_CACHE_DIR": None}
    if pinned:  # the documented setup without network, pointing at a folder that lacks the file
        env["TIKTOKEN_CACHE_DIR"] = str(empty)
    else:  # tiktoken's own default folder, empty, and a download that fails at once on loopback
        proxy = f"http://127.0.0.1:{closed_loopback_port()}"
        env.update(TIKTOKEN_CACHE_DIR=None, TMPDIR=str(empty), HTTPS_PROXY=proxy, https_proxy=proxy)
    result = run_cli("tokens", "--model", "gpt-4o", "hello world", env=env, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "o200k_base" in line and "TIKTOKEN_CACHE_DIR" in line and "network" in line
    assert (str(empty) in line) is pinned
    assert result.stdout == ""


def test_tokens_help_does_not_promise_offline(cli: Any) -> None:
    status, out, _ = cli("tokens", "--help")
    assert status == 0
    assert "offline" not in out and "TIKTOKEN_CACHE_DIR" in out


needs_encodings = pytest.mark.skipif(
    not Path(os.environ.get("TIKTOKEN_CACHE_DIR") or "/nonexistent").is_dir(),
    reason="needs tiktoken's encoding files: set TIKTOKEN_CACHE_DIR to a folder holding them",
)


@needs_encodings
def test_tokens_says_which_encoding_it_assumed_for_an_unknown_model(cli: Any) -> None:
    tokens._reset_encoding_cache()  # a failed load another test left behind must not decide this one
    assert cli("tokens", "--model", "llama3", stdin="hello world\n") == (
        0,
        "2 tokens (o200k_base, model llama3)\n",
        "note: 'llama3' is not a model whose encoding is known; assumed o200k_base\n",
    )
    assert cli("tokens", "--model", "gpt-4", "hello world") == (0, "2 tokens (cl100k_base, model gpt-4)\n", "")


# --- the documentation is the parser's own help ------------------------------------------


def test_docs_show_every_commands_current_help() -> None:
    from scripts import cli_docs

    problems = cli_docs.check()
    assert not problems, "\n".join(problems) + "\nrun `python scripts/cli_docs.py` to regenerate docs/cli.md"


# -- cache commands ---------------------------------------------------------------------------


def folder_listing(folder: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """What a folder holds, as lstat sees it, with the bytes of regular files."""
    import stat

    seen = {}
    for entry in sorted(folder.iterdir()):
        info = entry.lstat()
        seen[entry.name] = (
            info.st_mode,
            info.st_ino,
            info.st_size,
            entry.read_bytes() if stat.S_ISREG(info.st_mode) else None,
        )
    return seen


def fill_cache(server: FakeOpenAIServer, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three real answers in a cache file: two chats (one with a system message) and an embedding."""
    from openai_utils import OpenAIClient, default

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    default.force("base_url", server.base_url)
    client = OpenAIClient(cache_api_calls=True, cache_file_name=str(path))
    client.send_message(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}], temperature=0.3
    )
    client.send_message([{"role": "user", "content": "Largest planet?"}])
    client.get_embedding("a sentence to embed")


def damaged_cache() -> bytes:
    import pickle
    import struct
    import zlib

    from openai_utils.cache import HEADER

    def raw(key: str, value: object) -> bytes:
        payload = struct.pack(">H", len(key)) + key.encode() + pickle.dumps(value)
        return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload

    bad = bytearray(raw("bad", 2))
    bad[-2] ^= 0xFF
    return HEADER + raw("good", 1) + bytes(bad) + raw("after", 3)


def legacy_completion(content: str) -> object:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    )


def legacy_params(prompt: str) -> dict[str, object]:
    """The parameters the replaced module put in its key, as it built them."""
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.7,
        "max_tokens": 100,
        "top_p": 0,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "stop": [],
        "timeout": 60,
        "stream": False,
        "n": 1,
    }


def write_legacy_cache(path: Path) -> None:
    import pickle

    legacy = {
        str(("gpt-4o-mini", legacy_params("Capital of Italy?"))): legacy_completion("Rome."),
        str(("gpt-4o-mini", legacy_params("Capital of Spain?"))): legacy_completion("Madrid."),
        "a key of another shape": {"not": "a completion"},
    }
    path.write_bytes(pickle.dumps(legacy))


@pytest.mark.parametrize(
    "kind", ["text", "legacy-pickle", "damaged", "newer-version", "fifo", "link-to-text", "directory"]
)
def test_cache_stats_reports_a_file_that_is_not_a_whole_cache_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.pickle"
    if kind == "text":
        path.write_text("my notes\n")
    elif kind == "legacy-pickle":
        write_legacy_cache(path)
    elif kind == "damaged":
        path.write_bytes(damaged_cache())
    elif kind == "newer-version":
        path.write_bytes(b"openai_utils-cache v9\n" + os.urandom(64))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-text":
        (tmp_path / "notes.txt").write_text("my notes\n")
        path.symlink_to(tmp_path / "notes.txt")
    else:
        path.mkdir()
    before = folder_listing(tmp_path)
    result = run_cli("cache", "stats", str(path), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert str(path) in result.stderr
    assert folder_listing(tmp_path) == before
    if kind == "legacy-pickle":
        assert "import-legacy" in result.stderr
    if kind == "damaged":
        assert json.loads(result.stdout)["entries"] == 1  # what is whole is still shown
        assert "byte" in result.stderr


def test_cache_inspection_pairs_prompts_with_answers_and_writes_nothing(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "c.pickle"
    path.parent.mkdir()
    fill_cache(server, path, monkeypatch)
    Path(f"{path}.lock").unlink()
    before = folder_listing(path.parent)

    stats = run_cli("cache", "stats", str(path), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["entries"] == 3 and json.loads(stats.stdout)["requests_recorded"] == 3

    found = run_cli("cache", "search", str(path), "france", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "Capital of France?" in found.stdout and "echo: Capital of France?" in found.stdout
    assert "Be terse." in found.stdout and "temperature" in found.stdout
    assert "Largest planet" not in found.stdout
    assert "1 of 3 entries" in found.stderr

    shown = run_cli("cache", "show", str(path), "2", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Largest planet?" in shown.stdout and "echo: Largest planet?" in shown.stdout
    exported = run_cli("cache", "export", str(path), cwd=tmp_path)  # to stdout
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["request"].get("messages", line["request"].get("input")) for line in lines] == [
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}],
        [{"role": "user", "content": "Largest planet?"}],
        "a sentence to embed",
    ]
    by_key = run_cli("cache", "show", str(path), lines[2]["key"][:10], cwd=tmp_path)
    assert by_key.returncode == 0 and "a sentence to embed" in by_key.stdout and "1 vector" in by_key.stdout
    missing = run_cli("cache", "show", str(path), "99", cwd=tmp_path)
    assert missing.returncode == 1 and "no entry" in missing.stderr
    assert folder_listing(path.parent) == before  # no lock file, no rename, nothing written


def test_cache_compact_refuses_a_link_and_compacts_the_file_itself(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pickle"
    fill_cache(server, path, monkeypatch)
    link = tmp_path / "link.pickle"
    link.symlink_to(path)
    before = folder_listing(tmp_path)
    refused = run_cli("cache", "compact", str(link), cwd=tmp_path)
    assert refused.returncode == 1 and f"cache compact {path}" in refused.stderr
    assert folder_listing(tmp_path) == before
    done = run_cli("cache", "compact", str(path), cwd=tmp_path)
    assert done.returncode == 0 and "3 entries" in done.stdout


def test_cache_export_from_the_shell_never_overwrites_without_force(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pickle"
    fill_cache(server, path, monkeypatch)
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    refused = run_cli("cache", "export", str(path), str(out), cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert out.read_text() == "keep me\n"
    forced = run_cli("cache", "export", str(path), str(out), "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "3 entries" in forced.stdout
    assert len(out.read_text().splitlines()) == 3
    new = tmp_path / "new.jsonl"
    assert run_cli("cache", "export", str(path), str(new), cwd=tmp_path).returncode == 0
    assert new.stat().st_mode & 0o077 == 0  # it holds every prompt and answer


def test_an_older_file_without_requests_still_shows_its_answers(tmp_path: Path) -> None:
    import pickle
    import struct
    import zlib

    from openai_utils.cache import HEADER

    value = {
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": "old answer"}, "finish_reason": "stop"}],
        "usage": None,
    }
    payload = struct.pack(">H", 3) + b"abc" + pickle.dumps(value, protocol=4)
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER + struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    shown = run_cli("cache", "show", str(path), "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "old answer" in shown.stdout and "not recorded" in shown.stdout


def test_import_legacy_needs_trust(tmp_path: Path) -> None:
    legacy = tmp_path / "old.pickle"
    marker = tmp_path / "code-ran"
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    legacy.write_bytes(pickle.dumps({"k": Boom()}))
    refused = run_cli("cache", "import-legacy", str(legacy), "--into", str(tmp_path / "new.pickle"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "--trust" in refused.stderr and "runs code" in refused.stderr
    assert not marker.exists() and not (tmp_path / "new.pickle").exists()


def test_import_legacy_converts_answers_for_reading(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = tmp_path / "openai_api_cache.pickle"
    write_legacy_cache(legacy)
    original = legacy.read_bytes()
    same_place = run_cli(
        "cache", "import-legacy", str(legacy), "--trust", cwd=tmp_path
    )  # --into defaults to CACHE_FILE_NAME
    assert same_place.returncode == 2 and "--into" in same_place.stderr
    into = tmp_path / "new.pickle"
    result = run_cli("cache", "import-legacy", str(legacy), "--into", str(into), "--trust", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported 2 entries" in result.stdout and "skipped 1" in result.stdout
    assert legacy.read_bytes() == original  # the old file is only read
    found = run_cli("cache", "search", str(into), "italy", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "Capital of Italy?" in found.stdout and "Rome." in found.stdout and "Madrid" not in found.stdout
    # Kept for reading, not as answers: the same question is asked again.
    from openai_utils import OpenAIClient, default

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    default.force("base_url", server.base_url)
    client = OpenAIClient(cache_api_calls=True, cache_file_name=str(into))
    client.send_message([{"role": "user", "content": "Capital of Italy?"}])
    assert len(server.requests) == 1


def test_a_legacy_file_at_the_cache_path_is_set_aside_with_the_command_that_reads_it(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    write_legacy_cache(tmp_path / "openai_api_cache.pickle")
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS=True\n")
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("openai_api_cache.pickle.unreadable-")]
    assert f"cache import-legacy {aside}" in result.stderr and "--trust" in result.stderr
