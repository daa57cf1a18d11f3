"""Tests for openai_utils.config: the settings table, layering, validation, forcing, laziness."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from openai_utils import ConfigError, force_default_value
from openai_utils.config import CONFIG_ENV_VAR, SETTINGS, Defaults, default
from openai_utils.pricing import Price

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run every test in an empty tmp dir, with no config file named and nothing forced."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    default.reset()
    yield tmp_path
    default.reset()


def write_ini(path: Path, body: str, section: str = "OpenAI") -> Path:
    path.write_text(f"[{section}]\n{body}\n", encoding="utf-8")
    return path


def unset_env_later(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make sure `name` is absent now and absent again after the test (dotenv may set it)."""
    monkeypatch.setenv(name, "placeholder")
    monkeypatch.delenv(name)


# --- the table and the built-in layer ---------------------------------------------------------


def test_default_is_a_mapping_of_every_setting() -> None:
    assert isinstance(default, Mapping)
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)), "two settings share a name"
    assert sorted(default) == sorted(names)
    assert len(default) == len(SETTINGS)


def test_without_files_every_value_is_the_builtin_default() -> None:
    assert dict(default) == {s.name: s.default for s in SETTINGS}
    assert default["model"] == "gpt-4o-mini"
    assert default["max_attempts"] == 5
    assert default["top_p"] is None
    assert default.source("model") == "built-in default"


def test_freq_penalty_key_is_named_frequency_penalty(tmp_path: Path) -> None:
    write_ini(tmp_path / "config.ini", "FREQ_PENALTY = 0.5")
    assert default["frequency_penalty"] == 0.5


def test_file_values_get_the_setting_type(tmp_path: Path) -> None:
    write_ini(
        tmp_path / "config.ini",
        "MAX_TOKENS = 100\nTEMPERATURE = 0.7\nCACHE_API_CALLS = yes\nRAISE_ON_FAILURE = False\nMODEL =  spaced  ",
    )
    assert default["max_tokens"] == 100 and isinstance(default["max_tokens"], int)
    assert default["temperature"] == 0.7 and isinstance(default["temperature"], float)
    assert default["cache_api_calls"] is True
    assert default["raise_on_failure"] is False
    assert default["model"] == "spaced"


# --- layering -----------------------------------------------------------------------------------


def test_cwd_config_ini_overrides_builtin_defaults(tmp_path: Path) -> None:
    write_ini(tmp_path / "config.ini", "MODEL = from-cwd")
    assert default["model"] == "from-cwd"
    assert default.source("model") == str(Path.cwd() / "config.ini")
    # keys the file does not mention keep their built-in default
    assert default["max_attempts"] == 5
    assert default.source("max_attempts") == "built-in default"


def test_env_var_file_overrides_cwd_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "config.ini", "MODEL = from-cwd\nTEMPERATURE = 0.3")
    named = write_ini(tmp_path / "elsewhere.ini", "MODEL = from-env-file\nMAX_ATTEMPTS = 7")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(named))

    assert default["model"] == "from-env-file"
    assert default["temperature"] == 0.3  # only in the cwd file: still used
    assert default["max_attempts"] == 7
    assert default.source("model") == str(named)
    assert default.source("temperature") == str(Path.cwd() / "config.ini")


def test_forced_value_wins_over_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "config.ini", "MODEL = from-cwd")
    named = write_ini(tmp_path / "elsewhere.ini", "MODEL = from-env-file")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(named))

    force_default_value("model", "forced")
    assert default["model"] == "forced"
    assert default.source("model") == "force_default_value"

    default.reset()
    assert default["model"] == "from-env-file"
    assert default.source("model") == str(named)


def test_empty_optional_value_means_none_and_overrides_an_earlier_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ini(tmp_path / "config.ini", "MAX_TOKENS = 50\nTEMPERATURE = 0.5")
    named = write_ini(tmp_path / "elsewhere.ini", "MAX_TOKENS =\nTEMPERATURE = ")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(named))
    assert default["max_tokens"] is None
    assert default["temperature"] is None
    assert default.source("max_tokens") == str(named)


def test_empty_value_for_a_required_key_is_a_config_error(tmp_path: Path) -> None:
    path = write_ini(tmp_path / "config.ini", "MODEL =")
    with pytest.raises(ConfigError) as info:
        default["model"]
    assert str(path) in str(info.value)
    assert "MODEL" in str(info.value)


def test_file_without_openai_section_is_ignored(tmp_path: Path) -> None:
    write_ini(tmp_path / "config.ini", "MODEL = not-used\nTOP_P = abc", section="Logging")
    assert dict(default) == {s.name: s.default for s in SETTINGS}


