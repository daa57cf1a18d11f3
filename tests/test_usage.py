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
from openai_utils.usage import UsageStats, format_stats
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


def test_pretty_print_shows_totals_and_models(oai: OpenAIClient, capsys: pytest.CaptureFixture[str]) -> None:
    oai.send_message(HI)
    pretty_print_cost_stats()
    oai.pretty_print_cost_stats()
    out = capsys.readouterr().out
    assert out.count("model calls 1, cached calls 0") == 2 and "gpt-4o-mini" in out


def test_format_stats_of_nothing() -> None:
    text = format_stats(UsageStats().snapshot(), io.StringIO())
    assert text.startswith("model calls 0, cached calls 0")
