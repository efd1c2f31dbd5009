"""A queued job tells its place in the queue and when it should start and end: GET /jobs/{id}
and the SSE stream's `queued` event, against the running stack; the estimate's arithmetic
apart."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from api.jobs.waiting import Pace, estimate, pace_of
from tests.helpers import insert_unqueued_job
from vqueue.client.api_client import VQueueClient


def test_the_estimate_counts_the_jobs_ahead_at_the_pace_jobs_ended() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    pace = Pace(jobs_per_s=2.0, first_token_s=0.5, per_token_s=0.01)
    wait = estimate(9, 100, pace, now)
    # Ten more ends free its slot (nine ahead, then its own turn): five seconds at 2 a second.
    assert wait.estimated_start_at == now + timedelta(seconds=5)
    # Then its first token, and its 100 tokens at the pace of one job.
    assert wait.estimated_finish_at == now + timedelta(seconds=5 + 0.5 + 1.0)
    assert (wait.position, wait.jobs_per_s) == (9, 2.0)


def test_free_slots_take_the_first_jobs_in_line_at_once() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    # A slow pace (long jobs), which would put even the next job minutes away.
    pace = Pace(jobs_per_s=0.02, first_token_s=0.5, per_token_s=0.01)
    assert estimate(0, 100, pace, now, free_slots=3).estimated_start_at == now
    assert estimate(2, 100, pace, now, free_slots=3).estimated_start_at == now
    # The fourth in line waits for one end: 50 seconds at 0.02 a second.
    assert estimate(3, 100, pace, now, free_slots=3).estimated_start_at == now + timedelta(
        seconds=50
    )


def test_no_pace_is_claimed_before_jobs_ended_and_made_tokens() -> None:
    assert pace_of(0, None, 0, 0, 0, 0) is None
    assert pace_of(3, 10.0, 0, 0, 0, 0) is None  # ended without a token: no pace per token
    pace = pace_of(30, 10.0, 600, 6.0, 1.5, 30)
    assert pace == Pace(jobs_per_s=3.0, first_token_s=0.05, per_token_s=0.01)
    # A worker that began a moment ago is not credited with a burst's rate over no time.
    assert pace_of(4, 0.01, 40, 1.0, 0.1, 4) == Pace(4.0, 0.1 / 4, 1.0 / 40)


def _waiting_job(db: Engine, priority: int, released_in_s: float) -> str:
    """A queued job with a message time ahead of now: the reconciler never finds its message
    missing and no worker is sent it, so it waits while the test looks at it."""
    return insert_unqueued_job(db, priority=priority, released_in_s=released_in_s)


def test_a_queued_job_shows_its_place_and_estimates_and_its_stream_says_so(
    client: VQueueClient, db: Engine
) -> None:
    # A job that ran: the pace the estimates are made from.
    ran = client.wait(client.submit(prompt="Say hi.", max_tokens=8)["id"])
    assert ran["status"] == "succeeded"
    assert ran["queue"] is None

    day = 86_400.0
    first = _waiting_job(db, priority=5, released_in_s=day)
    second = _waiting_job(db, priority=5, released_in_s=day + 1)
    urgent = _waiting_job(db, priority=1, released_in_s=day + 2)
    try:
        waits = {job_id: client.get(job_id)["queue"] for job_id in (first, second, urgent)}
        # The later of two of one priority waits behind the earlier; a more urgent one goes
        # before both, though it was queued last.
        assert waits[second]["position"] > waits[first]["position"] > waits[urgent]["position"]
        for wait in waits.values():
            start = datetime.fromisoformat(wait["estimated_start_at"])
            finish = datetime.fromisoformat(wait["estimated_finish_at"])
            assert datetime.now(UTC) - timedelta(seconds=5) < start < finish
            assert wait["jobs_per_s"] > 0

        # The stream says where the job stands, the first thing it sends while the job waits.
        events = client.stream(first)
        opening = next(events)
        events.close()  # type: ignore[attr-defined]
        assert opening.event == "queued"
        assert opening.data["position"] >= waits[first]["position"] - 1
        assert opening.data["estimated_start_at"] is not None
    finally:
        for job_id in (first, second, urgent):
            client.cancel(job_id)
    ended = client.get(first)
    assert ended["status"] == "cancelled"
    assert ended["queue"] is None
