"""Worker processes for the scale-out tests: each is a separate Python process using one store.

Run as `python -m tests.store_workers MODE JSON`, where JSON holds the store URL, the fake
server's base URL and what to send; each prints one JSON line with what it saw and exits 0 when
every call was answered.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from openai_utils import OpenAIClient, default


def prompts(worker: int, count: int, shared: int) -> list[str]:
    """The first `shared` prompts are the same in every worker, the rest this worker's own."""
    return [f"shared p{i}" if i < shared else f"w{worker} p{i}" for i in range(count)]


def _client(options: dict[str, Any]) -> OpenAIClient:
    default.force("base_url", options["base_url"])
    default.force("cache_backend", options["store"])
    default.force("cache_namespace", options.get("namespace", "openai_utils"))
    for name, value in options.get("settings", {}).items():
        default.force(name, value)
    return OpenAIClient(cache_api_calls=options.get("cache", True))


def run_prompts(options: dict[str, Any]) -> dict[str, Any]:
    """Send this worker's prompts; with `restarted` (a file), afterwards wait for it to exist, then
    send new prompts until the store is used again (its breaker closed), to show the cache fills again."""
    import openai_utils.store

    openai_utils.store.RETRY_SECONDS = options.get("retry_seconds", openai_utils.store.RETRY_SECONDS)
    client = _client(options)
    hits = 0
    for text in prompts(options["worker"], options["count"], options["shared"]):
        reply = client.send_message([{"role": "user", "content": text}])
        assert reply is not None, text
        hits += reply.cached
    after = 0
    if "restarted" in options:
        from openai_utils.cache import cache_for_calls

        flag = Path(options["restarted"])
        while not flag.exists():
            time.sleep(0.01)
        cache = cache_for_calls(None)
        assert cache is not None and hasattr(cache, "store")
        while after < 10 or cache.store.breaker.is_open:
            reply = client.send_message([{"role": "user", "content": f"after w{options['worker']} p{after}"}])
            assert reply is not None
            after += 1
            assert after < 100_000, "the store was never used again"
            if cache.store.breaker.is_open:
                time.sleep(0.01)
    return {"hits": hits, "after": after}


def run_limited(options: dict[str, Any]) -> dict[str, Any]:
    """Send `count` distinct prompts, uncached, through the rate limits: one at a time, or with
    `threads` from a thread pool (send_messages)."""
    client = _client({**options, "cache": False})
    conversations = [
        [{"role": "user", "content": f"limited w{options['worker']} p{i}"}] for i in range(options["count"])
    ]
    if options.get("threads"):
        replies = client.send_messages(conversations, max_workers=options["threads"], progress=False)
    else:
        replies = [client.send_message(conversation) for conversation in conversations]
    return {"failed": sum(not isinstance(reply, dict) for reply in replies)}


def main(argv: list[str]) -> int:
    mode, options = argv[0], json.loads(argv[1])
    result = {"prompts": run_prompts, "limited": run_limited}[mode](options)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
