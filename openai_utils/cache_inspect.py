"""Reading a cache file without changing it: what `cache stats`, `export`, `show` and `search` print.

The file is opened read-only; no lock is taken and nothing is repaired, so looking at a cache
can never change it (the live cache in cache.py repairs a file, and only when it writes to it).
A file that is not a cache raises `CacheError`; a damaged one is read up to the damage, and the
snapshot says where that is, so the command line can show what is whole and still fail.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .cache_file import HEADER, classify_header, decode_records, open_regular, safe_loads
from .exceptions import CacheError

__all__ = ["Entry", "Snapshot", "read_cache", "describe_entry", "show_or_search"]

_SHOWN_ELSEWHERE = frozenset({"messages", "input", "model", "stream", "stream_options"})


@dataclass(frozen=True)
class Entry:
    """One cached answer: its number in the file (from 1), key, value and the request (None when
    the answer was stored before requests were kept)."""

    number: int
    key: str
    value: Any
    request: dict[str, Any] | None

    def text(self) -> str:
        """The prompt and answer as plain text, which `search` looks in."""
        parts = [_prompt_text(self.request)]
        parts.extend(_answer_lines(self.value))
        return "\n".join(parts)


@dataclass
class Snapshot:
    """A cache file as it was read: its entries in file order, and what could not be read."""

    path: Path | str
    size: int
    entries: list[Entry] = field(default_factory=list)
    superseded: int = 0
    damage: str | None = None
    incomplete_tail: int = 0

    def stats(self) -> dict[str, Any]:
        models: Counter[str] = Counter()
        for entry in self.entries:
            model = entry.value.get("model") if isinstance(entry.value, dict) else None
            models[str(model)] += 1
        return {
            "file": str(self.path),
            "entries": len(self.entries),
            "bytes": self.size,
            "superseded_records": self.superseded,
            "requests_recorded": sum(entry.request is not None for entry in self.entries),
            "incomplete_tail_bytes": self.incomplete_tail,
            "models": dict(models.most_common()),
        }

    def export_jsonl(self, out: IO[str]) -> int:
        """Write every entry as one JSON line {"key", "request", "value"}; return the count."""
        for entry in self.entries:
            out.write(
                json.dumps({"key": entry.key, "request": entry.request, "value": entry.value}, ensure_ascii=False)
                + "\n"
            )
        return len(self.entries)

    def find(self, ref: str) -> Entry:
        """The entry numbered `ref` (1 is the first), else the one whose key is or starts with it.

        Raises LookupError when there is none, ValueError when a key prefix fits several.
        """
        if ref.isdigit() and 1 <= int(ref) <= len(self.entries):
            return self.entries[int(ref) - 1]
        matches = [entry for entry in self.entries if entry.key.startswith(ref)] if len(ref) >= 6 else []
        if len(matches) > 1:
            raise ValueError(f"{len(matches)} keys start with {ref!r}: give more of the key")
        if not matches:
            raise LookupError(
                f"no entry {ref!r} in {self.path}: give a number from 1 to {len(self.entries)} or a key (6 characters at least)"
            )
        return matches[0]

    def search(self, text: str) -> list[Entry]:
        """The entries whose prompt or answer contains `text`, ignoring case."""
        needle = text.casefold()
        return [entry for entry in self.entries if needle in entry.text().casefold()]


def read_cache(path: str | os.PathLike[str]) -> Snapshot:
    """Read a cache file as it is, changing nothing. Raises CacheError for a file that is not a
    cache (naming `cache import-legacy` for a plain pickle) or of a newer format; FileNotFoundError
    when there is no file."""
    path = Path(path)
    fd = open_regular(path, os.O_RDONLY, follow_link=True)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    snapshot = Snapshot(path=path, size=len(data))
    kind, detail = classify_header(data)
    if os.path.islink(path):
        detail += f"; {path} is a symbolic link to {os.path.realpath(path)}"
    if kind == "torn":
        snapshot.incomplete_tail = len(data)
        return snapshot
    if kind == "newer":
        raise CacheError(
            f"{path} is cache format version {detail}, newer than this library reads (v1): upgrade openai_utils"
        )
    if kind == "foreign":
        hint = ""
        if detail.startswith("it is a plain pickle"):
            hint = (
                "; if it is a cache of the module this library replaces, convert it with: python -m openai_utils "
                f"cache import-legacy {path} --into NEW_CACHE --trust (only if you trust the file: loading it runs code)"
            )
        raise CacheError(f"{path} is not an openai_utils cache ({detail}){hint}")
    parsed = decode_records(data, len(HEADER))
    found: dict[str, tuple[bytes, bytes]] = {}
    for record in parsed.records:
        if record.key in found:
            snapshot.superseded += 1
        found[record.key] = (record.value, record.request)
    for number, (key, (value, request)) in enumerate(found.items(), start=1):
        snapshot.entries.append(Entry(number, key, safe_loads(value), safe_loads(request) if request else None))
    if parsed.damage is not None:
        snapshot.damage = (
            f"{path} is damaged: {parsed.damage}; the {len(snapshot.entries)} entries before it are read, "
            f"the {len(data) - parsed.stop} bytes from there on are not (the next answer stored in this cache "
            f"moves them aside to {path.name}.damaged-...)"
        )
    elif parsed.torn:
        snapshot.incomplete_tail = len(data) - parsed.stop
    return snapshot


def describe_entry(entry: Entry) -> str:
    """An entry as a reader wants it: the request's parameters, the prompt, then the answer."""
    request = entry.request
    kind = "embedding" if request is not None and "input" in request else "chat"
    model = (request or {}).get("model") or (entry.value.get("model") if isinstance(entry.value, dict) else None)
    heading = f"## {entry.number}. {entry.key[:16]}  {kind}, {model or 'model unknown'}"
    lines = [heading, ""]
    if request is not None:
        params = {name: value for name, value in request.items() if name not in _SHOWN_ELSEWHERE}
        if params:
            lines += [
                ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in params.items()),
                "",
            ]
    lines += ["### Input" if kind == "embedding" else "### Prompt", "", _prompt_text(request), "", "### Answer", ""]
    lines += _answer_lines(entry.value)
    return "\n".join(lines) + "\n"


