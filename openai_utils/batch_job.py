"""A submitted batch job: the handle that submits its parts, polls them, collects their answers.

`BatchJob` is what `client().submit_batch(...)` returns and what `send_messages(batch=True)`
waits on: `status()` asks the server once, `wait()` polls every BATCH_POLL_INTERVAL seconds
(sleeping through the client's own sleep, so a test drives it without waiting) with a progress
bar counted from the batches' `request_counts`, `results()` waits and returns one slot per input
item, in order, and `cancel()` asks the server to stop, keeping what was already answered.

Every state is handled: validating, in_progress, finalizing and cancelling are polled again;
completed, failed, expired and cancelled are collected: the output file's answers are checked as
online ones are and stored in the cache under their custom_id (their cache key); each error
file line becomes its item's exception with the server's message. An item a batch ended without
answering holds a BatchError, and one WARNING says how many remain: rerunning submits just those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .batch_files import json_lines, json_object, line_error
from .cache import MISSING, ResponseCache, cache_for_calls
from .config import default
from .exceptions import APIError, BatchError, NonTerminalError
from .request import EMBEDDING
from .response import chat_record, check_record, embedding_record
from .usage import counted, process_usage

if TYPE_CHECKING:
    from .batch_record import JobRecord
    from .cache_store import StoreCache
    from .call import Call
    from .openai_client import OpenAIClient

__all__ = ["BatchJob"]

logger = logging.getLogger("openai_utils")

Shape = Callable[[int, Mapping[str, Any], bool], Any]
T = TypeVar("T")


class BatchJob:
    """One job of one or more batches. `calls` (input order) and `shape` (index, record, cached ->
    the public result) are known when the job was made by a call; a job found from its record
    alone (the command line) collects answers into the cache and reports them by custom_id."""

    def __init__(
        self,
        client: OpenAIClient,
        record: JobRecord,
        calls: Sequence[Call] = (),
        shape: Shape | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.record = record
        self.calls = list(calls)
        self._shape = shape
        self._by_key = {call.key: call for call in self.calls if call.key is not None}
        self._sleep = sleep if sleep is not None else client._sleep
        self._clock = clock
        self.errors: dict[str, Exception] = {}
        """The exception of each item a batch of this job did not answer, by custom_id."""
        self._fresh: set[str] = set()

    def __repr__(self) -> str:
        states = ", ".join(str(part["status"]) for part in self.record.parts) or "nothing to send"
        return f"BatchJob({self.job_id!r}, {self.record.data['requests']} requests: {states})"

    job_id = property(lambda self: self.record.job_id, doc="The job's identity (batch_plan.job_identity).")

    def _endpoints(self) -> Any:
        return self.client.backend.batch_endpoints()

    # -- submitting --------------------------------------------------------------------------

    def submit(self, files: Mapping[int, bytes]) -> None:
        """Upload and create every part not created yet (`files`: its bytes, by part index),
        writing each id to the record before the next step, so a crash never pays twice."""
        kind = self.record.data["kind"]
        for index, part in enumerate(self.record.parts):
            if part["batch_id"] is not None or part["collected"]:
                continue
            endpoints = self._endpoints()
            if part["file_id"] is None:
                if index not in files:
                    raise BatchError(f"part {index} of {self.job_id} was never uploaded and its lines are gone")
                uploaded = self._send(endpoints.upload, f"{self.job_id}-{index}.jsonl", files[index])
                part["file_id"] = uploaded["id"]
                self.record.save()
            body = {
                "input_file_id": part["file_id"],
                "endpoint": self.client.backend.batch_url(kind),
                "completion_window": "24h",
                "metadata": {"openai_utils_job": self.job_id, "part": str(index)},
            }
            # each attempt looks first: a create whose answer was lost may have made the batch
            batch = self._send(self._find_or_create, endpoints, body)
            self._note(part, batch)
            self.record.save()
            logger.info("batch %s submitted: %d requests (%s)", batch["id"], len(part["custom_ids"]), self.job_id)

    def _send(self, request: Callable[..., T], *args: Any) -> T:
        """One request to a batch endpoint, retried as an online call is (MAX_ATTEMPTS, the
        backoff waits, through the client's sleep) when it fails with a NonTerminalError."""
        from .call import retry_policy

        attempts = retry_policy(None, None, None).start(self.client._random)
        while True:
            try:
                return request(*args)
            except NonTerminalError as exc:
                self._sleep(attempts.failed(exc))

    def _find_or_create(self, endpoints: Any, body: Mapping[str, Any]) -> dict[str, Any]:
        found = self._created_before(endpoints, body["input_file_id"])
        return found if found is not None else dict(endpoints.create(body))

    @staticmethod
    def _created_before(endpoints: Any, file_id: str) -> dict[str, Any] | None:
        """A batch already made from `file_id` (a crash between creating it and writing its id
        down), found in the newest page of the account's batches."""
        page = endpoints.list(limit=100)
        for batch in page.get("data") or []:
            if isinstance(batch, dict) and batch.get("input_file_id") == file_id:
                return batch
        return None

    @staticmethod
    def _note(part: dict[str, Any], batch: Mapping[str, Any]) -> None:
        part["batch_id"] = batch["id"]
        part["status"] = batch.get("status")
        part["request_counts"] = batch.get("request_counts")
        for field in ("output_file_id", "error_file_id"):
            part[field] = batch.get(field)
        errors = (batch.get("errors") or {}).get("data") if isinstance(batch.get("errors"), dict) else None
        part["errors"] = [str(e.get("message")) for e in errors or [] if isinstance(e, dict)]

    # -- watching ----------------------------------------------------------------------------

    def _live(self) -> list[dict[str, Any]]:  # the parts submitted and not yet collected
        return [part for part in self.record.parts if not part["collected"] and part["batch_id"] is not None]

    def refresh(self) -> None:
        """Ask the server once for the state of every batch still moving."""
        from .batch_record import TERMINAL

        changed = False
        for part in self._live():
            if part["status"] in TERMINAL:
                continue
            before = (part["status"], part["request_counts"])
            self._note(part, self._send(self._endpoints().retrieve, part["batch_id"]))
            changed = changed or (part["status"], part["request_counts"]) != before
        if changed:  # the record is rewritten only when something moved
            self.record.save()

    def finished(self) -> bool:
        """Whether every batch reached a state that does not change any more."""
        from .batch_record import TERMINAL

        return all(part["status"] in TERMINAL for part in self._live())

    def status(self) -> dict[str, Any]:
        """The job's state now (asks the server): each batch's id, status and request counts."""
        self.refresh()
        parts = [
            {
                "batch_id": part["batch_id"],
                "status": part["status"],
                "requests": len(part["custom_ids"]),
                "request_counts": part["request_counts"],
                "collected": part["collected"],
            }
            for part in self.record.parts
        ]
        moving = [part["status"] for part in parts if not part["collected"] and part["status"] != "completed"]
        return {
            "job": self.job_id,
            "status": moving[0] if moving else "completed" if parts else "nothing to send",
            "requests": self.record.data["requests"],
            "parts": parts,
        }

    def wait(self, progress: Any = None, poll_interval: float | None = None, timeout: float | None = None) -> bool:
        """Poll until every batch is finished, then collect the answers; whether it finished
        (False only when `timeout` seconds ran out first). `progress` as in send_messages."""
        interval = poll_interval if poll_interval is not None else default["batch_poll_interval"]
        live = self._live()
        total = sum(len(part["custom_ids"]) for part in live)
        bar = _Progress(progress, total)
        start = self._clock()
        try:
            while True:
                self.refresh()
                bar.show(sum(_answered(part) for part in live))
                if self.finished():
                    break
                if timeout is not None and self._clock() - start >= timeout:
                    return False
                self._sleep(interval)
        finally:
            bar.close()
        self.collect()
        return True

    def cancel(self) -> dict[str, Any]:
        """Ask the server to stop every batch still moving; what they answered is kept (collect
        it with wait() or results()). The job's state afterwards."""
        from .batch_record import TERMINAL

        for part in self._live():
            if part["status"] not in TERMINAL and part["status"] != "cancelling":
                self._note(part, self._send(self._endpoints().cancel, part["batch_id"]))
        self.record.save()
        return self.status()

    # -- collecting --------------------------------------------------------------------------

    def collect(self) -> None:
        """Read the files of every finished batch not read yet: store each answer in the cache,
        keep each failure as its item's exception; warn once about items left unanswered."""
        from .batch_record import TERMINAL

        cache = self._cache()
        left = 0
        for part in self._live():
            if part["status"] not in TERMINAL:
                continue
            answered: set[str] = set()
            endpoints = self._endpoints()
            stored: list[tuple[str, Any, Any]] = []
            ours = set(part["custom_ids"])
            for field in ("output_file_id", "error_file_id"):
                if part.get(field):
                    for line in json_lines(self._send(endpoints.content, part[field])):
                        if line.get("custom_id") in ours:  # never store what this part did not ask
                            answered.add(self._take(stored, part, line))
            if cache is not None:
                cache.put_many(stored)
            missing = [custom_id for custom_id in part["custom_ids"] if custom_id not in answered]
            if missing:
                left += len(missing)
                reason = "; ".join(part.get("errors") or []) or f"it ended {part['status']} first"
                for custom_id in missing:
                    self.errors[custom_id] = BatchError(
                        f"batch {part['batch_id']} did not answer this request ({reason}); "
                        f"run the same call again to submit the requests that remain",
                        batch_id=part["batch_id"],
                    )
            part["collected"] = True
            self.record.save()
        if left:
            logger.warning(
                "batch job %s: %d of %d request(s) were not answered (a batch %s); their slots hold a "
                "BatchError, and running the same call again submits just those",
                self.job_id,
                left,
                self.record.data["requests"],
                ", ".join(sorted({str(p["status"]) for p in self.record.parts if p["status"] != "completed"})),
            )

    def _take(self, stored: list[tuple[str, Any, Any]], part: Mapping[str, Any], line: Mapping[str, Any]) -> str:
        """One line of an output or error file: its answer added to `stored`, or its error kept."""
        custom_id = str(line.get("custom_id"))
        response = json_object(line.get("response"))
        body = response.get("body")
        if response.get("status_code") != 200 or line.get("error") or not isinstance(body, dict):
            self.errors[custom_id] = line_error(line, part["batch_id"])
            return custom_id
        call = self._by_key.get(custom_id)
        try:
            if self.record.data["kind"] == EMBEDDING:
                expected = call.request["input"] if call is not None else body.get("data") or []
                record = embedding_record(body, 1 if isinstance(expected, str) else len(expected))
            else:
                record = check_record(chat_record(body), call.parse if call is not None else None)
        except APIError as exc:
            self.errors[custom_id] = exc
            return custom_id
        stored.append((custom_id, record, call.request if call is not None else None))
        self._fresh.add(custom_id)
        self._count(record)
        return custom_id

    def _count(self, record: Mapping[str, Any]) -> None:
        """A new answer: a cache miss and a model call, at the batch price."""
        model = record.get("model")
        counts = counted(model, record.get("usage"), batch=True)
        with self.client._counter_lock:
            self.client.cache_misses += 1
        self.client.usage.add(model, counts, False)
        process_usage.add(model, counts, False)

    def _cache(self) -> ResponseCache | StoreCache | None:
        """The cache the job was submitted for (whatever CACHE_API_CALLS says: answers paid for are
        kept): the file or store URL the record names, else (an older record) the file it sits beside."""
        folder = self.record.path.parent
        name = self.record.data.get("cache") or str(folder.with_name(folder.name[: -len(".batches")]))
        return cache_for_calls(str(name), fsync=default["cache_fsync"])

    # -- results -----------------------------------------------------------------------------

    def results(self, progress: Any = None) -> list[Any]:
        """Wait, then one slot per input item in input order: the result send_message would
        return, or the exception of an item that failed. A job found from its record alone
        (no calls) gives, per custom_id in file order, the stored record or the exception."""
        self.wait(progress)
        cache = self._cache()
        if not self.calls:
            ids = [custom_id for part in self.record.parts for custom_id in part["custom_ids"]]
            return [self.errors.get(i) or (cache.get(i) if cache is not None else MISSING) for i in ids]
        out: list[Any] = []
        for index, call in enumerate(self.calls):
            key = str(call.key)
            value = cache.get(key) if cache is not None else MISSING
            if value is MISSING:
                out.append(
                    self.errors.get(key) or BatchError(f"no answer was stored for item {index} of {self.job_id}")
                )
                continue
            cached = key not in self._fresh
            if cached:
                self.client._account(call, value, hit=True)
            out.append(self._shape(index, value, cached) if self._shape is not None else value)
        return out


def _answered(part: Mapping[str, Any]) -> int:
    from .batch_record import TERMINAL

    if part["status"] in TERMINAL:
        return len(part["custom_ids"])
    counts = part.get("request_counts") or {}
    return int(counts.get("completed") or 0) + int(counts.get("failed") or 0)


class _Progress:
    """The bar of parallel.py's maps, moved to the count of answered requests at each poll."""

    def __init__(self, progress: Any, total: int) -> None:
        from .parallel import _progress_bar

        self.callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self.bar = _progress_bar(progress, total, "batch") if total else None
        self.total = total
        self.done = 0

    def show(self, done: int) -> None:
        done = min(done, self.total)
        if done == self.done:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        if self.callback is not None:
            self.callback(done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
