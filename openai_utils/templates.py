"""Finding prompt templates by name and rendering them with chevron (mustache).

Templates are read from disk on every render, so editing one in a notebook session takes effect
on the next call without a restart.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import default
from .exceptions import TemplateNotFoundError, TemplateVariableError

__all__ = ["TEMPLATE_SUFFIX", "search_path", "find_template", "template_variables", "render_template"]

TEMPLATE_SUFFIX = ".mustache"


def packaged_prompts() -> Path | None:
    """The folder of templates shipped with the package (the repository's prompts/ folder)."""
    spec = importlib.util.find_spec("openai_utils.prompts")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


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
    file_name = name if name.endswith(TEMPLATE_SUFFIX) else name + TEMPLATE_SUFFIX
    folders = search_path()
    for folder in folders:
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    searched = [str(f) for f in folders]
    raise TemplateNotFoundError(
        f"no template {file_name!r}; searched: {', '.join(searched)}. "
        f"Put it in one of these folders or add its folder to PROMPTS_PATH",
        searched,
    )


def template_variables(text: str) -> set[str]:
    """The names a template requires: its top-level variables.

    Sections (`{{#name}}...{{/name}}`) are mustache's conditionals, the usual way to write an
    optional part, so a missing section name is not an error; names inside sections may come
    from the section's items, so they are not checked either.
    """
    from chevron.tokenizer import tokenize

    names: set[str] = set()
    depth = 0
    for tag, key in tokenize(text):
        if tag in ("variable", "no escape") and depth == 0 and key != ".":
            names.add(key.split(".")[0])
        if tag in ("section", "inverted section"):
            depth += 1
        elif tag == "end":
            depth -= 1
    return names


def render_template(name: str, variables: Mapping[str, Any], allow_missing: bool = False) -> str:
    """Render template `name` with `variables`.

    A name the template uses that `variables` lacks is an error (mustache would silently render
    it empty, and the model would get a prompt with a hole in it) unless `allow_missing`.
    """
    import chevron

    path = find_template(name)
    text = path.read_text(encoding="utf-8")
    if not allow_missing:
        missing = sorted(template_variables(text) - set(variables))
        if missing:
            raise TemplateVariableError(
                f"template {str(path)!r} uses {', '.join(missing)}, which the call did not give; "
                f"pass {', '.join(f'{m}=...' for m in missing)} or allow_missing_variables=True",
                missing,
            )
    return str(chevron.render(text, dict(variables), partials_path=str(path.parent)))
