"""Where a worker's phase timings go (vqueue/contract/phases.py): a line each in its log as
the phase ends, and into /metrics with the recorder's next metrics write."""

import logging
import threading

from vqueue.contract.phases import PhaseTiming

log = logging.getLogger(__name__)


class PhaseEvents:
    def __init__(self) -> None:
        self._pending: list[PhaseTiming] = []
        self._lock = threading.Lock()

    def emit(self, *timings: PhaseTiming) -> None:
        for timing in timings:
            log.info(
                "%s of %d jobs: %.1f ms",
                timing.phase.value,
                timing.jobs,
                timing.seconds * 1000,
                extra={"phase": timing.fields()},
            )
        with self._lock:
            self._pending.extend(timings)

    def drain(self) -> list[PhaseTiming]:
        """The timings emitted since the last drain, for the metrics."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken
