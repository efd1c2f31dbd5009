"""Bad input is a 4xx naming what is wrong, and nothing is written."""

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import count_jobs
from tests.helpers import http

LONG = "x" * 200_001

BAD_BODIES: list[tuple[str, Any, set[str]]] = [
    ("unknown field", {"prompt": "hi", "temprature": 0.5}, {"temprature"}),
    ("wrong type", {"prompt": "hi", "max_tokens": "ten"}, {"max_tokens"}),
    ("prompt not a string", {"prompt": 42}, {"prompt"}),
    ("empty prompt", {"prompt": ""}, {"prompt"}),
    ("blank prompt", {"prompt": "   \n"}, {"prompt"}),
    ("prompt too long", {"prompt": LONG}, {"prompt"}),
    ("neither prompt nor messages", {"max_tokens": 5}, set()),
    (
        "both prompt and messages",
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        set(),
    ),
    ("empty messages", {"messages": []}, {"messages"}),
    ("unknown role", {"messages": [{"role": "robot", "content": "b"}]}, {"messages.0.role"}),
    ("message without content", {"messages": [{"role": "user"}]}, {"messages.0.content"}),
    (
        "empty message content",
        {"messages": [{"role": "user", "content": ""}]},
        {"messages.0.content"},
    ),
    (
        "extra message field",
        {"messages": [{"role": "user", "content": "b", "name": "x"}]},
        {"messages.0.name"},
    ),
    ("negative temperature", {"prompt": "hi", "temperature": -0.1}, {"temperature"}),
    ("temperature too high", {"prompt": "hi", "temperature": 2.5}, {"temperature"}),
    ("top_p zero", {"prompt": "hi", "top_p": 0}, {"top_p"}),
    ("top_p above one", {"prompt": "hi", "top_p": 1.5}, {"top_p"}),
    ("top_k zero", {"prompt": "hi", "top_k": 0}, {"top_k"}),
    ("max_tokens zero", {"prompt": "hi", "max_tokens": 0}, {"max_tokens"}),
    ("max_tokens too large", {"prompt": "hi", "max_tokens": 10**9}, {"max_tokens"}),
    ("negative seed", {"prompt": "hi", "seed": -1}, {"seed"}),
    ("stop not a list", {"prompt": "hi", "stop": 5}, {"stop"}),
    ("empty stop string", {"prompt": "hi", "stop": [""]}, {"stop.0"}),
    ("too many stop strings", {"prompt": "hi", "stop": [str(i) for i in range(17)]}, {"stop"}),
    ("ignore_eos not a bool", {"prompt": "hi", "ignore_eos": "maybe"}, {"ignore_eos"}),
    # Numbers and flags are taken as sent, never coerced.
    ("max_tokens as a string", {"prompt": "hi", "max_tokens": "1"}, {"max_tokens"}),
    ("max_tokens as a boolean", {"prompt": "hi", "max_tokens": True}, {"max_tokens"}),
    ("temperature as a string", {"prompt": "hi", "temperature": "0.5"}, {"temperature"}),
    ("priority as a boolean", {"prompt": "hi", "priority": False}, {"priority"}),
    ("ignore_eos as a number", {"prompt": "hi", "ignore_eos": 1}, {"ignore_eos"}),
    ("deadline zero", {"prompt": "hi", "deadline_s": 0}, {"deadline_s"}),
    ("deadline negative", {"prompt": "hi", "deadline_s": -5}, {"deadline_s"}),
    ("deadline past thirty days", {"prompt": "hi", "deadline_s": 3e6}, {"deadline_s"}),
    ("deadline as a string", {"prompt": "hi", "deadline_s": "10"}, {"deadline_s"}),
    ("unknown on_infeasible", {"prompt": "hi", "on_infeasible": "maybe"}, {"on_infeasible"}),
    ("body is a list", [{"prompt": "hi"}], set()),
]


