"""Copy each command's `--help` into docs/cli.md, so the help the docs show is the real one.

    python scripts/cli_docs.py           rewrite the help blocks of docs/cli.md from the parser
    python scripts/cli_docs.py --check   list the blocks that differ, exit 1 if any do

A block is a fenced text block between `<!-- help: openai-utils chat -->` and `<!-- /help -->`.
A command with no block yet gets a new section at the end of the file; a block for a command
that no longer exists is an error to resolve by hand. tests/test_cli.py runs the check.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
WIDTH = 100  # help is wrapped to the terminal; the docs use one fixed width

BLOCK = re.compile(r"<!-- help: (?P<name>[^>]+?) -->\n```text\n(?P<text>.*?)```\n<!-- /help -->", re.S)


@contextmanager
def _fixed_terminal() -> Iterator[None]:
    """argparse reads the width from COLUMNS, and Python 3.14 colours help unless NO_COLOR."""
    saved = {name: os.environ.get(name) for name in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS=str(WIDTH), NO_COLOR="1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def help_pages() -> dict[str, str]:
    """Every command's help, as `openai-utils ... --help` prints it, in parser order."""
    from openai_utils.cli_parser import build_parser

    pages: dict[str, str] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        pages[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub_parser in action.choices.items():
                    walk(sub_parser, f"{name} {sub_name}")

    with _fixed_terminal():
        walk(build_parser(), "openai-utils")
    return pages


def _block(name: str, text: str) -> str:
    return f"<!-- help: {name} -->\n```text\n{text}```\n<!-- /help -->"


def render(doc: str, pages: dict[str, str]) -> str:
    """`doc` with every help block set to the current help, and a section for each new command."""
    unknown = [m["name"] for m in BLOCK.finditer(doc) if m["name"] not in pages]
    if unknown:
        raise SystemExit(f"docs/cli.md documents commands that no longer exist: {', '.join(unknown)}; remove them")
    text = BLOCK.sub(lambda m: _block(m["name"], pages[m["name"]]), doc)
    documented = {m["name"] for m in BLOCK.finditer(doc)}
    for name, page in pages.items():
        if name not in documented:
            text = text.rstrip("\n") + f"\n\n### `{name}`\n\n{_block(name, page)}\n"
    return text


def _normalized(text: str) -> str:
    # Wrapping varies a little across Python versions; the words and their order may not.
    return " ".join(text.split())


def check() -> list[str]:
    """What in docs/cli.md differs from the parser's help; empty when the docs are current."""
    doc = DOC.read_text(encoding="utf-8")
    pages = help_pages()
    shown = {m["name"]: m["text"] for m in BLOCK.finditer(doc)}
    problems = [f"docs/cli.md has no help block for `{name}`" for name in pages if name not in shown]
    problems += [f"docs/cli.md documents `{name}`, which is no longer a command" for name in shown if name not in pages]
    problems += [
        f"the help of `{name}` in docs/cli.md is not what the command prints"
        for name, text in shown.items()
        if name in pages and _normalized(text) != _normalized(pages[name])
    ]
    return problems


def main() -> int:
    if sys.argv[1:] == ["--check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    DOC.write_text(render(DOC.read_text(encoding="utf-8"), help_pages()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the package of this checkout, installed or not
    sys.exit(main())
