"""A burst is spread over the workers of a queue in proportion to their room, and no worker
sits idle while another holds a backlog: two, then three real workers of unequal sizes (CPU
engines) on a queue of their own, with an API process of its own in front (the suite's stack
serves another queue meanwhile).

The workers: `small` runs 2 jobs at once and holds 4 (the default, twice its slots); `wide`
runs 4 and holds 8; `deep` runs 2 but holds 8 (VQUEUE_WORKER_MAX_JOBS), a backlog of 6.
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis
from sqlalchemy import Engine, text

from tests.conftest import free_port
from tests.durability import wait_until
from tests.helpers import AUTH
from vqueue.contract.wire import WORKERS_KEY
from vqueue.settings import Settings

QUEUE = "vqueue.spread"
WORKERS = {
    "small": {"VQUEUE_MAX_NUM_SEQS": "2"},
    "wide": {"VQUEUE_MAX_NUM_SEQS": "4"},
    "deep": {
        "VQUEUE_MAX_NUM_SEQS": "2",
        "VQUEUE_WORKER_MAX_JOBS": "8",
        "VQUEUE_WORKER_CONCURRENCY": "4",
    },
}
HOLDS = {"small": 4, "wide": 8, "deep": 8}
FINAL = ("succeeded", "cancelled")
ATTEMPT_STARTED = re.compile(r": attempt ([0-9]+) started")
# Long enough that no worker ends a job and takes another before a burst is all claimed.
LONG_TOKENS = 200


class Processes:
    def __init__(self, settings: Settings) -> None:
        self.run_dir = settings.run_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, module: str, extra: dict[str, str]) -> None:
        env = os.environ | {
            "VQUEUE_QUEUE_NAME": QUEUE,
            "VQUEUE_API_PORT": str(self.port),
            "VQUEUE_WORKER_HEALTH_FILE": str(self.run_dir / f"spread-{name}-alive"),
            **extra,
        }
        with (self.run_dir / f"spread-{name}.log").open("ab") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def names_by_pid(self) -> dict[int, str]:
        return {process.pid: name for name, process in self.running.items()}


@pytest.fixture(scope="module")
def spread(settings: Settings, base_url: str, redis: Redis) -> Iterator[Processes]:
    processes = Processes(settings)
    try:
        for name, extra in WORKERS.items():
            processes.start(name, "worker", extra)
        pids = [processes.running[name].pid for name in WORKERS]
        wait_until(lambda: all(registered(redis, pid) for pid in pids), 400, 1)
        # The API reads the workers' sizes from their heartbeats when it starts, then every
        # few seconds: started after them, it sizes its first burst by them.
        processes.start("api", "api", {})
        wait_until(lambda: answers(processes.base_url), 120, 0.5)
        yield processes
    finally:
        for name in list(processes.running):
            processes.stop(name)


def registered(redis: Redis, pid: int) -> bool:
    """Listed in the live workers' registry: its engine is loaded and it consumes."""
    names = redis.zrangebyscore(WORKERS_KEY, time.time(), "+inf")
    return any(name.endswith(f":{pid}") for name in names)  # type: ignore[union-attr]


def answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def burst(base_url: str, count: int, max_tokens: int) -> list[str]:
    """`count` jobs submitted at once, as many clients would: the API commits them together
    and hands them to the broker in few messages."""

    async def submit_all() -> list[str]:
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=120) as http:
            body = {"max_tokens": max_tokens, "ignore_eos": True}
            posts = [
                http.post("/jobs", json={"prompt": f"Item {i}:", **body}) for i in range(count)
            ]
            responses = await asyncio.gather(*posts)
        for response in responses:
            assert response.status_code == 202, response.text
        return [response.json()["id"] for response in responses]

    return asyncio.run(submit_all())


def rows(db: Engine, ids: list[str]) -> list[Any]:
    with db.connect() as conn:
        query = text(
            "SELECT id, status, worker, attempt FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"
        )
        return list(conn.execute(query, {"ids": ids}))


