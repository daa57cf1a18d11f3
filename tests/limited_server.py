"""A fake OpenAI server that answers 429 above a rate, as a provider's limiter does.

`RateLimitedServer(rate_per_minute, capacity)` admits requests by a token bucket of its own
(`capacity` requests at once, refilled at the rate, measured on the server's clock at arrival);
a request with no token left gets a 429 with Retry-After and is counted in `refused`. It is the
fake server of tests/fake_server.py with one decision added where a request's fault is chosen, so
everything else (recording, replies, scripted faults) is unchanged.
"""

from __future__ import annotations

from typing import Any

from tests.fake_server import FakeOpenAIServer, Fault

__all__ = ["RateLimitedServer"]


class RateLimitedServer(FakeOpenAIServer):
    def __init__(self, rate_per_minute: float, capacity: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate_per_minute / 60.0
        self.capacity = capacity
        self.refused = 0
        self._level = capacity
        self._updated: float | None = None

    def _next_fault_locked(self, path: str) -> Fault | None:
        scripted = super()._next_fault_locked(path)
        if scripted is not None or not path.endswith("/chat/completions"):
            return scripted
        now = self.clock()
        if self._updated is not None:
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now
        if self._level < 1:
            self.refused += 1
            return Fault.status(429, headers={"retry-after": "1"})
        self._level -= 1
        return None

    def reset(self) -> None:
        """Forget the requests, the refusals and the bucket's level: the next request finds it full."""
        super().reset()
        with self._lock:
            self.refused = 0
            self._level = self.capacity
            self._updated = None
