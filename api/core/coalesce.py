"""Concurrent reads of one key share one query: a thousand requests whose API key just left
the cache cost one Postgres read, not a thousand waiting on a pool of forty. (Jobs' rows are
read many ids at a time: api/jobs/rows.py.)

A read never returns data older than its caller: a call that arrives while a query for its
key is running does not join it (that query may have started before the change the caller
reacts to, e.g. a job's END); it waits for the next one, which all such callers share.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class ReadCoalescer:
    def __init__(self) -> None:
        self._next: dict[Hashable, asyncio.Future[Any]] = {}
        self._running: dict[Hashable, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak refs

    async def read(self, key: Hashable, query: Callable[[], Awaitable[Any]]) -> Any:
        """The result of `query()`, started after this call arrived, shared with the calls of
        the same key that arrived before it started."""
        pending = self._next.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._next[key] = pending
            task = asyncio.create_task(self._run(key, pending, query))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # A caller that goes away (a client disconnecting) does not cancel the others' read.
        return await asyncio.shield(pending)

    async def _run(
        self, key: Hashable, pending: "asyncio.Future[Any]", query: Callable[[], Awaitable[Any]]
    ) -> None:
        earlier = self._running.get(key)
        if earlier is not None:
            await asyncio.wait([earlier])
        # From here on, new callers queue for the next read.
        del self._next[key]
        self._running[key] = pending
        try:
            result = await query()
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # its callers may all be gone: not an unretrieved error
        else:
            pending.set_result(result)
        finally:
            if self._running.get(key) is pending:
                del self._running[key]
