"""The registry and the notebook switches: which client `client()` returns, and the shared cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openai_utils import (
    AzureClient,
    ConfigError,
    OpenAIClient,
    _get_client_for_api_type,
    client,
    default,
    force_api_cache,
    force_api_type,
    register_client,
)
from openai_utils.cache import open_cache
from tests.fake_server import FakeOpenAIServer

HI = [{"role": "user", "content": "Hi"}]
ROOT = Path(__file__).resolve().parents[1]


def test_openai_and_azure_are_registered_at_import() -> None:
    assert type(_get_client_for_api_type("openai")) is OpenAIClient
    assert type(_get_client_for_api_type("azure")) is AzureClient


def test_client_follows_api_type_from_config(tmp_path: Path) -> None:
    assert client() is _get_client_for_api_type("openai")
    (tmp_path / "config.ini").write_text("[OpenAI]\nAPI_TYPE=azure\n")
    default.reload()
    assert client() is _get_client_for_api_type("azure")


def test_force_api_type_overrides_config_and_none_resets() -> None:
    force_api_type("azure")
    assert client() is _get_client_for_api_type("azure")
    force_api_type(None)
    assert client() is _get_client_for_api_type("openai")


def test_unknown_api_types_list_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registered: openai, azure"):
        _get_client_for_api_type("nope")
    with pytest.raises(ValueError, match="openai, azure"):
        force_api_type("nope")
    (tmp_path / "config.ini").write_text("[OpenAI]\nAPI_TYPE=nope\n")
    default.reload()
    with pytest.raises(ConfigError, match=r"API_TYPE = 'nope' \(from .*config.ini\).*registered: openai, azure"):
        client()


def test_register_client_replaces_and_adds() -> None:
    custom = OpenAIClient()
    register_client("custom", custom)
    force_api_type("custom")
    assert client() is custom
    with pytest.raises(ValueError):
        register_client("", custom)


def test_building_a_client_opens_no_file_and_no_connection(tmp_path: Path) -> None:
    OpenAIClient(cache_api_calls=True, cache_file_name=str(tmp_path / "c.pickle"))
    AzureClient()
    assert list(tmp_path.iterdir()) == []


def test_force_api_cache_applies_to_every_client_including_later_ones(tmp_path: Path) -> None:
    target = str(tmp_path / "shared.pickle")
    force_api_cache(True, target)
    later = OpenAIClient()
    register_client("later", later)
    for name in ("openai", "azure", "later"):
        registered = _get_client_for_api_type(name)
        assert (registered.cache_api_calls, registered.cache_file_name) == (True, target)
    force_api_cache(None)
    assert _get_client_for_api_type("openai").cache_api_calls is None


def test_two_clients_on_one_file_share_one_cache_and_keep_both_entries(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "k")
    default.force("base_url", server.base_url)
    target = tmp_path / "shared.pickle"
    force_api_cache(True, str(target))
    _get_client_for_api_type("openai").send_message(HI)
    _get_client_for_api_type("azure").send_message(HI, model="dep")
    assert len(open_cache(target)) == 2
    # A fresh cache object reading the same file (as a new process would) finds both.
    from openai_utils.cache import ResponseCache

    assert len(ResponseCache(target.resolve())) == 2


def test_the_local_client_is_made_on_first_use_with_the_forced_cache(tmp_path: Path) -> None:
    code = (
        "import sys, openai_utils; print(sorted({'openai_utils.local', 'configparser', 'difflib'} & set(sys.modules)))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "[]"  # `import openai_utils` leaves the local package for later

    force_api_cache(True, str(tmp_path / "c.pickle"))
    made = _get_client_for_api_type("local")
    assert type(made).__name__ == "LocalClient" and made is _get_client_for_api_type("local")
    assert made.cache_api_calls is True and made.cache_file_name == str(tmp_path / "c.pickle")
    mine = OpenAIClient()
    register_client("local", mine)
    assert _get_client_for_api_type("local") is mine
