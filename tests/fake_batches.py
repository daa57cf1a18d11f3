"""The Files and Batch endpoints of the fake OpenAI server (tests/fake_server.py hooks them in).

`/files` (a multipart upload), `/files/{id}`, `/files/{id}/content`, `/batches` (create and list),
`/batches/{id}` and `/batches/{id}/cancel`, under /v1 or Azure's /openai, answered as the
published spec shapes them. A batch moves through `progress` one state per look (GET
/batches/{id}), so a test decides how many polls a job takes; when it reaches its last state it
answers its lines as the chat or embeddings endpoint would, except those `fail_line` names (an
error line with that message) and, for an expired or cancelled end, all but the first
`answer_limit`. `supported = False` makes every batch path a 404, as most compatible servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_server import FakeOpenAIServer, RecordedRequest, _Handler

__all__ = ["FakeBatches"]

TERMINAL = {"completed", "failed", "expired", "cancelled"}
_PATHS = re.compile(r"^/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?$")


class FakeBatches:
    """The server's uploaded files and batches, and how the next batches behave."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server
        self.supported = True
        self.progress: list[str] = ["validating", "in_progress", "in_progress", "finalizing", "completed"]
        """The status a batch shows at its 1st, 2nd, ... look; the last one is where it ends."""
        self.fail_line: Callable[[dict[str, Any]], str | None] = lambda line: None
        """The error message for a line that should fail, or None."""
        self.answer_limit: int | None = None
        """With an expired or cancelled end: how many lines were answered before it."""
        self.batch_errors: list[str] = []
        """With a failed end: the validation errors the batch reports."""
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._looks: dict[str, int] = {}

    def reset(self) -> None:
        self.__init__(self.server)  # type: ignore[misc]

    # -- routing --------------------------------------------------------------------------

    def respond(self, h: _Handler, req: RecordedRequest, headers: dict[str, str]) -> bool:
        """Answer `req` when it is a files or batches path; whether it was one."""
        from tests.fake_server import error_body

        path = req.path.rstrip("/")
        for prefix in ("/openai", "/v1"):
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
        match = _PATHS.match(path)
        if match is None:
            return False
        if not self.supported:
            h.send_json(404, error_body(404, f"Unknown request URL: {req.method} {req.path}."), headers)
            return True
        what, ident, action = match.groups()
        with self.server._lock:
            status, answer = self._answer(req, what, ident, action)
        if isinstance(answer, bytes):
            h.send_bytes(status, answer, "application/octet-stream", headers)
        else:
            h.send_json(status, answer, headers)
        return True

    def _answer(self, req: RecordedRequest, what: str, ident: str | None, action: str | None) -> tuple[int, Any]:
        from tests.fake_server import error_body

        key = (req.method, what, ident is not None, action)
        if key == ("POST", "files", False, None):
            return self._upload(req)
        if key == ("GET", "files", True, None) and ident in self.files:
            return 200, self._file_object(ident)
        if key == ("GET", "files", True, "content") and ident in self.files:
            return 200, self.files[ident]["data"]
        if key == ("POST", "batches", False, None):
            return self._create(req.body)
        if key == ("GET", "batches", False, None):
            data = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
            limit = int(req.query.get("limit") or 20)
            page = [dict(b) for b in data[:limit]]
            return 200, {"object": "list", "data": page, "has_more": len(data) > limit}
        if key == ("GET", "batches", True, None) and ident in self.batches:
            return 200, self._look(ident)
        if key == ("POST", "batches", True, "cancel") and ident in self.batches:
            batch = self.batches[ident]
            if batch["status"] not in TERMINAL:
                batch["status"] = "cancelling"
            return 200, dict(batch)
        return 404, error_body(404, f"No such {what} object: {ident}")

    # -- files ----------------------------------------------------------------------------

    def _upload(self, req: RecordedRequest) -> tuple[int, Any]:
        from tests.fake_server import error_body

        fields = _multipart(req.headers.get("content-type", ""), req.body)
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return 400, error_body(400, "a file and purpose 'batch' are required")
        file_id = f"file-{len(self.files) + 1}"
        name, data = fields["file"]
        self.files[file_id] = {"data": data, "filename": name or "upload.jsonl", "purpose": "batch"}
        return 200, self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict[str, Any]:
        entry = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(entry["data"]),
            "created_at": 0,
            "filename": entry["filename"],
            "purpose": entry["purpose"],
            "status": "processed",
        }

    def _store(self, lines: list[dict[str, Any]], kind: str) -> str:
        file_id = f"file-{len(self.files) + 1}"
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.files[file_id] = {"data": data, "filename": f"batch_{kind}.jsonl", "purpose": f"batch_{kind}"}
        return file_id

    # -- batches --------------------------------------------------------------------------

    def _create(self, body: Any) -> tuple[int, Any]:
        from tests.fake_server import error_body

        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return 400, error_body(400, "input_file_id must name an uploaded file")
        batch_id = f"batch_{len(self.batches) + 1}"
        lines = [json.loads(raw) for raw in self.files[body["input_file_id"]]["data"].splitlines() if raw.strip()]
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": len(self.batches),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self._looks[batch_id] = 0
        return 200, dict(self.batches[batch_id])

    def _look(self, batch_id: str) -> dict[str, Any]:
        """The batch one look later: its next scripted state, its answers once it ends."""
        batch = self.batches[batch_id]
        if batch["status"] in TERMINAL:
            return dict(batch)
        self._looks[batch_id] += 1
        step = min(self._looks[batch_id], len(self.progress)) - 1
        total = batch["request_counts"]["total"]
        if batch["status"] == "cancelling":
            self._finish(batch, "cancelled", total // 2 if self.answer_limit is None else self.answer_limit)
        elif self.progress[step] in TERMINAL:
            self._finish(batch, self.progress[step], self.answer_limit)
        else:
            batch["status"] = self.progress[step]
            batch["request_counts"]["completed"] = total * step // max(1, len(self.progress) - 1)
        return dict(batch)

    def _finish(self, batch: dict[str, Any], status: str, limit: int | None) -> None:
        batch["status"] = status
        if status == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid", "message": m} for m in self.batch_errors]}
            return
        lines = [json.loads(raw) for raw in self.files[batch["input_file_id"]]["data"].splitlines() if raw.strip()]
        if status != "completed" and limit is not None:
            lines = lines[:limit]
        answers: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for number, line in enumerate(lines, 1):
            failure = self.fail_line(line)
            status_code, body = (
                (400, {"error": {"message": failure, "type": "invalid_request_error"}})
                if failure
                else self._answer_line(line)
            )
            entry = {
                "id": f"batch_req_{number}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status_code, "request_id": f"req_b{number}", "body": body},
                "error": None,
            }
            (errors if status_code != 200 else answers).append(entry)
        batch["request_counts"] = {
            "total": batch["request_counts"]["total"],
            "completed": len(answers),
            "failed": len(errors),
        }
        batch["output_file_id"] = self._store(answers, "output") if answers else None
        batch["error_file_id"] = self._store(errors, "error") if errors else None

    def _answer_line(self, line: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """What the online endpoint would have answered the line's body."""
        body = line["body"]
        if line["url"].endswith("/embeddings"):
            return self.server._embeddings(body, None)
        text = self.server.reply(body)
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion = len(text.split())
        return 200, {
            "id": f"chatcmpl-{line['custom_id'][:8]}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


def _multipart(content_type: str, body: Any) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body (as the server decoded it to text): name -> (filename, bytes)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None or not isinstance(body, str):
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.encode("utf-8").split(b"--" + match.group(1).encode())[1:]:
        head, _, content = chunk.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name is None:
            continue
        filename = re.search(rb'filename="([^"]*)"', head)
        fields[name.group(1).decode()] = (
            filename.group(1).decode() if filename else None,
            content[: -len(b"\r\n")] if content.endswith(b"\r\n") else content,
        )
    return fields
