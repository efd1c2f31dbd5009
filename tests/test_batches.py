"""Bulk uploads through the running stack: every format, a 1,000-prompt batch, results while
it runs, cancel, and bad uploads refused with nothing written."""

import time
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from tests.helpers import http
from vqueue.client.api_client import VQueueClient


def counts_add_up(batch: dict[str, Any]) -> bool:
    counts = batch["counts"]
    states = ("queued", "running", "succeeded", "failed", "cancelled")
    return sum(counts[state] for state in states) == counts["total"]


def table_sizes(db: Engine) -> tuple[int, int]:
    with db.connect() as conn:
        batches = conn.execute(text("SELECT count(*) FROM batches")).scalar_one()
        jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    return int(batches), int(jobs)


def jsonl(*objects: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


OPENAI_LINES = jsonl(
    {
        "custom_id": "chat-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4},
    },
    {
        "custom_id": "text-1",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"prompt": "Once upon a time", "max_tokens": 4},
    },
)
UPLOADS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "jsonl as multipart",
        {
            "content": jsonl(
                {"prompt": "One, two,", "custom_id": "p"},
                {"messages": [{"role": "user", "content": "Name a colour."}], "custom_id": "m"},
            ),
            "filename": "prompts.jsonl",
        },
        ["p", "m"],
    ),
    ("openai as raw body", {"content": OPENAI_LINES, "format": "openai"}, ["chat-1", "text-1"]),
    (
        "csv as raw body",
        {
            "content": b"prompt,custom_id,topic\nThe sky is,s,weather\nGrass is,g,plants\n",
            "content_type": "text/csv",
        },
        ["s", "g"],
    ),
    (
        "text as multipart",
        {"content": b"Roses are\n\nViolets are\n", "filename": "p.txt"},
        ["1", "3"],
    ),
]


@pytest.mark.parametrize(
    ("upload", "custom_ids"), [(u, c) for _, u, c in UPLOADS], ids=[name for name, _, _ in UPLOADS]
)
def test_each_format_runs_to_results(
    client: VQueueClient, upload: dict[str, Any], custom_ids: list[str]
) -> None:
    batch = client.upload_batch(**upload, max_tokens=4)
    assert batch["status"] == "in_progress"
    assert batch["counts"]["total"] == len(custom_ids)
    done = client.wait_batch(batch["id"], timeout=120)
    assert done["status"] == "completed"
    assert done["counts"]["succeeded"] == len(custom_ids)
    assert done["completion_tokens"] > 0
    results = client.batch_results(batch["id"])
    assert [r["custom_id"] for r in results] == custom_ids
    assert all(r["status"] == "succeeded" and r["text"] for r in results)
    assert all(r["usage"]["completion_tokens"] <= 4 for r in results)
    if "content_type" in upload:  # the CSV: its other columns come back as metadata
        assert [r["metadata"] for r in results] == [{"topic": "weather"}, {"topic": "plants"}]


def test_a_thousand_prompt_batch_completes_beside_single_jobs(
    client: VQueueClient, db: Engine
) -> None:
    lines = [{"prompt": f"Count: {i},", "custom_id": f"id-{i}"} for i in range(1000)]
    batch = client.upload_batch(jsonl(*lines), content_type="application/jsonl", max_tokens=3)
    assert batch["counts"]["total"] == 1000

    # A single job submitted now waits behind one window of the batch, not all of it.
    single = client.submit(prompt="Hello,", max_tokens=3)
    single_done = client.wait(single["id"], timeout=120)
    assert single_done["status"] == "succeeded"
    assert client.batch(batch["id"])["counts"]["queued"] > 0

    # Results are there while the batch runs: only the finished lines, in input order.
    deadline = time.monotonic() + 300
    partial: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        partial = client.batch_results(batch["id"])
        if partial:
            break
        time.sleep(0.2)
    progress = client.batch(batch["id"])
    assert 0 < len(partial) < 1000
    assert progress["status"] == "in_progress"
    assert progress["estimated_seconds_left"] is not None
    lines_seen = [r["line"] for r in partial]
    assert lines_seen == sorted(lines_seen)

    done = client.wait_batch(batch["id"], timeout=600)
    assert done["status"] == "completed"
    assert done["counts"]["succeeded"] == 1000
    assert counts_add_up(done)
    assert done["estimated_seconds_left"] == 0.0
    results = client.batch_results(batch["id"])
    assert [r["custom_id"] for r in results] == [f"id-{i}" for i in range(1000)]
    by_completion = client.batch_results(batch["id"], order="completion")
    assert sorted(r["custom_id"] for r in by_completion) == sorted(r["custom_id"] for r in results)
    page = client.http.get(f"/batches/{batch['id']}/jobs", params={"limit": 5, "offset": 10})
    assert page.json()["count"] == 1000
    assert [job["custom_id"] for job in page.json()["data"]] == [f"id-{i}" for i in range(10, 15)]
    listed = client.http.get("/batches", params={"limit": 1}).json()
    assert listed["data"][0]["id"] == batch["id"]


