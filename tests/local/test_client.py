"""LocalClient against the real llama.cpp servers: chat, streams, structured output, embeddings,
async calls, the reworded errors and the cache in front of it.

A 135M-parameter model writes toy text, so these tests check protocol and structure, never
the content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_utils import InvalidRequestError, LLMCall, client, force_api_type, register_client
from openai_utils.local import LocalClient, specs
from openai_utils.local.server import chat_server, embedding_server
from tests.local.helpers import HELLO


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# -- chat -------------------------------------------------------------------------------------


def test_send_message_returns_text_through_the_registry(llm: LocalClient) -> None:
    register_client("local", llm)
    force_api_type("local")
    reply = client().send_message(HELLO, temperature=0, max_tokens=24)
    assert isinstance(reply, dict)
    assert reply["role"] == "assistant"
    assert isinstance(reply["content"], str) and reply["content"].strip()
    assert chat_server().running


def test_temperature_zero_repeats_itself(llm: LocalClient) -> None:
    first = llm.send_message(HELLO, temperature=0, max_tokens=24)
    second = llm.send_message(HELLO, temperature=0, max_tokens=24)
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["content"] == second["content"]


def test_json_schema_response_format_is_followed(llm: LocalClient) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "is_capital": {"type": "boolean"},
        },
        "required": ["city", "is_capital"],
        "additionalProperties": False,
    }
    reply = llm.send_message(
        [{"role": "user", "content": "Give a city in France as JSON."}],
        temperature=0,
        max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": schema}},
    )
    assert isinstance(reply, dict)
    data = json.loads(reply["content"])
    assert set(data) == {"city", "is_capital"}
    assert isinstance(data["city"], str) and len(data["city"]) <= 20
    assert isinstance(data["is_capital"], bool)


def test_a_pydantic_response_format_comes_back_parsed(llm: LocalClient) -> None:
    pytest.importorskip("pydantic")
    import pydantic

    class City(pydantic.BaseModel):
        city: str
        is_capital: bool

    reply = llm.send_message(
        [{"role": "user", "content": "Give a city in France as JSON."}],
        temperature=0,
        max_tokens=64,
        response_format=City,
    )
    assert isinstance(reply.parsed, City) and reply.parsed.city


def test_llmcall_with_the_shipped_templates_returns_text(llm: LocalClient) -> None:
    register_client("local", llm)
    force_api_type("local")
    call = LLMCall("summarize.system", "summarize.user", temperature=0, max_tokens=40)
    summary = call.call(
        text="The river flooded the town in May. Volunteers rebuilt the bridge by June.", max_sentences=1
    )
    assert isinstance(summary, str) and summary.strip()
    assert call.messages is not None and "at most 1 sentences" in call.messages[0]["content"]


def test_a_stream_yields_several_chunks_that_join_to_the_plain_answer(llm: LocalClient) -> None:
    question = [{"role": "user", "content": "Describe the sea in one sentence."}]
    chunks = list(llm.send_message(question, temperature=0, max_tokens=24, stream=True))
    plain = llm.send_message(question, temperature=0, max_tokens=24)
    assert len(chunks) > 3
    assert "".join(chunks) == plain["content"]


def test_a_stream_cut_by_max_tokens_says_so_like_a_plain_call(
    llm: LocalClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openai_utils")
    question = [{"role": "user", "content": "Describe the sea in three long sentences."}]
    stream = llm.send_message(question, temperature=0, max_tokens=5, stream=True)
    text = "".join(stream)
    plain = llm.send_message(question, temperature=0, max_tokens=5)
    assert stream.truncated is True and stream.finish_reason == "length" and plain.truncated
    assert stream.content == text == plain["content"]
    assert stream.usage["completion_tokens"] == plain.usage["completion_tokens"] == 5
    cut = [r.getMessage() for r in caplog.records if r.name == "openai_utils" and r.levelno == logging.WARNING]
    assert len(cut) == 2 and cut[0] == cut[1] and "cut off at the token limit" in cut[0]


def test_the_answer_names_the_local_model(llm: LocalClient) -> None:
    """Without a model argument the request names the local model, not MODEL (gpt-4o-mini)."""
    data = llm._raw_model_call({"model": chat_server().spec.alias, "messages": HELLO, "max_tokens": 2}, 30)
    assert data["model"] == specs.CHAT_ALIAS
    assert chat_server().spec.alias == specs.CHAT_ALIAS


def test_prompt_over_the_context_is_a_clear_invalid_request(llm: LocalClient) -> None:
    sent = chat_server().requests
    with pytest.raises(InvalidRequestError) as caught:
        llm.send_message([{"role": "user", "content": "word " * 5000}], max_tokens=4)
    error = caught.value
    assert "context" in str(error) and "LOCAL_CONTEXT_SIZE" in str(error)
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert chat_server().requests == sent + 1, "an over-long prompt must not be retried"


def test_async_calls_use_the_same_servers(llm: LocalClient) -> None:
    async def both() -> tuple[Any, Any]:
        asynchronous = LocalClient(cache_api_calls=False)
        reply = await asynchronous.asend_message(HELLO, temperature=0, max_tokens=24)
        vector = await asynchronous.aget_embedding("The cat sat on the mat.")
        return reply, vector

    reply, vector = asyncio.run(both())
    assert reply == llm.send_message(HELLO, temperature=0, max_tokens=24)
    single = llm.get_embedding("The cat sat on the mat.")
    assert isinstance(vector, list) and isinstance(single, list)
    assert cosine(vector, single) > 0.9999


# -- embeddings -------------------------------------------------------------------------------


def test_similar_sentences_embed_closer(llm: LocalClient) -> None:
    cat = llm.get_embedding("The cat sat on the mat.")
    feline = llm.get_embedding("A feline rested on the rug.")
    revenue = llm.get_embedding("Quarterly revenue grew 4%.")
    assert isinstance(cat, list) and len(cat) == 384
    assert cosine(cat, feline) > cosine(cat, revenue) + 0.2  # measured: 0.56 against -0.03


def test_a_batch_equals_the_single_calls_in_order(llm: LocalClient) -> None:
    texts = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew 4%."]
    batch = llm.get_embedding(texts)
    assert isinstance(batch, list) and len(batch) == 3
    for text, vector in zip(texts, batch, strict=True):
        single = llm.get_embedding(text)
        assert isinstance(single, list)
        assert cosine(single, vector) > 0.9999


def test_embedding_input_over_the_context_is_a_clear_invalid_request(llm: LocalClient) -> None:
    sent = embedding_server().requests
    with pytest.raises(InvalidRequestError, match="context of 512 tokens") as caught:
        llm.get_embedding("word " * 600)
    assert caught.value.code == "context_length_exceeded"
    assert embedding_server().requests == sent + 1, "an over-long input must not be retried"


# -- the cache in front of the local client ---------------------------------------------------


@pytest.fixture
def cached(engine: None, tmp_path: Path) -> Iterator[LocalClient]:
    with_cache = LocalClient()
    with_cache.set_api_cache(True, str(tmp_path / "c.pickle"))
    yield with_cache
    with_cache.close()


def test_a_cached_call_never_reaches_the_server(cached: LocalClient) -> None:
    question = [{"role": "user", "content": "Say one word."}]
    first = cached.send_message(question, temperature=0, max_tokens=8)
    server = chat_server()
    requests, metrics = server.requests, server.metrics()
    second = cached.send_message(question, temperature=0, max_tokens=8)

    assert second == first
    assert (cached.cache_misses, cached.cache_hits) == (1, 1)
    assert server.requests == requests  # counted by LocalServer.post, on the client side
    after = server.metrics()  # counted inside llama.cpp
    assert after["tokens_predicted_total"] == metrics["tokens_predicted_total"]
    assert after["prompt_tokens_total"] == metrics["prompt_tokens_total"]
    assert after["prompt_tokens_cached_total"] == metrics["prompt_tokens_cached_total"]

    vector = cached.get_embedding("cache me")
    embedder = embedding_server()
    count = embedder.requests
    assert cached.get_embedding("cache me") == vector
    assert embedder.requests == count
