"""Statements that change many job rows never deadlock each other (real Postgres).

Claims, results, lease renewals, failures and reconciler rounds run on the same rows from
several threads at once, each on random subsets, for a while, without the retry that wraps
them in the product: their lock order, and the reconciler's bounded waits (db/locks.py), must
keep Postgres from finding a deadlock.
"""

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from psycopg.errors import DeadlockDetected, LockNotAvailable
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import DBAPIError

from db.attempts import AttemptResult, claim_jobs, finish_jobs, renew_leases
from db.conflicts import is_conflict, locked_in_id_order, retry_conflicts
from db.jobs import expire_queued_jobs, fail_unqueued_jobs, give_up_lost_jobs, requeue_lost_jobs
from db.locks import exclusive_round
from db.schema import jobs
from db.states import JobStatus

ROWS = 300
SUBSET = 60
RUN_S = 8.0
WORKER = "lock-test"
ROUND_KEY = 0x6C6F636B  # the test's own round lock


def make_jobs(db: Engine) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(ROWS)]
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, status, prompt, params, expires_at) "
                "SELECT unnest(CAST(:ids AS uuid[])), 'queued', 'x', '{}', now() + interval '1 day'"
            ),
            {"ids": ids},
        )
    return ids


def test_concurrent_state_changes_on_shared_rows_never_deadlock(db: Engine) -> None:
    ids = make_jobs(db)
    autocommit = db.execution_options(isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    done: Counter[str] = Counter()
    errors: list[BaseException] = []

    def subset() -> list[uuid.UUID]:
        return random.sample(ids, SUBSET)

    def claim() -> None:
        with autocommit.connect() as conn:
            conn.execute(claim_jobs(subset(), WORKER, 0.05)).all()

    def finish() -> None:
        with db.connect() as conn:
            running = conn.execute(
                text("SELECT id, attempt FROM jobs WHERE id = ANY(:ids) AND status = 'running'"),
                {"ids": subset()},
            ).all()
        if running:
            results = [AttemptResult(i, a, JobStatus.SUCCEEDED, text="ok") for i, a in running]
            with autocommit.connect() as conn:
                conn.execute(finish_jobs(results)).all()

    def renew() -> None:
        with db.begin() as conn:
            conn.execute(renew_leases(subset(), WORKER, 0.05)).all()

    def reconcile() -> None:
        # As the reconciler runs its round: one transaction, its lock waits bounded.
        with exclusive_round(db, ROUND_KEY) as conn:
            assert conn is not None
            conn.execute(requeue_lost_jobs(10**6, [], 0.05)).all()
            conn.execute(give_up_lost_jobs(10**6, [], 0.05)).all()
            conn.execute(expire_queued_jobs()).all()

    def fail_some() -> None:
        with db.begin() as conn:
            conn.execute(fail_unqueued_jobs(subset()[:5], "failed by the test"))

    def recycle() -> None:
        # Scaffolding under the same rule as the product: ended jobs queued again, in one
        # statement that locks its rows in id order.
        ended = (jobs.c.id.in_(ids), jobs.c.status.in_(["succeeded", "failed"]))
        with db.begin() as conn:
            conn.execute(
                update(jobs)
                .where(locked_in_id_order(*ended), *ended)
                .values(status="queued", finished_at=None)
            )

    def loop(name: str, work: Callable[[], Any]) -> None:
        while not stop.is_set():
            try:
                work()
                done[name] += 1
            except DBAPIError as exc:
                errors.append(exc)
                if not is_conflict(exc):
                    return

    work = {
        "claim-1": claim,
        "claim-2": claim,
        "finish": finish,
        "renew": renew,
        "reconcile": reconcile,
        "fail": fail_some,
        "recycle": recycle,
    }
    threads = [threading.Thread(target=loop, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    time.sleep(RUN_S)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    deadlocks = [e for e in errors if isinstance(e.orig, DeadlockDetected)]  # type: ignore[attr-defined]
    assert not deadlocks, f"{len(deadlocks)} deadlocks: {deadlocks[0]}"
    # A round may give a wait up (it runs again next interval); nothing else may fail.
    others = [e for e in errors if not isinstance(e.orig, LockNotAvailable)]  # type: ignore[attr-defined]
    assert not others, others[0]
    assert len(errors) < done["reconcile"], "most rounds ran through"
    # Every kind of statement ran, many times over.
    assert all(done[name] >= 5 for name in work), done


def test_a_conflict_is_tried_again() -> None:
    calls = []

    class Orig(DeadlockDetected):
        pass

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DBAPIError("UPDATE jobs ...", {}, Orig("deadlock detected"))
        return "done"

    assert retry_conflicts(flaky, "a test") == "done"
    assert len(calls) == 3
