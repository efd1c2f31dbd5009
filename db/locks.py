"""Rounds that one process at a time runs, whichever of the API processes and workers gets
there first: the reconciler's and the batch feeder's. A transaction-level advisory lock, so a
process that dies mid-round releases it with its connection."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, func, select


@contextmanager
def exclusive_round(db: Engine, lock_key: int) -> Iterator[Connection | None]:
    """A transaction holding the round's lock, committed on leaving; None when another
    process holds it (this round is skipped, not waited for)."""
    with db.begin() as conn:
        if not conn.scalar(select(func.pg_try_advisory_xact_lock(lock_key))):
            yield None
            return
        yield conn
