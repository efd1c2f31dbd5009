"""A daemon thread that runs one round of work every few seconds (or when woken) until closed."""

import logging
import threading
from collections.abc import Callable

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
