"""AzureClient: Azure OpenAI, where `model` names a deployment and credentials take three forms.

Everything but where requests go and how they authenticate is OpenAIClient's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .clients import OFFLINE_WAY_OUT, OpenAIClient
from .config import default
from .exceptions import MissingCredentialsError
from .transport import SDKClient, build_azure_sdk

__all__ = ["AzureClient"]


class AzureClient(OpenAIClient):
    """Calls Azure OpenAI: `model` names the deployment; endpoint and key come from the environment."""

    api_type = "azure"
    key_variables = ("AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token_provider: Callable[[], Any] | None = None

    def _sdk_settings_now(self, kind: str) -> tuple[Any, ...]:
        """Endpoint and credentials: a key, else an Entra ID token, else azure-identity's provider."""
        endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT")
        base_url = os.environ.get("AZURE_OPENAI_BASE_URL") or None
        if not endpoint and not base_url:
            raise MissingCredentialsError(
                "no Azure endpoint: set the environment variable AZURE_OPENAI_ENDPOINT "
                "(e.g. https://my-resource.openai.azure.com/), or AZURE_OPENAI_BASE_URL for a server "
                "that serves the Azure paths at another root (a gateway, a mock)" + OFFLINE_WAY_OUT,
                ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_BASE_URL"),
            )
        where = (endpoint, base_url, default["azure_api_version"])
        key = os.environ.get("AZURE_OPENAI_KEY") or os.environ.get("AZURE_OPENAI_API_KEY")
        if key:
            return (*where, key, None, None)
        ad_token = os.environ.get("AZURE_OPENAI_AD_TOKEN")
        if ad_token:
            return (*where, None, ad_token, None)
        return (*where, None, None, self._entra_token_provider())

    def _entra_token_provider(self) -> Callable[[], Any]:
        """One azure-identity token provider for this client: it refreshes tokens itself, in
        memory; nothing is written to disk or logged."""
        if self._token_provider is None:
            try:
                from azure.identity import (
                    DefaultAzureCredential,
                    get_bearer_token_provider,
                )
            except ImportError:
                raise MissingCredentialsError(
                    "no Azure OpenAI credentials: set AZURE_OPENAI_KEY (or AZURE_OPENAI_API_KEY), or "
                    "AZURE_OPENAI_AD_TOKEN, or install azure-identity (pip install 'openai_utils[azure]') "
                    "to sign in with Entra ID" + OFFLINE_WAY_OUT,
                    (*self.key_variables, "AZURE_OPENAI_AD_TOKEN"),
                ) from None
            self._token_provider = get_bearer_token_provider(
                DefaultAzureCredential(), "https://cognitiveservices.azure.com/.default"
            )
        return self._token_provider

    def _build_sdk(self, settings: tuple[Any, ...], asynchronous: bool) -> SDKClient:
        endpoint, base_url, api_version, key, ad_token, provider = settings
        return build_azure_sdk(endpoint, base_url, api_version, key, ad_token, provider, asynchronous)

    def _endpoint(self) -> str:
        return os.environ.get("AZURE_OPENAI_BASE_URL") or os.environ.get("AZURE_OPENAI_ENDPOINT", "")
