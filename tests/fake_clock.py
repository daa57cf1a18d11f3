"""A clock for rate-limit tests that moves only when slept on, and the check of a send schedule.

Shared by the tests of the token bucket, the pauses and the rate gate: nothing in them depends
on how fast or busy the machine is.
"""

from __future__ import annotations

import threading


class FakeClock:
    """A clock that moves only when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def respects(times: list[float], capacity: float, per_second: float, slack: float = 0.0) -> bool:
    """Over every window [t_i, t_j], at most capacity + rate x (window + slack) events."""
    times = sorted(times)
    return all(
        j - i + 1 <= capacity + per_second * (times[j] - times[i] + slack) + 1e-9
        for i in range(len(times))
        for j in range(i, len(times))
    )