@pytest.mark.parametrize(
    ("body", "fields"), [(b, f) for _, b, f in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
)
def test_bad_bodies_are_refused_with_the_fields_named(
    base_url: str, db: Engine, body: Any, fields: set[str]
) -> None:
    before = count_jobs(db)
    response = http.post(f"{base_url}/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"], error
    named = {detail["field"] for detail in error["details"]}
    assert fields <= named, error
    assert count_jobs(db) == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"prompt": "hi"', "application/json"),
        (b"\xff\xfe not utf-8", "application/json"),
        (b"prompt=hi", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ],
    ids=["truncated JSON", "invalid UTF-8", "form body", "empty body"],
)
def test_unreadable_bodies_are_refused(
    base_url: str, db: Engine, content: bytes, content_type: str
) -> None:
    before = count_jobs(db)
    response = http.post(
        f"{base_url}/jobs", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]
    assert count_jobs(db) == before


@pytest.mark.parametrize("cancel_after", ["soon", "0", "-3", "nan", "inf", "1e9", ""])
def test_a_bad_cancel_after_header_is_refused(base_url: str, db: Engine, cancel_after: str) -> None:
    before = count_jobs(db)
    response = http.post(
        f"{base_url}/jobs", json={"prompt": "hi"}, headers={"Cancel-After": cancel_after}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "Cancel-After", response.text
    assert count_jobs(db) == before


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1"])
def test_unknown_jobs_are_404(base_url: str, job_id: str) -> None:
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/stream"):
        response = http.get(base_url + path)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


def test_a_bad_last_event_id_is_refused(base_url: str) -> None:
    job = http.post(f"{base_url}/jobs", json={"prompt": "hi", "max_tokens": 1}).json()
    response = http.get(f"{base_url}/jobs/{job['id']}/stream", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "last-event-id"


OVERSIZED = b'{"prompt": "' + b"x" * (5 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["declared length", "chunked"])
@pytest.mark.parametrize("path", ["/jobs", "/v1/completions"])
def test_oversized_bodies_are_refused_before_they_are_read(
    base_url: str, db: Engine, path: str, chunked: bool
) -> None:
    before = count_jobs(db)
    content = iter([OVERSIZED[i : i + 65536] for i in range(0, len(OVERSIZED), 65536)])
    response = http.post(
        base_url + path,
        content=content if chunked else OVERSIZED,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert "limit" in error["message"]
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error"
    assert count_jobs(db) == before


def test_deeply_nested_json_is_a_4xx(base_url: str) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    for path in ("/jobs", "/v1/chat/completions"):
        response = http.post(
            base_url + path, content=nested, headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, response.text


HOSTILE = "'); DROP TABLE jobs; -- ../../../etc/passwd {{ config }} %s $(rm -rf /) \u202e\U0001f600"


def test_prompts_are_data_stored_and_returned_exactly(base_url: str, db: Engine) -> None:
    before = count_jobs(db)
    body = {
        "prompt": HOSTILE,
        "max_tokens": 1,
        "stop": [HOSTILE[:40]],
    }
    submitted = http.post(f"{base_url}/jobs", json=body, headers={"Idempotency-Key": "';--"})
    assert submitted.status_code == 202, submitted.text
    job = http.get(f"{base_url}/jobs/{submitted.json()['id']}").json()
    assert job["prompt"] == HOSTILE
    assert job["params"]["stop"] == [HOSTILE[:40]]
    # The table is still there and holds exactly one more row.
    assert count_jobs(db) == before + 1
    upload = http.post(
        f"{base_url}/batches",
        content=f'prompt,note\n"{HOSTILE}","{HOSTILE}"\n'.encode(),
        headers={"Content-Type": "text/csv"},
        params={"max_tokens": 1},
    )
    assert upload.status_code == 202, upload.text
    (line,) = http.get(f"{base_url}/batches/{upload.json()['id']}/jobs").json()["data"]
    assert line["prompt"] == HOSTILE
    assert line["metadata"] == {"note": HOSTILE}


@pytest.mark.parametrize("value", ["1", True])
def test_openai_routes_take_numbers_as_sent(base_url: str, db: Engine, value: Any) -> None:
    before = count_jobs(db)
    body = {"prompt": "hi", "max_tokens": value}
    response = http.post(f"{base_url}/v1/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "max_tokens"
    assert count_jobs(db) == before
