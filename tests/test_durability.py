"""Faults injected for real into the running stack: nothing lost, nothing done twice.

Each test adds a row to docs/durability.md (see the durability_report fixture).
"""

import signal
import threading
import time
from typing import Any

from redis import Redis
from sqlalchemy import Engine, text

from tests.conftest import POSTGRES_PROXY
from tests.durability import (
    finals_of,
    report,
    running_jobs,
    tally,
    wait_for_restart,
    wait_until,
)
from tests.helpers import http, insert_unqueued_job, recorded_successes, wait_for_text
from vqueue.client.api_client import ServerEvent, VQueueClient
from vqueue.contract.wire import token_log_key
from vqueue.dev import stack
from vqueue.loops.reconciler import ADVISORY_LOCK_KEY, Reconciler
from vqueue.settings import Settings


def wait_for_log_to_settle(redis: Redis, job_id: str, timeout: float) -> None:
    """Until the job's token log stops growing: its generation is over."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        length = redis.xlen(token_log_key(job_id))
        if length != last:
            last, since = length, time.monotonic()
        elif time.monotonic() - since > 3:
            return
        time.sleep(0.2)
    raise AssertionError("the job kept generating")


def test_a_worker_killed_mid_generation_loses_and_doubles_nothing(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    max_tokens = 300
    jobs = running_jobs(client, "Story number", 6, max_tokens)
    events: list[ServerEvent] = []
    reader = threading.Thread(target=lambda: events.extend(client.stream(jobs[0]["id"])))
    reader.start()

    worker = stack.kill(settings, "worker", signal.SIGKILL, group=True)
    killed_at = time.monotonic()
    # With no worker left, the API's reconciler requeues the jobs once their leases lapse.
    requeue_s = wait_until(
        lambda: all(client.get(job["id"])["status"] == "queued" for job in jobs), timeout=60
    )
    wait_for_restart(settings, "worker", worker)  # by the supervisor
    back_s = time.monotonic() - killed_at
    finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
    reader.join(timeout=60)

    counts = tally(redis, finals, max_tokens)
    report(
        durability_report,
        counts,
        fault="worker killed mid-generation",
        injection="SIGKILL to the worker's process group (engine core included)",
        in_flight=len(jobs),
        recovery=f"worker back in {back_s:.0f}s",
        notes=f"requeued {requeue_s:.1f}s after the kill (lease {settings.lease_s:g}s); "
        "each finished on attempt 2",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert all(job["attempt"] == 2 for job in finals)
    assert requeue_s < settings.lease_s + 5
    # The stream marked the restart, and what followed it is the whole final text.
    names = [event.event for event in events]
    assert "restart" in names
    after = events[len(names) - names[::-1].index("restart") :]
    assert "".join(e.data["text"] for e in after if e.event == "delta") == finals[0]["text"]


def test_redis_losing_its_data_loses_no_job(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    max_tokens = 80
    running = [
        client.submit(prompt=f"Poem {i}:", max_tokens=max_tokens, ignore_eos=True)
        for i in range(settings.max_num_seqs)
    ]
    wait_for_text(client, running[-1]["id"])
    queued = [
        client.submit(prompt=f"Note {i}:", max_tokens=max_tokens, ignore_eos=True)
        for i in range(12)
    ]
    # Every key (queue, token logs, enqueued set) gone, every connection dropped.
    redis.flushdb()
    redis.client_kill_filter(_type="pubsub")
    redis.client_kill_filter(_type="normal", skipme=True)

    finals = finals_of(client, [job["id"] for job in [*running, *queued]], timeout=600)
    counts = tally(redis, finals, max_tokens)
    durability_report.append(
        {
            "fault": "Redis lost its data",
            "injection": "FLUSHDB, then CLIENT KILL of every pub/sub and normal connection",
            "in_flight": f"{len(running)} running + {len(queued)} queued",
            "lost": counts.lost,
            "duplicated": counts.duplicated,
            "stuck": counts.stuck,
            "notes": "queued jobs re-sent by the reconciler from Postgres",
        }
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)


def test_a_crash_between_commit_and_enqueue_strands_no_job(
    client: VQueueClient, db: Engine, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    jobs = [insert_unqueued_job(db) for _ in range(5)]
    finals = [client.wait(job_id, timeout=120) for job_id in jobs]
    lost = sum(job["status"] != "succeeded" for job in finals)
    duplicated = sum(recorded_successes(redis, job["id"]) > 1 for job in finals)
    durability_report.append(
        {
            "fault": "API crashed between commit and enqueue",
            "injection": "rows committed as queued with no broker message",
            "in_flight": len(jobs),
            "lost": lost,
            "duplicated": duplicated,
            "notes": "sent by the reconciler after VQUEUE_REQUEUE_GRACE_S",
        }
    )
    assert (lost, duplicated) == (0, 0)


def test_postgres_down_fails_submits_fast_and_keeps_finished_results(
    client: VQueueClient,
    base_url: str,
    db: Engine,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    max_tokens = 120
    job = client.submit(prompt="A long answer:", max_tokens=max_tokens, ignore_eos=True)
    wait_for_text(client, job["id"])
    POSTGRES_PROXY.cut()
    try:
        started = time.monotonic()
        refused = http.post(f"{base_url}/jobs", json={"prompt": "hi"}, timeout=30)
        refused_s = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert "database" in refused.json()["error"]["message"]
        assert http.get(f"{base_url}/jobs/{job['id']}").status_code == 503
        assert http.get(f"{base_url}/ready").status_code == 503
        # The generation ends while Postgres is out of reach; the worker keeps the result.
        wait_for_log_to_settle(redis, job["id"], timeout=60)
        with db.connect() as conn:
            status = conn.scalar(text("SELECT status FROM jobs WHERE id = :id"), {"id": job["id"]})
        assert status in {"running", "queued"}
    finally:
        POSTGRES_PROXY.restore()
    (final,) = finals_of(client, [job["id"]], timeout=120)
    counts = tally(redis, [final], max_tokens)
    durability_report.append(
        {
            "fault": "Postgres unreachable",
            "injection": "TCP proxy between the stack and Postgres cut until generation ended",
            "in_flight": 1,
            "lost": counts.lost,
            "duplicated": counts.duplicated,
            "stuck": counts.stuck,
            "notes": f"submit answered 503 in {refused_s:.2f}s; the finished result was "
            "written after the outage, same attempt",
        }
    )
    assert refused_s < 10
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert final["attempt"] == 1


def test_sigterm_finishes_short_jobs_and_hands_back_long_ones(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    long_tokens = 1500
    long_jobs = [
        client.submit(prompt=f"Chapter {i}:", max_tokens=long_tokens, ignore_eos=True)
        for i in range(3)
    ]
    for job in long_jobs:
        wait_for_text(client, job["id"])
    short = client.submit(prompt="Quick:", max_tokens=16, ignore_eos=True)
    wait_for_text(client, short["id"])

    pid = stack.kill(settings, "worker", signal.SIGTERM)
    started = time.monotonic()
    assert stack.wait_exit(pid, timeout=settings.shutdown_grace_s + 60)
    exit_s = time.monotonic() - started
    states = {job["id"]: client.get(job["id"]) for job in [*long_jobs, short]}
    assert states[short["id"]]["status"] == "succeeded"
    assert all(states[job["id"]]["status"] == "queued" for job in long_jobs)

    # The supervisor starts a new worker, as after any exit.
    wait_for_restart(settings, "worker", pid)
    finals = finals_of(client, [job["id"] for job in long_jobs], timeout=600)
    counts = tally(redis, finals, long_tokens)
    durability_report.append(
        {
            "fault": "graceful worker shutdown",
            "injection": "SIGTERM to the worker",
            "in_flight": len(long_jobs) + 1,
            "lost": counts.lost,
            "duplicated": counts.duplicated,
            "stuck": counts.stuck,
            "notes": f"short job finished, long ones handed back; the worker exited "
            f"{exit_s:.1f}s after SIGTERM (grace {settings.shutdown_grace_s:g}s)",
        }
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert exit_s < settings.shutdown_grace_s + 30
    assert all(job["attempt"] == 2 for job in finals)


def test_a_job_whose_worker_keeps_dying_stops_after_max_attempts(
    db: Engine, settings: Settings, client: VQueueClient
) -> None:
    job_id = insert_unqueued_job(db)
    # As after its last allowed attempt's worker died: running, lease lapsed.
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = 'running', attempt = :attempts, "
                "lease_expires_at = now() - interval '1 second' WHERE id = :id"
            ),
            {"id": job_id, "attempts": settings.max_attempts},
        )
    final = client.wait(job_id, timeout=30)
    assert final["status"] == "failed"
    assert final["error"].startswith(f"gave up after {settings.max_attempts} attempts")
    assert final["attempt"] == settings.max_attempts


def test_reconciler_rounds_exclude_each_other(settings: Settings, db: Engine) -> None:
    """Two processes reconciling at once: only one does the round (advisory lock)."""
    from vqueue.contract.queueing import JobQueue

    queue = JobQueue.from_settings(settings)
    with db.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        assert Reconciler(settings, db, queue).run_once() == {}
    assert Reconciler(settings, db, queue).run_once() != {}
    queue.close()
