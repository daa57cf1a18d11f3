"""Per-call cost of OpenAIClient.send_message against the raw openai SDK, on one loopback server (latency 0).

Why: the library wraps every call (config lookups, request building, retries, result shaping),
and that wrapping must stay cheap next to the SDK call it replaces. Both sides talk to the same
tests/fake_server.py server (latency 0, so the network costs as little as it ever will and the
client code is as large a share as it ever gets), in one process, in alternating blocks
(ABAB...) so that drift (CPU frequency, other load) hits both equally.

The headline is the ratio ours/raw. Beside them, in the same alternation, the floor: the SDK's
own HTTP client posting the same JSON bytes and parsing the answer (floors.RawHTTP), which no
client could undercut; both sides are shown against it. A second measurement swaps the SDK for
an object that answers instantly with the server's bytes, so what remains is openai_utils' own
code per call, the network and the SDK subtracted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai
from floors import RawHTTP, sent_body
from timing import (
    BENCH_KEY,
    BENCH_MESSAGES,
    BENCH_MODEL,
    Row,
    info_row,
    interleaved,
    loopback,
    median,
    percentile,
    ratio_row,
    time_calls,
)

from openai_utils import OpenAIClient
from openai_utils.sdk_backend import OpenAIBackend

__all__ = ["run"]

TOPIC = "overhead"
GOAL_RATIO = 1.10
GOAL_FLOOR_RATIO = 1.30
"""The stretch goal of issue 16: per call, at most 1.3x a bare HTTP post of the same bytes."""


@dataclass(frozen=True)
class Plan:
    """How many calls to make: `calls` per side, measured in alternating blocks of `block`."""

    warmup: int
    calls: int
    block: int
    stubbed_calls: int


FULL = Plan(warmup=50, calls=600, block=50, stubbed_calls=5000)
QUICK = Plan(warmup=20, calls=100, block=25, stubbed_calls=1000)


def run(quick: bool) -> list[Row]:
    """Measure raw SDK vs send_message over HTTP, then send_message with the SDK stubbed out."""
    plan = QUICK if quick else FULL
    with loopback(BENCH_KEY, BENCH_MODEL) as server:
        raw = openai.OpenAI(base_url=server.base_url, api_key=BENCH_KEY, max_retries=0)
        ours = OpenAIClient(cache_api_calls=False)
        canned = _check_same_answer(raw, ours)
        floor = RawHTTP(server.base_url, BENCH_KEY, sent_body(server.base_url, BENCH_KEY, BENCH_MODEL, BENCH_MESSAGES))
        floor.check(json.loads(canned)["choices"][0]["message"]["content"])
        raw_us, ours_us, floor_us = interleaved(
            [
                lambda: raw.chat.completions.create(model=BENCH_MODEL, messages=BENCH_MESSAGES),
                lambda: ours.send_message(BENCH_MESSAGES),
                floor,
            ],
            rounds=plan.calls // plan.block,
            per_round=plan.block,
            warmup=plan.warmup,
        )
        raw.close()
        floor.close()
        stubbed = _StubbedClient(canned)
        time_calls(lambda: stubbed.send_message(BENCH_MESSAGES), plan.warmup)
        library_us = time_calls(lambda: stubbed.send_message(BENCH_MESSAGES), plan.stubbed_calls)

    raw_median, ours_median, library_median = median(raw_us), median(ours_us), median(library_us)
    floor_median = median(floor_us)
    return [
        info_row(TOPIC, "raw SDK chat.completions.create, median / p90", _us_pair(raw_us)),
        info_row(TOPIC, "send_message (cache off), median / p90", _us_pair(ours_us)),
        ratio_row(
            TOPIC, f"send_message / raw SDK, median ({plan.calls} calls each)", ours_median / raw_median, GOAL_RATIO
        ),
        info_row(TOPIC, "send_message / raw SDK, p90", f"{percentile(ours_us, 90) / percentile(raw_us, 90):.2f}x"),
        info_row(TOPIC, "send_message - raw SDK, median", f"{ours_median - raw_median:+.0f} us"),
        info_row(TOPIC, "floor: raw HTTP (SDK's HTTP client, same bytes), median / p90", _us_pair(floor_us)),
        ratio_row(TOPIC, "send_message / raw HTTP floor, median", ours_median / floor_median, GOAL_FLOOR_RATIO),
        info_row(TOPIC, "raw SDK / raw HTTP floor, median", f"{raw_median / floor_median:.2f}x"),
        info_row(TOPIC, "library code only (SDK+network stubbed), median / p90", _us_pair(library_us)),
        info_row(TOPIC, "library code only / raw SDK call, median", f"{100 * library_median / raw_median:.1f}%"),
    ]


def _check_same_answer(raw: openai.OpenAI, ours: OpenAIClient) -> bytes:
    """Fail loudly unless both sides get the same reply from the server, so they do the same work.

    Returns the server's raw answer bytes, which the stubbed client replays.
    """
    response = raw.chat.completions.with_raw_response.create(model=BENCH_MODEL, messages=BENCH_MESSAGES)
    expected = response.parse().choices[0].message.content
    reply = ours.send_message(BENCH_MESSAGES)
    if not isinstance(reply, dict) or reply.get("content") != expected:
        raise RuntimeError(f"send_message answered {reply!r}, the raw SDK {expected!r}: not the same call")
    return response.content


def _us_pair(samples: list[float]) -> str:
    return f"{median(samples):.0f} / {percentile(samples, 90):.0f} us"


class _CannedSDK:
    """Stands in for openai.OpenAI in post_json: answers every POST at once with fixed bytes."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    def post(self, path: str, *, body: Mapping[str, Any], cast_to: type, options: Mapping[str, Any]) -> bytes:
        return self._answer


class _StubbedClient(OpenAIClient):
    """OpenAIClient with only the SDK object replaced, so all of openai_utils' per-call code runs:
    config reads, request building, the SDK-settings check, retries, JSON parsing, result shaping."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(cache_api_calls=False, backend=_CannedBackend(answer))


class _CannedBackend(OpenAIBackend):
    """The OpenAI backend with only the SDK client it builds replaced."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self._answer = answer

    def build_sdk(self, settings: Any, asynchronous: bool) -> Any:
        return _CannedSDK(self._answer)
