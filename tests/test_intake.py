"""A worker holds no more jobs than VQUEUE_WORKER_MAX_JOBS: past it, messages stay in the
queue for workers with room (worker/intake.py)."""

import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, text

from vqueue.contract.queueing import JobQueue
from vqueue.settings import Settings
from worker.intake import IntakeCeiling, held_jobs, jobs_in, limit_intake


class ChannelQos:
    """Stands in for the broker channel's QoS (its prefetch credit in messages)."""

    credit = True

    def can_consume(self) -> bool:
        return self.credit


def test_no_fetch_at_the_limit_and_the_channels_own_credit_still_counts() -> None:
    held = [0]
    qos: Any = ChannelQos()
    limit_intake(qos, 64, lambda: held[0])
    assert qos.can_consume()
    held[0] = 63
    assert qos.can_consume()
    held[0] = 64
    assert not qos.can_consume()
    held[0] = 0
    qos.credit = False  # out of message credit: no fetch, however few jobs are held
    assert not qos.can_consume()


def test_a_lowered_ceiling_stops_the_fetch_at_the_engines_slots() -> None:
    held, ceiling = [4], IntakeCeiling()
    qos: Any = ChannelQos()
    limit_intake(qos, 16, lambda: held[0], ceiling)
    assert qos.can_consume()
    ceiling.lower_to(4)  # jobs were handed back to a worker with room
    assert not qos.can_consume()
    held[0] = 3
    assert qos.can_consume()
    held[0] = 12
    ceiling.restore()
    assert qos.can_consume()


def test_the_jobs_of_a_message_are_counted() -> None:
    assert jobs_in(SimpleNamespace(args=[["a", "b", "c"]])) == 3  # run_jobs
    assert jobs_in(SimpleNamespace(args=["a"])) == 1  # run_job, an older message
    assert held_jobs() == 0  # this process has reserved no task


def test_a_worker_holds_no_more_jobs_than_its_limit(
    base_url: str, db: Engine, settings: Settings
) -> None:
    limit, per_message = settings.effective_worker_max_jobs, settings.jobs_per_message
    assert limit == 2 * settings.max_num_seqs == 64
    count = limit + 5 * per_message  # nine messages of 16
    params = '{"max_tokens": 48, "ignore_eos": true}'
    with db.begin() as conn:
        rows = conn.execute(
            text(
                "INSERT INTO jobs (id, status, prompt, params, expires_at) SELECT "
                "gen_random_uuid(), 'queued', 'Count to ten:', CAST(:params AS jsonb), "
                "now() + interval '1 hour' "
                "FROM generate_series(1, :n) RETURNING id, priority"
            ),
            {"params": params, "n": count},
        ).all()
    ids = [str(row.id) for row in rows]
    queue = JobQueue.from_settings(settings)
    try:
        queue.send_many([(str(row.id), row.priority) for row in rows])
        most_held, held_back = 0, False
        deadline = time.monotonic() + 300
        while True:
            with db.connect() as conn:
                counts = dict(
                    conn.execute(
                        text("SELECT status, count(*) FROM jobs WHERE id = ANY(:ids) GROUP BY 1"),
                        {"ids": ids},
                    ).all()
                )
            most_held = max(most_held, counts.get("running", 0))
            held_back = held_back or bool(counts.get("running") and counts.get("queued"))
            if counts.get("succeeded", 0) == count:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.05)
    finally:
        queue.close()
    # A fetch already in flight at the limit still delivers its message: one over, at most.
    assert most_held <= limit + per_message, most_held
    assert held_back  # jobs waited in the queue while the worker ran others
