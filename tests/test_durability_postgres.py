"""Postgres restarting under the stack: nothing lost, doubled or stuck, and nobody acts.

Each test adds a row to docs/durability.md (see the durability_report fixture).
"""

import time
from typing import Any

import httpx
from redis import Redis
from sqlalchemy import Engine, text

from tests.conftest import POSTGRES_PROXY
from tests.durability import (
    finals_of,
    report,
    running_jobs,
    tally,
)
from tests.helpers import http
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings


def submit_until_accepted(base_url: str, body: dict[str, Any], timeout: float = 60) -> str:
    """POST /jobs as a client should: a 503 says "try again shortly"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = http.post(f"{base_url}/jobs", json=body, timeout=30)
            if response.status_code == 202:
                return str(response.json()["id"])
            assert response.status_code == 503, response.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "submits were refused for too long"
        time.sleep(0.5)


def test_a_postgres_restart_loses_nothing(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    db: Engine,
    durability_report: list[dict[str, Any]],
) -> None:
    max_tokens = 200
    running = running_jobs(client, "Notice", 6, max_tokens)
    base_url = stack.base_url(settings)
    down_s = 5.0
    # As a restart looks from the stack: Postgres ends every session, and refuses new ones
    # until it is back.
    POSTGRES_PROXY.cut()
    try:
        with db.connect() as conn:
            ended = conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        time.sleep(down_s)
    finally:
        POSTGRES_PROXY.restore()
        db.dispose()  # the suite's own connections were ended too
    back_at = time.monotonic()
    body = {"prompt": "After the restart:", "max_tokens": max_tokens, "ignore_eos": True}
    later = [submit_until_accepted(base_url, body) for _ in range(4)]
    accepted_s = time.monotonic() - back_at
    finals = finals_of(client, [job["id"] for job in running] + later, timeout=600)
    counts = tally(redis, finals, max_tokens)
    report(
        durability_report,
        counts,
        fault="Postgres restarted",
        injection=f"every session ended by Postgres (pg_terminate_backend, {ended} of them) "
        f"and new connections refused for {down_s:g}s",
        in_flight=f"{len(running)} running + {len(later)} submitted after",
        recovery=f"submits accepted {accepted_s:.1f}s after Postgres was back",
        notes="results of the runs that ended during the outage were written after it",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
