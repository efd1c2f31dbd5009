"""POST /batches?dry_run=true on the running stack: every line checked, prompts counted as the
engine counts them, an estimate from the workers' pace, and nothing stored."""

from datetime import UTC, datetime
from typing import Any

import openai
import orjson
import pytest
from sqlalchemy import Engine

from tests.helpers import http
from tests.test_batches import jsonl, table_sizes
from tests.test_openai import batch_input
from vqueue.client.api_client import VQueueClient

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]
VALID = [{"prompt": "The capital of France is"}, {"messages": CHAT}]
# Over the stack's 2,048-token context (VQUEUE_MAX_MODEL_LEN in tests/conftest.py).
TOO_LONG = {"prompt": "word " * 2500}
BAD = {"prompt": "x", "top_p": 0}


def dry_run(base_url: str, content: bytes, **params: Any) -> dict[str, Any]:
    response = http.post(
        f"{base_url}/batches",
        params={"dry_run": "true", "format": "jsonl", **params},
        content=content,
        timeout=120,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_a_dry_run_counts_prompts_as_the_engine_does_and_stores_nothing(
    client: VQueueClient, base_url: str, db: Engine
) -> None:
    # The same valid lines, run for real: the engine's own prompt counts, and a recent pace.
    batch = client.upload_batch(jsonl(*VALID), filename="v.jsonl", max_tokens=3)
    assert client.wait_batch(batch["id"], timeout=300)["status"] == "completed"
    engine_counts = [r["usage"]["prompt_tokens"] for r in client.batch_results(batch["id"])]

    before = table_sizes(db)
    asked_at = datetime.now(UTC)
    found = dry_run(base_url, jsonl(VALID[0], BAD, VALID[1], TOO_LONG), max_tokens=3)
    assert table_sizes(db) == before

    assert found["object"] == "batch.dry_run"
    assert (found["lines"], found["valid"], found["invalid"]) == (4, 2, 2)
    assert [error["line"] for error in found["errors"]] == [2, 4]
    assert found["errors"][0]["message"].startswith("top_p:")
    assert "maximum context length of 2048" in found["errors"][1]["message"]
    assert found["prompt_tokens"] == sum(engine_counts)
    assert found["max_output_tokens"] == 2 * 3
    assert found["context_limit"] == 2048

    estimate = found["estimate"]
    assert estimate is not None, found["estimate_unavailable"]
    assert estimate["output_tokens_per_s"] > 0
    assert estimate["measured_jobs"] >= 2
    assert estimate["gpu_seconds"] == pytest.approx(6 / estimate["output_tokens_per_s"], abs=0.1)
    start_by = datetime.fromisoformat(estimate["start_by"])
    finish_by = datetime.fromisoformat(estimate["finish_by"])
    assert asked_at <= start_by <= finish_by


def test_a_dry_run_of_only_bad_lines_answers_with_them_not_a_refusal(
    base_url: str, db: Engine
) -> None:
    before = table_sizes(db)
    found = dry_run(base_url, jsonl(BAD, TOO_LONG, BAD))
    assert table_sizes(db) == before
    assert (found["valid"], found["invalid"], found["prompt_tokens"]) == (0, 3, 0)
    assert [error["line"] for error in found["errors"]] == [1, 2, 3]
    assert found["estimate"] is None
    assert found["estimate_unavailable"] == "no valid lines"


@pytest.mark.parametrize(
    ("params", "content", "status", "says"),
    [
        ({"format": "jsonl"}, b"", 422, "the upload is empty"),
        ({"format": "jsonl", "temperature": "-1"}, b'{"prompt": "x"}\n', 422, "temperature"),
        ({"format": "jsonl", "dry_run": "maybe"}, b'{"prompt": "x"}\n', 422, "dry_run"),
        ({}, b'{"prompt": "x"}\n', 415, "cannot tell the format"),
    ],
    ids=["empty", "bad default", "bad dry_run", "unknown format"],
)
def test_a_dry_run_refuses_what_a_batch_refuses_and_stores_nothing(
    base_url: str, db: Engine, params: dict[str, str], content: bytes, status: int, says: str
) -> None:
    before = table_sizes(db)
    response = http.post(
        f"{base_url}/batches",
        params={"dry_run": "true", **params},
        content=content,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] + " ".join(str(d) for d in error["details"])
    assert table_sizes(db) == before


def test_the_openai_batch_api_dry_runs_when_metadata_asks(
    oai: openai.OpenAI, base_url: str, db: Engine
) -> None:
    long_line = orjson.loads(batch_input("/v1/chat/completions", 1))
    long_line["custom_id"] = "too-long"
    long_line["body"]["messages"][0]["content"] = "word " * 2500
    content = batch_input("/v1/chat/completions", 2) + orjson.dumps(long_line) + b"\n"
    uploaded = oai.files.create(file=("dry.jsonl", content), purpose="batch")
    before = table_sizes(db)
    batch = oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"dry_run": "true", "team": "search"},
    )
    assert table_sizes(db) == before
    assert batch.status == "failed"  # a line would not run
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)
    assert batch.errors is not None
    assert batch.errors.data is not None
    assert [error.line for error in batch.errors.data] == [3]
    assert "maximum context length" in (batch.errors.data[0].message or "")
    assert batch.metadata is not None
    assert batch.metadata["team"] == "search"
    native = dry_run(base_url, content, format="openai")
    assert batch.metadata["prompt_tokens"] == str(native["prompt_tokens"])
    assert batch.metadata["max_output_tokens"] == str(2 * 4)
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve(batch.id)
