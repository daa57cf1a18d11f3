"""Azure OpenAI, where `model` names a deployment and credentials take three forms.

`AzureBackend` says where requests go and how they authenticate; `AzureClient` is an OpenAIClient
over it, everything else shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from .backend import PATHS, Backend
from .config import default
from .exceptions import MissingCredentialsError
from .openai_client import OpenAIClient
from .request import RESPONSES
from .sdk_backend import OFFLINE_WAY_OUT, SDKBackend
from .transport import SDKClient, build_azure_sdk

__all__ = ["AzureClient", "AzureBackend", "AzureSettings"]

KEY_VARIABLES = ("AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY")


class AzureSettings(NamedTuple):
    """What an Azure SDK client is built from: where (an endpoint, or a base URL that replaces
    endpoint + "/openai"), the API version, and exactly one of a key, an Entra ID token or a
    token provider."""

    endpoint: str | None
    base_url: str | None
    api_version: str
    key: str | None = None
    ad_token: str | None = None
    token_provider: Callable[[], Any] | None = None


class AzureBackend(SDKBackend):
    """Sends to Azure OpenAI; endpoint and credentials come from the environment at call time."""

    key_variables = KEY_VARIABLES
    auth_hint = " or ".join(KEY_VARIABLES)

    def __init__(self) -> None:
        super().__init__()
        self._token_provider: Callable[[], Any] | None = None

    def settings_now(self, kind: str) -> AzureSettings:
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
        version = default["azure_responses_api_version"] if kind == RESPONSES else default["azure_api_version"]
        where = (endpoint, base_url, version)
        key = os.environ.get("AZURE_OPENAI_KEY") or os.environ.get("AZURE_OPENAI_API_KEY")
        if key:
            return AzureSettings(*where, key=key)
        ad_token = os.environ.get("AZURE_OPENAI_AD_TOKEN")
        if ad_token:
            return AzureSettings(*where, ad_token=ad_token)
        return AzureSettings(*where, token_provider=self._entra_token_provider())

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

    def build_sdk(self, settings: AzureSettings, asynchronous: bool) -> SDKClient:
        return build_azure_sdk(
            settings.endpoint,
            settings.base_url,
            settings.api_version,
            settings.key,
            settings.ad_token,
            settings.token_provider,
            asynchronous,
        )

    def batch_url(self, kind: str) -> str:
        """Azure Global Batch lines and batches name the path without /v1 (the deployment is the model)."""
        return PATHS[kind]

    def endpoint(self) -> str:
        return os.environ.get("AZURE_OPENAI_BASE_URL") or os.environ.get("AZURE_OPENAI_ENDPOINT", "")


class AzureClient(OpenAIClient):
    """Calls Azure OpenAI: `model` names the deployment; endpoint and key come from the environment."""

    api_type = "azure"
    key_variables = KEY_VARIABLES
    backend: AzureBackend

    def _make_backend(self) -> Backend:
        return AzureBackend()

    @property
    def _token_provider(self) -> Callable[[], Any] | None:
        """The backend's Entra ID token provider (None until first needed)."""
        return self.backend._token_provider

    @_token_provider.setter
    def _token_provider(self, provider: Callable[[], Any] | None) -> None:
        self.backend._token_provider = provider
