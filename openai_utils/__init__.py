"""openai_utils: call OpenAI, Azure OpenAI or any OpenAI-compatible server from scripts and notebooks.

    from openai_utils import client, LLMCall
    reply = client().send_message([{"role": "user", "content": "Hi"}], temperature=0)

Importing is cheap: no file is read, no connection made, and the openai SDK and tiktoken load on
first use. See docs/ for configuration, the error contract and the backoff rules.
"""

from __future__ import annotations

import logging

from .azure import AzureClient
from .clients import OpenAIClient
from .config import default, force_default_value
from .exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CacheError,
    ConfigError,
    ContentFilterError,
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
    TemplateError,
    TemplateNotFoundError,
    TemplateVariableError,
)
from .generation import generate_response
from .llm_call import LLMCall
from .logs import install_fallback_handler
from .registry import (
    _get_client_for_api_type,
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
install_fallback_handler()  # WARNINGs and ERRORs reach stderr until the program configures logging

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
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateVariableError",
    "CacheError",
    "APIError",
    "InvalidRequestError",
    "ContentFilterError",
    "ResponseFormatError",
    "AuthenticationError",
    "QuotaExceededError",
    "RetriesExhaustedError",
    "NonTerminalError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamInterruptedError",
    "MalformedResponseError",
]
