"""Custom clients written for the module this library replaces: the old `_raw_model_call(self,
model, chat_api_params)` and `_raw_model_response_extractor(self, response)` run through retries,
the cache and the usage counts; an old hook that cannot be adapted fails at class creation."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils import ConfigError, InvalidRequestError, NonTerminalError, OpenAIClient, default
from tests.conftest import Sleeps
from tests.fake_server import FakeOpenAIServer, Fault

HI = [{"role": "user", "content": "hi"}]


def legacy_client_for(server: FakeOpenAIServer) -> type[OpenAIClient]:
    class LegacyClient(OpenAIClient):
        """Written as for the old module: the SDK called directly, its errors made retryable."""

        def _raw_model_call(self, model: str, chat_api_params: dict[str, Any]) -> Any:  # type: ignore[override]
            import openai

            sdk = openai.OpenAI(api_key="sk-legacy", base_url=server.base_url, max_retries=0)
            try:
                return sdk.chat.completions.create(model=model, **chat_api_params)
            except openai.InternalServerError as exc:
                raise NonTerminalError(str(exc)) from exc
            finally:
                sdk.close()

        def _raw_model_response_extractor(self, response: Any) -> dict[str, Any]:
            return {"role": "assistant", "content": response.choices[0].message.content}

    return LegacyClient


def test_a_legacy_subclass_runs_with_retries_cache_and_stats(server: FakeOpenAIServer, sleeps: Sleeps) -> None:
    default.force("cache_file_name", "legacy.cache")
    client = legacy_client_for(server)(cache_api_calls=True, sleep=sleeps.append, random_value=lambda: 0.5)
    server.script(Fault.status(503))
    first = client.send_message(HI, max_attempts=3)
    again = client.send_message(HI, max_attempts=3)
    assert first == again and first is not None and first["role"] == "assistant" and first["content"]
    assert len(server.requests) == 2 and len(sleeps) == 1  # one 503 retried, then the cache answered
    assert (client.cache_misses, client.cache_hits) == (1, 1)
    assert server.requests[-1].body["model"] == default["model"]
    assert client.get_cost_stats()["total_tokens"] > 0
    with pytest.raises(InvalidRequestError, match="stream=True"):
        client.send_message([{"role": "user", "content": "not cached"}], stream=True)


def test_a_legacy_hook_that_cannot_be_adapted_fails_when_the_class_is_made() -> None:
    with pytest.raises(ConfigError, match=r"_raw_model_call\(self, request, timeout\)"):

        class AsyncLegacy(OpenAIClient):
            async def _raw_model_call(self, model: str, chat_api_params: dict[str, Any]) -> Any:  # type: ignore[override]
                return None

    with pytest.raises(ConfigError, match=r"_raw_embedding_call\(self, request, timeout\)"):

        class EmbeddingLegacy(OpenAIClient):
            def _raw_embedding_model_call(self, text: str, model: str) -> Any:
                return None
