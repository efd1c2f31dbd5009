"""Rounds that one process at a time runs, whichever of the API processes and workers gets
there first: the reconciler's and the batch feeder's. A transaction-level advisory lock, so a
process that dies mid-round releases it with its connection.

A round never waits long for a row: it can run again at its next interval, while the worker
or request holding the row should not wait on it. Its statements skip locked rows, but
Postgres still waits where it follows a row's update chain (SKIP LOCKED does not apply
there), and a round holding rows from its earlier statements could then close a cycle with a
worker's result; the round's lock timeout ends such a wait first."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, func, select, text

# Well under Postgres' deadlock_timeout (1 s): the round gives up before a deadlock is sought.
ROUND_LOCK_TIMEOUT_MS = 200


@contextmanager
def exclusive_round(db: Engine, lock_key: int) -> Iterator[Connection | None]:
    """A transaction holding the round's lock, committed on leaving; None when another
    process holds it (this round is skipped, not waited for)."""
    with db.begin() as conn:
        if not conn.scalar(select(func.pg_try_advisory_xact_lock(lock_key))):
            yield None
            return
        conn.execute(text(f"SET LOCAL lock_timeout = {ROUND_LOCK_TIMEOUT_MS}"))
        yield conn
