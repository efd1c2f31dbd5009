"""A worker fetches task messages only while it holds fewer jobs than VQUEUE_WORKER_MAX_JOBS.

Celery reserves up to its concurrency in messages (a thread each, max_num_seqs of them), and
a message holds from VQUEUE_JOBS_PER_MESSAGE jobs to a share of a burst (up to 512): left to
that, one worker could claim many times what its engine runs at once while another worker
has room. Counted here are the jobs
of every message this worker has reserved and not yet finished (Celery's reserved requests,
added as each message is received), checked before each fetch from Redis, the hook Celery's
own `worker_disable_prefetch` uses. A fetch already in flight still delivers its message, so
a worker may go over by one message (up to 512 jobs); when jobs end, fetching resumes on the
consumer's next turn (within a second).

A worker that handed waiting jobs back to a worker with free slots (worker/rebalance.py) takes
no messages past its own engine's slots until one of them is free: else its consumer could
take those very jobs back before the worker with room does, and they would bounce between
the two instead of running.
"""

from collections.abc import Callable
from types import MethodType
from typing import Any

from celery import bootsteps
from celery.worker import state

from vqueue.settings import get_settings


def jobs_in(request: Any) -> int:
    """The jobs of a reserved task: a list of ids (run_jobs) or one id (run_job)."""
    args = request.args or ()
    first = args[0] if args else None
    return len(first) if isinstance(first, list) else 1


def held_jobs() -> int:
    while True:
        try:
            return sum(jobs_in(request) for request in list(state.reserved_requests))
        except RuntimeError:  # a task thread ended a request while the set was being read
            continue


class IntakeCeiling:
    """The most jobs a worker takes messages for: its VQUEUE_WORKER_MAX_JOBS, or its engine's
    slots while jobs it handed back wait for the worker that had room for them."""

    def __init__(self) -> None:
        self._lowered_to: int | None = None

    def lower_to(self, jobs: int) -> None:
        self._lowered_to = jobs

    def restore(self) -> None:
        self._lowered_to = None

    def of(self, max_jobs: int) -> int:
        lowered = self._lowered_to
        return max_jobs if lowered is None else min(max_jobs, lowered)


# One per worker process: the rebalancer lowers it, the consumer's QoS reads it.
CEILING = IntakeCeiling()


def limit_intake(
    channel_qos: Any,
    max_jobs: int,
    held: Callable[[], int] = held_jobs,
    ceiling: IntakeCeiling = CEILING,
) -> None:
    """Make the broker channel's QoS refuse further messages while `held()` is at the
    ceiling (max_jobs, or less after a hand-back)."""
    can_consume_messages = channel_qos.can_consume

    def can_consume(self: Any) -> bool:
        return held() < ceiling.of(max_jobs) and bool(can_consume_messages())

    channel_qos.can_consume = MethodType(can_consume, channel_qos)


class IntakeLimit(bootsteps.StartStopStep):
    """Consumer step: applies the limit to each new task consumer (again after reconnects)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        if parent.task_consumer is not None:
            max_jobs = get_settings().effective_worker_max_jobs
            limit_intake(parent.task_consumer.channel.qos, max_jobs)
