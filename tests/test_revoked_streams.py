"""A stream opened with a key that is then revoked ends within the key cache's time, with an
error event; the job itself goes on (real stack, the SSE and the OpenAI stream)."""

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine

from db.keys import revoke_key
from tests.helpers import http
from tests.test_auth import bearer, new_key
from vqueue.client.api_client import VQueueClient

# Nearly the whole context (VQUEUE_MAX_MODEL_LEN 2048): still running when the key goes,
# however fast the engine; each test cancels its job once it has seen what it came for.
BODY = {"prompt": "A long story:", "max_tokens": 1990, "ignore_eos": True}


def read_lines(response: httpx.Response, lines: list[str], started: threading.Event) -> None:
    for line in response.iter_lines():
        lines.append(line)
        started.set()


def follow_then_revoke(
    base_url: str, db: Engine, name: str, stream: Callable[[httpx.Client], Any]
) -> list[str]:
    """`stream(client)` opens the stream (a context manager) with a fresh key's client; the
    key is revoked in the database at once (as `vqueue keys revoke` does) once text flows."""
    key = new_key(name)
    lines: list[str] = []
    started = threading.Event()
    with (
        httpx.Client(base_url=base_url, headers=bearer(key), timeout=60) as client,
        stream(client) as response,
    ):
        assert response.status_code == 200, response.read()
        reader = threading.Thread(target=read_lines, args=(response, lines, started))
        reader.start()
        assert started.wait(120)
        with db.begin() as conn:
            assert conn.execute(revoke_key(key["prefix"])).rowcount == 1
        revoked_at = time.monotonic()
        reader.join(timeout=30)
        # VQUEUE_KEY_CACHE_S is 0.5 in the tests, the keep-alive 1 s.
        assert not reader.is_alive(), "the stream outlived its key"
        assert time.monotonic() - revoked_at < 10
    return lines


def test_a_job_stream_ends_when_its_key_is_revoked(base_url: str, db: Engine) -> None:
    submitted: list[str] = []

    def stream(client: httpx.Client) -> Any:
        submitted.append(client.post("/jobs", json=BODY).json()["id"])
        return client.stream("GET", f"/jobs/{submitted[0]}/stream")

    lines = follow_then_revoke(base_url, db, "watcher", stream)
    assert "event: error" in lines
    assert "revoked" in lines[lines.index("event: error") + 1]
    assert "event: done" not in lines
    # The job goes on: disconnecting or losing the key never cancels it.
    assert http.get(f"{base_url}/jobs/{submitted[0]}").json()["status"] in {"running", "succeeded"}
    with VQueueClient(base_url) as admin:
        admin.cancel(submitted[0])


def test_an_openai_stream_ends_when_its_key_is_revoked(base_url: str, db: Engine) -> None:
    body = {**BODY, "stream": True}
    lines = follow_then_revoke(
        base_url, db, "streamer", lambda client: client.stream("POST", "/v1/completions", json=body)
    )
    chunks = [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]
    # The error is the last chunk, then [DONE], as vLLM's server ends a stream that failed.
    assert chunks[-1]["error"]["type"] == "authentication_error"
    assert all("error" not in chunk for chunk in chunks[:-1])
    assert [line for line in lines if line][-1] == "data: [DONE]"
    with VQueueClient(base_url) as admin:
        jobs = admin.http.get("/jobs", params={"limit": 5}).json()["data"]
        mine = [job for job in jobs if job["params"].get("max_tokens") == BODY["max_tokens"]]
        assert mine
        assert mine[0]["status"] in {"running", "succeeded"}
        admin.cancel(mine[0]["id"])