def test_unreadable_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_text("MODEL = no section header\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        default["model"]
    assert str(path) in str(info.value)


# --- laziness -----------------------------------------------------------------------------------


def test_files_are_read_on_first_access_not_when_created(tmp_path: Path) -> None:
    fresh = Defaults()
    # the file appears after the mapping was made: it is still what the first access sees
    write_ini(tmp_path / "config.ini", "MODEL = written-later")
    assert fresh["model"] == "written-later"


def test_invalid_file_raises_only_on_access(tmp_path: Path) -> None:
    write_ini(tmp_path / "config.ini", "TOP_P = abc")
    fresh = Defaults()
    default.reset()  # neither creating nor resetting reads the file
    with pytest.raises(ConfigError):
        default["top_p"]
    with pytest.raises(ConfigError):
        fresh["top_p"]


def test_reset_and_reload_read_the_files_again(tmp_path: Path) -> None:
    path = write_ini(tmp_path / "config.ini", "MODEL = first")
    assert default["model"] == "first"
    write_ini(path, "MODEL = second")
    default.reload()
    assert default["model"] == "second"
    write_ini(path, "MODEL = third")
    default.reset()
    assert default["model"] == "third"


def test_dotenv_fills_missing_variables_without_overriding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unset_env_later(monkeypatch, "OU_TEST_FROM_DOTENV")
    monkeypatch.setenv("OU_TEST_PRESET", "already-set")
    (tmp_path / ".env").write_text("OU_TEST_FROM_DOTENV=from-dotenv\nOU_TEST_PRESET=from-dotenv\n", encoding="utf-8")
    assert "OU_TEST_FROM_DOTENV" not in os.environ
    default["model"]  # loading the config loads .env
    assert os.environ["OU_TEST_FROM_DOTENV"] == "from-dotenv"
    assert os.environ["OU_TEST_PRESET"] == "already-set"


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "name", "allowed"),
    [
        ("TOP_P", "abc", "top_p", "a number from 0 to 1"),
        ("MAX_ATTEMPTS", "0", "max_attempts", "a whole number from 1 to 1000"),
        ("TEMPERATURE", "5", "temperature", "a number from 0 to 2"),
        ("CACHE_API_CALLS", "maybe", "cache_api_calls", "true or false"),
        ("MAX_ATTEMPTS", "2.5", "max_attempts", "a whole number from 1 to 1000"),
    ],
)
def test_bad_value_is_config_error_naming_file_key_value_and_rule(
    tmp_path: Path, key: str, value: str, name: str, allowed: str
) -> None:
    path = write_ini(tmp_path / "config.ini", f"{key} = {value}")
    with pytest.raises(ConfigError) as info:
        default[name]
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert str(path) in message
    assert key in message
    assert repr(value) in message
    assert allowed in message


def test_bad_value_in_named_file_names_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "config.ini", "MODEL = fine")
    named = write_ini(tmp_path / "other.ini", "TEMPERATURE = hot")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(named))
    with pytest.raises(ConfigError) as info:
        default["temperature"]
    assert str(named) in str(info.value)
    assert str(tmp_path / "config.ini") not in str(info.value)


@pytest.mark.parametrize(("key", "value", "name"), [("TOP_P", "nan", "top_p"), ("TIMEOUT", "inf", "timeout")])
def test_non_finite_numbers_are_rejected(tmp_path: Path, key: str, value: str, name: str) -> None:
    # float('nan') fails every range comparison, so a plain min/max check would let it through
    path = write_ini(tmp_path / "config.ini", f"{key} = {value}")
    with pytest.raises(ConfigError) as info:
        default[name]
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_force_nan_is_rejected() -> None:
    with pytest.raises(ConfigError):
        force_default_value("temperature", float("nan"))
    assert default["temperature"] is None


def test_unknown_key_warns_with_suggestion_and_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_ini(tmp_path / "config.ini", "MODLE = typo\nMAX_TOKENS = 10")
    caplog.set_level(logging.WARNING, logger="openai_utils")
    assert default["model"] == "gpt-4o-mini"
    assert default["max_tokens"] == 10  # the rest of the file still applies
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "openai_utils"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "MODLE" in message
    assert "did you mean MODEL" in message
    assert str(path) in message
    assert "modle" not in default


def test_unknown_key_without_close_match_has_no_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_ini(tmp_path / "config.ini", "ZZZZZZ = 1")
    caplog.set_level(logging.WARNING, logger="openai_utils")
    default["model"]
    messages = [r.getMessage() for r in caplog.records if r.name == "openai_utils"]
    assert len(messages) == 1
    assert "ZZZZZZ" in messages[0]
    assert "did you mean" not in messages[0]


def test_env_var_naming_a_missing_file_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "config.ini"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    with pytest.raises(ConfigError) as info:
        default["model"]
    assert CONFIG_ENV_VAR in str(info.value)
    assert str(missing) in str(info.value)


