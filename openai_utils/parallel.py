"""Many calls at once from plain sync code: a thread pool that keeps order and survives failures.

The engine behind `client().send_messages(conversations)` and `LLMCall.map(configs)`. It needs
no event loop, so it works the same in a script, a notebook cell or a thread of a web server.

Results
    A list as long as the input, in input order. Each slot holds what the call returned, with
    two kinds of failure kept apart:

    * an item whose call raised holds the exception object itself (InvalidRequestError,
      TemplateVariableError, RetriesExhaustedError under RAISE_ON_FAILURE, ...), with its
      traceback, so ``[i for i, r in enumerate(results) if isinstance(r, Exception)]`` lists
      the failures and ``raise results[i]`` shows one;
    * an item whose every retryable attempt failed holds None, exactly as `send_message`
      returns None for it (and logs an ERROR).

    One item's failure never stops or loses the others; a summary WARNING is logged when any
    item raised. Successful answers are cached by the client as they arrive, as for one call.

Threads
    At most `max_workers` threads, by default MAX_CONCURRENT_MODEL_CALLS (16 when that is 0),
    never more than there are items. The process-wide slot pool still caps requests in flight,
    so a larger `max_workers` only queues threads behind it. Answers served from the cache take
    no slot.

Progress
    A tqdm bar (the optional ``progress`` extra) when tqdm is installed, the output is
    interactive (stderr is a terminal, or a Jupyter kernel) and there are more than
    PROGRESS_MIN_ITEMS items. In a kernel the bar is tqdm's widget when ipywidgets is installed,
    else tqdm's text bar, which the notebook shows under the cell (never tqdm's "IProgress not
    found" warning). ``progress=False`` never shows one, ``progress=True`` always does (with one
    warning per process if tqdm is missing), and a callable is called as
    ``progress(done, total)`` in the calling thread after each item.

Ctrl-C
    KeyboardInterrupt in the calling thread (Ctrl-C, or a notebook's interrupt button) cancels
    every item not yet started and re-raises at once, without waiting for the requests in
    flight: those (at most `max_workers`) finish in the background, their answers go to the
    cache, and their threads then exit. Rerunning the same cell with the cache on picks up
    where it stopped.
"""

from __future__ import annotations

import functools
import logging
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from .config import default
from .exceptions import InvalidRequestError

if TYPE_CHECKING:
    from .llm_call import LLMCall
    from .openai_client import OpenAIClient

__all__ = ["map_calls", "send_messages", "map_llm_call", "default_workers", "PROGRESS_MIN_ITEMS", "THREAD_NAME_PREFIX"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")
U = TypeVar("U")
Progress = bool | None | Callable[[int, int], Any]

PROGRESS_MIN_ITEMS = 1
"""Lists of at most this many items get no automatic progress bar. A model call takes seconds,
so even two items run long enough for a bar to help, and in a notebook the finished bar is the
record of how many items ran (a rerun served from the cache fills it at once)."""

THREAD_NAME_PREFIX = "openai_utils.map"
"""Worker threads are named after this, so they are easy to spot in a debugger or a test."""

FALLBACK_WORKERS = 16
"""Threads used when MAX_CONCURRENT_MODEL_CALLS is 0 (no limit)."""

_POLL_SECONDS = 0.1
"""The calling thread never blocks longer than this, so Ctrl-C is seen promptly everywhere
(Windows does not interrupt a blocked lock, and `_thread.interrupt_main` interrupts nothing)."""

_warned_no_tqdm = False


def default_workers() -> int:
    """MAX_CONCURRENT_MODEL_CALLS now, or FALLBACK_WORKERS when it is 0 (no limit)."""
    return default["max_concurrent_model_calls"] or FALLBACK_WORKERS


def _worker_count(max_workers: int | None, items: int) -> int:
    if max_workers is None:
        max_workers = default_workers()
    elif isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers must be a whole number of at least 1 or None, not {max_workers!r}")
    return max(1, min(max_workers, items))


def map_calls(
    function: Callable[[T], U],
    items: Iterable[T],
    max_workers: int | None = None,
    progress: Progress = None,
    description: str = "calls",
) -> list[U | Exception | None]:
    """Call `function(item)` for every item in a thread pool; results (or exceptions) in input order.

    See the module docstring for what a slot holds, the thread count, the progress bar and
    Ctrl-C. Exceptions that are not `Exception` (KeyboardInterrupt, SystemExit) raised by
    `function` stop the whole map and propagate, as in the calling thread.
    """
    items = list(items)
    total = len(items)
    if total == 0:
        return []
    workers = _worker_count(max_workers, total)
    callback = progress if callable(progress) and not isinstance(progress, bool) else None
    bar = _progress_bar(progress, total, description)
    results: list[Any] = [None] * total
    stop = threading.Event()
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()

    def run(index: int) -> Any:
        if stop.is_set():  # picked up between Ctrl-C and the cancellation: do not start it
            return None
        return function(items[index])

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_NAME_PREFIX)
    failures = 0
    first_failure: tuple[int, BaseException] | None = None
    try:
        futures: list[Future[Any]] = []
        for index in range(total):
            future = executor.submit(run, index)
            future.add_done_callback(functools.partial(_announce, finished, index))
            futures.append(future)
        for done in range(1, total + 1):
            index = _next_finished(finished)
            error = futures[index].exception()
            if error is None:
                results[index] = futures[index].result()
            elif isinstance(error, Exception):
                results[index] = error
                failures += 1
                first_failure = first_failure or (index, error)
            else:
                raise error
            if bar is not None:
                bar.update(1)
                if failures:
                    bar.set_postfix(failed=failures, refresh=False)
            if callback is not None:
                callback(done, total)
    except BaseException:
        stop.set()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    executor.shutdown(wait=True)  # every item is done: this only joins idle threads
    if first_failure is not None:
        index, error = first_failure
        logger.warning(
            "%s: %d of %d item(s) raised; their slots hold the exception (first: item %d, %s: %s)",
            description,
            failures,
            total,
            index,
            type(error).__name__,
            error,
        )
    return results


