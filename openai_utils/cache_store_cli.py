"""The `cache` commands on a store URL, and `cache copy` between a file and a store.

`cache stats|export|show|search redis://...` read the namespace's entries from the store (SCAN and
MGET, nothing written) into the same `Snapshot` a file gives, so the output is the same; entries
are numbered in key order. `cache copy SRC DST` adds every entry of SRC that DST does not hold
yet (a file or a store, in either direction: start on a laptop, scale out, bring the results
home); what DST already holds is kept. Store errors end the command with exit status 1 and the
store's label, never its password.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .exceptions import CacheError

__all__ = ["copy_entries", "run_store_command"]

Entries = Iterator[tuple[str, Any, "dict[str, Any] | None"]]


def _namespace() -> str:
    from .config import default

    name: str = default["cache_namespace"]
    return name


def _store_cache(url: str, namespace: str | None) -> Any:
    """The store's cache for a command: a timeout of a second at least, since a command may wait."""
    from .cache_store import StoreCache
    from .config import default
    from .store import SharedStore

    return StoreCache(SharedStore(url, max(1.0, default["store_timeout"])), namespace or _namespace())


def _snapshot(url: str, namespace: str | None) -> Any:
    from .cache_inspect import Entry, Snapshot
    from .store import store_label

    cache = _store_cache(url, namespace)
    found = sorted(cache.entries(), key=lambda entry: entry[0])
    entries = [Entry(number, key, value, request) for number, (key, value, request) in enumerate(found, start=1)]
    return Snapshot(f"{store_label(url)} namespace {cache.namespace}", 0, entries)


def run_store_command(args: argparse.Namespace) -> int:
    """stats, export, show or search on a store; the redis errors become exit status 1."""
    import redis

    from .cache_inspect import show_or_search
    from .store import store_label

    try:
        snapshot = _snapshot(args.file, args.namespace)
    except (redis.RedisError, OSError) as exc:
        print(f"error: the store {store_label(args.file)} cannot be read: {exc}", file=sys.stderr)
        return 1
    if args.cache_command == "stats":
        stats = snapshot.stats()
        for only_in_files in ("file", "bytes", "superseded_records", "incomplete_tail_bytes"):
            stats.pop(only_in_files)
        namespace = args.namespace or _namespace()
        print(json.dumps({"store": store_label(args.file), "namespace": namespace, **stats}, indent=2))
    elif args.cache_command == "export":
        if args.out is not None:
            print("error: export from a store writes to standard output: add > FILE", file=sys.stderr)
            return 2
        snapshot.export_jsonl(sys.stdout)
    else:
        return show_or_search(snapshot, args)
    return 0


def _read(name: str, namespace: str | None) -> Entries:
    from .cache_inspect import read_cache
    from .store import is_store_url

    if is_store_url(name):
        yield from _store_cache(name, namespace).entries()
        return
    snapshot = read_cache(Path(name))
    if snapshot.damage is not None:
        raise CacheError(f"{name} is damaged ({snapshot.damage}); copy what is whole with cache export first")
    for entry in snapshot.entries:
        yield entry.key, entry.value, entry.request


def copy_entries(source: str, target: str, namespace: str | None = None) -> tuple[int, int]:
    """Add every entry of `source` missing from `target` (each a cache file or a store URL):
    (entries added, entries `target` already held). Raises CacheError, or redis errors."""
    from .cache import open_cache
    from .store import is_store_url

    added = kept = 0
    if is_store_url(target):
        store = _store_cache(target, namespace)
        client = store.store.client
        for key, value, request in _read(source, namespace):
            if store.write(client, key, value, request):
                added += 1
            else:
                kept += 1
        return added, kept
    cache = open_cache(target)
    for key, value, request in _read(source, namespace):
        if key in cache:
            kept += 1
            continue
        cache.put(key, value, request)
        if not cache.holds(key):  # not stored (a full disk, a read-only place): the WARNING said why
            raise CacheError(f"{target} could not take entry {key[:16]}; {added} entries were added before it")
        added += 1
    return added, kept


def run_copy(args: argparse.Namespace) -> int:
    """`cache copy SRC DST`: 0 done, 1 a cache or store that cannot be read or written, 2 fix the command."""
    import os

    from .store import is_store_url, store_label

    for name in (args.source, args.target):
        if not is_store_url(name) and name == os.devnull:
            print(f"error: {name} is not a cache", file=sys.stderr)
            return 2
    if not is_store_url(args.source) and not os.path.lexists(args.source):
        print(f"error: no cache file at {args.source}", file=sys.stderr)
        return 2
    try:
        import redis

        errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
    except ImportError:
        errors = (OSError,)
    try:
        added, kept = copy_entries(args.source, args.target, args.namespace)
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except errors as exc:
        where = " or ".join(store_label(n) for n in (args.source, args.target) if is_store_url(n))
        print(f"error: the store {where} failed: {exc}", file=sys.stderr)
        return 1
    shown = [store_label(n) if is_store_url(n) else n for n in (args.source, args.target)]
    print(f"copied {added} entries from {shown[0]} to {shown[1]}" + (f"; {kept} were there already" if kept else ""))
    return 0
