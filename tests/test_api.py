"""The public surface: exactly what the docs promise, importable from the package."""

from __future__ import annotations

from pathlib import Path

import openai_utils
from openai_utils import exceptions

DOCS = Path(__file__).resolve().parents[1] / "docs"

PUBLIC = {
    "default",
    "logger",
    "LLMCall",
    "OpenAIClient",
    "AzureClient",
    "register_client",
    "_get_client_for_api_type",
    "client",
    "force_api_type",
    "force_api_cache",
    "force_default_value",
    "process_streaming_response",
    "aprocess_streaming_response",
    "generate_response",
    "get_cost_stats",
    "reset_cost_stats",
    "pretty_print_cost_stats",
    "BatchJob",
    *exceptions.__all__,
}


def test_all_is_exactly_the_promised_api() -> None:
    assert set(openai_utils.__all__) == PUBLIC
    assert len(openai_utils.__all__) == len(set(openai_utils.__all__))
    for name in openai_utils.__all__:
        assert hasattr(openai_utils, name), name


def test_every_public_name_is_documented() -> None:
    reference = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in openai_utils.__all__:
        assert f"`{name}" in reference, f"docs/api.md does not mention {name}"


def test_logger_is_the_library_logger() -> None:
    assert openai_utils.logger.name == "openai_utils"
