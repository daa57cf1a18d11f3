"""The documented configuration is the configuration: config.ini, docs table and code agree."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from openai_utils.config import CONFIG_SECTION, PRICES_SECTION, SETTINGS, _price_line
from openai_utils.pricing import DEFAULT_PRICES

ROOT = Path(__file__).resolve().parents[1]


def test_config_ini_lists_every_key_with_its_default() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "config.ini", encoding="utf-8")
    written = {k.upper(): v for k, v in parser.items(CONFIG_SECTION)}
    assert list(written) == [s.key for s in SETTINGS]
    for setting in SETTINGS:
        assert setting.coerce(written[setting.key]) == setting.default, setting.key


def test_config_ini_lists_the_built_in_prices() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "config.ini", encoding="utf-8")
    written = {model: _price_line(text) for model, text in parser.items(PRICES_SECTION)}
    assert written == DEFAULT_PRICES


def test_docs_table_matches_the_settings() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = text.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    rows = [r for r in table.strip().splitlines()[2:]]
    documented = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        documented[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].strip("`"), cells[3])
    assert list(documented) == [s.key for s in SETTINGS]
    for setting in SETTINGS:
        name, shown, allowed = documented[setting.key]
        assert name == setting.name
        assert shown == (setting.to_text(setting.default) or "(empty)"), setting.key
        assert allowed == setting.allowed(), setting.key


def test_readme_names_every_config_key_section() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/configuration.md" in readme
    assert re.search(r"make test", readme) and re.search(r"make demo", readme)


def test_every_make_command_the_readme_names_is_a_target() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)`", readme)) | set(re.findall(r"^make ([a-z][\w-]*)", readme, re.M))
    assert {"demo", "test", "check"} <= named
    assert named <= targets, f"the README names make targets that do not exist: {sorted(named - targets)}"
    assert (ROOT / "scripts" / "check").stat().st_mode & 0o111, "scripts/check must be executable"
