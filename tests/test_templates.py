"""Tests for openai_utils.templates: the search path, finding, variables, rendering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_utils import TemplateError, TemplateNotFoundError, TemplateVariableError, force_default_value
from openai_utils import templates
from openai_utils.config import CONFIG_ENV_VAR, default
from openai_utils.templates import find_template, render_template, search_path, template_variables

REPO_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
PACKAGED = templates.packaged_prompts()


@pytest.fixture(autouse=True)
def clean_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working dir (no config.ini, no ./prompts) and nothing forced."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    default.reset()
    yield work
    default.reset()


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two template folders on PROMPTS_PATH, first one first."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    force_default_value("prompts_path", f"{first}{os.pathsep}{second}")
    return first, second


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.mustache"
    path.write_text(text, encoding="utf-8")
    return path


# --- finding ------------------------------------------------------------------------------------


def test_find_with_and_without_suffix(folders: tuple[Path, Path]) -> None:
    first, _ = folders
    path = write(first, "greet", "Hello")
    assert find_template("greet") == path
    assert find_template("greet.mustache") == path


def test_first_folder_on_prompts_path_wins(folders: tuple[Path, Path]) -> None:
    first, second = folders
    in_first = write(first, "both", "one")
    write(second, "both", "two")
    only_second = write(second, "only", "two")
    assert find_template("both") == in_first
    assert find_template("only") == only_second


def test_search_path_follows_prompts_path_and_skips_empty_parts(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    force_default_value("prompts_path", f"{first}{os.pathsep}{os.pathsep}{second}{os.pathsep}")
    assert search_path()[:2] == [first, second]
    assert len(search_path()) == 2 + (PACKAGED is not None)


def test_without_prompts_path_cwd_prompts_is_searched(clean_config: Path) -> None:
    local = clean_config / "prompts"
    local.mkdir()
    path = write(local, "here", "local")
    assert search_path()[0] == Path.cwd() / "prompts"
    assert find_template("here") == path


def test_prompts_path_change_takes_effect_at_once(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "t", "1")
    write(two, "t", "2")
    force_default_value("prompts_path", str(one))
    assert render_template("t", {}) == "1"
    force_default_value("prompts_path", str(two))
    assert render_template("t", {}) == "2"


def test_missing_template_lists_every_folder_searched(folders: tuple[Path, Path]) -> None:
    first, second = folders
    with pytest.raises(TemplateNotFoundError) as info:
        find_template("nope")
    err = info.value
    expected = [str(first), str(second)] + ([str(PACKAGED)] if PACKAGED is not None else [])
    assert err.searched == expected
    message = str(err)
    assert "'nope.mustache'" in message
    for folder in expected:
        assert folder in message
    assert "PROMPTS_PATH" in message
    assert isinstance(err, TemplateError)
    assert isinstance(err, LookupError)


def test_packaged_folder_is_searched_last_and_listed(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """search_path's handling of the packaged folder, with packaged_prompts() pointed at prompts/.

    This checks search_path and find_template; whether the real package exposes the folder is
    test_packaged_templates_are_found_when_installed below.
    """
    first, second = folders
    monkeypatch.setattr(templates, "packaged_prompts", lambda: REPO_PROMPTS)
    assert search_path() == [first, second, REPO_PROMPTS]
    assert find_template("summarize.system") == REPO_PROMPTS / "summarize.system.mustache"
    # a local template of the same name shadows the packaged one
    local = write(second, "summarize.system", "mine")
    assert find_template("summarize.system") == local
    with pytest.raises(TemplateNotFoundError) as info:
        find_template("nope")
    assert info.value.searched == [str(first), str(second), str(REPO_PROMPTS)]
    assert str(REPO_PROMPTS) in str(info.value)


def test_packaged_folder_is_not_listed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "packaged_prompts", lambda: REPO_PROMPTS)
    other = tmp_path / "other"
    force_default_value("prompts_path", f"{REPO_PROMPTS}{os.pathsep}{other}")
    assert search_path() == [REPO_PROMPTS, other]


@pytest.mark.skipif(
    PACKAGED is None,
    reason="importlib.util.find_spec('openai_utils.prompts') is None: running from the source tree, "
    "where prompts/ is mapped into the package only by setup.cfg's package_dir at install time",
)
def test_packaged_templates_are_found_when_installed(tmp_path: Path) -> None:
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    force_default_value("prompts_path", str(unrelated))
    path = find_template("summarize.system")
    assert path.parent == PACKAGED
    assert "max_sentences" in template_variables(path.read_text(encoding="utf-8"))


# --- template_variables -------------------------------------------------------------------------


def test_plain_variables() -> None:
    assert template_variables("Hello {{name}}, you are {{ age }}.") == {"name", "age"}


def test_no_variables() -> None:
    assert template_variables("Just text {{! a comment }}") == set()


def test_sections_and_names_inside_them_are_not_required() -> None:
    # Sections are mustache's conditionals: leaving one out is how a template's optional part is skipped.
    text = "{{#items}}- {{title}} {{.}}{{/items}}{{^empty}}{{fallback}}{{/empty}} {{after}}"
    assert template_variables(text) == {"after"}


def test_nested_sections() -> None:
    text = "{{#a}}{{#b}}{{c}}{{/b}}{{d}}{{/a}}{{e}}"
    assert template_variables(text) == {"e"}


def test_dotted_names_give_their_first_part() -> None:
    assert template_variables("{{user.name.first}} {{#cfg.items}}{{x}}{{/cfg.items}}") == {"user"}


def test_unescaped_forms_count() -> None:
    assert template_variables("{{{raw}}} {{&amp}}") == {"raw", "amp"}


def test_packaged_template_variables() -> None:
    text = (REPO_PROMPTS / "summarize.system.mustache").read_text(encoding="utf-8")
    assert template_variables(text) == {"max_sentences"}


# --- render_template ----------------------------------------------------------------------------


def test_render(folders: tuple[Path, Path]) -> None:
    write(folders[0], "greet", "Hello {{name}}! {{#items}}[{{.}}]{{/items}}")
    assert render_template("greet", {"name": "Ann", "items": ["a", "b"]}) == "Hello Ann! [a][b]"


def test_render_reads_the_file_every_time(folders: tuple[Path, Path]) -> None:
    path = write(folders[0], "t", "v1 {{x}}")
    assert render_template("t", {"x": 1}) == "v1 1"
    path.write_text("v2 {{x}}", encoding="utf-8")
    assert render_template("t", {"x": 1}) == "v2 1"


def test_missing_variable_is_template_variable_error(folders: tuple[Path, Path]) -> None:
    path = write(folders[0], "greet", "Hello {{name}} from {{place}}, {{#opt}}{{inner}}{{/opt}}")
    with pytest.raises(TemplateVariableError) as info:
        render_template("greet", {"opt": False})
    err = info.value
    assert isinstance(err, KeyError)
    assert isinstance(err, TemplateError)
    assert err.missing == ["name", "place"]
    message = str(err)
    assert "name" in message and "place" in message
    assert "inner" not in message
    assert str(path) in message
    assert not message.startswith(("'", '"'))  # not KeyError's quoted repr


def test_allow_missing_renders_empty(folders: tuple[Path, Path]) -> None:
    write(folders[0], "greet", "Hello {{name}}!")
    assert render_template("greet", {}, allow_missing=True) == "Hello !"


def test_triple_mustache_does_not_escape(folders: tuple[Path, Path]) -> None:
    write(folders[0], "code", "{{{snippet}}}|{{snippet}}")
    assert render_template("code", {"snippet": "<b>&"}) == "<b>&|&lt;b&gt;&amp;"


def test_render_missing_template_raises_not_found(folders: tuple[Path, Path]) -> None:
    with pytest.raises(TemplateNotFoundError):
        render_template("absent", {})


def test_render_packaged_style_template(tmp_path: Path) -> None:
    force_default_value("prompts_path", str(REPO_PROMPTS))
    text = render_template("summarize.system", {"max_sentences": 3})
    assert "at most 3 sentences" in text
    assert "{{" not in text
