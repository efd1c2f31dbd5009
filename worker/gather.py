"""Requests from many threads, served together by one thread.

A worker's task threads each hold one message of jobs. What they ask of Postgres at about the
same moment (claims when a burst arrives, results as its runs end) goes to one thread, which
takes everything that has gathered and serves it in one round trip. One round trip per thread
would cost hundreds of them per burst, each thread waiting for the GIL beside the busy engine
loop; and a thread whose message's runs end one after another would otherwise record them one
after another, the last waiting behind all the others.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Gatherer(Generic[T, R]):
    """`submit` from any thread; `serve` gets the requests that gathered, in order, up to
    `limit` in all as counted by `size` (a bigger one goes alone), and returns one result for
    each. What `serve` raises goes to every request of its round. `then`, if given, gets each
    round's requests once their callers have its results or its error: work that is not on
    their path (what it raises is logged).

    With `threads` > 1, that many rounds may be served at once (`serve` must allow it): what
    gathers while a round is out goes out at once, not after it."""

    def __init__(
        self,
        name: str,
        serve: Callable[[list[T]], list[R]],
        size: Callable[[T], int],
        limit: int,
        then: Callable[[list[T]], None] | None = None,
        threads: int = 1,
    ) -> None:
        self._serve = serve
        self._then = then
        self._size = size
        self._limit = limit
        self._pending: list[tuple[T, Future[R]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._name = name
        self._threads = [
            threading.Thread(
                target=self._loop, name=name if threads == 1 else f"{name}-{index}", daemon=True
            )
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: T) -> "Future[R]":
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker is shutting down")
            self._pending.append((request, future))
        self._wake.set()
        return future

    def close(self) -> None:
        """Serve what is pending, then stop."""
        with self._lock:
            self._closed = True
        self._wake.set()
        deadline = time.monotonic() + 30
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch = self._take()
                # Cleared under the lock, so a request added after this round's take wakes
                # the next; once closed, rounds follow each other until nothing is left.
                if not self._pending and not self._closed:
                    self._wake.clear()
                if not batch and self._closed:
                    return
            if batch:
                self._settle(batch)

    def _take(self) -> list[tuple[T, "Future[R]"]]:
        """Pending requests up to the limit (at least one)."""
        count, total = 0, 0
        for request, _ in self._pending:
            size = self._size(request)
            if count and total + size > self._limit:
                break
            count, total = count + 1, total + size
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    def _settle(self, batch: list[tuple[T, "Future[R]"]]) -> None:
        requests = [request for request, _ in batch]
        try:
            results = self._serve(requests)
        except BaseException as exc:
            for _, future in batch:
                future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
        if self._then is None:
            return
        try:
            self._then(requests)
        except Exception:
            log.exception("%s: the work after a round failed", self._name)
