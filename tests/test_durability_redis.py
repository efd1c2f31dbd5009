"""Redis restarting under the stack: the server stops, refuses connections for a while and
comes back empty (nothing is kept on disk, as docker-compose.yml runs it). Nothing lost,
doubled or stuck; no part of the stack is restarted; followers get their job's text.

Adds a row to docs/durability.md (see the durability_report fixture).
"""

import signal
import time
from typing import Any

import pytest
from redis import Redis

from tests.conftest import REDIS_SERVER
from tests.durability import Follower, LogTail, finals_of, report, running_jobs, tally
from tests.test_durability_postgres import submit_until_accepted
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server installed: the suite restarts its own"
)


def test_a_redis_restart_loses_nothing(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    assert REDIS_SERVER is not None
    max_tokens = 200
    base_url = stack.base_url(settings)
    running = running_jobs(client, "Legend", 6, max_tokens)
    followers = [Follower(VQueueClient(base_url), job["id"]).start() for job in running]
    api, worker = stack.running_pid(settings, "api"), stack.running_pid(settings, "worker")
    worker_log = LogTail(settings.run_dir / "worker.log")
    down_s = 5.0

    REDIS_SERVER.stop(signal.SIGTERM)
    time.sleep(down_s)  # connections refused meanwhile: nothing listens on the port
    REDIS_SERVER.start()
    back_at = time.monotonic()
    redis.connection_pool.disconnect()  # the suite's own client had its connections dropped

    body = {"prompt": "After the restart:", "max_tokens": max_tokens, "ignore_eos": True}
    later = [submit_until_accepted(base_url, body) for _ in range(4)]
    accepted_s = time.monotonic() - back_at
    finals = finals_of(client, [job["id"] for job in running] + later, timeout=600)
    done_s = time.monotonic() - back_at
    for follower in followers:
        follower.join(timeout=120)
    # The runs that held messages across the restart have ended (and acknowledged them); one
    # more job shows the worker still consumes.
    assert client.wait(submit_until_accepted(base_url, body), timeout=300)["status"] == "succeeded"
    fatal = worker_log.lines_with('"CRITICAL"')
    counts = tally(redis, finals, max_tokens)
    final_text = {job["id"]: job["text"] for job in finals}
    wrong = [f.job_id for f in followers if f.text != final_text[f.job_id]]
    unended = [f.job_id for f in followers if f.thread is not None and f.thread.is_alive()]
    same_parts = (stack.running_pid(settings, "api"), stack.running_pid(settings, "worker")) == (
        api,
        worker,
    )
    report(
        durability_report,
        counts,
        fault="Redis restarted",
        injection=f"redis-server stopped (SIGTERM), nothing listening for {down_s:g}s, "
        "started again empty",
        in_flight=f"{len(running)} running + {len(later)} submitted after",
        recovery=f"submits accepted {accepted_s:.1f}s after Redis was back, every job done "
        f"in {done_s:.0f}s",
        notes=f"API and worker {'kept running' if same_parts else 'were restarted'}; "
        f"{len(followers)} followers: {len(followers) - len(wrong)} got their job's text, "
        f"{sum(f.reconnects > 0 for f in followers)} reconnected",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert not unended, f"streams that did not end: {unended}"
    assert not wrong, f"followers whose text is not their job's: {wrong}"
    assert not fatal, fatal
    assert same_parts, "a Redis restart should not need the API or the worker restarted"
