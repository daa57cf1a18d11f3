"""The embedded local model: server start-up, first-call latency, generation speed, embeddings.

Why: `API_TYPE = local` promises a usable model with no network, so what a user waits for must
stay small: the first call (which starts the llama.cpp server in-process, split here into the
start and the generation), the generation speed of the packaged SmolLM2-135M at the default LOCAL_THREADS,
and the embedding latency of the converted all-MiniLM-L6-v2, plus the one-off conversion.
The generation speed has a floor beside it, taken in turns with it: the same request posted to
the same llama.cpp server directly (floors.RawHTTP), with no openai_utils in between.

Everything runs in this process against the real servers, with a temporary model cache so the
conversion is measured and ~/.cache is left alone. Without the engine the topic reports
"skipped" with the setup command instead of failing the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import tempfile
import time
from typing import Any

from floors import RawHTTP
from timing import Comparison, Row, info_row, interleaved, loopback, median, percentile, ratio_row

__all__ = ["run"]

TOPIC = "local"
MESSAGES = [{"role": "user", "content": "Write a short story about a robot."}]
GOAL_FIRST_CALL_S = 3.0
GOAL_TOKENS_PER_S = 30.0
GOAL_EMBEDDING_MS = 50.0
GOAL_LOCAL_HIT_OVER_OPENAI_HIT = 1.2
HIT_MESSAGES = [{"role": "user", "content": "Say one word."}]
HIT_ARGS: dict[str, Any] = {"temperature": 0, "max_tokens": 16}
"""A request the local model answers in full ("Awesome!", finish_reason stop): a cut-off answer
would log its warning on every hit, and the hits would time the logging."""


def _goal_row(measure: str, value: str, goal: str, met: bool) -> Row:
    return Row(TOPIC, measure, value, goal, met)


def run(quick: bool) -> list[Row]:
    """Start both servers fresh and measure them; stop them afterwards."""
    if importlib.util.find_spec("xllamacpp") is None:
        return [info_row(TOPIC, "skipped", "xllamacpp not installed: python -m openai_utils local setup")]

    import openai  # noqa: F401  (loaded up front, so the first call measures the server, not the SDK import)

    from openai_utils import local
    from openai_utils.local import convert, paths

    local.stop_local_servers()  # a fresh start, whatever ran before in this process
    saved = os.environ.get(paths.CACHE_ENV_VAR)
    with tempfile.TemporaryDirectory(prefix="bench_local_") as cache:
        os.environ[paths.CACHE_ENV_VAR] = cache
        try:
            return _measure(quick, local, convert)
        finally:
            local.stop_local_servers()
            if saved is None:
                os.environ.pop(paths.CACHE_ENV_VAR, None)
            else:
                os.environ[paths.CACHE_ENV_VAR] = saved


def _measure(quick: bool, local: Any, convert: Any) -> list[Row]:
    client = local.LocalClient(cache_api_calls=False)
    rows: list[Row] = []

    # -- first chat call: server start + a 24-token generation ----------------------------
    started = time.perf_counter()
    client.send_message(MESSAGES, temperature=0, max_tokens=24)
    first_call = time.perf_counter() - started
    chat = local.chat_server()
    start_s = chat.start_seconds or 0.0
    rows.append(
        _goal_row(
            "first send_message (24 tokens), server start included",
            f"{first_call:.2f} s",
            f"<= {GOAL_FIRST_CALL_S:.1f} s",
            first_call <= GOAL_FIRST_CALL_S,
        )
    )
    rows.append(info_row(TOPIC, "  of which chat server start (model load, /health)", f"{start_s:.2f} s"))
    rows.append(info_row(TOPIC, "  of which the request itself", f"{first_call - start_s:.2f} s"))
    started = time.perf_counter()
    client.send_message(MESSAGES, temperature=0, max_tokens=24)
    rows.append(
        info_row(
            TOPIC, "the same send_message again (server up, prompt cached)", f"{time.perf_counter() - started:.2f} s"
        )
    )

    # -- generation speed: 64 tokens, EOS ignored so every run generates all of them ------
    runs = 3 if quick else 8
    request = {
        "model": chat.spec.alias,
        "messages": MESSAGES,
        "temperature": 0,
        "max_tokens": 64,
        "ignore_eos": True,  # llama.cpp's own field: a fixed amount of work per run
    }
    wall_rates: list[float] = []
    server_rates: list[float] = []
    latencies: list[float] = []
    direct = RawHTTP(chat.base_url + "/v1", chat.api_key, json.dumps(request).encode())
    direct_rates: list[float] = []
    for _ in range(runs):  # ours and the engine direct in turns, so load hits both alike
        started = time.perf_counter()
        data = client._raw_model_call(request, 60.0)
        seconds = time.perf_counter() - started
        tokens = data["usage"]["completion_tokens"]
        latencies.append(seconds)
        wall_rates.append(tokens / seconds)
        timings = data.get("timings") or {}
        if timings.get("predicted_per_second"):
            server_rates.append(float(timings["predicted_per_second"]))
        started = time.perf_counter()
        tokens = direct()["usage"]["completion_tokens"]
        direct_rates.append(tokens / (time.perf_counter() - started))
    direct.close()
    rate = median(wall_rates)
    rows.append(
        _goal_row(
            f"64-token completion, tokens/s incl. prompt and HTTP, median of {runs}",
            f"{rate:.1f}",
            f">= {GOAL_TOKENS_PER_S:.0f}",
            rate >= GOAL_TOKENS_PER_S,
        )
    )
    if server_rates:
        rows.append(
            info_row(TOPIC, "  generation only (llama.cpp timings), median", f"{median(server_rates):.1f} tokens/s")
        )
    rows.append(
        info_row(
            TOPIC, "  floor: the same request to llama.cpp direct, tokens/s, median", f"{median(direct_rates):.1f}"
        )
    )
    per_token = Comparison(
        "local model, 64-token completion, per token", "ms", 1000 / rate, (), 1000 / median(direct_rates)
    )
    rows.append(
        Row(
            TOPIC,
            "  ours / llama.cpp direct, tokens/s, median",
            f"{rate / median(direct_rates):.2f}x",
            comparison=per_token,
        )
    )
    rows.append(
        info_row(
            TOPIC, "  64-token completion latency, median / max", f"{median(latencies):.2f} / {max(latencies):.2f} s"
        )
    )
    rows.append(
        info_row(TOPIC, "  threads / context / slots", f"{chat.threads} / {chat.spec.context_size} / {chat.spec.slots}")
    )

    rows += _cache_hits(quick)

    # -- embeddings: conversion, start, single and batch latency --------------------------
    started = time.perf_counter()
    convert.ensure_minilm_gguf()
    convert_s = time.perf_counter() - started
    rows.append(info_row(TOPIC, "convert all-MiniLM-L6-v2 to GGUF (once per user)", f"{convert_s:.2f} s"))
    started = time.perf_counter()
    client.get_embedding("warm up")
    first_embedding = time.perf_counter() - started
    embedder = local.embedding_server()
    rows.append(info_row(TOPIC, "first get_embedding, embedding server start included", f"{first_embedding:.2f} s"))
    rows.append(info_row(TOPIC, "  of which embedding server start", f"{(embedder.start_seconds or 0.0):.2f} s"))

    calls = 20 if quick else 100
    single_ms: list[float] = []
    for index in range(calls):
        started = time.perf_counter()
        client.get_embedding(f"The cat sat on mat number {index}.")
        single_ms.append((time.perf_counter() - started) * 1000)
    p50 = median(single_ms)
    rows.append(
        _goal_row(
            f"get_embedding, one sentence, median of {calls}",
            f"{p50:.1f} ms",
            f"<= {GOAL_EMBEDDING_MS:.0f} ms",
            p50 <= GOAL_EMBEDDING_MS,
        )
    )
    rows.append(info_row(TOPIC, "  p90", f"{percentile(single_ms, 90):.1f} ms"))

    batch = [f"Sentence number {i} about a cat on a mat." for i in range(32)]
    batch_ms: list[float] = []
    for _ in range(3 if quick else 10):
        started = time.perf_counter()
        client.get_embedding(batch)
        batch_ms.append((time.perf_counter() - started) * 1000)
    rows.append(
        info_row(
            TOPIC,
            "get_embedding, batch of 32 sentences, median",
            f"{statistics.median(batch_ms):.0f} ms ({statistics.median(batch_ms) / 32:.1f} ms/text)",
        )
    )

    client.close()
    started = time.perf_counter()
    local.stop_local_servers()
    rows.append(info_row(TOPIC, "stop both servers", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
    return rows


def _cache_hits(quick: bool) -> list[Row]:
    """A local cache hit next to an OpenAI-client hit, both with a filled cache, in turns: a hit
    must not pay for finding the local model (a package lookup, a stat) on every call."""
    from openai_utils import OpenAIClient
    from openai_utils.local import LocalClient

    with tempfile.TemporaryDirectory(prefix="bench_local_hits_") as folder, loopback():
        ours = LocalClient(cache_api_calls=True, cache_file_name=os.path.join(folder, "local.pickle"))
        remote = OpenAIClient(cache_api_calls=True, cache_file_name=os.path.join(folder, "openai.pickle"))
        ours.send_message(HIT_MESSAGES, **HIT_ARGS)  # the misses that fill the caches
        remote.send_message(HIT_MESSAGES, **HIT_ARGS)
        per_round = 100 if quick else 500
        local_us, openai_us = interleaved(
            [
                lambda: ours.send_message(HIT_MESSAGES, **HIT_ARGS),
                lambda: remote.send_message(HIT_MESSAGES, **HIT_ARGS),
            ],
            rounds=6,
            per_round=per_round,
            warmup=50,
        )
        hits = (ours.cache_hits, ours.cache_misses, remote.cache_hits, remote.cache_misses)
        ours.close()
        remote.close()
    expected = 50 + 6 * per_round
    if hits != (expected, 1, expected, 1):
        raise RuntimeError(f"not all timed calls were hits: (local hits, misses, OpenAI hits, misses) = {hits}")
    local_hit, openai_hit = median(local_us), median(openai_us)
    return [
        info_row(TOPIC, "local cache hit / OpenAI cache hit, medians", f"{local_hit:.1f} / {openai_hit:.1f} us"),
        ratio_row(TOPIC, "local cache hit / OpenAI cache hit", local_hit / openai_hit, GOAL_LOCAL_HIT_OVER_OPENAI_HIT),
    ]
