"""The phases of a job's way through a worker, each timed by one structured event.

A worker claims and prepares a task message's jobs together, and stores the results of runs
that ended together in one round, so one event times a phase for a group of jobs. Each event
is logged as the `phase` field of the worker's JSON log (the benchmark's timeline reads it)
and observed by /metrics' `vqueue_job_phase_seconds{phase}` histogram, once per job.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    # A job's way in: from the claim statement sent to every run begun on the engine loop.
    CLAIM = "claim"  # the claim statement sent -> the rows claimed
    PREPARE = "prepare"  # claimed -> prompts tokenized, sampling parameters made
    HAND_OFF = "hand_off"  # prepared -> every run of the message begun on the engine loop
    # A job's way out: from the round's last run ended to the ends announced.
    RECORD_WAIT = "record_wait"  # the last run of the round ended -> the round began
    WRITE = "write"  # the round began -> its results in Postgres
    PUBLISH = "publish"  # written -> the END entries in Redis (every done event waits for it)


# Seconds: the phases take from well under a millisecond to, under load, seconds.
PHASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
PHASE_HISTOGRAM = (
    "vqueue_job_phase_seconds",
    "Time a job spent in one phase of its way through a worker",
)


@dataclass(frozen=True, slots=True)
class PhaseTiming:
    """One phase, ended for `jobs` jobs at once; `began` and `ended` are time.time()."""

    phase: Phase
    jobs: int
    began: float
    ended: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.began)

    def fields(self) -> dict[str, Any]:
        """As the JSON log carries it."""
        return {
            "phase": self.phase.value,
            "jobs": self.jobs,
            "began": self.began,
            "ended": self.ended,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "PhaseTiming":
        return cls(Phase(fields["phase"]), int(fields["jobs"]), fields["began"], fields["ended"])
