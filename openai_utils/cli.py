"""`openai-utils` (also `python -m openai_utils`): chat, embed, run prompt templates, count
tokens, inspect caches and run the local model from a shell.

Every command exits 0 when it did its job, 1 when the call failed (the server refused it, or
every attempt failed), and 2 when the command line or the setup must be fixed first (a bad
argument, a missing key, a bad config value, a missing template or tiktoken file). Each error is
one line on standard error; the answer alone goes to standard output, so it can be piped.

This module runs the commands: it reads their input, makes the calls and prints the answers.
What the command line accepts (commands, options, the check of each value) is cli_parser.py's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .cli_parser import build_parser
from .exceptions import APIError, OpenAIUtilsError

__all__ = ["main"]


class _Usage(Exception):
    """A command line that cannot run as given: reported in one line, exit status 2."""


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
        run = local.demo(args.text or DEMO_TEXT)
        print("\n".join(run.lines))
        if not run.answered:
            print("error: the local model did not answer (see the log above)", file=sys.stderr)
            return 1
    return 0


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of send_message the options gave; None leaves config in charge."""
    params: dict[str, Any] = {
        "model": args.model,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "top_p": args.top_p,
    }
    if args.seed is not None:
        params["seed"] = args.seed
    return params


def _use_api_type(api_type: str | None) -> None:
    if api_type:
        from .registry import force_api_type

        force_api_type(api_type)


def _read_stdin(given: str | None, what: str) -> str:
    """`given`, or standard input for '-' or for nothing on a pipe; never an empty text.

    One trailing newline is dropped from standard input: it is the one `echo` and editors add,
    not part of the message.
    """
    if given is None or given == "-":
        if given is None and (sys.stdin is None or sys.stdin.isatty()):
            raise _Usage(f"no {what}: give it as an argument, or pipe it on standard input")
        given = sys.stdin.read()
        given = given[:-1] if given.endswith("\n") else given
    if not given.strip():
        raise _Usage(f"the {what} is empty")
    return given


def _reply_json(reply: Any) -> str:
    """A reply as JSON: the message fields plus what a Reply keeps beside them."""
    whole = dict(reply)
    for field in ("finish_reason", "truncated", "usage", "model", "cached"):
        whole[field] = getattr(reply, field, None)
    return json.dumps(whole, indent=2, ensure_ascii=False, default=str)


def _print_reply(reply: Any, as_json: bool) -> None:
    if as_json:
        print(_reply_json(reply))
    elif isinstance(reply, dict) and reply.get("content") is not None:
        print(reply["content"])
    else:  # no text (tool calls, a refusal): show what there is rather than nothing
        print(_reply_json(reply))


def _chat(args: argparse.Namespace, log: _StderrLog) -> int:
    from .registry import client

    stream = (sys.stdout.isatty() and not args.json) if args.stream is None else args.stream
    if stream and args.json:
        raise _Usage("--json prints the whole reply at the end: it cannot be combined with --stream")
    text = _read_stdin(args.text, "message")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": text})
    _use_api_type(args.api_type)
    reply = client().send_message(messages, stream=stream, **_sampling(args))
    if reply is None:
        return log.failed("the call returned no answer")
    if stream:
        _print_stream(reply)
    else:
        _print_reply(reply, args.json)
    return 0


def _print_stream(chunks: Any) -> None:
    """Print each piece as it arrives; end with one newline even when the stream breaks."""
    last = ""
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
            last = chunk or last
    finally:
        if last and not last.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()


def _embed(args: argparse.Namespace, log: _StderrLog) -> int:
    from .registry import client

    if args.lines:
        if any(text != "-" for text in args.texts):
            raise _Usage("--lines reads the texts from standard input: give no TEXT (or '-')")
        texts = [line for line in _read_stdin("-", "input").splitlines() if line.strip()]
    else:
        texts = [_read_stdin(text, "text") for text in args.texts or [None]]
    _use_api_type(args.api_type)
    vectors = client().get_embedding(texts, model=args.model)
    if vectors is None:
        return log.failed("the call returned no vectors")
    for vector in vectors:
        print(json.dumps(vector, separators=(",", ":")))
    return 0


def _call(args: argparse.Namespace, log: _StderrLog) -> int:
    from .exceptions import TemplateNotFoundError
    from .llm_call import LLMCall
    from .templates import find_template

    variables = _template_variables(args.variables)
    try:
        user: str | None = find_template(f"{args.template}.user").name
    except TemplateNotFoundError:
        user = None  # a system template alone is a whole prompt
    _use_api_type(args.api_type)
    llm_call = LLMCall(f"{args.template}.system", user, **_sampling(args))
    llm_call.call(**variables)
    if llm_call.model_output is None:
        return log.failed("the call returned no answer")
    _print_reply(llm_call.model_output, args.json)
    return 0


def _template_variables(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE (text), KEY=@FILE (the file's text; '@-' standard input) and KEY:=JSON, like httpie."""
    variables: dict[str, Any] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key or key == ":":
            raise _Usage(f"expected KEY=VALUE, KEY=@FILE or KEY:=JSON, not {item!r}")
        as_json = key.endswith(":")
        key = key.rstrip(":")
        if key in variables:
            raise _Usage(f"the variable {key!r} is given twice")
        if as_json:
            try:
                variables[key] = json.loads(value)
            except ValueError as exc:
                raise _Usage(f"{key}:= takes JSON, and {value!r} is not JSON ({exc})") from None
        elif value.startswith("@"):
            variables[key] = _read_file(key, value[1:])
        else:
            variables[key] = value
    return variables


def _read_file(key: str, path: str) -> str:
    if path == "-":
        return _read_stdin("-", f"standard input for {key}")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Usage(f"cannot read {path!r} for {key}: {exc}") from None


def _tokens(args: argparse.Namespace, log: _StderrLog) -> int:
    from .tokens import count_text_tokens, encoding_name_for, has_known_encoding, load_encoding

    text = _read_stdin(args.text, "text")
    name = encoding_name_for(args.model)
    if not has_known_encoding(args.model):
        print(f"note: {args.model!r} is not a model whose encoding is known; assumed {name}", file=sys.stderr)
    load_encoding(args.model)  # a missing encoding file is an EncodingUnavailableError: exit 2
    print(f"{count_text_tokens(text, args.model)} tokens ({name}, model {args.model})")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from .cache_cli import run_cache_command

    return run_cache_command(args)


def _batch(args: argparse.Namespace) -> int:
    from .batch_cli import run_batch_command

    return run_batch_command(args)


class _StderrLog(logging.Handler):
    """The library's WARNINGs and ERRORs, one line each on standard error, spelled like the
    command's own messages; it remembers whether an ERROR was shown, so a failed call that the
    library already reported is not reported twice."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
        try:
            print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # logging must never break the command
            self.handleError(record)

    def failed(self, what: str) -> int:
        """Exit status 1, saying `what` unless an ERROR already said why."""
        if not self.errors:
            print(f"error: {what}", file=sys.stderr)
        return 1


_COMMANDS: dict[str, Callable[[argparse.Namespace, _StderrLog], int]] = {
    "chat": _chat,
    "embed": _embed,
    "call": _call,
    "tokens": _tokens,
    "cache": lambda args, log: _cache(args),
    "batch": lambda args, log: _batch(args),
    "local": lambda args, log: _local(args),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 the call failed, 2 fix the command line or setup)."""
    log = _StderrLog()
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(log)
    root.setLevel(logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args, log)
    except APIError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (_Usage, OpenAIUtilsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        root.removeHandler(log)
        root.setLevel(saved_level)
