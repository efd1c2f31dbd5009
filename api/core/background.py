"""The API process's background tasks: started in the lifespan, cancelled at its end."""

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

Body = Callable[[], Coroutine[Any, Any, None]]


class BackgroundTask:
    """One asyncio task running `body` for the process's lifetime."""

    def __init__(self, name: str, body: Body) -> None:
        self._name = name
        self._body = body
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._body(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


def every(interval_s: float, round_: Body) -> Body:
    """A body that runs `round_` now and then every `interval_s` seconds."""

    async def loop() -> None:
        while True:
            await round_()
            await asyncio.sleep(interval_s)

    return loop
