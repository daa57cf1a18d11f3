"""The public calls with batch=True: send_messages, LLMCall.map and get_embedding through one
batch job, with the results the online path gives, and the fallback for servers without batches.

Each item is prepared exactly as its online call would be (call.py), so its request and cache
key are the online ones: an item already in the cache is answered from it and not sent, and what
the batch answers is found by the online path later. Then the items not yet answered become a
job (batch_plan.py, batch_record.py), submitted and waited on (batch_job.py).

`batch=True` on a server without batch endpoints (the embedded local model; a server that
answers 404 on /files or /batches) raises BatchUnsupportedError naming the server and the online
call; `batch="auto"` sends the items online instead, with one WARNING.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .batch_job import BatchJob, Shape
from .batch_plan import batch_line, job_identity, max_requests, split_lines
from .batch_record import JobRecord, load_record, records_folder
from .cache import ResponseCache
from .call import CHAT_ARGUMENTS, Call, prepare_chat, prepare_embedding
from .config import default
from .exceptions import BatchUnsupportedError, CacheError, ConfigError, InvalidRequestError
from .request import CHAT, EMBEDDING
from .response import chat_result

if TYPE_CHECKING:
    from .cache_store import StoreCache
    from .llm_call import LLMCall
    from .openai_client import OpenAIClient

__all__ = ["submit_chat", "send_messages", "map_llm_call", "get_embedding"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")

_CHAT_DEFAULTS = {"n": 1, "echo": False, "stream": False}


def check_batch(batch: Any) -> None:
    """Refuse a `batch` argument that is not True, False or "auto"."""
    if not (batch is True or batch is False or batch == "auto"):
        raise InvalidRequestError(f'batch must be True, False or "auto", not {batch!r}')


def submit_chat(
    client: OpenAIClient, conversations: Sequence[Sequence[Mapping[str, Any]]], params: Mapping[str, Any]
) -> BatchJob:
    """Prepare each conversation as send_message would and submit those not in the cache; the
    job. An item that cannot be prepared (bad messages) holds its exception in the results."""
    if params.get("stream"):
        raise InvalidRequestError("a batch cannot stream: leave out stream=True")
    extra = {name: value for name, value in params.items() if name not in CHAT_ARGUMENTS}
    arguments = {name: params.get(name, _CHAT_DEFAULTS.get(name)) for name in CHAT_ARGUMENTS}
    target = client._target()
    items: list[Call | Exception] = []
    for conversation in conversations:
        try:
            items.append(prepare_chat(target, conversation, extra, arguments))
        except InvalidRequestError as exc:
            items.append(exc)
    n, echo = arguments["n"], arguments["echo"]

    def shape(index: int, record: Mapping[str, Any], cached: bool) -> Any:
        call = items[index]
        assert isinstance(call, Call)
        return chat_result(record, n, echo, conversations[index], call.parse, cached)

    return _submit(client, CHAT, items, shape)


def send_messages(
    client: OpenAIClient,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    batch: bool | str,
    max_workers: int | None,
    progress: Any,
    params: Mapping[str, Any],
) -> list[Any]:
    """send_messages(batch=...): one batch job, or the online map when the server has no batches
    and batch is "auto"."""
    conversations = list(conversations)

    def online() -> list[Any]:
        from .parallel import send_messages as online_map

        return online_map(client, conversations, max_workers, progress, params)

    return _or_online(client, batch, online, lambda: submit_chat(client, conversations, params).results(progress))


def map_llm_call(
    llm_call: LLMCall,
    configs: Iterable[Mapping[str, Any]],
    batch: bool | str,
    max_workers: int | None,
    progress: Any,
    content: Callable[[Any], Any],
) -> list[Any]:
    """LLMCall.map(batch=...): render every config, send the renderings as one batch job; the
    contents in order (`content` takes one from a reply, as LLMCall.call does), with `.messages`
    and `.model_output` set as the online map sets them."""
    from .parallel import map_llm_call as online_map
    from .registry import client as current_client

    configs = list(configs)
    client = current_client()

    def batched() -> list[Any]:
        rendered: list[Any] = []
        for config in configs:
            try:
                rendered.append(llm_call._render(dict(config), False))
            except Exception as exc:  # a template error is the item's, as in the online map
                rendered.append(exc)
        good = [index for index, messages in enumerate(rendered) if not isinstance(messages, Exception)]
        outputs = submit_chat(client, [rendered[i] for i in good], llm_call.model_params).results(progress)
        slots: list[Any] = list(rendered)  # a template error stays in its slot
        llm_call.messages = [None if isinstance(m, Exception) else m for m in rendered]
        llm_call.model_output = [None] * len(configs)
        for index, output in zip(good, outputs, strict=True):
            if isinstance(output, Exception):
                slots[index] = output
            else:
                llm_call.model_output[index] = output
                slots[index] = content(output)
        return slots

    return _or_online(client, batch, lambda: online_map(llm_call, configs, max_workers, progress), batched)


def get_embedding(
    client: OpenAIClient,
    texts: str | Sequence[str],
    model: str | None,
    timeout: float | None,
    max_attempts: int | None,
    batch: bool | str,
) -> Any:
    """get_embedding(batch=...): the parts an online call would send, as one batch job; the
    vectors in order. A part that failed raises its error, as the online call does."""

    def batched() -> Any:
        calls: list[Call | Exception] = list(prepare_embedding(client._target(), texts, model, timeout, max_attempts))
        job = _submit(client, EMBEDDING, calls, lambda index, record, cached: record["vectors"])
        vectors: list[Any] = []
        for part in job.results():
            if isinstance(part, Exception):
                raise part
            vectors.extend(part)
        return vectors[0] if isinstance(texts, str) else vectors

    return _or_online(client, batch, lambda: client.get_embedding(texts, model, timeout, max_attempts), batched)


# -- the job --------------------------------------------------------------------------------------


def _cache_names(cache: ResponseCache | StoreCache) -> tuple[str, Path]:
    """The cache's name as a record keeps it (its file, or its store URL, which never holds a
    password: store.check_url), and the file the record folder sits beside: the cache file, or
    for a store CACHE_FILE_NAME's place on this machine (a job resumes where it was submitted)."""
    if isinstance(cache, ResponseCache):
        return str(cache.path), cache.path
    return cache.store.url, Path(default["cache_file_name"]).expanduser().absolute()


