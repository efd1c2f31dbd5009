"""Cancel, deadlines, priorities and idempotency against the running stack."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from sqlalchemy import Engine

from tests.conftest import count_jobs
from tests.helpers import http, insert_unqueued_job, wait_for_text
from vqueue.client.api_client import ServerEvent, VQueueClient
from vqueue.contract.queueing import JobQueue
from vqueue.settings import Settings

LONG = {"prompt": "Write a very long essay about rivers.", "max_tokens": 1500, "ignore_eos": True}


def test_cancelling_a_running_job_aborts_it_and_keeps_its_text(
    client: VQueueClient, base_url: str
) -> None:
    job = client.submit(**LONG)
    events: list[ServerEvent] = []
    reader = threading.Thread(target=lambda: events.extend(client.stream(job["id"])))
    reader.start()
    wait_for_text(client, job["id"])

    asked = time.monotonic()
    response = http.post(f"{base_url}/jobs/{job['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested_at"] is not None
    final = client.wait(job["id"], interval=0.02)
    took = time.monotonic() - asked
    reader.join(timeout=30)

    assert final["status"] == "cancelled"
    assert final["finish_reason"] == "cancelled"
    assert 0 < final["usage"]["completion_tokens"] < 1500
    # The worker polls every 0.25 s; the abort lands well inside a second on an idle machine.
    assert took < 3, f"cancel took {took:.2f}s"
    assert [event.event for event in events[-2:]] == ["cancelled", "done"]
    assert "".join(e.data["text"] for e in events if e.event == "delta") == final["text"]
    # Cancelling again is harmless and changes nothing.
    again = http.post(f"{base_url}/jobs/{job['id']}/cancel")
    assert again.status_code == 200
    assert again.json()["finished_at"] == final["finished_at"]


def test_a_cancelled_queued_job_never_starts(
    base_url: str, db: Engine, settings: Settings, client: VQueueClient
) -> None:
    job_id = insert_unqueued_job(db)
    response = http.post(f"{base_url}/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    events = list(client.stream(job_id))
    assert [event.event for event in events] == ["cancelled", "done"]
    # Even a delivery of it now is skipped by the worker.
    queue = JobQueue.from_settings(settings)
    queue.send(job_id, priority=0)
    queue.close()
    time.sleep(2)
    after = client.get(job_id)
    assert after["status"] == "cancelled"
    assert after["started_at"] is None


def test_cancel_answers_for_finished_and_unknown_jobs(client: VQueueClient, base_url: str) -> None:
    done = client.wait(client.submit(prompt="Hi", max_tokens=2)["id"])
    response = http.post(f"{base_url}/jobs/{done['id']}/cancel")
    assert response.status_code == 409
    assert "succeeded" in response.json()["error"]["message"]
    assert http.post(f"{base_url}/jobs/{uuid.uuid4()}/cancel").status_code == 404


def test_a_job_past_its_timeout_fails_with_the_reason(client: VQueueClient) -> None:
    started = time.monotonic()
    final = client.wait(client.submit(**LONG, timeout_s=1)["id"])
    assert final["status"] == "failed"
    assert final["finish_reason"] == "timeout"
    assert "timed out" in final["error"]
    assert 0 < final["usage"]["completion_tokens"] < 1500
    assert time.monotonic() - started < 30


def test_a_job_that_waited_too_long_expires_instead_of_running(
    db: Engine, settings: Settings, client: VQueueClient
) -> None:
    job_id = insert_unqueued_job(db, expired=True)
    queue = JobQueue.from_settings(settings)
    queue.send(job_id, priority=0)  # a worker gets it, and must not run it
    queue.close()
    events = list(client.stream(job_id))
    final = client.get(job_id)
    assert final["status"] == "expired"
    assert final["error"] == "expired: waited in the queue longer than its queue timeout"
    assert final["started_at"] is None
    assert [event.event for event in events] == ["expired", "done"]


def test_higher_priority_jobs_start_first(client: VQueueClient, settings: Settings) -> None:
    # Fill every worker slot with jobs that outlast any slowness of the machine (they are
    # cancelled below), queue low-priority jobs, then one urgent job.
    blockers = [client.submit(**LONG) for _ in range(settings.effective_worker_concurrency)]
    for job in blockers:
        wait_for_text(client, job["id"])
    low = [client.submit(prompt="Low.", max_tokens=4, priority=9) for _ in range(6)]
    urgent = client.submit(prompt="Urgent.", max_tokens=4, priority=0)
    assert {client.get(job["id"])["status"] for job in [*low, urgent]} == {"queued"}

    # One slot frees: the urgent job, queued last, takes it; the rest free the others.
    client.cancel(blockers[0]["id"])
    first = client.wait(urgent["id"])
    for job in blockers[1:]:
        client.cancel(job["id"])
    assert {client.wait(job["id"])["status"] for job in blockers} == {"cancelled"}
    finished = [client.wait(job["id"]) for job in low]
    assert first["status"] == "succeeded"
    assert {job["status"] for job in finished} == {"succeeded"}
    started = min(datetime.fromisoformat(job["started_at"]) for job in finished)
    assert datetime.fromisoformat(first["started_at"]) < started


def test_an_idempotency_key_returns_the_same_job(base_url: str, db: Engine) -> None:
    key = f"retry-{uuid.uuid4()}"
    body = {"prompt": "Hello there", "max_tokens": 3}
    before = count_jobs(db)

    def submit(_: int) -> httpx.Response:
        return http.post(f"{base_url}/jobs", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(submit, range(8)))
    assert {response.status_code for response in responses} == {202}
    assert len({response.json()["id"] for response in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    assert count_jobs(db) == before + 1

    other = http.post(
        f"{base_url}/jobs", json={**body, "max_tokens": 4}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["error"]["message"]
    bad = http.post(f"{base_url}/jobs", json=body, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 422
    assert count_jobs(db) == before + 1