def test_env_var_set_to_blank_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, "   ")
    assert default["model"] == "gpt-4o-mini"


# --- force_default_value ------------------------------------------------------------------------


def test_force_default_value_changes_default_at_once() -> None:
    assert default["model"] == "gpt-4o-mini"
    force_default_value("model", "x")
    assert default["model"] == "x"
    assert default.source("model") == "force_default_value"
    assert default.source("top_p") == "built-in default"


def test_force_coerces_like_a_file_value() -> None:
    force_default_value("max_attempts", "3")
    force_default_value("cache_api_calls", "on")
    force_default_value("max_tokens", "")
    assert default["max_attempts"] == 3 and isinstance(default["max_attempts"], int)
    assert default["cache_api_calls"] is True
    assert default["max_tokens"] is None


def test_force_unknown_key_is_value_error_listing_valid_keys() -> None:
    with pytest.raises(ValueError) as info:
        force_default_value("modle", "x")
    message = str(info.value)
    assert "modle" in message
    for name in ("model", "top_p", "max_attempts", "frequency_penalty"):
        assert name in message


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("temperature", 5, "from 0 to 2"),
        ("max_attempts", 0, "from 1 to 1000"),
        ("cache_api_calls", "maybe", "true or false"),
        ("max_attempts", True, "whole number"),
        ("model", "", "non-empty"),
    ],
)
def test_force_bad_value_is_config_error(name: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        force_default_value(name, value)
    assert name in str(info.value)
    assert allowed in str(info.value)
    assert default.source(name) == "built-in default"  # nothing was forced


def test_forced_values_survive_reload_but_not_reset() -> None:
    force_default_value("model", "kept")
    default.reload()
    assert default["model"] == "kept"
    default.reset()
    assert default["model"] == "gpt-4o-mini"
    assert default.source("model") == "built-in default"


def test_every_change_makes_a_new_version_and_current_follows_it(tmp_path: Path) -> None:
    seen = [default.version]
    assert default.current()["model"] == "gpt-4o-mini"
    force_default_value("model", "forced")
    seen.append(default.version)
    assert default.current()["model"] == "forced" == default["model"]
    (tmp_path / "config.ini").write_text("[OpenAI]\nTOP_P=0.5\n")
    default.reload()
    seen.append(default.version)
    assert default.current()["top_p"] == 0.5 and default.current()["model"] == "forced"
    default.reset()
    seen.append(default.version)
    assert default.current()["model"] == "gpt-4o-mini" and default.current()["top_p"] == 0.5
    assert len(set(seen)) == len(seen)
    assert default.current() is default.current()  # one dict per version, not one per read


def test_a_memo_keeps_what_was_worked_out_until_a_value_changes() -> None:
    memo = default.memo("test")
    memo["answer"] = 42
    assert default.memo("test") is memo and default.memo("test")["answer"] == 42
    assert "answer" not in default.memo("other")  # each name its own dict
    force_default_value("model", "forced")
    assert default.memo("test") == {}


def test_default_membership_and_get_follow_the_mapping_protocol() -> None:
    assert "model" in default
    assert "bogus" not in default
    assert default.get("bogus", "fallback") == "fallback"
    assert default.get("model") == "gpt-4o-mini"


def test_unknown_name_is_a_key_error_listing_valid_keys() -> None:
    with pytest.raises(KeyError) as info:
        default["modle"]
    assert "modle" in str(info.value)
    assert "model" in str(info.value) and "top_p" in str(info.value)
    with pytest.raises(KeyError):
        default.source("modle")


# --- import reads nothing# --- import reads nothing, loads nothing --------------------------------------------------------


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.pop(CONFIG_ENV_VAR, None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_import_reads_no_config_file(tmp_path: Path) -> None:
    write_ini(tmp_path / "config.ini", "TOP_P = abc")

    imported = _run_python("import openai_utils", tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == ""
    assert imported.stderr == ""

    accessed = _run_python("import openai_utils\nopenai_utils.default['top_p']", tmp_path)
    assert accessed.returncode != 0
    assert "ConfigError" in accessed.stderr
    assert "TOP_P" in accessed.stderr


def test_import_does_not_load_heavy_dependencies(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import openai_utils\n"
        "print(json.dumps(sorted(m for m in ('openai', 'tiktoken', 'chevron') if m in sys.modules)))\n"
    )
    result = _run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_import_does_not_load_dataclasses_or_inspect(tmp_path: Path) -> None:
    # ~15 ms of the import were dataclasses and what it pulls in (inspect, ast, dis)
    names = ("dataclasses", "inspect", "ast")
    result = _run_python(f"import sys, openai_utils\nprint(*[m for m in {names!r} if m in sys.modules])", tmp_path)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")


# --- section names, BOM, ranges ---------------------------------------------------------------


@pytest.mark.parametrize("spelled", ["openai", "OPENAI", "Openai", " OpenAI "])
def test_openai_section_in_any_case_is_read(tmp_path: Path, spelled: str) -> None:
    # configparser matches section names exactly: [openai] used to be skipped without a word, and
    # with it BASE_URL, so prompts and the real key went to api.openai.com instead
    write_ini(tmp_path / "config.ini", "BASE_URL = http://127.0.0.1:9/v1\nMAX_ATTEMPTS = 2", section=spelled)
    assert default["base_url"] == "http://127.0.0.1:9/v1"
    assert default["max_attempts"] == 2
    assert default.source("base_url") == str(Path.cwd() / "config.ini")


def test_prices_section_in_any_case_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[prices]\nmy-model = 1.5, 3\n", encoding="utf-8")
    assert default.prices()["my-model"] == Price(1.5, 3.0)


def test_one_section_spelled_two_ways_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_text("[OpenAI]\nMODEL = a\n\n[openai]\nBASE_URL = http://127.0.0.1:9/v1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        default["model"]
    message = str(info.value)
    assert str(path) in message
    assert "[OpenAI]" in message and "[openai]" in message


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "openai_utils" and r.levelno == logging.WARNING]


def test_misspelled_section_warns_with_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_ini(tmp_path / "config.ini", "MODEL = not-used", section="OpenIA")
    (tmp_path / "config.ini").write_text(path.read_text() + "[Price]\nx = 1, 2\n", encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="openai_utils")
    assert default["model"] == "gpt-4o-mini"
    warnings = _warnings(caplog)
    assert len(warnings) == 2
    assert all(str(path) in w for w in warnings)
    assert "[OpenIA]" in warnings[0] and "did you mean [OpenAI]" in warnings[0]
    assert "[Price]" in warnings[1] and "did you mean [Prices]" in warnings[1]


def test_unrelated_section_warns_once_without_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_ini(tmp_path / "config.ini", "level = debug", section="Logging")
    caplog.set_level(logging.WARNING, logger="openai_utils")
    default["model"]
    default["top_p"]
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "[Logging]" in warnings[0] and str(path) in warnings[0]
    assert "did you mean" not in warnings[0]


def test_one_key_spelled_twice_in_a_section_is_a_config_error(tmp_path: Path) -> None:
    path = write_ini(tmp_path / "config.ini", "MODEL = a\nmodel = b")
    with pytest.raises(ConfigError) as info:
        default["model"]
    assert str(path) in str(info.value)
    assert "MODEL" in str(info.value) and "model" in str(info.value)


def test_utf8_bom_is_read(tmp_path: Path) -> None:
    # Windows Notepad saves UTF-8 with a byte order mark before the first section header
    (tmp_path / "config.ini").write_bytes("\ufeff[OpenAI]\nMODEL = with-bom\n".encode("utf-8"))
    assert default["model"] == "with-bom"


HUGE = [
    ("TIMEOUT", "1e300"),
    ("WAITING_TIME", "1e300"),
    ("MAX_WAITING_TIME", "1e300"),
    ("EXPONENTIAL_BACKOFF_FACTOR", "1e300"),
    ("MAX_ATTEMPTS", "1200"),
    ("MAX_TOKENS", "10000000000"),
    ("REQUESTS_PER_MINUTE", "1" + "0" * 30),
    ("LOCAL_SLOTS", "100000"),
]


@pytest.mark.parametrize(("key", "value"), HUGE)
def test_number_above_its_range_in_a_file_is_a_config_error(tmp_path: Path, key: str, value: str) -> None:
    path = write_ini(tmp_path / "config.ini", f"{key} = {value}")
    setting = next(s for s in SETTINGS if s.key == key)
    with pytest.raises(ConfigError) as info:
        default[setting.name]
    message = str(info.value)
    for part in (str(path), key, repr(value), setting.rule()):
        assert part in message


@pytest.mark.parametrize(("key", "value"), HUGE)
def test_number_above_its_range_forced_is_a_config_error(key: str, value: str) -> None:
    setting = next(s for s in SETTINGS if s.key == key)
    for forced in (value, float(value), int(float(value))):
        with pytest.raises(ConfigError) as info:
            force_default_value(setting.name, forced)
        assert setting.name in str(info.value) and setting.rule() in str(info.value)
    assert default.source(setting.name) == "built-in default"


def test_forcing_a_value_whose_repr_fails_is_still_a_config_error() -> None:
    with pytest.raises(ConfigError, match="a int"):
        force_default_value("temperature", 10**5000)  # repr() refuses ints past 4300 digits
    with pytest.raises(ConfigError):
        force_default_value(["model"], "x")  # type: ignore[arg-type]
