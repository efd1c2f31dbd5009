"""Deadlines against the running stack: a submit the queue's estimate says cannot be done in
time is refused (429, Retry-After) or queued with a warning; a job still queued at its
deadline expires without running; one still running is cancelled with its text so far."""

import signal
import time
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import count_jobs
from tests.helpers import http
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings

# Longer than the engine makes in any deadline below, on this machine or a faster one.
LONG = {"prompt": "Write a very long essay about deserts.", "max_tokens": 1500, "ignore_eos": True}


@pytest.fixture
def paced(client: VQueueClient) -> None:
    """Jobs that ended a moment ago: the queue's pace, which its estimates go by."""
    for job in [client.submit(prompt=f"Count to {i}.", max_tokens=16) for i in range(3)]:
        assert client.wait(job["id"])["status"] == "succeeded"


def test_a_deadline_the_estimate_misses_is_refused_with_retry_after(
    base_url: str, db: Engine, paced: None
) -> None:
    before = count_jobs(db)
    # 1,500 tokens take longer than two seconds at the pace the engine has shown.
    refused = http.post(f"{base_url}/jobs", json={**LONG, "deadline_s": 2})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert "deadline cannot be met" in error["message"]
    assert 'on_infeasible="accept"' in error["message"]
    # The header says the same as the field.
    header = http.post(f"{base_url}/jobs", json=LONG, headers={"Cancel-After": "2"})
    assert header.status_code == 429, header.text
    assert count_jobs(db) == before


def test_a_caller_may_take_a_deadline_the_estimate_misses(
    client: VQueueClient, base_url: str, paced: None
) -> None:
    response = http.post(
        f"{base_url}/jobs", json={**LONG, "deadline_s": 2, "on_infeasible": "accept"}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["warning"].startswith("the deadline cannot be met")
    assert job["deadline_at"] is not None
    # Only the submit says it; the job as read later carries its deadline, not the warning.
    assert client.get(job["id"])["warning"] is None
    final = client.wait(job["id"])
    assert final["status"] in {"cancelled", "expired"}, final


def test_a_deadline_the_estimate_meets_is_taken_without_a_warning(
    client: VQueueClient, base_url: str, paced: None
) -> None:
    response = http.post(
        f"{base_url}/jobs",
        json={"prompt": "Say yes.", "max_tokens": 4, "deadline_s": 600},
        headers={"Cancel-After": "900"},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["warning"] is None
    created = datetime.fromisoformat(job["created_at"])
    deadline = datetime.fromisoformat(job["deadline_at"])
    assert 590 < (deadline - created).total_seconds() < 610  # the earlier of the two
    # A deadline is also the end of its wait in the queue.
    assert datetime.fromisoformat(job["expires_at"]) <= deadline
    assert client.wait(job["id"])["status"] == "succeeded"


def test_a_job_running_at_its_deadline_is_cancelled_with_its_text_so_far(
    client: VQueueClient, base_url: str
) -> None:
    for _ in range(3):
        job = client.submit(**LONG, deadline_s=10, on_infeasible="accept")
        final = client.wait(job["id"])
        if final["started_at"] is not None:
            break
        # The machine stalled past the deadline before a worker took the job: it expired, as
        # it should; the case under test needs a run, so again.
        assert final["status"] == "expired", final
    else:
        raise AssertionError("no job started before its deadline in three tries")
    assert final["status"] == "cancelled", final
    assert final["finish_reason"] == "deadline"
    assert final["error"] == "deadline: still running when its deadline passed"
    assert 0 < final["usage"]["completion_tokens"] < 1500
    assert final["text"]
    ended = datetime.fromisoformat(final["finished_at"])
    assert ended >= datetime.fromisoformat(final["deadline_at"])
    events = list(client.stream(job["id"]))  # the whole stream, replayed
    kinds = [event.event for event in events]
    assert kinds[-2:] == ["cancelled", "done"], kinds
    streamed = "".join(event.data["text"] for event in events if event.event == "delta")
    assert streamed == final["text"]


def test_a_job_still_queued_at_its_deadline_expires_without_running(
    client: VQueueClient, settings: Settings
) -> None:
    worker = stack.running_pid(settings, "worker")
    assert worker is not None
    # No worker takes jobs (stopped, well within its lease): the job can only wait.
    stack.kill(settings, "worker", signal.SIGSTOP)
    try:
        # Taken whatever the estimate says (a busy machine's pace may put even this job past
        # one second): what is shown is its end.
        job = client.submit(prompt="Say hi.", max_tokens=4, deadline_s=1, on_infeasible="accept")
        final = client.wait(job["id"], timeout=120)
    finally:
        stack.kill(settings, "worker", signal.SIGCONT)
    assert final["status"] == "expired", final
    assert final["error"] == "expired: its deadline passed before it could start"
    assert final["started_at"] is None
    assert final["usage"]["completion_tokens"] is None  # nothing ran, nothing to bill
    assert [event.event for event in client.stream(job["id"])] == ["expired", "done"]
    # Its message, still in the broker, is refused by the worker once awake.
    time.sleep(1)
    assert client.get(job["id"])["status"] == "expired"
    stats: dict[str, Any] = client.http.get("/stats").json()
    assert stats["finished"].get("expired", 0) >= 1
