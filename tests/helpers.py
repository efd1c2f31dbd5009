"""Helpers shared by the tests that drive the running stack."""

import base64
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis import Redis
from sqlalchemy import Engine, event, text

from vqueue.client.api_client import VQueueClient
from vqueue.contract.task_messages import queue_key
from vqueue.contract.wire import EntryKind, entry_from_stream, token_log_key

# The admin key conftest.py makes for the suite; `http` sends it, like an authorised client.
ADMIN_KEY = os.environ["VQUEUE_API_KEY"]
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
http = httpx.Client(headers=AUTH)


def wait_for_text(client: VQueueClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Until the job runs and has produced some text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(job_id)
        if job["status"] == "running" and job["text"]:
            return job
        assert job["status"] in {"queued", "running"}, job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} produced no text in {timeout}s")


def insert_unqueued_job(
    db: Engine,
    *,
    expired: bool = False,
    prompt: str = "Say hi.",
    priority: int = 5,
    released_in_s: float = 0.0,
) -> str:
    """A queued row that no broker message points at, as if its enqueue never happened
    `released_in_s` from now (a time ahead: the reconciler never finds it missing)."""
    job_id = str(uuid.uuid4())
    expires = "now() - interval '1 second'" if expired else "now() + interval '1 day'"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, status, prompt, params, priority, expires_at, released_at) "
                f"VALUES (:id, 'queued', :prompt, '{{\"max_tokens\": 4}}', :priority, {expires}, "
                "now() + make_interval(secs => :released))"
            ),
            {"id": job_id, "prompt": prompt, "priority": priority, "released": released_in_s},
        )
    return job_id


def recorded_successes(redis: Redis, job_id: str) -> int:
    """How many attempts announced a successful end in the job's token log."""
    entries = [
        entry_from_stream(job_id, stream_id, fields)
        for stream_id, fields in redis.xrange(token_log_key(job_id))  # type: ignore[union-attr]
    ]
    return sum(e.kind is EntryKind.END and e.status == "succeeded" for e in entries)


def delivered_jobs(redis: Redis, queue: str, priority: int) -> list[list[str]]:
    """The job ids of each task message waiting in a queue's list for `priority`, in the order
    a worker receives them (the consumer pops from the right)."""
    raw = reversed(redis.lrange(queue_key(queue, priority), 0, -1))  # type: ignore[arg-type]
    bodies = (orjson.loads(base64.b64decode(orjson.loads(m)["body"])) for m in raw)
    return [args[0] for args, _, _ in bodies]


@contextmanager
def sent_to_postgres(db: Engine, trace: Path) -> Iterator[list[str]]:
    """The lines of the libpq protocol trace of what `db`'s connections sent (queries as
    `F ... Query` / `Parse` lines) while the block ran; the list is filled when it ends."""
    sent: list[str] = []

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.pgconn.trace(sink.fileno())

    def on_checkin(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.pgconn.untrace()

    with trace.open("w") as sink:
        event.listen(db, "checkout", on_checkout)
        event.listen(db, "checkin", on_checkin)
        try:
            yield sent
        finally:
            event.remove(db, "checkout", on_checkout)
            event.remove(db, "checkin", on_checkin)
    sent += [line for line in trace.read_text().splitlines() if "\tF\t" in line]


# A function tool, and turns whose example leads the default model (whose template shows no
# tools) to a pythonic call of it: tests/test_openai_tools.py, tests/test_vllm_conformance.py.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOL_TURNS = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "[get_weather(city='Paris')]"},
    {"role": "user", "content": "What is the weather in Rome?"},
]