def test_cancel_mid_run_leaves_nothing_running(client: VQueueClient, db: Engine) -> None:
    lines = [{"prompt": f"Story {i}:", "custom_id": str(i)} for i in range(200)]
    batch = client.upload_batch(
        jsonl(*lines), content_type="application/jsonl", max_tokens=200, ignore_eos="true"
    )
    deadline = time.monotonic() + 120
    running: list[dict[str, Any]] = []
    while not any(job["text"] for job in running):
        assert time.monotonic() < deadline, "no job of the batch started generating"
        time.sleep(0.2)
        page = client.http.get(f"/batches/{batch['id']}/jobs", params={"status": "running"})
        running = [client.get(job["id"]) for job in page.json()["data"][:3]]

    cancelling = client.http.post(f"/batches/{batch['id']}/cancel")
    assert cancelling.status_code in (200, 202)
    assert cancelling.json()["counts"]["queued"] == 0
    done = client.wait_batch(batch["id"], timeout=60)
    assert done["status"] == "cancelled"
    assert counts_add_up(done)
    assert done["counts"]["cancelled"] > 0
    with db.connect() as conn:
        active = conn.execute(
            text(
                "SELECT count(*) FROM jobs WHERE batch_id = :b AND status IN ('queued', 'running')"
            ),
            {"b": batch["id"]},
        ).scalar_one()
    assert active == 0
    results = client.batch_results(batch["id"])
    assert len(results) == 200
    aborted = [r for r in results if r["status"] == "cancelled" and r["text"]]
    assert aborted, "a running job should have been aborted with its partial text"
    again = client.http.post(f"/batches/{batch['id']}/cancel")
    assert again.status_code == 200


def test_skip_stores_the_valid_lines_and_lists_the_bad_ones(client: VQueueClient) -> None:
    content = b'{"prompt": "Hi"}\nnot json\n{"prompt": "There"}\n'
    batch = client.upload_batch(content, filename="p.jsonl", on_error="skip", max_tokens=2)
    assert batch["counts"]["total"] == 2
    assert batch["skipped"] == 1
    assert batch["line_errors"][0]["line"] == 2
    assert client.wait_batch(batch["id"], timeout=120)["status"] == "completed"