def _submit(client: OpenAIClient, kind: str, items: Sequence[Call | Exception], shape: Shape) -> BatchJob:
    """Write the job down, then upload and create what is not cached nor already submitted."""
    calls = [item for item in items if isinstance(item, Call)]
    cache = calls[0].cache if calls else client._cache()
    if cache is None:
        raise ConfigError(
            "batch=True keeps every answer in the cache, so that a rerun never pays twice: turn the cache on "
            "(CACHE_API_CALLS = True in config.ini, or client().set_api_cache(True))"
        )
    keys = [str(call.key) for call in calls]
    cache_name, beside = _cache_names(cache)
    folder = records_folder(beside)
    job_id = job_identity(keys)
    missing: dict[str, Call] = {}
    for call in calls:
        key = str(call.key)
        if key not in missing and cache.get(key) is _missing():
            missing[key] = call
    new = JobRecord.new(folder, job_id, kind, client._endpoint(), client.api_type, len(set(keys)))
    new.data["cache"] = cache_name
    if not missing:  # all answered: nothing to send, nothing to write down
        return _Job(client, new, items, shape)
    endpoints_probe(client)
    with _locked(new.path):  # another process submitting the same job waits, then finds it recorded
        record = load_record(folder, job_id) or new
        record.data["parts"] = [part for part in record.parts if part["file_id"] is not None or part["collected"]]
        pending = record.pending_ids()
        url = client.backend.batch_url(kind)
        parts = split_lines(
            ((key, batch_line(key, url, call.request)) for key, call in missing.items() if key not in pending),
            max_requests(kind, default["batch_max_requests"]),
            default["batch_max_bytes"],
        )
        files: dict[int, bytes] = {}
        for part in parts:
            files[len(record.parts)] = part.data
            record.add_part(part.custom_ids)
        if parts:
            record.save()
        job = _Job(client, record, items, shape)
        try:
            job.submit(files)
        except InvalidRequestError as exc:
            if exc.status_code in (404, 405):
                raise unsupported(client, str(exc)) from exc
            raise
    return job


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The record's lock (cache_disk.file_lock, beside it) held while a job is planned and submitted."""
    from .cache_disk import NoLock, ReadOnly, file_lock

    try:
        with file_lock(path):
            yield
    except (ReadOnly, NoLock) as exc:
        raise CacheError(f"batch record {path} cannot be locked: {exc}") from None


class _Job(BatchJob):
    """A job made by a call: items that could not be prepared keep their exception in place."""

    def __init__(
        self, client: OpenAIClient, record: JobRecord, items: Sequence[Call | Exception], shape: Shape
    ) -> None:
        self.items = list(items)
        calls = [item for item in self.items if isinstance(item, Call)]
        positions = [index for index, item in enumerate(self.items) if isinstance(item, Call)]
        super().__init__(client, record, calls, lambda i, record, cached: shape(positions[i], record, cached))

    def results(self, progress: Any = None) -> list[Any]:
        answers = iter(super().results(progress))
        return [item if isinstance(item, Exception) else next(answers) for item in self.items]


def _missing() -> Any:
    from .cache import MISSING

    return MISSING


def endpoints_probe(client: OpenAIClient) -> None:
    """Raise BatchUnsupportedError when the client's backend has no batch endpoints at all, or
    when the client sends its own way (a custom `_raw_model_call` / `_raw_embedding_call`, which a
    batch would bypass)."""
    raw_calls = ("_raw_model_call", "_raw_embedding_call")
    custom = [name for name in raw_calls if getattr(type(client), name).__module__ != "openai_utils.openai_client"]
    if custom:
        raise unsupported(client, f"{type(client).__name__} sends through its own {' and '.join(custom)}")
    try:
        client.backend.batch_endpoints()
    except BatchUnsupportedError as exc:
        raise unsupported(client, str(exc)) from None


def unsupported(client: OpenAIClient, detail: str) -> BatchUnsupportedError:
    return BatchUnsupportedError(
        f"the {client.api_type} server {client._endpoint()} does not take batch jobs ({detail}): call without "
        f'batch=True to send the requests online (the same results, at the online price), or pass batch="auto" '
        f"to fall back to that by itself"
    )


def _or_online(client: OpenAIClient, batch: bool | str, online: Callable[[], T], batched: Callable[[], T]) -> T:
    """`batched()`, or with batch="auto" on a server without batches `online()` after one WARNING
    (batch=False never comes here: the callers send online straight away)."""
    check_batch(batch)
    try:
        return batched()
    except BatchUnsupportedError as exc:
        if batch != "auto":
            raise
        logger.warning('%s; batch="auto": sending the requests online instead', exc.message.split(": call without")[0])
        return online()
