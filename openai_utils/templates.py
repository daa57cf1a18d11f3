"""Finding prompt templates by name and rendering them with chevron (mustache).

Templates are read from disk on every render, so editing one in a notebook session takes effect
on the next call without a restart.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .config import default
from .exceptions import TemplateError, TemplateNotFoundError, TemplateSyntaxError, TemplateVariableError

__all__ = ["TEMPLATE_SUFFIX", "search_path", "find_template", "template_variables", "render_template"]

TEMPLATE_SUFFIX = ".mustache"


def packaged_prompts() -> Path | None:
    """The folder of templates shipped with the package (the repository's prompts/ folder)."""
    spec = importlib.util.find_spec("openai_utils.prompts")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def search_path() -> list[Path]:
    """Folders searched for templates, in order: PROMPTS_PATH, else ./prompts; then the packaged ones."""
    configured = default["prompts_path"]
    if configured:
        folders = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    else:
        folders = [Path.cwd() / "prompts"]
    shipped = packaged_prompts()
    if shipped is not None and all(shipped.resolve() != f.resolve() for f in folders):
        folders.append(shipped)
    return folders


def find_template(name: str) -> Path:
    """The first file called `name` (with or without .mustache) along the search path."""
    if not isinstance(name, str):
        raise TemplateError(
            f"a template name must be a str like 'summarize.system', not {type(name).__name__} {name!r}"
        )
    file_name = name if name.endswith(TEMPLATE_SUFFIX) else name + TEMPLATE_SUFFIX
    folders = search_path()
    for folder in folders:
        candidate = folder / file_name
        if _is_file(candidate):
            return candidate
    searched = [str(f) for f in folders]
    raise TemplateNotFoundError(
        f"no template {file_name!r}; searched: {', '.join(searched)}. "
        f"Put it in one of these folders or add its folder to PROMPTS_PATH",
        searched,
    )


def _is_file(path: Path) -> bool:
    """Path.is_file, counting a name the OS refuses (too long, say) as absent instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def template_variables(text: str) -> set[str]:
    """The names a template requires: its top-level variables.

    Sections (`{{#name}}...{{/name}}`) are mustache's conditionals, the usual way to write an
    optional part, so a missing section name is not an error; names inside sections may come
    from the section's items, so they are not checked either. Partials are not followed here
    (text has no folder); `render_template` follows them.
    """
    return set(_top_level_names(_tokens(text, "<text>")))


def render_template(name: str, variables: Mapping[str, Any], allow_missing: bool = False) -> str:
    """Render template `name` with `variables`.

    A name the template uses that `variables` lacks is an error (mustache would silently render
    it empty, and the model would get a prompt with a hole in it) unless `allow_missing`. The
    same holds for names used in its partials (`{{> other}}`, read from the template's folder),
    and a partial that does not exist is an error even then, never a blank.
    """
    import chevron

    if not isinstance(variables, Mapping):
        raise TemplateError(f"variables must be a dict of name -> value, not {type(variables).__name__}")
    top = _parse(find_template(name))
    partials = _load_partials(top)
    used = _required(top, partials, (top.path,))  # also refuses a partial that includes itself without end
    if not allow_missing:
        missing = sorted(set(used) - set(variables))
        if missing:
            raise TemplateVariableError(
                f"template {str(top.path)!r} uses {', '.join(_where(m, used[m], top) for m in missing)}, "
                f"which the call did not give; pass {', '.join(f'{m}=...' for m in missing)} "
                f"or allow_missing_variables=True",
                missing,
            )
    texts = {key: partial.text for key, partial in partials.items()}
    try:
        # partials_path=None: chevron reads no file itself, so it cannot blank a missing one
        return str(chevron.render(top.text, dict(variables), partials_path=None, partials_dict=texts))
    except RecursionError:
        raise TemplateError(
            f"rendering template {str(top.path)!r} recursed without end: a partial includes itself "
            f"inside a section whose data never runs out (give the innermost items an empty list)"
        ) from None


class _Parsed(NamedTuple):
    """One template file, read and tokenized once."""

    path: Path
    text: str
    tokens: list[tuple[str, str]]


def _parse(path: Path) -> _Parsed:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"cannot read template {str(path)!r}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows Notepad) is not part of the prompt
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TemplateSyntaxError(
            f"template {str(path)!r} is not UTF-8 text: byte {data[exc.start]:#04x} at line {line}; save it as UTF-8",
            str(path),
            line,
        ) from None
    return _Parsed(path, text, _tokens(text, str(path)))


_EMPTY_TAG = re.compile(r"\{\{\s*[#^/>&{]?\s*\}?\}\}")


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    """chevron's tokens for `text`, or TemplateSyntaxError naming `where` and, if known, the line."""
    from chevron.tokenizer import ChevronError, tokenize

    try:
        tokens = list(tokenize(text))
    except ChevronError as exc:
        message = " ".join(str(exc).split())
        found = re.search(r"line (\d+)", message)
        line = int(found.group(1)) if found else None
        raise TemplateSyntaxError(f"template {where!r} is not valid mustache: {message}", where, line) from None
    except IndexError:  # chevron's tokenizer reads the first character of `{{}}`
        tokens = [("empty", "")]
    for kind, key in tokens:
        if kind == "no escape?":
            line = _line_of(text, re.compile(r"\{\{\{\s*" + re.escape(key)))
            raise TemplateSyntaxError(
                f"template {where!r}{_at(line)}: {{{{{{{key}}}}} is opened with {{{{{{ but not closed with }}}}}}",
                where,
                line,
            )
        if not key and kind not in ("literal", "comment", "set delimiter"):
            line = _line_of(text, _EMPTY_TAG)
            raise TemplateSyntaxError(f"template {where!r}{_at(line)}: an empty tag names nothing", where, line)
    return tokens


def _load_partials(top: _Parsed) -> dict[str, _Parsed]:
    """Every partial reachable from `top`, by the name its tags use, read from top's folder.

    chevron looks every partial up in the folder of the template being rendered, nested ones
    too; so does this, and a name with no file is an error instead of chevron's silent blank.
    """
    folder = top.path.parent
    partials: dict[str, _Parsed] = {}
    pending = [top]
    while pending:
        including = pending.pop()
        for kind, key in including.tokens:
            if kind != "partial" or key in partials:
                continue
            path = folder / (key + TEMPLATE_SUFFIX)
            if not _is_file(path):
                line = _line_of(including.text, re.compile(r"\{\{\s*>\s*" + re.escape(key) + r"\s*\}\}"))
                raise TemplateNotFoundError(
                    f"template {str(including.path)!r}{_at(line)} includes the partial {key!r}, but there is "
                    f"no {str(path)!r}; partials are read from the folder of the template rendered",
                    [str(folder)],
                )
            partials[key] = _parse(path)
            pending.append(partials[key])
    return partials


def _required(template: _Parsed, partials: Mapping[str, _Parsed], chain: tuple[Path, ...]) -> dict[str, _Parsed]:
    """Each top-level name of `template` and of the partials it includes at its top level, with
    the file that uses it. A partial that includes itself there would render without end."""
    used = {name: template for name in _top_level_names(template.tokens)}
    for key in _top_level_names(template.tokens, "partial"):
        partial = partials[key]
        if partial.path in chain:
            raise TemplateSyntaxError(
                f"template {str(partial.path)!r} includes itself (through {key!r}) outside any section, "
                f"so rendering it would never end; put the inclusion inside a section",
                str(partial.path),
                None,
            )
        for name, where in _required(partial, partials, (*chain, partial.path)).items():
            used.setdefault(name, where)
    return used


def _top_level_names(tokens: list[tuple[str, str]], wanted: str = "variable") -> list[str]:
    """Names of the `wanted` tags (variables: both escaped and not) outside every section."""
    kinds = ("variable", "no escape") if wanted == "variable" else (wanted,)
    names: list[str] = []
    depth = 0
    for kind, key in tokens:
        if kind in kinds and depth == 0 and key != ".":
            names.append(key.split(".")[0] if wanted == "variable" else key)
        if kind in ("section", "inverted section"):
            depth += 1
        elif kind == "end":
            depth -= 1
    return names


def _where(name: str, user: _Parsed, top: _Parsed) -> str:
    """A missing name for the error message, with the partial and line that use it."""
    if user is top:
        return name
    line = _line_of(user.text, re.compile(r"\{\{\s*[&{]?\s*" + re.escape(name) + r"[\s.}]"))
    return f"{name} (in its partial {str(user.path)!r}{'' if line is None else f', line {line}'})"


def _line_of(text: str, pattern: re.Pattern[str]) -> int | None:
    """The line of the first match, for an error message; None when delimiters were changed."""
    found = pattern.search(text)
    return None if found is None else text.count("\n", 0, found.start()) + 1


def _at(line: int | None) -> str:
    return "" if line is None else f" (line {line})"
