"""API keys against the running stack: who may call, who sees what, and the per-key limits.

Keys are made and revoked with the real `vqueue keys` command; the suite's own calls use the
admin key conftest.py made.
"""

import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from tests.conftest import count_jobs
from tests.helpers import http, insert_unqueued_job
from vqueue.settings import Settings


def keys_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vqueue.client.cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_key(name: str, *limits: str) -> dict[str, Any]:
    done = keys_command("create", "--name", name, *limits)
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    return created


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


@pytest.fixture
def two_keys(base_url: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    alice = httpx.Client(base_url=base_url, headers=bearer(new_key("alice")), timeout=30)
    bob = httpx.Client(base_url=base_url, headers=bearer(new_key("bob")), timeout=30)
    with alice, bob:
        yield alice, bob


def park_queued_jobs(db: Engine, owner_id: str, count: int) -> str:
    """Jobs that wait in the queue and stay there: those of a batch still being stored."""
    batch_id = str(uuid.uuid4())
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO batches (id, status, format, owner_id) "
                "VALUES (:id, 'validating', 'text', :owner)"
            ),
            {"id": batch_id, "owner": owner_id},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, status, prompt, params, batch_id, batch_line, owner_id, "
                "released_at) SELECT gen_random_uuid(), 'queued', 'parked', '{}', :batch, n, "
                ":owner, NULL FROM generate_series(1, :count) AS n"
            ),
            {"batch": batch_id, "owner": owner_id, "count": count},
        )
    return batch_id


def unpark(db: Engine, batch_id: str) -> None:
    with db.begin() as conn:
        conn.execute(text("DELETE FROM batches WHERE id = :id"), {"id": batch_id})


def test_without_a_valid_key_only_the_page_and_the_probes_answer(base_url: str) -> None:
    for path in ("/jobs", "/batches", "/stats", "/metrics"):
        refused = httpx.get(f"{base_url}{path}")
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
    submitted = httpx.post(f"{base_url}/jobs", json={"prompt": "hi"})
    assert submitted.status_code == 401
    wrong = "vq-" + "x" * 43
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"Authorization": "Basic YTpi"}):
        refused = httpx.get(f"{base_url}/jobs", headers=headers)
        assert refused.status_code == 401
        assert wrong not in refused.text  # a key is never echoed back
    # OpenAI clients get OpenAI's error object.
    models = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {wrong}"})
    assert models.status_code == 401
    assert models.json()["error"]["type"] == "authentication_error"
    for path in ("/", "/static/app.js", "/health"):
        assert httpx.get(f"{base_url}{path}").status_code == 200, path
    assert httpx.get(f"{base_url}/ready").status_code in (200, 503)


def test_a_key_sees_and_cancels_only_its_own_jobs(
    two_keys: tuple[httpx.Client, httpx.Client], base_url: str
) -> None:
    alice, bob = two_keys
    # Long enough to be running still when alice cancels it, on a slow machine that stalls too:
    # on CI a 400-token job once ended during a 45 s pause between two of bob's requests.
    job = alice.post("/jobs", json={"prompt": "Mine:", "max_tokens": 2000, "ignore_eos": True})
    assert job.status_code == 202
    job_id = job.json()["id"]
    # Another key's job does not exist as far as bob can tell: 404, never 403.
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/stream", f"/jobs/chatcmpl-{job_id}"):
        assert bob.get(path).status_code == 404, path
    assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert job_id not in {j["id"] for j in bob.get("/jobs", params={"limit": 100}).json()["data"]}
    assert job_id in {j["id"] for j in alice.get("/jobs", params={"limit": 100}).json()["data"]}
    # The admin key sees every key's jobs; the owner can cancel its own.
    assert http.get(f"{base_url}/jobs/{job_id}").status_code == 200
    cancelled = alice.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    # An Idempotency-Key is the caller's own: the same one from two keys makes two jobs.
    same = {"Idempotency-Key": f"nightly-{uuid.uuid4()}"}
    first = alice.post("/jobs", json={"prompt": "a", "max_tokens": 2}, headers=same).json()
    second = bob.post("/jobs", json={"prompt": "a", "max_tokens": 2}, headers=same).json()
    assert first["id"] != second["id"]
    again = alice.post("/jobs", json={"prompt": "a", "max_tokens": 2}, headers=same)
    assert again.json()["id"] == first["id"]


def test_a_key_sees_only_its_own_batches_and_files(
    two_keys: tuple[httpx.Client, httpx.Client],
) -> None:
    alice, bob = two_keys
    upload = alice.post("/batches", content=b"One\nTwo\n", headers={"Content-Type": "text/plain"})
    assert upload.status_code == 202, upload.text
    batch_id = upload.json()["id"]
    for path in (f"/batches/{batch_id}", f"/batches/{batch_id}/results"):
        assert bob.get(path).status_code == 404, path
    assert bob.get(f"/batches/{batch_id}/jobs").status_code == 404
    assert bob.post(f"/batches/{batch_id}/cancel").status_code == 404
    assert all(b["id"] != batch_id for b in bob.get("/batches").json()["data"])
    assert alice.get(f"/batches/{batch_id}").status_code == 200

    line = {"custom_id": "1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}
    content = io.BytesIO(json.dumps(line).encode())
    stored = alice.post(
        "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}
    )
    assert stored.status_code == 200, stored.text
    file_id = stored.json()["id"]
    assert bob.get(f"/v1/files/{file_id}").status_code == 404
    assert bob.get(f"/v1/files/{file_id}/content").status_code == 404
    # Nor can bob run a batch over alice's file.
    made = bob.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/completions", "completion_window": "24h"},
    )
    assert made.status_code == 404
    assert alice.get(f"/v1/files/{file_id}/content").content == content.getvalue()


