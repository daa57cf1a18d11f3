"""openai_utils beside the peers users would pick instead, and the floor, in one run.

Peers: the raw openai SDK (with a thread pool from concurrent.futures for the parallel map and
a semaphore for async) and, when installed, litellm (completion, its in-memory cache,
acompletion, batch_completion). `make bench-peers` installs litellm into .venv-peers and runs
every topic from there; without it the litellm column shows "-" and one row says how to get it.

Every measure is taken against the same tests/fake_server.py on 127.0.0.1 (latency 0 for a call
and a hit, 100 ms for the concurrent runs), the sides in turns so drift hits them alike, and
each side is first checked to give the same answer. Floors: for a call, the SDK's own HTTP
client posting the same bytes (floors.RawHTTP); for a hit, the canonical key, a lookup and a
copy (floors.KeyLookup); for the concurrent runs, ceil(N / 16) x 100 ms. While the peers run,
offline.loopback_only() refuses any connection off loopback and a row reports what it refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from bench_async import _ours_async, _raw_async
from floors import KeyLookup, RawHTTP, sent_body
from offline import CHILD_GUARD, loopback_only
from timing import (
    BENCH_KEY,
    BENCH_MESSAGES,
    BENCH_MODEL,
    Comparison,
    Row,
    check_row,
    info_row,
    interleaved,
    loopback,
    median,
)

from openai_utils import OpenAIClient, force_default_value
from openai_utils.cache import ResponseCache
from openai_utils.parallel import send_messages

__all__ = ["run"]

TOPIC = "peers"
SDK = "openai SDK"
LITELLM = "litellm"
LATENCY = 0.1
CONCURRENCY = 16
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Plan:
    warmup: int
    rounds: int  # turns of every side, for the per-call measures
    calls: int  # calls per side per round
    hits: int  # our (and the floor's) cache hits per round; litellm's hits are 10x fewer
    concurrent: int  # requests per concurrent run
    concurrent_rounds: int
    imports: int  # fresh processes per module


FULL = Plan(warmup=30, rounds=6, calls=50, hits=500, concurrent=200, concurrent_rounds=3, imports=3)
QUICK = Plan(warmup=10, rounds=3, calls=20, hits=200, concurrent=64, concurrent_rounds=1, imports=1)


def run(quick: bool) -> list[Row]:
    """Every measure for ours, each peer and the floor; one row each, plus what was refused."""
    plan = QUICK if quick else FULL
    have_litellm = importlib.util.find_spec("litellm") is not None
    rows: list[Row] = []
    if not have_litellm:
        rows.append(info_row(TOPIC, LITELLM, "not installed: run make bench-peers"))
    with loopback_only() as refused:
        litellm = _import_litellm() if have_litellm else None
        comparisons = [
            *_calls_and_hits(plan, litellm),
            _async(plan, litellm),
            _parallel(plan, litellm),
            _imports(plan, have_litellm),
        ]
    rows += [Row(TOPIC, *c.summary(), comparison=c) for c in comparisons]
    rows.append(
        check_row(
            TOPIC, "connections refused off loopback", not refused, "none", ", ".join(sorted(set(refused))) or "none"
        )
    )
    return rows


def _import_litellm() -> Any:
    import litellm

    litellm.suppress_debug_info = True  # no "give feedback" banners in the table
    return litellm


def _litellm_kwargs(server: Any) -> dict[str, Any]:
    return {"model": f"openai/{BENCH_MODEL}", "api_base": server.base_url, "api_key": BENCH_KEY}


# -- a call and a cache hit, latency 0 ---------------------------------------------------------


def _calls_and_hits(plan: Plan, litellm: Any) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="openai_utils-bench-peers-") as folder, loopback() as server:
        raw = openai.OpenAI(base_url=server.base_url, api_key=BENCH_KEY, max_retries=0)
        ours = OpenAIClient(cache_api_calls=False)
        expected = ours.send_message(BENCH_MESSAGES)
        floor = RawHTTP(server.base_url, BENCH_KEY, sent_body(server.base_url, BENCH_KEY, BENCH_MODEL, BENCH_MESSAGES))
        floor.check(expected["content"])
        sides = {
            "ours": lambda: ours.send_message(BENCH_MESSAGES),
            SDK: lambda: raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES),
            "floor": floor,
        }
        _same(SDK, raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES), expected)
        if litellm is not None:
            kwargs = _litellm_kwargs(server)
            sides[LITELLM] = lambda: litellm.completion(messages=BENCH_MESSAGES, **kwargs)
            _same(LITELLM, sides[LITELLM](), expected)
        samples = interleaved(list(sides.values()), plan.rounds, plan.calls, plan.warmup)
        call = dict(zip(sides, (median(s) for s in samples), strict=True))
        raw.close()
        floor.close()
        ours.close()

        hit = _hits(plan, litellm, server, Path(folder) / "hits.pickle", expected)
    return [
        Comparison(
            "chat call, loopback latency 0, median",
            "us",
            call["ours"],
            ((SDK, call[SDK]), (LITELLM, call.get(LITELLM))),
            call["floor"],
        ),
        Comparison("cache hit, median", "us", hit["ours"], ((SDK, None), (LITELLM, hit.get(LITELLM))), hit["floor"]),
    ]


def _hits(plan: Plan, litellm: Any, server: Any, cache_file: Path, expected: dict[str, Any]) -> dict[str, float]:
    """Our hits, litellm's in its in-memory cache, and the floor's, in turns; none reaches the server."""
    ours = OpenAIClient(cache_api_calls=True, cache_file_name=str(cache_file))
    ours.send_message(BENCH_MESSAGES)  # the miss that fills the cache
    floor = KeyLookup(ours.api_type, server.base_url, server.requests[-1].body, list(ResponseCache(cache_file).items()))
    sides: dict[str, Callable[[], Any]] = {
        "ours": lambda: ours.send_message(BENCH_MESSAGES),
        "floor": lambda: floor(BENCH_MESSAGES),
    }
    counts = {"ours": plan.hits, "floor": plan.hits}
    if litellm is not None:
        from litellm.caching.caching import Cache

        kwargs = _litellm_kwargs(server)
        litellm.cache = Cache(type="local")
        sides[LITELLM] = lambda: litellm.completion(messages=BENCH_MESSAGES, caching=True, **kwargs)
        counts[LITELLM] = max(plan.hits // 10, 1)
        sides[LITELLM]()  # its miss
    try:
        for name, side in sides.items():
            _same(name, side(), expected)
        before = len(server.requests)
        samples = interleaved(list(sides.values()), plan.rounds, list(counts.values()), plan.warmup)
        if len(server.requests) != before:
            raise RuntimeError(f"{len(server.requests) - before} cache 'hits' reached the server")
    finally:
        if litellm is not None:
            litellm.cache = None
        ours.close()
    return dict(zip(sides, (median(s) for s in samples), strict=True))


def _same(side: str, answer: Any, expected: dict[str, Any]) -> None:
    """Fail unless `answer` (an SDK or litellm response, or a message dict) says what ours said."""
    content = answer.get("content") if isinstance(answer, dict) else answer.choices[0].message.content
    if content != expected["content"]:
        raise RuntimeError(f"{side} answered {content!r}, openai_utils {expected['content']!r}: not the same call")


# -- concurrent runs, latency 100 ms -------------------------------------------------------------


def _conversations(name: str, count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{name} {i}"}] for i in range(count)]


def _async(plan: Plan, litellm: Any) -> Comparison:
    """asend_message, AsyncOpenAI and litellm.acompletion, each with 16 in flight."""
    with loopback(latency=LATENCY) as server:
        force_default_value("max_concurrent_model_calls", CONCURRENCY)
        ours = OpenAIClient(cache_api_calls=False)
        sides = {
            "ours": lambda: asyncio.run(_ours_async(ours, plan.concurrent)),
            SDK: lambda: asyncio.run(_raw_async(server.base_url, plan.concurrent)),
        }
        if litellm is not None:
            sides[LITELLM] = lambda: asyncio.run(_litellm_async(litellm, server, plan.concurrent))
        seconds = _in_turns(sides, plan.concurrent_rounds)
        ours.close()
    return _concurrent_comparison(f"async, {plan.concurrent} calls, {CONCURRENCY} in flight", seconds, plan)


def _in_turns(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each side's seconds over `rounds` turns, the order reversed every other turn so that
    neither the first nor the last place falls on one side only."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(rounds):
        for name in list(sides) if round_ % 2 == 0 else list(sides)[::-1]:
            seconds[name].append(sides[name]())
    return seconds


async def _litellm_async(litellm: Any, server: Any, requests: int) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    kwargs = _litellm_kwargs(server)

    async def one(messages: list[dict[str, str]]) -> Any:
        async with limit:
            return await litellm.acompletion(messages=messages, **kwargs)

    await one(_conversations("warm-up", 1)[0])
    conversations = _conversations("async", requests)
    started = time.perf_counter()
    answers = await asyncio.gather(*(one(c) for c in conversations))
    elapsed = time.perf_counter() - started
    _check_echoes(LITELLM, [a.choices[0].message.content for a in answers], conversations)
    return elapsed


def _parallel(plan: Plan, litellm: Any) -> Comparison:
    """send_messages, the raw SDK over a ThreadPoolExecutor and litellm.batch_completion, 16 workers."""
    conversations = _conversations("parallel", plan.concurrent)
    with loopback(latency=LATENCY) as server:
        force_default_value("max_concurrent_model_calls", CONCURRENCY)
        ours = OpenAIClient(cache_api_calls=False)
        raw = openai.OpenAI(base_url=server.base_url, api_key=BENCH_KEY, max_retries=0)
        ours.send_message(_conversations("warm-up", 1)[0])
        raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES)

        def sdk_map() -> list[str]:
            def one(messages: list[dict[str, str]]) -> str:
                answer = raw.chat.completions.create(model=BENCH_MODEL, messages=messages)  # type: ignore[arg-type]
                return str(answer.choices[0].message.content)

            with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
                return list(pool.map(one, conversations))

        sides = {
            "ours": lambda: [m["content"] for m in send_messages(ours, conversations, CONCURRENCY, False)],
            SDK: sdk_map,
        }
        if litellm is not None:
            kwargs = _litellm_kwargs(server)
            sides[LITELLM] = lambda: [
                a.choices[0].message.content
                for a in litellm.batch_completion(messages=conversations, max_workers=CONCURRENCY, **kwargs)
            ]

        def timed(name: str, side: Callable[[], list[str]]) -> Callable[[], float]:
            def one_run() -> float:
                started = time.perf_counter()
                answers = side()
                elapsed = time.perf_counter() - started
                _check_echoes(name, answers, conversations)
                return elapsed

            return one_run

        seconds = _in_turns({name: timed(name, side) for name, side in sides.items()}, plan.concurrent_rounds)
        raw.close()
        ours.close()
    return _concurrent_comparison(f"parallel map, {plan.concurrent} calls, {CONCURRENCY} threads", seconds, plan)


def _check_echoes(side: str, answers: list[Any], conversations: list[list[dict[str, str]]]) -> None:
    expected = [f"echo: {c[0]['content']}" for c in conversations]
    if answers != expected:
        wrong = sum(a != e for a, e in zip(answers, expected, strict=False)) + abs(len(answers) - len(expected))
        raise RuntimeError(f"{side}: {wrong} of {len(expected)} answers missing, wrong or out of order")


def _concurrent_comparison(measure: str, seconds: dict[str, list[float]], plan: Plan) -> Comparison:
    ideal = math.ceil(plan.concurrent / CONCURRENCY) * LATENCY
    litellm = statistics.median(seconds[LITELLM]) if LITELLM in seconds else None
    return Comparison(
        f"{measure} at {LATENCY * 1000:.0f} ms",
        "s",
        statistics.median(seconds["ours"]),
        ((SDK, statistics.median(seconds[SDK])), (LITELLM, litellm)),
        ideal,
    )


# -- import time -------------------------------------------------------------------------------

_CHILD = (
    CHILD_GUARD
    + """
import time
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
import json
print(json.dumps({{"seconds": elapsed, "refused": _refused}}))
"""
)


def _imports(plan: Plan, have_litellm: bool) -> Comparison:
    """`import X` in fresh processes, in turns, the loopback guard in each; the first run of
    each only writes the bytecode caches."""
    modules = {"ours": "openai_utils", SDK: "openai", **({LITELLM: "litellm"} if have_litellm else {})}
    seconds: dict[str, list[float]] = {name: [] for name in modules}
    for module in modules.values():
        _import_seconds(module)
    for _ in range(plan.imports):
        for name, module in modules.items():
            seconds[name].append(_import_seconds(module))
    ms = {name: statistics.median(values) * 1000 for name, values in seconds.items()}
    return Comparison("import, fresh process, median", "ms", ms["ours"], ((SDK, ms[SDK]), (LITELLM, ms.get(LITELLM))))


def _import_seconds(module: str) -> float:
    code = _CHILD.format(folder=str(HERE), module=module)
    done = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed in a fresh interpreter:\n{done.stderr}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["refused"]:
        raise RuntimeError(f"import {module} tried to reach {answer['refused']}: refused")
    return float(answer["seconds"])
