"""How long a run may go on: the job's timeout, or less where its deadline comes first."""

from datetime import UTC, datetime
from typing import NamedTuple

from db.attempts import ClaimedJob


class RunLimit(NamedTuple):
    """How long a run may go on, and whether the job's deadline (not its timeout) sets it."""

    seconds: float
    deadline: bool


def run_limit(row: ClaimedJob) -> RunLimit:
    if row.deadline_at is None:
        return RunLimit(float(row.timeout_s), deadline=False)
    left = (row.deadline_at - datetime.now(UTC)).total_seconds()
    if left >= row.timeout_s:
        return RunLimit(float(row.timeout_s), deadline=False)
    return RunLimit(max(left, 0.0), deadline=True)
