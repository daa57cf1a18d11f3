"""The backoff policy: which failures are retried, how long to wait, when to give up.

Ours is the only retry layer (the SDK is built with max_retries=0), so `max_attempts` counts
HTTP attempts exactly. Waiting itself is left to the caller (`time.sleep`, `asyncio.sleep`),
which keeps every decision here free of I/O and shared by sync and async code.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .exceptions import NonTerminalError, RetriesExhaustedError

__all__ = ["RetryPolicy", "Attempts", "parse_retry_after"]

logger = logging.getLogger("openai_utils")

JITTER = 0.1
"""Waits vary by up to ±10%, so clients that failed together do not retry in lockstep."""

LOG_LARGEST_WAIT = math.log(1e300)
"""Above e ** this, a nominal wait counts as infinite: still a float after jitter, then capped."""


class RetryPolicy(NamedTuple):
    """How one call retries; built from `default` at call time."""

    max_attempts: int
    waiting_time: float
    backoff_factor: float
    max_waiting_time: float

    def wait_before_retry(self, retry: int, hint: float | None, random_value: float) -> float:
        """Seconds to wait before retry number `retry` (1 for the second attempt).

        A server's hint wins over the formula, because the server knows when it will take
        requests again; both are capped so that a bad hint cannot stall a run for hours.
        """
        if hint is not None and not math.isnan(hint):
            return min(max(hint, 0.0), self.max_waiting_time)
        nominal = self._nominal_wait(retry)
        return min(nominal * (1 + JITTER * (2 * random_value - 1)), self.max_waiting_time)

    def _nominal_wait(self, retry: int) -> float:
        """WAITING_TIME * FACTOR ** (retry - 1), or infinity where that leaves the float range.

        The power overflows (OverflowError) after a few hundred retries at factor 2, long after
        any cap has taken over; so its size is judged in log space first, and the exact product
        is computed only when it is a float.
        """
        waiting_time, factor, steps = float(self.waiting_time), float(self.backoff_factor), retry - 1
        if waiting_time <= 0.0:
            return 0.0  # even 0 * factor ** steps would compute the power first
        if factor <= 1.0 or steps <= 0:
            return waiting_time * factor ** max(steps, 0)  # does not grow: cannot overflow
        log_growth = steps * math.log(factor)
        log_nominal = math.log(waiting_time) + log_growth
        if log_nominal > LOG_LARGEST_WAIT:
            return math.inf
        if log_growth > LOG_LARGEST_WAIT:  # a tiny WAITING_TIME: the power alone would overflow
            return math.exp(log_nominal)
        return waiting_time * factor**steps

    def start(self, random_value: Callable[[], float] = random.random) -> Attempts:
        """Begin counting the attempts of one call."""
        return Attempts(self, random_value)


class Attempts:
    """The attempts of one call so far; decides, after each failure, whether and how long to wait."""

    def __init__(self, policy: RetryPolicy, random_value: Callable[[], float]) -> None:
        self.policy = policy
        self.number = 1
        self._random = random_value

    def failed(self, error: NonTerminalError) -> float:
        """Record that attempt `number` failed; return the wait before the next one.

        Raises RetriesExhaustedError (chained to `error`) when that was the last attempt.
        """
        error.attempts = self.number
        if self.number >= self.policy.max_attempts:
            raise RetriesExhaustedError(
                f"gave up after {self.number} attempt{'s' if self.number != 1 else ''}; "
                f"last error: {type(error).__name__}: {error}",
                attempts=self.number,
                last_error=error,
            ) from error
        wait = self.policy.wait_before_retry(self.number, error.retry_after, self._random())
        logger.info(
            "attempt %d of %d failed (%s: %s); retrying in %.2f s",
            self.number,
            self.policy.max_attempts,
            type(error).__name__,
            error,
            wait,
        )
        self.number += 1
        return wait


def parse_retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Read a server's wait hint: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000.0, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    import email.utils  # only for the rare date form; it pulls in socket, datetime and more

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now(), 0.0)


def _number(text: str | None) -> float | None:
    """A header's number, or None for a missing or unusable one (NaN would break sleep())."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value
