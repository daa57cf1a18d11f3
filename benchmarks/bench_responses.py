"""What the Responses API route costs per call: send_message through /responses against the same
call through /chat/completions, and against the raw SDK's responses.create, on one loopback server.

Why: a call routed to /responses is translated on the way out and on the way back
(responses_wire.py); that must stay small next to the call. All three sides talk to the same
tests/fake_server.py server (latency 0), in one process, in alternating blocks, so drift hits them
alike. The fake server's two endpoints do about the same work, so the ratio ours-via-responses /
ours-via-chat is the translation's share plus the difference of the two answers' sizes.
"""

from __future__ import annotations

import openai
from timing import BENCH_KEY, BENCH_MESSAGES, BENCH_MODEL, Row, info_row, interleaved, loopback, median, ratio_row

from openai_utils import OpenAIClient, force_default_value

__all__ = ["run"]

TOPIC = "responses"
RESPONSES_MODEL = "bench-responses-model"
GOAL_VS_CHAT = 1.15
"""A call through /responses costs at most 15% more than the same call through chat."""
GOAL_VS_SDK = 1.10
"""And at most 10% more than the raw SDK's responses.create to the same server."""


def run(quick: bool) -> list[Row]:
    rounds, block, warmup = (4, 25, 20) if quick else (12, 50, 50)
    with loopback(BENCH_KEY, BENCH_MODEL) as server:
        raw = openai.OpenAI(base_url=server.base_url, api_key=BENCH_KEY, max_retries=0)
        ours = OpenAIClient(cache_api_calls=False)

        # One setting for the whole run (changing one per call would redo the per-settings work
        # of every call): on auto, the model RESPONSES_MODELS names goes to /responses.
        force_default_value("responses_models", RESPONSES_MODEL)

        def through(mode: str) -> object:
            return ours.send_message(BENCH_MESSAGES, model=RESPONSES_MODEL if mode == "responses" else BENCH_MODEL)

        def by_sdk() -> openai.types.responses.Response:
            return raw.responses.create(
                model=RESPONSES_MODEL,
                instructions=BENCH_MESSAGES[0]["content"],
                input=[{"role": "user", "content": BENCH_MESSAGES[-1]["content"]}],
                store=False,
            )

        expected = by_sdk().output_text
        if through("responses")["content"] != expected or through("chat")["content"] != expected:  # type: ignore[index]
            raise RuntimeError("the three sides do not get the same answer: not the same call")
        chat_us, responses_us, sdk_us = interleaved(
            [
                lambda: through("chat"),
                lambda: through("responses"),
                by_sdk,
            ],
            rounds=rounds,
            per_round=block,
            warmup=warmup,
        )
        raw.close()
        ours.close()
    chat, responses, sdk = median(chat_us), median(responses_us), median(sdk_us)
    calls = rounds * block
    return [
        info_row(
            TOPIC,
            "send_message via chat / via responses / raw SDK responses.create, median",
            f"{chat:.0f} / {responses:.0f} / {sdk:.0f} us",
        ),
        ratio_row(
            TOPIC,
            f"via /responses / via /chat/completions, median ({calls} calls each)",
            responses / chat,
            GOAL_VS_CHAT,
        ),
        ratio_row(TOPIC, "via /responses / raw SDK responses.create, median", responses / sdk, GOAL_VS_SDK),
    ]