def log_records(spread: Processes, name: str) -> Iterator[dict[str, Any]]:
    """The worker's JSON log records, in order."""
    for line in (spread.run_dir / f"spread-{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            yield orjson.loads(line)


def attempts_by_worker(spread: Processes, wanted: set[str]) -> dict[str, dict[int, str]]:
    """Which worker started each attempt of each job, from the workers' own logs: a record
    that a job ending or moving later does not change."""
    found: dict[str, dict[int, str]] = {}
    for name in WORKERS:
        for record in log_records(spread, name):
            started = ATTEMPT_STARTED.search(record.get("message", ""))
            if started and record.get("job_id") in wanted:
                found.setdefault(record["job_id"], {})[int(started.group(1))] = name
    return found


RUN_ENDED = re.compile(r": (succeeded|failed|cancelled|handed back)")


def running_when_started(spread: Processes, name: str, job_id: str, attempt: int) -> int:
    """How many runs the worker had when it started that attempt of the job, from its log:
    attempts started less runs ended (whatever the outcome) before that line."""
    running = 0
    started = f"job {job_id}: attempt {attempt} started"
    for record in log_records(spread, name):
        message = record.get("message", "")
        if message == started:
            return running
        if ATTEMPT_STARTED.search(message):
            running += 1
        elif message.startswith("job ") and RUN_ENDED.search(message):
            running -= 1
    raise AssertionError(f"{name} never started attempt {attempt} of {job_id}")


def first_worker(spread: Processes, ids: list[str]) -> dict[str, str]:
    """Which worker started the first attempt of each job. Waits until each is there."""
    wanted = set(ids)

    def claims() -> dict[str, str]:
        return {
            job_id: attempts[1]
            for job_id, attempts in attempts_by_worker(spread, wanted).items()
            if 1 in attempts
        }

    wait_until(lambda: len(claims()) == len(wanted), 300, 0.5)
    return claims()


def cancel_all(base_url: str, ids: list[str]) -> None:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=60) as http:
        for job_id in ids:
            # 200: cancelled while queued (handed back); 409: it ended first (a slow machine
            # reads the claims late).
            assert http.post(f"/jobs/{job_id}/cancel").status_code in (200, 202, 409)


def held_shares(spread: Processes, db: Engine, names: list[str]) -> None:
    """A burst of exactly what the workers hold together: each takes its own hold (within a
    message or two), then the jobs are cancelled."""
    ids = burst(spread.base_url, sum(HOLDS[name] for name in names), LONG_TOKENS)
    held = Counter(first_worker(spread, ids).values())
    for name in names:
        assert abs(held[name] - HOLDS[name]) <= 3, (name, held)
    cancel_all(spread.base_url, ids)
    wait_until(lambda: all(row.status in FINAL for row in rows(db, ids)), 300, 0.5)
    wait_until(lambda: idle(spread), 120, 0.5)


def idle(spread: Processes) -> bool:
    """Every worker's heartbeat says its engine is empty: the next burst finds each one's
    whole hold free."""
    pids = spread.names_by_pid()
    workers = httpx.get(f"{spread.base_url}/ready", timeout=10).json()["workers"]
    mine = [w for w in workers if int(w["name"].rpartition(":")[2]) in pids]
    return bool(mine) and all(w["running"] == 0 for w in mine)


def test_a_burst_is_shared_by_room_and_a_backlog_moves_to_an_idle_worker(
    spread: Processes, db: Engine
) -> None:
    # Each worker holds what its room says, not a share of the burst's messages.
    held_shares(spread, db, ["small", "wide", "deep"])
    spread.stop("wide")
    held_shares(spread, db, ["small", "deep"])

    # `deep` holds a backlog (2 running, 6 waiting). Once `small` has nothing to run (its
    # jobs cancelled), jobs waiting on `deep` must move to it, not wait for their own engine.
    ids = burst(spread.base_url, HOLDS["small"] + HOLDS["deep"], 48)
    first = first_worker(spread, ids)
    cancel_all(spread.base_url, [job_id for job_id in ids if first[job_id] == "small"])
    wait_until(lambda: all(row.status in FINAL for row in rows(db, ids)), 600, 0.5)
    attempts = attempts_by_worker(spread, set(ids))
    # Where each job that waited on `deep` went next: to `small`, which had room.
    moved = {job_id: runs for job_id, runs in attempts.items() if runs[1] == "deep" and 2 in runs}
    assert len(moved) >= 2, attempts
    assert "small" in {runs[2] for runs in moved.values()}, moved
    # Never straight back: `deep` takes no message past its slots after a hand-back, so one
    # that went back to it (its message still unread when `deep` ran dry, on a slow machine)
    # started there only once `deep` had a free slot.
    slots = int(WORKERS["deep"]["VQUEUE_MAX_NUM_SEQS"])
    for job_id, runs in moved.items():
        if runs[2] == "deep":
            assert running_when_started(spread, "deep", job_id, 2) < slots, (job_id, moved)
    log = (spread.run_dir / "spread-deep.log").read_text(errors="replace")
    assert "waiting jobs to workers with free slots" in log
