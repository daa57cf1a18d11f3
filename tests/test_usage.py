"""Usage and cost: billed calls, cached calls, per client and for the process, priced from config."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from openai_utils import (
    OpenAIClient,
    default,
    force_api_cache,
    get_cost_stats,
    pretty_print_cost_stats,
    reset_cost_stats,
)
from openai_utils.pricing import Price
from openai_utils.usage import UsageStats, counted, format_stats
from tests.fake_server import FakeOpenAIServer

HI = [{"role": "user", "content": "count these words please"}]


@pytest.fixture(autouse=True)
def fresh_totals() -> None:
    reset_cost_stats()


def test_uncached_and_cached_calls_are_counted_apart(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    reply = oai.send_message(HI, model="gpt-4o-mini")
    usage = reply.usage
    oai.send_message(HI, model="gpt-4o-mini")
    stats = oai.get_cost_stats()
    assert stats["model_calls"] == 1 and stats["cached_calls"] == 1
    assert stats["input_tokens"] == usage["prompt_tokens"] and stats["output_tokens"] == usage["completion_tokens"]
    assert stats["total_tokens"] == usage["total_tokens"] and stats["saved_tokens"] == usage["total_tokens"]
    expected = (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1_000_000
    assert stats["cost_usd"] == pytest.approx(expected) and stats["saved_cost_usd"] == pytest.approx(expected)
    assert stats["by_model"]["gpt-4o-mini"]["model_calls"] == 1


def test_the_process_total_sums_every_client(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    other = OpenAIClient()
    oai.send_message(HI)
    other.send_message(HI, model="gpt-4.1")
    other.get_embedding(["a", "b"])
    total = get_cost_stats()
    assert total["model_calls"] == 3
    assert set(total["by_model"]) == {"gpt-4o-mini", "gpt-4.1", "text-embedding-3-small"}
    assert oai.get_cost_stats()["model_calls"] == 1 and other.get_cost_stats()["model_calls"] == 2
    reset_cost_stats()  # the process total and every registered client (oai is; other is not)
    assert get_cost_stats()["model_calls"] == 0 and oai.get_cost_stats()["model_calls"] == 0
    assert other.get_cost_stats()["model_calls"] == 2


def test_streams_and_async_calls_are_counted(oai: OpenAIClient) -> None:
    list(oai.send_message(HI, stream=True))
    asyncio.run(oai.asend_message(HI))
    stats = oai.get_cost_stats()
    assert stats["model_calls"] == 2 and stats["output_tokens"] > 0


def test_prices_come_from_config_and_unknown_models_are_unpriced(oai: OpenAIClient, tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[Prices]\nmy-model = 1000000, 2000000\n")
    default.reload()
    reply = oai.send_message(HI, model="my-model-v2")
    oai.send_message(HI, model="mystery")
    stats = oai.get_cost_stats()
    usage = reply.usage
    assert stats["by_model"]["my-model-v2"]["cost_usd"] == pytest.approx(
        usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    )
    assert stats["unpriced_calls"] == 1 and stats["by_model"]["mystery"]["cost_usd"] == 0


def test_a_bad_price_names_the_file_and_the_form(tmp_path: Path) -> None:
    from openai_utils import ConfigError

    (tmp_path / "config.ini").write_text("[Prices]\ngpt-4o = cheap\n")
    default.reload()
    with pytest.raises(ConfigError, match=r"config.ini: \[Prices\] gpt-4o = 'cheap'.*gpt-4o = 0.15, 0.60"):
        default.prices()


def test_optional_rates_are_read_and_bad_lines_say_the_form(tmp_path: Path) -> None:
    from openai_utils import ConfigError

    config = tmp_path / "config.ini"
    config.write_text("[Prices]\nthree = 1, 4, 0.25\nfive = 1, 4, , 0.4, 1.6\n")
    default.reload()
    assert default.prices()["three"] == Price(1.0, 4.0, 0.25)
    assert default.prices()["five"] == Price(1.0, 4.0, None, 0.4, 1.6)
    for bad in ("1, 2, 3, 4, 5, 6", "1", ", 2", "1, 2, -0.5", "1, 2, nan"):
        config.write_text(f"[Prices]\nm = {bad}\n")
        default.reload()
        with pytest.raises(ConfigError, match=r"expected 2 to 5 numbers.*cached input, batch input"):
            default.prices()


def test_cached_input_and_reasoning_tokens_are_priced_as_billed(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    (tmp_path / "config.ini").write_text("[Prices]\nbilled = 1000000, 4000000, 250000\n")
    default.reload()
    server.usage_details = {
        "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    usage = oai.send_message(HI, model="billed").usage
    stats = oai.get_cost_stats()
    assert usage["prompt_tokens"] > 2  # some input was not cached
    uncached = usage["prompt_tokens"] - 2
    assert stats["cost_usd"] == pytest.approx(uncached * 1 + 2 * 0.25 + usage["completion_tokens"] * 4)
    assert stats["cached_input_tokens"] == 2 and stats["reasoning_tokens"] == 3
    assert stats["by_model"]["billed"]["cached_input_tokens"] == 2
    text = format_stats(stats)
    assert "of which: 2 input tokens cached by the server" in text and "3 reasoning tokens" in text
    assert "cached in" in text and "reasoning" in text


def test_both_usage_shapes_and_batch_rates_are_counted(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[Prices]\nm = 1000000, 4000000, 500000\n")
    default.reload()
    chat, responses = (  # the same counts in the chat and in the Responses API's names
        {
            f"{inputs}_tokens": 10,
            f"{outputs}_tokens": 6,
            "total_tokens": 16,
            f"{inputs}_tokens_details": {"cached_tokens": 4},
            f"{outputs}_tokens_details": {"reasoning_tokens": 5},
        }
        for inputs, outputs in (("prompt", "completion"), ("input", "output"))
    )
    online = counted("m", chat)
    assert online == counted("m", responses)
    assert online.cost == pytest.approx(6 * 1 + 4 * 0.5 + 6 * 4)
    assert (online.cached_input_tokens, online.reasoning_tokens, online.batch) == (4, 5, False)
    batch = counted("m", chat, batch=True)
    assert batch.cost == pytest.approx(online.cost / 2) and batch.batch
    # details a server omits or sends as null count as nothing; a cached count never exceeds the input
    assert counted("m", {"prompt_tokens": 3, "prompt_tokens_details": None}).cached_input_tokens == 0
    assert counted("m", {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}).cached_input_tokens == 3
    stats = UsageStats()
    stats.record("m", chat, cached=False, batch=True)
    stats.record("m", chat, cached=True, batch=True)  # a cache hit is saved, not billed: no batch call
    snapshot = stats.snapshot()
    assert snapshot["batch_calls"] == 1 and snapshot["model_calls"] == 1 and snapshot["cached_calls"] == 1
    assert snapshot["cost_usd"] == pytest.approx(batch.cost) and snapshot["saved_cost_usd"] == pytest.approx(batch.cost)
    assert "1 Batch API call(s)" in format_stats(snapshot)


def test_pretty_print_shows_totals_and_models(oai: OpenAIClient, capsys: pytest.CaptureFixture[str]) -> None:
    oai.send_message(HI)
    pretty_print_cost_stats()
    oai.pretty_print_cost_stats()
    out = capsys.readouterr().out
    assert out.count("model calls 1, cached calls 0") == 2 and "gpt-4o-mini" in out


def test_format_stats_of_nothing() -> None:
    text = format_stats(UsageStats().snapshot(), io.StringIO())
    assert text.startswith("model calls 0, cached calls 0")