def test_an_idempotency_key_returns_the_same_batch(base_url: str, db: Engine) -> None:
    files = {"file": ("k.txt", b"Hello\n", "text/plain")}
    headers = {"Idempotency-Key": "batch-key-1"}
    first = http.post(f"{base_url}/batches?max_tokens=2", files=files, headers=headers)
    sizes = table_sizes(db)
    again = http.post(f"{base_url}/batches?max_tokens=2", files=files, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = {"file": ("k.txt", b"Goodbye\n", "text/plain")}
    clash = http.post(f"{base_url}/batches?max_tokens=2", files=other, headers=headers)
    assert clash.status_code == 409
    assert table_sizes(db) == sizes


BIG = 5 * 1024 * 1024  # over the test limit of 4 MiB
BAD_UPLOADS: list[tuple[str, dict[str, Any], int, str]] = [
    ("empty file", {"files": {"file": ("e.jsonl", b"", "application/jsonl")}}, 422, "empty"),
    ("only blank lines", {"files": {"file": ("e.txt", b"\n \n", "text/plain")}}, 422, "no prompts"),
    (
        "over the size limit",
        {"content": b"x" * BIG, "headers": {"Content-Type": "text/plain"}},
        413,
        "limit",
    ),
    (
        "over the size limit, chunked",
        {"content": iter([b"hello\n" * 100_000] * 10), "headers": {"Content-Type": "text/plain"}},
        413,
        "limit",
    ),
    ("too many prompts", {"files": {"file": ("n.txt", b"p\n" * 5001, "text/plain")}}, 413, "5000"),
    (
        "unknown format",
        {"content": b"\x00\x01", "headers": {"Content-Type": "application/octet-stream"}},
        415,
        "format",
    ),
    (
        "csv without a prompt column",
        {"files": {"file": ("c.csv", b"question,id\nhi,1\n", "text/csv")}},
        422,
        "'prompt' column",
    ),
    (
        "bad lines",
        {"files": {"file": ("b.jsonl", b'{"prompt": "ok"}\n{"prompt": 5}\n{"x": 1}\n', "x/y")}},
        422,
        "2 line(s)",
    ),
    (
        "invalid UTF-8",
        {"files": {"file": ("u.txt", b"fine\n\xc3\x28 broken\n", "text/plain")}},
        422,
        "1 line(s)",
    ),
    ("unknown option", {"params": {"colour": "red"}, "content": b"hi\n"}, 422, "colour"),
    (
        "bad default",
        {"params": {"temperature": "9"}, "files": {"file": ("t.txt", b"hi\n")}},
        422,
        "temperature",
    ),
    (
        "multipart without a file",
        {"data": {"prompt": "hi"}, "files": {"other": ("x.txt", b"hi\n")}},
        400,
        "'file'",
    ),
]


@pytest.mark.parametrize(
    ("request_args", "status", "says"),
    [(r, s, w) for _, r, s, w in BAD_UPLOADS],
    ids=[name for name, _, _, _ in BAD_UPLOADS],
)
def test_bad_uploads_are_refused_and_nothing_is_written(
    base_url: str, db: Engine, request_args: dict[str, Any], status: int, says: str
) -> None:
    before = table_sizes(db)
    response = http.post(f"{base_url}/batches", timeout=60, **request_args)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] + " ".join(str(d) for d in error["details"])
    assert table_sizes(db) == before


def test_bad_lines_are_listed_by_line_number(base_url: str) -> None:
    content = b'{"prompt": "ok"}\n{"prompt": 5}\n\n{"prompt": "x", "top_p": 0}\n'
    response = http.post(f"{base_url}/batches?format=jsonl", content=content)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["line 2", "line 4"]
    assert details[1]["message"].startswith("top_p:")


def test_a_line_over_the_context_is_a_bad_line_not_a_failed_job(
    client: VQueueClient, base_url: str, db: Engine
) -> None:
    # The stack's context is 2,048 tokens (tests/conftest.py); a job's refusal says the same.
    content = jsonl({"prompt": "Hi"}, {"prompt": "word " * 2500}, {"prompt": "There"})
    before = table_sizes(db)
    refused = http.post(f"{base_url}/batches?format=jsonl", content=content)
    assert refused.status_code == 422, refused.text
    details = refused.json()["error"]["details"]
    assert [d["field"] for d in details] == ["line 2"]
    assert "maximum context length of 2048 tokens" in details[0]["message"]
    assert table_sizes(db) == before

    batch = client.upload_batch(content, filename="p.jsonl", on_error="skip", max_tokens=2)
    assert (batch["counts"]["total"], batch["skipped"]) == (2, 1)
    assert batch["line_errors"][0]["line"] == 2
    assert client.wait_batch(batch["id"], timeout=120)["status"] == "completed"


def test_unknown_batches_are_404(client: VQueueClient) -> None:
    for path in ("/batches/nope", "/batches/00000000-0000-0000-0000-000000000000/results"):
        assert client.http.get(path).status_code == 404
    assert client.http.post("/batches/nope/cancel").status_code == 404
