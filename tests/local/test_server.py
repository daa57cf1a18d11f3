"""LocalServer and the shared servers: one per kind, restarted on a settings change, started
idempotently, stopped with the process; what a missing engine or a bad model file is told.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from openai_utils import ConfigError, InvalidRequestError, force_default_value
from openai_utils.local import LocalClient, specs
from openai_utils.local import server as server_module
from openai_utils.local.server import LocalServer, chat_server, embedding_server
from tests.local.helpers import HELLO, ROOT, hide, says_how_to_install

# -- the shared servers -----------------------------------------------------------------------


def test_concurrent_calls_share_one_server(llm: LocalClient) -> None:
    server = chat_server()
    replies: list[Any] = [None] * 3

    def ask(index: int) -> None:
        replies[index] = llm.send_message([{"role": "user", "content": f"Say {index}."}], temperature=0, max_tokens=6)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, dict) and r["content"] for r in replies), replies
    assert chat_server() is server


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_parent_and_child_after_a_fork_each_get_their_own_answers(llm: LocalClient) -> None:
    """A forked child talks to the parent's server over its own connection: at temperature 0
    each prompt has one answer, and each process must get the answers to its own prompts."""
    from tests.test_forksafe import in_child

    def ask(prompts: list[str]) -> list[Any]:
        return [
            llm.send_message([{"role": "user", "content": p}], temperature=0, max_tokens=6)["content"] for p in prompts
        ]

    prompts = [f"Say {word}." for word in ("red", "blue", "green", "seven", "cat", "sun")]
    expected = ask(prompts)  # the parent now holds a pooled connection
    assert len(set(expected)) > 1
    for _ in range(2):
        _, collect = in_child(lambda: ask(prompts[3:]))
        assert ask(prompts[:3]) == expected[:3]
        assert collect() == expected[3:]


def test_a_config_change_restarts_only_the_chat_server(llm: LocalClient) -> None:
    before = chat_server()
    embedder = embedding_server()
    force_default_value("local_context_size", 512)
    with pytest.raises(InvalidRequestError, match="context of 512 tokens"):
        llm.send_message([{"role": "user", "content": "word " * 600}], max_tokens=4)
    after = chat_server()
    assert after is not before and not before.running
    assert after.spec.context_size == 512
    assert embedding_server() is embedder and embedder.running


# -- start, stop, exit ------------------------------------------------------------------------


def test_start_is_idempotent_and_stop_closes_the_port(engine: None) -> None:
    server = LocalServer(specs.chat_spec())
    try:
        url = server.start()
        assert server.start() == url
        port = server.port
        assert server.metrics() != {}
    finally:
        server.stop()
    server.stop()  # twice is fine
    assert not server.running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_server_starts_with_the_thread_count_decided_from_the_machine(
    engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xllamacpp

    monkeypatch.setattr(server_module, "available_cores", lambda: 3)
    monkeypatch.setattr(server_module, "machine_busy", lambda: 0.0)
    server = LocalServer(specs.chat_spec())
    params = server._params(xllamacpp)
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == server.threads == 2
    assert server.threads == specs.decide_threads(0, 3, 0.0)
    assert params.cpuparams.poll == params.cpuparams_batch.poll == 0  # waiting threads sleep

    monkeypatch.setattr(server_module, "machine_busy", lambda: 0.9)  # other processes keep the cores busy
    params = server._params(xllamacpp)
    assert params.cpuparams.n_threads == server.threads == 1 and params.cpuparams.poll == 50  # llama.cpp's own

    monkeypatch.setattr(server_module, "machine_busy", lambda: 0.0)
    force_default_value("local_threads", 1)
    params = LocalServer(specs.chat_spec())._params(xllamacpp)
    assert params.cpuparams.n_threads == 1 and params.cpuparams.poll == 50


def test_the_server_stops_when_the_process_exits(engine: None, model_cache: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from openai_utils.local import LocalClient
        from openai_utils.local.server import chat_server
        reply = LocalClient(cache_api_calls=False).send_message(
            [{"role": "user", "content": "Hi"}], temperature=0, max_tokens=4)
        assert reply["content"], reply
        print(chat_server().port, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(  # the timeout catches an exit that hangs on the server
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    port = int(done.stdout.split()[-1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "Traceback" not in done.stderr


def test_a_file_that_is_not_gguf_is_a_config_error(engine: None, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all")
    force_default_value("local_chat_model", str(fake))
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        LocalClient(cache_api_calls=False).send_message(HELLO, max_tokens=2)
    force_default_value("local_chat_model", str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="LOCAL_CHAT_MODEL"):
        LocalClient(cache_api_calls=False).send_message(HELLO, max_tokens=2)


def test_a_missing_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hide(monkeypatch, "xllamacpp")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    server = LocalServer(specs.ServerSpec(model_path=str(model), alias="m"))
    with pytest.raises(ConfigError) as caught:
        server.start()
    says_how_to_install(str(caught.value))
