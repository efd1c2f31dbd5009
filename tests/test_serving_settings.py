"""Request limits come from the serving app's settings, read per request, not from the
environment at import (an API process in this test, real Postgres and Redis)."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.jobs.schemas import JobCreate
from tests.conftest import count_jobs
from tests.helpers import http
from vqueue.settings import Settings

TIGHT = {
    "max_output_tokens": 8,
    "max_stop_strings": 1,
    "max_prompt_chars": 10,
    "max_messages": 1,
    "max_metadata_bytes": 20,
    "max_job_timeout_s": 30,
}
OVER: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "hi", "max_tokens": 9}, "max_tokens"),
    ({"prompt": "hi", "stop": ["a", "b"]}, "stop"),
    ({"prompt": "x" * 11}, "prompt"),
    ({"messages": [{"role": "user", "content": "a"}] * 2}, "messages"),
    ({"prompt": "hi", "timeout_s": 31}, "timeout_s"),
]


@pytest.mark.parametrize(("body", "field"), OVER, ids=[field for _, field in OVER])
def test_an_app_checks_bodies_against_its_own_settings(
    settings: Settings, db: Engine, body: dict[str, Any], field: str
) -> None:
    tight = settings.model_copy(update=TIGHT)
    before = count_jobs(db)
    with TestClient(create_app(tight), headers=http.headers) as api:
        response = api.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert field in {detail["field"] for detail in details}, details
    assert "this service's limit" in response.text or "over" in response.text
    assert count_jobs(db) == before
    # Outside a request the environment's settings apply, and they allow the same body.
    JobCreate.model_validate(body)


def test_a_batch_default_is_checked_against_the_apps_settings(
    settings: Settings, db: Engine
) -> None:
    tight = settings.model_copy(update=TIGHT)
    with TestClient(create_app(tight), headers=http.headers) as api:
        response = api.post(
            "/batches",
            params={"timeout_s": 31},
            files={"file": ("a.jsonl", b'{"prompt": "hi"}\n', "application/x-ndjson")},
        )
        assert response.status_code == 422, response.text
        response = api.post(
            "/batches",
            params={"max_tokens": 9},
            files={"file": ("a.jsonl", b'{"prompt": "hi"}\n', "application/x-ndjson")},
        )
        assert response.status_code == 422, response.text
