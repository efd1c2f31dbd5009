"""Faults as the world makes them: one process killed or paused, and nobody restarts it but
the stack's own supervisor (as `make up` runs it). Nothing lost, doubled or stuck; no person
acts; a resumed stream is always one attempt's text.

Each test adds a row to docs/durability.md (see the durability_report fixture). The API is
killed in two tests that follow each other: a SIGKILLed process saves no coverage data, so
what the API ran between the kills would go uncounted.
"""

import re
import signal
import subprocess
import sys
import time
from typing import Any

from redis import Redis
from sqlalchemy import Engine, text

from db.webhooks import LOST_TRY
from tests.durability import (
    CutReader,
    Follower,
    Tally,
    engine_core,
    engine_pids,
    finals_of,
    gone,
    report,
    resume_all,
    running_jobs,
    sigkill_until_restarted,
    tally,
    wait_for_restart,
    wait_until,
    wait_until_gone,
    worker_listed,
)
from tests.helpers import http
from tests.webhook_receiver import Receiver, settled, submit
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings


def test_sigkill_of_the_workers_main_process_alone(
    client: VQueueClient, settings: Settings, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    max_tokens = 300
    jobs = running_jobs(client, "Story number", 6, max_tokens)
    follower = Follower(client, jobs[0]["id"]).start()
    cut = [CutReader(job["id"]).read(client, deltas=3) for job in jobs[1:]]
    worker = stack.running_pid(settings, "worker")
    assert worker is not None
    engine = engine_pids(worker)
    assert engine, "the worker has no engine processes"

    killed_at = time.monotonic()
    stack.kill(settings, "worker", signal.SIGKILL)  # the main process alone, as the OOM killer
    engine_gone_s = wait_until_gone(engine, timeout=15)
    new_worker = wait_for_restart(settings, "worker", worker)
    back_s = time.monotonic() - killed_at
    finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
    done_s = time.monotonic() - killed_at
    follower.join(timeout=60)

    counts = tally(redis, finals, max_tokens)
    restarted, spliced = resume_all(client, cut, finals)
    report(
        durability_report,
        counts,
        fault="worker's main process killed",
        injection="SIGKILL to the worker's main pid alone (as the OOM killer sends it)",
        in_flight=len(jobs),
        recovery=f"worker back in {back_s:.0f}s, every job done in {done_s:.0f}s",
        notes=f"engine processes gone {engine_gone_s:.1f}s after the kill; the supervisor "
        f"restarted the worker (pid {new_worker}); {len(cut)} resumed streams: "
        f"{restarted} restarted, {spliced} spliced",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert all(job["attempt"] == 2 for job in finals)
    assert spliced == 0
    assert restarted == len(cut)
    metrics = http.get(f"{stack.base_url(settings)}/metrics").text
    restarts = re.search(
        r'^vqueue_process_restarts_total\{process="worker"\} (\S+)$', metrics, re.M
    )
    assert restarts is not None
    assert float(restarts.group(1)) >= 1
    assert follower.restarts >= 1
    assert follower.text == finals[0]["text"]


def test_sigkill_of_the_engine_core_alone(
    client: VQueueClient, settings: Settings, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    max_tokens = 200
    jobs = running_jobs(client, "Essay", 3, max_tokens)
    cut = [CutReader(job["id"]).read(client, deltas=3) for job in jobs]
    worker = stack.running_pid(settings, "worker")
    assert worker is not None
    core = engine_core(worker)
    killed_at = time.monotonic()
    core.kill()  # the engine dies under the worker
    # The worker notices (EngineDeadError) and exits rather than fail every job it gets; the
    # supervisor starts another, which runs the jobs once their leases lapse.
    assert stack.wait_exit(worker, timeout=60)
    wait_for_restart(settings, "worker", worker)
    back_s = time.monotonic() - killed_at
    finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
    counts = tally(redis, finals, max_tokens)
    _, spliced = resume_all(client, cut, finals)
    report(
        durability_report,
        counts,
        fault="engine crashed",
        injection="SIGKILL to the vLLM engine-core process alone",
        in_flight=len(jobs),
        recovery=f"worker back in {back_s:.0f}s",
        notes=f"the worker exited (code 70) instead of failing jobs; they ran again as "
        f"attempt 2; {len(cut)} resumed streams, {spliced} spliced",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert all(job["attempt"] == 2 for job in finals)
    assert spliced == 0


def test_an_engine_that_hangs_is_given_up_and_its_jobs_run_elsewhere(
    client: VQueueClient, settings: Settings, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    max_tokens = 200
    jobs = running_jobs(client, "Memo", 3, max_tokens)
    worker = stack.running_pid(settings, "worker")
    assert worker is not None
    core = engine_core(worker)
    stopped_at = time.monotonic()
    core.suspend()  # as an engine stuck in a device call: alive, answering nothing
    # The worker's other threads still run: it must not renew its leases for ever.
    assert stack.wait_exit(worker, timeout=settings.engine_stall_s + 60)
    gave_up_s = time.monotonic() - stopped_at
    wait_for_restart(settings, "worker", worker)
    finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
    counts = tally(redis, finals, max_tokens)
    report(
        durability_report,
        counts,
        fault="engine hung",
        injection="SIGSTOP to the vLLM engine-core process alone (never continued)",
        in_flight=len(jobs),
        recovery=f"worker gave up {gave_up_s:.0f}s after the stop "
        f"(VQUEUE_ENGINE_STALL_S {settings.engine_stall_s:g}s)",
        notes="the worker exited instead of renewing its leases; the stopped engine died "
        "with it; a new worker ran the jobs as attempt 2",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert all(job["attempt"] == 2 for job in finals)
    assert gone([core.pid])


def test_a_worker_paused_past_its_lease_fails_nothing_when_it_wakes(
    client: VQueueClient, settings: Settings, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    max_tokens = 300
    jobs = running_jobs(client, "Tale", 30, max_tokens)
    cut = [CutReader(job["id"]).read(client, deltas=2) for job in jobs[:10]]
    worker = stack.running_pid(settings, "worker")
    assert worker is not None

    # Past its lease, and past the engine stall limit: the engine's output waits unread all
    # that time, and the worker must not take that for a stuck engine when it wakes.
    pause_s = max(2 * settings.lease_s, settings.engine_stall_s + settings.lease_s / 2)
    stack.kill(settings, "worker", signal.SIGSTOP)
    try:
        # Meanwhile the API's reconciler takes the jobs back (heartbeat gone, lease lapsed).
        requeued_s = wait_until(
            lambda: all(client.get(job["id"])["status"] != "running" for job in jobs),
            timeout=pause_s + 30,
        )
        requeued = sum(client.get(job["id"])["status"] == "queued" for job in jobs)
        time.sleep(max(0.0, pause_s - requeued_s))
    finally:
        stack.kill(settings, "worker", signal.SIGCONT)
    # Awake, the same worker holds attempt 1 of each job and is sent attempt 2.
    finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
    counts = tally(redis, finals, max_tokens)
    _, spliced = resume_all(client, cut, finals)
    log = (settings.run_dir / "worker.log").read_text(errors="replace")
    report(
        durability_report,
        counts,
        fault="worker paused past its lease",
        injection=f"SIGSTOP to the worker for {pause_s:g}s (past its lease and the engine "
        "stall limit), then SIGCONT",
        in_flight=len(jobs),
        recovery=f"requeued {requeued_s:.1f}s into the pause",
        notes=f"{requeued} jobs requeued; awake, the worker finished "
        f"{sum(job['attempt'] == 1 for job in finals)} on attempt 1 (still theirs) and "
        f"{sum(job['attempt'] > 1 for job in finals)} on a newer attempt (the stale one stopped "
        f"or its result refused); {len(cut)} resumed streams, {spliced} spliced",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert requeued > 0
    assert "KeyError" not in log
    assert stack.running_pid(settings, "worker") == worker  # nothing restarted it
    assert spliced == 0


def test_sigkill_of_the_api_while_50_clients_stream(
    client: VQueueClient, settings: Settings, redis: Redis, durability_report: list[dict[str, Any]]
) -> None:
    max_tokens = 300
    jobs, followers = streams_to_cut(client, settings, max_tokens)
    back_s = sigkill_until_restarted(settings, "api")
    finals = {job["id"]: job for job in finals_of(client, [j["id"] for j in jobs], 600)}
    for follower in followers:
        follower.join(timeout=120)
        follower.client.http.close()
    counts = tally(redis, list(finals.values()), max_tokens)
    wrong = sum(f.text != finals[f.job_id]["text"] for f in followers)
    resumed = sum(f.reconnects > 0 for f in followers)
    report(
        durability_report,
        counts,
        fault="API process killed",
        injection="SIGKILL to the API process while 50 clients follow 10 streams",
        in_flight=len(jobs),
        recovery=f"API back in {back_s:.1f}s",
        notes=f"{resumed} of {len(followers)} clients reconnected with Last-Event-ID; "
        f"{wrong} ended with text other than the job's",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert all(f.finished for f in followers)
    assert resumed > 0  # the kill did cut them
    assert wrong == 0


def test_a_webhook_delivery_survives_a_sigkill_of_the_api_mid_send(
    client: VQueueClient,
    receiver: Receiver,
    webhook_secret: str,
    settings: Settings,
    durability_report: list[dict[str, Any]],
) -> None:
    job = submit(client, {"url": receiver.url("/hang")})
    assert receiver.arrived.wait(120)
    killed_at = time.monotonic()
    back_s = sigkill_until_restarted(settings, "api")
    [delivery] = settled(client, job_id=job["id"], timeout=120)
    sent_s = time.monotonic() - killed_at
    report(
        durability_report,
        Tally(lost=int(delivery["status"] != "delivered"), duplicated=0, stuck=0),
        fault="API process killed mid-webhook",
        injection="SIGKILL to the API process while its webhook try waits on the receiver",
        in_flight=1,
        recovery=f"API back in {back_s:.0f}s, the event delivered {sent_s:.0f}s after the kill",
        notes=f"{len(receiver.at('/hang'))} requests, one webhook-id (receivers drop repeats "
        "by it); the lost try is in the delivery's record",
    )
    assert delivery["status"] == "delivered"
    # The try the killed process was making is written down as lost when another took it
    # over (or, where the machine stalled past the try's timeout first, as timed out).
    assert delivery["attempts"][0]["error"] in (LOST_TRY, "timed out")
    assert delivery["attempts"][-1]["status_code"] == 200
    ids = {r.headers["webhook-id"] for r in receiver.at("/hang")}
    assert ids == {delivery["id"]}
    assert len(receiver.at("/hang")) >= 2


def streams_to_cut(
    client: VQueueClient, settings: Settings, max_tokens: int
) -> tuple[list[dict[str, Any]], list[Follower]]:
    """Ten running jobs, five clients following each, all still streaming. Where the machine
    stalled long enough for a job to end first, there may be nothing left to cut: those
    followers are let go and a new round starts."""
    for _ in range(3):
        jobs = running_jobs(client, "Letter", 10, max_tokens)
        followers = [
            Follower(VQueueClient(stack.base_url(settings)), job["id"]).start()
            for job in jobs
            for _ in range(5)
        ]
        wait_until(lambda round=followers: all(f.text for f in round), timeout=120)
        if not any(f.finished for f in followers):
            return jobs, followers
        for follower in followers:
            follower.join(timeout=120)
            follower.client.http.close()
    raise AssertionError("each round's jobs ended before their streams could be cut")


def test_two_workers_on_one_queue_one_killed(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    db: Engine,
    durability_report: list[dict[str, Any]],
) -> None:
    # A second worker that no supervisor watches, as on another host: once killed, it stays
    # dead, and nothing but its own guard ends its engine.
    with open(settings.run_dir / "worker-2.log", "ab") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(lambda: worker_listed(stack.base_url(settings), second.pid), timeout=300)
        max_tokens = 300
        jobs = running_jobs(client, "Report", 16, max_tokens)
        with db.connect() as conn:
            on_second = conn.scalar(
                text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND worker LIKE :name"),
                {"ids": [job["id"] for job in jobs], "name": f"%:{second.pid}"},
            )
        engine = engine_pids(second.pid)
        killed_at = time.monotonic()
        second.kill()  # SIGKILL to its main process alone
        second.wait()
        # Its engine, GBs of memory, can take a minute to exit on a busy machine.
        engine_gone_s = wait_until_gone(engine, timeout=180)
        finals = finals_of(client, [job["id"] for job in jobs], timeout=600)
        done_s = time.monotonic() - killed_at
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    counts = tally(redis, finals, max_tokens)
    report(
        durability_report,
        counts,
        fault="one of two workers killed",
        injection="SIGKILL to the main pid of one of two workers on the queue (not restarted)",
        in_flight=len(jobs),
        recovery=f"every job done {done_s:.0f}s after the kill, on the other worker",
        notes=f"{on_second} jobs were on the killed worker; its engine processes died "
        f"{engine_gone_s:.1f}s after it, by their parent-death signal alone",
    )
    assert on_second > 0, "the burst did not reach the second worker"
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
