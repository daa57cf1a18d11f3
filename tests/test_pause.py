"""Tests for openai_utils.pause: pauses per endpoint, their extension, their owner, sync and async waits."""

from __future__ import annotations

import asyncio

from openai_utils.pause import EndpointPause
from tests.fake_clock import FakeClock


def test_a_pause_holds_its_endpoint_only_and_keeps_the_latest_time() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep)
    pauses.pause_until("a", 5.0)
    pauses.pause_until("a", 3.0)  # earlier: ignored
    assert pauses.remaining("a") == 5.0 and pauses.remaining("b") == 0
    assert pauses.wait("b") == 0 and clock.sleeps == []
    assert pauses.wait("a") == 5.0 and clock.now == 5.0
    assert pauses.remaining("a") == 0 and pauses.wait("a") == 0


def test_a_pause_extended_while_waiting_is_waited_out_too() -> None:
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            pauses.pause_for("a", 2.0)  # another 429 arrived meanwhile

    pauses = EndpointPause(clock, sleep)
    pauses.pause_for("a", 1.0)
    assert pauses.wait("a") == 3.0
    assert clock.sleeps == [1.0, 2.0]


def test_a_sleep_that_does_not_sleep_cannot_spin() -> None:
    recorded: list[float] = []
    pauses = EndpointPause(lambda: 0.0, recorded.append)
    pauses.pause_until("a", 4.0)
    assert pauses.wait("a") == 4.0
    assert recorded == [4.0]


def test_the_owner_of_a_pause_is_exempt() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep)
    pauses.pause_for("a", 2.0, owner="me")
    assert pauses.remaining("a", owner="me") == 0
    assert pauses.remaining("a", owner="you") == 2.0 and pauses.remaining("a") == 2.0
    pauses.pause_for("a", 3.0, owner="you")  # a later pause by someone else holds me too
    assert pauses.remaining("a", owner="me") == 3.0


def test_await_pauses_without_blocking() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep, clock.asleep)
    pauses.pause_for("a", 1.5)
    assert asyncio.run(pauses.await_("a")) == 1.5 and clock.now == 1.5


def test_clear_forgets_pauses() -> None:
    pauses = EndpointPause(lambda: 0.0)
    pauses.pause_until("a", 1.0)
    pauses.pause_until("b", 1.0)
    pauses.clear("a")
    assert pauses.remaining("a") == 0 and pauses.remaining("b") == 1.0
    pauses.clear()
    assert pauses.remaining("b") == 0
