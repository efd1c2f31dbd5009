"""When each engine step's tokens reached Redis: the delivery path up to the API, timed apart.

The workers publish each engine step's entries as one message (contract.LOG_SCRIPT). A process
of its own subscribes to those messages during a measured run and notes when each arrived, so
a burst of late tokens at the clients (late_tokens.py) can be placed: late here too, and the
stall was in a worker or in Redis; on time here, and it was in the API or the clients. Its
own process, as the clients' event loop (and the GIL) could stall both measures at once.
"""

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson
from redis import Redis

from vqueue.contract.wire import EVENTS_CHANNEL

# When each entry reached the tap, and how long after the worker made it; and for each engine
# step that gave jobs their first token, when the worker made it and how many jobs it served.
Arrivals = tuple[list[float], list[float], list[tuple[float, int]]]


def _listen(redis_url: str, ready: Any, stop: Any, results: Connection) -> None:
    received: list[float] = []
    lags: list[float] = []
    firsts: list[tuple[float, int]] = []
    with Redis.from_url(redis_url) as redis, redis.pubsub(ignore_subscribe_messages=True) as sub:
        sub.subscribe(EVENTS_CHANNEL)
        sub.get_message(timeout=1.0)  # the subscription's confirmation
        ready.set()
        while not stop.is_set():
            message = sub.get_message(timeout=0.1)
            if message is None:
                continue
            now = time.time()
            step_made, step_firsts = 0.0, 0
            for _, _, kind, end, text, _, made, *_ in orjson.loads(message["data"]):
                if kind == "delta" and made:  # the tokens the clients time, no END entries
                    received.append(now)
                    lags.append(now - made)
                    if end == len(text):  # starts at 0: the job's first token
                        step_made, step_firsts = made, step_firsts + 1
            if step_firsts:
                firsts.append((step_made, step_firsts))
    results.send((received, lags, firsts))
    results.close()


class StepTap:
    """`start()` before a run, `stop()` after it: every entry's arrival and lag at Redis, and
    how many jobs each engine step gave their first token (the prefill steps of a burst)."""

    def __init__(self, redis_url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._results, sending = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_listen,
            args=(redis_url, self._ready, self._stop, sending),
            name="step-tap",
            daemon=True,
        )

    def start(self, timeout: float = 30.0) -> "StepTap":
        self._process.start()
        if not self._ready.wait(timeout):
            self._process.kill()
            raise RuntimeError("the step tap did not subscribe")
        return self

    def stop(self, timeout: float = 30.0) -> Arrivals:
        self._stop.set()
        if not self._results.poll(timeout):
            self._process.kill()
            raise RuntimeError("the step tap sent nothing back")
        arrivals: Arrivals = self._results.recv()
        self._process.join(timeout)
        return arrivals
