"""Tests for openai_utils.templates: the search path, finding, variables, rendering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    TemplateError,
    TemplateNotFoundError,
    TemplateSyntaxError,
    TemplateVariableError,
    force_default_value,
    templates,
)
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


# --- partials and broken templates --------------------------------------------------------------


def test_a_partial_next_to_the_template_is_rendered(folders: tuple[Path, Path]) -> None:
    write(folders[0], "main", "Hello {{> sign}}!")
    write(folders[0], "sign", "{{name}} from {{place}}")
    assert render_template("main", {"name": "Ann", "place": "Oslo"}) == "Hello Ann from Oslo!"


def test_a_missing_partial_is_template_not_found_naming_the_including_file_and_line(folders: tuple[Path, Path]) -> None:
    main = write(folders[0], "main", "Hello\n{{> footer}}\n")
    for allow_missing in (False, True):
        with pytest.raises(TemplateNotFoundError) as info:
            render_template("main", {}, allow_missing=allow_missing)
        message = str(info.value)
        assert "'footer'" in message
        assert str(main) in message
        assert "line 2" in message
        assert str(folders[0] / "footer.mustache") in message
        assert info.value.searched == [str(folders[0])]


def test_a_missing_partial_inside_a_section_is_an_error_too(folders: tuple[Path, Path]) -> None:
    write(folders[0], "main", "{{#items}}{{> row}}{{/items}}")
    with pytest.raises(TemplateNotFoundError, match="'row'"):
        render_template("main", {"items": []})


def test_a_variable_used_only_in_a_partial_is_required(folders: tuple[Path, Path]) -> None:
    main = write(folders[0], "main", "Hi {{> inner}}")
    inner = write(folders[0], "inner", "\n{{#opt}}{{maybe}}{{/opt}} {{> deeper}}")
    deeper = write(folders[0], "deeper", "{{who}}")
    with pytest.raises(TemplateVariableError) as info:
        render_template("main", {})
    assert info.value.missing == ["who"]
    message = str(info.value)
    assert str(main) in message and str(deeper) in message and "line 1" in message
    assert "maybe" not in message and str(inner) not in message
    assert render_template("main", {"who": "Bo"}) == "Hi \n Bo"
    assert render_template("main", {}, allow_missing=True) == "Hi \n "


def test_variables_of_a_partial_inside_a_section_come_from_the_items(folders: tuple[Path, Path]) -> None:
    write(folders[0], "list", "{{#items}}[{{> row}}]{{/items}}")
    write(folders[0], "row", "{{title}}")
    assert render_template("list", {"items": [{"title": "a"}, {"title": "b"}]}) == "[a][b]"


def test_a_partial_may_recurse_inside_a_section(folders: tuple[Path, Path]) -> None:
    write(folders[0], "tree", "{{> node}}")
    write(folders[0], "node", "{{name}}{{#children}}({{> node}}){{/children}}")
    leaf: list[object] = []
    tree: dict[str, Any] = {
        "name": "a",
        "children": [{"name": "b", "children": [{"name": "c", "children": leaf}]}, {"name": "d", "children": leaf}],
    }
    assert render_template("tree", tree) == "a(b(c))(d)"
    # without an empty list, mustache looks `children` up in the enclosing item: recursion without end
    del tree["children"][1]["children"]
    with pytest.raises(TemplateError, match="recursed"):
        render_template("tree", tree)


def test_a_partial_including_itself_outside_any_section_is_a_syntax_error(folders: tuple[Path, Path]) -> None:
    write(folders[0], "main", "{{> loop}}")
    loop = write(folders[0], "loop", "again {{> loop}}")
    for allow_missing in (False, True):
        with pytest.raises(TemplateSyntaxError) as info:
            render_template("main", {}, allow_missing=allow_missing)
    assert str(loop) in str(info.value) and "itself" in str(info.value)
    assert info.value.path == str(loop)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("Hello\n{{name", 2, "unclosed tag"),
        ("{{#items}}\nno end", None, "never closed"),
        ("one\ntwo {{/items}}", None, "items"),
        ("a\n\n{{}}", 3, "empty tag"),
        ("{{{raw}}", 1, "}}}"),
    ],
)
def test_broken_mustache_is_a_syntax_error_naming_file_and_line(
    folders: tuple[Path, Path], text: str, line: int | None, fragment: str
) -> None:
    path = write(folders[0], "broken", text)
    with pytest.raises(TemplateSyntaxError) as info:
        render_template("broken", {"name": "x", "raw": "y", "items": [1]})
    err = info.value
    assert isinstance(err, TemplateError) and isinstance(err, ValueError)
    assert str(path) in str(err) and fragment in str(err)
    assert err.path == str(path)
    if line is not None:
        assert err.line == line and f"line {line}" in str(err)


def test_broken_partial_names_the_partial(folders: tuple[Path, Path]) -> None:
    write(folders[0], "main", "{{> part}}")
    part = write(folders[0], "part", "ok\n{{oops")
    with pytest.raises(TemplateSyntaxError) as info:
        render_template("main", {})
    assert str(part) in str(info.value) and info.value.line == 2


@pytest.mark.parametrize("name", ["main", "part"])
def test_a_file_that_is_not_utf8_is_a_syntax_error_naming_file_and_line(folders: tuple[Path, Path], name: str) -> None:
    write(folders[0], "main", "{{> part}}")
    write(folders[0], "part", "fine")
    bad = folders[0] / f"{name}.mustache"
    bad.write_bytes(b"first line\nsecond \xff\xfe line\n" + (b"{{> part}}" if name == "main" else b""))
    with pytest.raises(TemplateSyntaxError) as info:
        render_template("main", {})
    assert str(bad) in str(info.value) and "UTF-8" in str(info.value)
    assert info.value.line == 2


def test_a_utf8_bom_is_not_rendered(folders: tuple[Path, Path]) -> None:
    (folders[0] / "bom.mustache").write_bytes("\ufeffHi {{x}}".encode("utf-8"))
    assert render_template("bom", {"x": 1}) == "Hi 1"


@pytest.mark.parametrize("name", [123, None, b"greet", ["greet"]])
def test_a_template_name_that_is_not_a_str_is_a_template_error(folders: tuple[Path, Path], name: object) -> None:
    with pytest.raises(TemplateError, match="template name must be a str"):
        render_template(name, {})  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match="template name must be a str"):
        find_template(name)  # type: ignore[arg-type]


def test_variables_that_are_not_a_mapping_are_a_template_error(folders: tuple[Path, Path]) -> None:
    write(folders[0], "greet", "Hi")
    with pytest.raises(TemplateError, match="variables must be a dict"):
        render_template("greet", ["who"])  # type: ignore[arg-type]


def test_template_variables_of_broken_text_is_a_syntax_error() -> None:
    with pytest.raises(TemplateSyntaxError, match="unclosed tag"):
        template_variables("{{x")


def test_a_name_the_os_refuses_is_not_found(folders: tuple[Path, Path]) -> None:
    with pytest.raises(TemplateNotFoundError):
        render_template("x" * 300, {})
    write(folders[0], "main", "{{> " + "y" * 300 + "}}")
    with pytest.raises(TemplateNotFoundError):
        render_template("main", {})
