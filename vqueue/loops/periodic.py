"""A daemon thread that runs one round of work every few seconds (or when woken) until closed,
and the control loops built on it."""

import logging
import threading
from collections.abc import Callable

from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from vqueue.contract.queueing import JobQueue
from vqueue.settings import Settings

log = logging.getLogger(__name__)


class PeriodicThread:
    def __init__(
        self,
        name: str,
        interval_s: float,
        round_: Callable[[], object],
        expected_errors: tuple[type[BaseException], ...],
    ) -> None:
        self._interval_s = interval_s
        self._round = round_
        # Outages (database, Redis) fail a round; the next round tries again.
        self._expected_errors = expected_errors
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now rather than at the end of the interval."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._round()
            except self._expected_errors as exc:
                log.warning("%s round failed: %s", self._thread.name, exc)


class ControlLoop:
    """A control loop on Postgres and the broker: `run_once` every `interval_s` in a thread of
    its own. An outage (the database, Redis) fails a round and the next one tries again; each
    round takes its advisory lock (db/locks.py), so one process at a time runs it."""

    NAME = "control-loop"

    def __init__(self, settings: Settings, db: Engine, queue: JobQueue, interval_s: float) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self._thread = PeriodicThread(
            self.NAME, interval_s, self.run_once, (SQLAlchemyError, RedisError, OSError)
        )
        self.start, self.close = self._thread.start, self._thread.close
        self.wake = self._thread.wake

    def run_once(self) -> dict[str, int]:
        """One round; how many rows each of its rules touched (empty if another process held
        the round)."""
        raise NotImplementedError
