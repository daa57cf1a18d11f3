"""The process-wide slot pool: threads and asyncio tasks share one limit on requests in flight."""

from __future__ import annotations

import asyncio
import threading
import time

from openai_utils import force_default_value
from openai_utils.concurrency import CallSlots


class Gauge:
    """Counts holders at once and remembers the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_threads_and_tasks_together_never_exceed_the_limit() -> None:
    force_default_value("max_concurrent_model_calls", 3)
    slots, gauge = CallSlots(), Gauge()
    deadline = time.monotonic() + 30  # only catches a hang: holders leave once 3 were in at once

    def thread_work() -> None:
        for _ in range(5):
            with slots.hold():
                gauge.enter()
                while gauge.most < 3 and time.monotonic() < deadline:
                    time.sleep(0.001)
                gauge.leave()

    async def task_work() -> None:
        for _ in range(5):
            async with slots.ahold():
                gauge.enter()
                while gauge.most < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                gauge.leave()

    async def tasks() -> None:
        await asyncio.gather(*(task_work() for _ in range(6)))

    threads = [threading.Thread(target=thread_work) for _ in range(6)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gauge.most == 3
    assert slots.in_use == 0


def test_zero_means_no_limit() -> None:
    force_default_value("max_concurrent_model_calls", 0)
    slots = CallSlots()
    held = [slots.hold() for _ in range(50)]
    for context in held:
        context.__enter__()
    assert slots.in_use == 50
    for context in held:
        context.__exit__(None, None, None)
    assert slots.in_use == 0


def test_a_raised_limit_lets_a_waiting_thread_in() -> None:
    force_default_value("max_concurrent_model_calls", 1)
    slots = CallSlots()
    entered = threading.Event()
    with slots.hold():

        def hold_then_signal() -> None:
            slots.hold().__enter__()  # held until the context manager is collected, right away
            entered.set()

        waiter = threading.Thread(target=hold_then_signal)
        waiter.start()
        assert not entered.wait(0.2)
        force_default_value("max_concurrent_model_calls", 2)
        assert entered.wait(30)
    waiter.join()


def test_a_cancelled_async_waiter_gives_up_its_place() -> None:
    force_default_value("max_concurrent_model_calls", 1)
    slots = CallSlots()

    async def main() -> int:
        async with slots.ahold():

            async def wait_forever() -> None:
                async with slots.ahold():
                    pass

            task = asyncio.create_task(wait_forever())
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with slots.ahold():
            return slots.in_use

    assert asyncio.run(main()) == 1
    assert slots.in_use == 0
