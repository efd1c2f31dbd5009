"""EngineHost.submit_all: a message's runs handed to the engine loop in one go."""

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from vqueue.settings import get_settings
from worker.engine import EngineHost


@pytest.fixture
def host() -> Iterator[EngineHost]:
    started = EngineHost(get_settings(), Path("no-engine")).start_loop()
    yield started
    started.close()


def test_every_run_starts_in_order_and_settles_its_own_future(host: EngineHost) -> None:
    began: list[int] = []

    async def run(number: int) -> int:
        began.append(number)
        await asyncio.sleep(0.01 * (5 - number))  # they end in the reverse order
        return number * 10

    futures = host.submit_all([run(number) for number in range(5)])
    assert [future.result(timeout=5) for future in futures] == [0, 10, 20, 30, 40]
    assert began == [0, 1, 2, 3, 4]


def test_a_failing_run_fails_its_own_future_only(host: EngineHost) -> None:
    async def run(fail: bool) -> str:
        if fail:
            raise ValueError("this one")
        return "fine"

    first, second = host.submit_all([run(True), run(False)])
    with pytest.raises(ValueError, match="this one"):
        first.result(timeout=5)
    assert second.result(timeout=5) == "fine"


def test_a_run_cancelled_before_the_loop_took_it_never_starts(host: EngineHost) -> None:
    holding_now, release = threading.Event(), threading.Event()

    async def hold_the_loop() -> None:
        holding_now.set()
        release.wait(30)  # blocks the loop thread itself, so nothing else starts meanwhile

    began: list[str] = []

    async def run(name: str) -> str:
        began.append(name)
        return name

    holding = host.submit(hold_the_loop())
    # Handed over only once the loop is held: else the loop may start both before the cancel.
    assert holding_now.wait(30)
    dropped, kept = host.submit_all([run("dropped"), run("kept")])
    assert dropped.cancel()
    release.set()
    holding.result(timeout=5)
    assert kept.result(timeout=5) == "kept"
    assert dropped.cancelled()
    assert began == ["kept"]


def test_a_run_cancelled_on_the_loop_cancels_its_future(host: EngineHost) -> None:
    async def run() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await asyncio.sleep(1)

    (future,) = host.submit_all([run()])
    with pytest.raises(CancelledError):
        future.result(timeout=5)
