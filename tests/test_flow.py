"""flow.py's drivers for flows that hand out text: the same steps, sync and async, errors thrown back."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from openai_utils import flow


def counting(limit: int, log: list[str]) -> flow.Flow[None]:
    """Emits "0".."limit-1", asking for each number with a Sleep step first; a step that fails
    is caught, logged and ends the flow."""
    try:
        for i in range(limit):
            got = yield flow.Sleep(i)
            log.append(f"got {got}")
            yield flow.Emit(str(i))
    except ValueError as error:
        log.append(f"caught {error}")


def perform(step: flow.Step) -> Any:
    assert isinstance(step, flow.Sleep)
    if step.seconds == 2:
        raise ValueError("two")
    return step.seconds * 10


async def aperform(step: flow.Step) -> Any:
    return perform(step)


def test_emitted_hands_out_each_text_and_throws_a_failed_step_back_into_the_flow() -> None:
    log: list[str] = []
    assert list(flow.emitted(counting(5, log), perform)) == ["0", "1"]
    assert log == ["got 0", "got 10", "caught two"]


def test_aemitted_gives_the_same_texts_and_steps() -> None:
    log: list[str] = []

    async def read() -> list[str]:
        return [text async for text in flow.aemitted(counting(5, log), aperform)]

    assert asyncio.run(read()) == ["0", "1"]
    assert log == ["got 0", "got 10", "caught two"]


def test_a_reader_that_stops_early_performs_no_further_step() -> None:
    performed: list[flow.Step] = []

    def recording(step: flow.Step) -> Any:
        performed.append(step)
        return 0

    texts: Generator[str, Any, None] = flow.emitted(counting(5, []), recording)
    assert next(texts) == "0"
    texts.close()
    assert performed == [flow.Sleep(0)]
    with pytest.raises(StopIteration):
        next(texts)