def _announce(finished: queue.SimpleQueue[int], index: int, _: Future[Any]) -> None:
    finished.put(index)


def _next_finished(finished: queue.SimpleQueue[int]) -> int:
    """The index of the next finished item, waiting in short steps so Ctrl-C gets through."""
    while True:
        try:
            return finished.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue


# -- the two entry points ------------------------------------------------------------------


def send_messages(
    client: OpenAIClient,
    conversations: Iterable[Sequence[Mapping[str, Any]]],
    max_workers: int | None = None,
    progress: Progress = None,
    params: Mapping[str, Any] | None = None,
) -> list[Any]:
    """`client.send_message(conversation, **params)` for each conversation, in parallel.

    Returns one slot per conversation, in order: the assistant message dict (a list with n > 1),
    None when retries ran out, or the exception the call raised. `stream=True` is refused: a
    stream holds a concurrency slot until it is read, so a list of them would stall the pool.
    """
    params = dict(params or {})
    if params.get("stream"):
        raise InvalidRequestError(
            "send_messages cannot stream: call send_message(..., stream=True) for each conversation"
        )

    def one(conversation: Sequence[Mapping[str, Any]]) -> Any:
        return client.send_message(conversation, **params)

    return map_calls(one, conversations, max_workers, progress, description="send_messages")


def map_llm_call(
    llm_call: LLMCall,
    configs: Iterable[Mapping[str, Any]],
    max_workers: int | None = None,
    progress: Progress = None,
) -> list[Any]:
    """`llm_call.call(**config)` for each config, in parallel; the contents in order.

    Each item runs on its own shallow copy of `llm_call`, so threads never share its state.
    A slot holds what `call` returns (the content, a list of them with n > 1, None when retries
    ran out) or the exception raised (a missing template variable, an invalid request, ...).

    Afterwards `llm_call.messages` is the list of each item's messages and `llm_call.model_output`
    the list of each item's output, both in input order, with None where an item raised before
    rendering (messages) or before an answer (output). After a Ctrl-C they are left as they were.
    """
    import copy

    configs = list(configs)
    for position, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(
                f"LLMCall.map takes a list of dicts of template variables; item {position} is {type(config).__name__}"
            )
    copies = [copy.copy(llm_call) for _ in configs]
    for each in copies:
        each.messages = None
        each.model_output = None

    def one(index: int) -> Any:
        return copies[index].call(**configs[index])

    results = map_calls(one, range(len(configs)), max_workers, progress, description="LLMCall.map")
    llm_call.messages = [each.messages for each in copies]
    llm_call.model_output = [each.model_output for each in copies]
    return results


# -- the progress bar ----------------------------------------------------------------------


def _progress_bar(progress: Progress, total: int, description: str) -> Any:
    """A tqdm bar, or None when none should be shown (see the module docstring)."""
    if progress is False or (progress is not True and callable(progress)):
        return None
    if progress is None and not (total > PROGRESS_MIN_ITEMS and _interactive()):
        return None
    tqdm = _tqdm()
    if tqdm is None:
        if progress is True:
            _warn_no_tqdm()
        return None
    return tqdm(total=total, desc=description, unit="call", dynamic_ncols=True)


def _tqdm() -> Any:
    """The tqdm class to draw with, or None when tqdm is not installed.

    tqdm's widget in a Jupyter kernel that has ipywidgets; its text bar everywhere else, a
    kernel without ipywidgets included (the notebook shows the text under the cell).
    `tqdm.auto` is not used: without ipywidgets it warns "IProgress not found" and then draws
    the text bar anyway.
    """
    try:
        from tqdm.std import tqdm
    except ImportError:
        return None
    if _in_jupyter_kernel():
        widget = _widget_tqdm()
        if widget is not None:
            return widget
    return tqdm


def _widget_tqdm() -> Any:
    """`tqdm.notebook.tqdm` when ipywidgets imports, else None (importing tqdm.notebook never warns)."""
    try:
        from tqdm import notebook
    except ImportError:
        return None
    return notebook.tqdm if getattr(notebook, "IProgress", None) is not None else None


def _warn_no_tqdm() -> None:
    global _warned_no_tqdm
    if _warned_no_tqdm:
        return
    _warned_no_tqdm = True
    warnings.warn(
        "progress=True needs tqdm, which is not installed (pip install 'openai_utils[progress]'); "
        "continuing without a progress bar",
        RuntimeWarning,
        stacklevel=4,
    )


def _interactive() -> bool:
    """Whether someone is watching: stderr is a terminal, or we run in a Jupyter kernel."""
    return _in_jupyter_kernel() or _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_jupyter_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # a half-initialised IPython must not break a map
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None
