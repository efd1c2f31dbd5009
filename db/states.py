"""Job and batch states, and the transitions allowed between them, in one place: every
statement that changes a status is built from these tables (db/transitions.py)."""

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its time ran out before it started (its queue timeout or its deadline): never run.
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # QUEUED -> SUCCEEDED/FAILED: a worker's late result for a job the reconciler requeued while
    # Postgres was out of reach, when no other attempt has claimed it since.
    JobStatus.QUEUED: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.CANCELLED,
            JobStatus.FAILED,
            JobStatus.SUCCEEDED,
            JobStatus.EXPIRED,
        }
    ),
    # Back to QUEUED when a worker hands a job back (shutdown, lost lease).
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
}


def sources_of(target: JobStatus) -> list[JobStatus]:
    """The states a job may be in for a move to `target`; conditional UPDATEs filter on them."""
    return [source for source, targets in TRANSITIONS.items() if target in targets]


class BatchStatus(StrEnum):
    # The upload is being parsed and stored; a batch left here by a crashed API process is
    # failed by the reconciler.
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return not BATCH_TRANSITIONS[self]


class DeliveryStatus(StrEnum):
    """A webhook delivery's (db/webhooks.py): tried until delivered or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # A failed try leaves it pending, due again later.
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}),
    # Re-sent by its owner.
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
}

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    # Stored whole (in_progress) or not at all: an interrupted upload fails.
    BatchStatus.VALIDATING: frozenset({BatchStatus.IN_PROGRESS, BatchStatus.FAILED}),
    BatchStatus.IN_PROGRESS: frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLING}),
    # Cancelling until its running jobs have been aborted.
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}