def _prompt_text(request: Mapping[str, Any] | None) -> str:
    if request is None:
        return "(not recorded: this answer was stored before requests were kept)"
    if "messages" in request:
        return "\n\n".join(_message_text(message) for message in request["messages"])
    if "input" in request:
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        return "\n\n".join(str(text) for text in texts)
    return json.dumps(request, ensure_ascii=False, indent=2)


def _message_text(message: Any) -> str:
    if not isinstance(message, Mapping):
        return str(message)
    content = message.get("content")
    if isinstance(content, list):  # content parts: text is shown, anything else is named
        content = " ".join(
            str(part.get("text"))
            if isinstance(part, Mapping) and part.get("type") == "text"
            else f"[{part.get('type') if isinstance(part, Mapping) else part}]"
            for part in content
        )
    text = f"{message.get('role')}: {content if content is not None else ''}"
    if message.get("tool_calls"):
        text += "\n" + json.dumps(message["tool_calls"], ensure_ascii=False)
    return text


def _answer_lines(value: Any) -> list[str]:
    if isinstance(value, dict) and "vectors" in value:
        vectors = value["vectors"]
        size = len(vectors[0]) if vectors else 0
        return [f"{len(vectors)} vector{'s' if len(vectors) != 1 else ''} of {size} dimensions"]
    if not isinstance(value, dict) or not isinstance(value.get("choices"), list):
        return [json.dumps(value, ensure_ascii=False, indent=2)]
    lines: list[str] = []
    choices = value["choices"]
    for index, choice in enumerate(choices, start=1):
        message = choice.get("message", {}) if isinstance(choice, Mapping) else {}
        if len(choices) > 1:
            lines.append(f"({index} of {len(choices)})")
        if message.get("content") is not None:
            lines.append(str(message["content"]))
        if message.get("refusal"):
            lines.append(f"refused: {message['refusal']}")
        if message.get("tool_calls"):
            lines.append(json.dumps(message["tool_calls"], ensure_ascii=False))
        if isinstance(choice, Mapping) and choice.get("finish_reason") not in (None, "stop", "tool_calls"):
            lines.append(f"(finish_reason: {choice['finish_reason']})")
    return lines


def show_or_search(snapshot: Snapshot, args: Any) -> int:
    """Print what `cache show` or `cache search` asks for from a file or a store: 0 done, 1 no such
    entry, 2 an entry reference that fits several."""
    if args.cache_command == "show":
        try:
            print(describe_entry(snapshot.find(args.entry)), end="")
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    found = snapshot.search(args.text)
    print("\n".join(describe_entry(entry) for entry in found), end="")
    print(f"{len(found)} of {len(snapshot.entries)} entries contain {args.text!r}", file=sys.stderr)
    return 0