def test_a_revoked_key_stops_working(base_url: str, settings: Settings) -> None:
    key = new_key("leaving")
    assert key["key"].startswith("vq-")
    assert key["prefix"] == key["key"][: len(key["prefix"])]
    assert httpx.get(f"{base_url}/jobs", headers=bearer(key)).status_code == 200
    listed = keys_command("list").stdout
    assert key["prefix"] in listed
    assert key["key"] not in listed
    revoked = keys_command("revoke", key["prefix"])
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1)  # VQUEUE_KEY_CACHE_S is 0.5 in the tests
    assert httpx.get(f"{base_url}/jobs", headers=bearer(key)).status_code == 401
    assert keys_command("revoke", key["prefix"]).returncode == 1  # already gone
    # Keys used and refused never reach the logs.
    for log in ("api.log", "worker.log"):
        assert key["key"] not in (settings.run_dir / log).read_text(errors="replace")


def test_requests_per_minute_are_limited_with_retry_after(base_url: str) -> None:
    key = new_key("chatty", "--rpm", "3")
    answers = [httpx.get(f"{base_url}/jobs", headers=bearer(key)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    openai_shaped = httpx.get(f"{base_url}/v1/models", headers=bearer(key))
    assert openai_shaped.status_code == 429
    assert openai_shaped.json()["error"]["type"] == "rate_limit_error"


def test_queued_jobs_per_key_are_limited(base_url: str, db: Engine) -> None:
    key = new_key("busy", "--max-queued", "3")
    parked = park_queued_jobs(db, key["id"], 3)
    try:
        before = count_jobs(db)
        refused = httpx.post(f"{base_url}/jobs", json={"prompt": "one more"}, headers=bearer(key))
        assert refused.status_code == 429
        assert "3 jobs queued" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        upload = httpx.post(
            f"{base_url}/batches",
            content=b"a\nb\n",
            headers={**bearer(key), "Content-Type": "text/plain"},
        )
        assert upload.status_code == 429
        assert count_jobs(db) == before  # nothing half-written
    finally:
        unpark(db, parked)
    accepted = httpx.post(
        f"{base_url}/jobs", json={"prompt": "now", "max_tokens": 2}, headers=bearer(key)
    )
    assert accepted.status_code == 202


def test_tokens_per_day_are_limited_until_midnight_utc(
    base_url: str, db: Engine, settings: Settings
) -> None:
    key = new_key("thrifty", "--tokens-per-day", "100")
    spent = insert_unqueued_job(db)
    with db.begin() as conn:
        # Yesterday's tokens do not count; today's 120 are over the 100.
        conn.execute(
            text(
                "UPDATE jobs SET status = 'succeeded', owner_id = :owner, prompt_tokens = 20, "
                "completion_tokens = 100, finished_at = now() WHERE id = :id"
            ),
            {"owner": key["id"], "id": spent},
        )
        old = insert_unqueued_job(db)
        conn.execute(
            text(
                "UPDATE jobs SET status = 'succeeded', owner_id = :owner, "
                "completion_tokens = 5000, finished_at = now() - interval '2 days' WHERE id = :id"
            ),
            {"owner": key["id"], "id": old},
        )
    refused = httpx.post(f"{base_url}/jobs", json={"prompt": "more"}, headers=bearer(key))
    assert refused.status_code == 429
    assert "100 tokens" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_401
    chat = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": settings.model_name, "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(key),
    )
    assert chat.status_code == 429


@pytest.fixture
def small_queue_api(settings: Settings) -> Iterator[TestClient]:
    """An API process bounded to 2 queued jobs, against the same Postgres and Redis."""
    bounded = settings.model_copy(update={"max_queued_jobs": 2})
    with TestClient(create_app(bounded), headers=http.headers) as client:
        yield client


def test_a_full_queue_refuses_submits_with_503(small_queue_api: TestClient, db: Engine) -> None:
    parked = park_queued_jobs(db, "00000000-0000-0000-0000-000000000000", 2)
    try:
        before = count_jobs(db)
        refused = small_queue_api.post("/jobs", json={"prompt": "hi"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["Retry-After"]) >= 1
        assert count_jobs(db) == before
    finally:
        unpark(db, parked)


def test_a_queue_full_in_tokens_refuses_what_would_go_over(settings: Settings, db: Engine) -> None:
    """The queue is bounded in tokens too: each queued job weighs its max_tokens (256 where
    none was given) plus its prompt at ~4 characters a token."""
    parked_weight = 256 + len("parked") // 4
    bounded = settings.model_copy(update={"max_queued_tokens": 2 * parked_weight + 100})
    parked = park_queued_jobs(db, "00000000-0000-0000-0000-000000000000", 2)
    try:
        with TestClient(create_app(bounded), headers=http.headers) as api:
            before = count_jobs(db)
            refused = api.post("/jobs", json={"prompt": "hi", "max_tokens": 200})
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "overloaded"
            assert f"{2 * parked_weight} tokens waiting" in error["message"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert count_jobs(db) == before
            # A smaller job still fits, and so does a chat of the same size.
            assert api.post("/jobs", json={"prompt": "hi", "max_tokens": 50}).status_code == 202
            chat = {
                "model": settings.model_name,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 300,
            }
            assert api.post("/v1/chat/completions", json=chat).status_code == 503
    finally:
        unpark(db, parked)
