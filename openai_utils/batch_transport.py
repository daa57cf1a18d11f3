"""The batch endpoints over the openai SDK: upload a file, create, read, list and cancel batches,
download a file's content.

Part of the boundary with the SDK (with transport.py, which it shares its error translation
with): the SDK is imported only inside these functions, answers come back as the server's JSON
as plain dicts (never the SDK's batch types), and every error is one of ours. A file's content
may be far larger than a chat answer, so a download is read within its own, larger bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .transport import SDKClient, post_json, translate_error

__all__ = ["SDKBatchEndpoints", "DOWNLOAD_MAX_BYTES", "TRANSFER_TIMEOUT"]

DOWNLOAD_MAX_BYTES = 2**34
"""Most bytes one downloaded output or error file may take (16 GiB): an input file is at most
200 MB, and its answers are rarely ten times that."""

TRANSFER_TIMEOUT = 600.0
"""Seconds an upload or a download may take at least (TIMEOUT when larger): a 200 MB file does
not cross in the minute a chat answer gets."""


class SDKBatchEndpoints:
    """The batch endpoints of one server, sent through `sdk` (an openai SDK client)."""

    def __init__(self, sdk: SDKClient, auth_hint: str, timeout: float) -> None:
        self.sdk = sdk
        self.auth_hint = auth_hint
        self.timeout = timeout

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """POST /files with purpose batch: the file object (its `id`)."""
        import openai

        from .wire import Bounds, Deadline, bounded

        timeout = max(self.timeout, TRANSFER_TIMEOUT)
        try:
            with bounded(Bounds(DOWNLOAD_MAX_BYTES, Deadline(timeout))):
                raw = self.sdk.post(
                    "/files",
                    body={"purpose": "batch"},
                    files=[("file", (name, data, "application/jsonl"))],
                    options={"timeout": timeout, "headers": {"Content-Type": "multipart/form-data"}},
                    cast_to=bytes,
                )
        except openai.APIError as exc:
            raise translate_error(exc, self.auth_hint) from exc
        return _json(raw, "/files")

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /batches: the batch object."""
        return post_json(self.sdk, "/batches", body, self.timeout, self.auth_hint)

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """GET /batches/{id}: the batch object, with its status and request_counts."""
        return _json(self._get(f"/batches/{batch_id}", self.timeout), "/batches")

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """POST /batches/{id}/cancel, with no body (the spec declares none): the batch, now cancelling."""
        import openai

        from .wire import attempt_bounds, bounded

        try:
            with bounded(attempt_bounds(self.timeout)):
                raw = self.sdk.post(f"/batches/{batch_id}/cancel", cast_to=bytes, options={"timeout": self.timeout})
        except openai.APIError as exc:
            raise translate_error(exc, self.auth_hint) from exc
        return _json(raw, "/batches")

    def list(self, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        """GET /batches: one page of the account's batches, newest first."""
        query: dict[str, Any] = {"limit": limit}
        if after:
            query["after"] = after
        return _json(self._get("/batches", self.timeout, query), "/batches")

    def content(self, file_id: str) -> bytes:
        """GET /files/{id}/content: the file's bytes (an output or error file: JSON lines)."""
        return self._get(f"/files/{file_id}/content", max(self.timeout, TRANSFER_TIMEOUT), large=True)

    def _get(self, path: str, timeout: float, query: Mapping[str, Any] | None = None, large: bool = False) -> bytes:
        import openai

        from .wire import Bounds, Deadline, attempt_bounds, bounded

        bounds = Bounds(DOWNLOAD_MAX_BYTES, Deadline(timeout)) if large else attempt_bounds(timeout)
        options: dict[str, Any] = {"timeout": timeout}
        if query:
            options["params"] = dict(query)
        try:
            with bounded(bounds):
                raw: bytes = self.sdk.get(path, options=options, cast_to=bytes)
        except openai.APIError as exc:
            raise translate_error(exc, self.auth_hint) from exc
        return raw


def _json(raw: bytes, path: str) -> dict[str, Any]:
    from .transport import _decode

    return _decode(raw, path)
