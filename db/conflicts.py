"""Lock order and retries: statements that change many job rows never deadlock each other,
and a conflict Postgres still reports (a deadlock or serialization failure, which it resolves
by aborting one side) is tried again rather than failing a task or a request.

Every multi-row UPDATE on jobs takes its row locks through `locked_in_id_order`: in id order,
or skipping rows another transaction holds (the reconciler's rounds, which can wait for the
next round). Two transactions that lock in one order cannot wait for each other in a circle.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg.errors import DeadlockDetected, LockNotAvailable, SerializationFailure
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from db.schema import jobs

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRIES = 5
FIRST_DELAY_S = 0.01


def locked_in_id_order(*conditions: Any, skip_locked: bool = False) -> Any:
    """`jobs.id` is among the rows that match, each locked FOR UPDATE in id order (Postgres
    re-checks the conditions on a row it had to wait for)."""
    rows = (
        select(jobs.c.id)
        .where(*conditions)
        .order_by(jobs.c.id)
        .with_for_update(skip_locked=skip_locked)
    )
    return jobs.c.id.in_(rows.scalar_subquery())


def is_conflict(exc: BaseException) -> bool:
    """A deadlock, a serialization failure or a lock wait past its timeout (db/locks.py): the
    transaction was rolled back, try it again."""
    return isinstance(exc, DBAPIError) and isinstance(
        exc.orig, DeadlockDetected | SerializationFailure | LockNotAvailable
    )


def _delay(attempt: int) -> float:
    # Jittered, so that the two sides of a conflict do not meet again at once.
    delay: float = FIRST_DELAY_S * (2**attempt) * random.uniform(0.5, 1.5)
    return delay


def retry_conflicts(work: Callable[[], T], what: str) -> T:
    """Run `work` (a whole transaction) again when Postgres aborted it for a conflict."""
    for attempt in range(RETRIES):
        try:
            return work()
        except DBAPIError as exc:
            if not is_conflict(exc) or attempt == RETRIES - 1:
                raise
            log.warning("%s: %s; trying again", what, type(exc.orig).__name__)
            time.sleep(_delay(attempt))
    raise AssertionError("unreachable")


async def retry_conflicts_async(work: Callable[[], Awaitable[T]], what: str) -> T:
    for attempt in range(RETRIES):
        try:
            return await work()
        except DBAPIError as exc:
            if not is_conflict(exc) or attempt == RETRIES - 1:
                raise
            log.warning("%s: %s; trying again", what, type(exc.orig).__name__)
            await asyncio.sleep(_delay(attempt))
    raise AssertionError("unreachable")
