"""openai_utils: call OpenAI, Azure OpenAI or any OpenAI-compatible server from scripts and notebooks.

    from openai_utils import client, LLMCall
    reply = client().send_message([{"role": "user", "content": "Hi"}], temperature=0)

Importing is cheap: no file is read, no connection made, and the openai SDK and tiktoken load on
first use. See docs/ for configuration, the error contract and the backoff rules.
"""

from __future__ import annotations

import importlib
import logging
import types
from typing import Any

from .azure import AzureClient
from .config import default, force_default_value
from .exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BatchError,
    BatchUnsupportedError,
    CacheError,
    ConfigError,
    ContentFilterError,
    EncodingUnavailableError,
    InvalidRequestError,
    MalformedResponseError,
    MissingCredentialsError,
    NonTerminalError,
    OpenAIUtilsError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    RetriesExhaustedError,
    ServerError,
    StreamInterruptedError,
    StreamNotFinishedError,
    TemplateError,
    TemplateNotFoundError,
    TemplateSyntaxError,
    TemplateVariableError,
)
from .generation import generate_response
from .llm_call import LLMCall
from .logs import install_fallback_handler
from .openai_client import OpenAIClient
from .registry import (
    _get_client_for_api_type,
    _register_lazily,
    client,
    force_api_cache,
    force_api_type,
    get_cost_stats,
    pretty_print_cost_stats,
    register_client,
    reset_cost_stats,
)
from .streaming import aprocess_streaming_response, process_streaming_response

logger = logging.getLogger("openai_utils")
register_client("openai", OpenAIClient())  # the built-in clients register as a custom one would
register_client("azure", AzureClient())
_register_lazily("local", lambda: _local().LocalClient())  # the local package loads on first use
install_fallback_handler()  # WARNINGs and ERRORs reach stderr until the program configures logging


def _local() -> types.ModuleType:
    return importlib.import_module(".local", __name__)


def __getattr__(name: str) -> Any:
    """`__version__`, read from the installed package's metadata on first use, so `version` in
    setup.cfg is the one place it is written and importing stays cheap; `local` and
    `LocalClient`, imported on first use for the same reason."""
    if name == "local":
        return _local()
    if name == "LocalClient":
        return _local().LocalClient
    if name == "BatchJob":  # the batch modules load with the first batch
        return importlib.import_module(".batch_job", __name__).BatchJob
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("openai_utils")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
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
    "OpenAIUtilsError",
    "ConfigError",
    "MissingCredentialsError",
    "EncodingUnavailableError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateVariableError",
    "TemplateSyntaxError",
    "CacheError",
    "APIError",
    "InvalidRequestError",
    "ContentFilterError",
    "ResponseFormatError",
    "AuthenticationError",
    "QuotaExceededError",
    "RetriesExhaustedError",
    "BatchError",
    "BatchUnsupportedError",
    "BatchJob",
    "NonTerminalError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamInterruptedError",
    "StreamNotFinishedError",
    "MalformedResponseError",
]
