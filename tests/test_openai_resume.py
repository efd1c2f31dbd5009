"""A /v1 completion taken up again after its connection was cut, on the running stack: each
chunk of text carries its job's cursor, and a stream from that cursor sends exactly the rest."""

import httpx
import openai
import orjson
import pytest
from sqlalchemy import Engine, text

from tests.helpers import http
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def _data(lines: list[str]) -> list[dict[str, object]]:
    frames = [line for line in lines if line]
    assert frames[-1] == "data: [DONE]"
    return [orjson.loads(line.removeprefix("data: ")) for line in frames[:-1]]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_cut_stream_is_taken_up_where_it_stopped(
    base_url: str, client: VQueueClient, settings: Settings, path: str
) -> None:
    body: dict[str, object] = {
        "model": settings.model_name,
        "max_tokens": 80,
        "ignore_eos": True,
        "stream": True,
    }
    if path == "/v1/completions":
        body["prompt"] = "Once upon a time"
    else:
        body["messages"] = [{"role": "user", "content": "Tell me a long story."}]
    received: list[dict[str, object]] = []
    # The client reads a few chunks of text, then its connection goes: the job goes on.
    with http.stream("POST", f"{base_url}{path}", json=body, timeout=120) as response:
        assert response.status_code == 200
        job_id = response.headers["x-job-id"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = orjson.loads(line.removeprefix("data: "))
                if "cursor" in chunk:
                    received.append(chunk)
            if len(received) >= 3:
                break
    cursor = str(received[-1]["cursor"])
    completion_id = str(received[0]["id"])
    assert completion_id.endswith(job_id)
    with http.stream(
        "GET",
        f"{base_url}{path}/{completion_id}",
        params={"stream": "true", "cursor": cursor, "include_usage": "true"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        rest = _data(list(response.iter_lines()))

    def texts(chunks: list[dict[str, object]]) -> str:
        parts = []
        for chunk in chunks:
            for choice in chunk["choices"]:  # type: ignore[attr-defined]
                parts.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
        return "".join(parts)

    job = client.wait(job_id)
    assert job["status"] == "succeeded"
    # Exactly the rest: what was received and what came after join up to the job's text.
    assert texts(received) + texts(rest) == job["text"]
    assert all(chunk["id"] == completion_id for chunk in rest)
    assert "role" not in str(rest[0]["choices"])  # a taken-up chat stream has no role chunk
    assert rest[-1]["choices"] == []
    assert rest[-1]["usage"]["completion_tokens"] == 80  # type: ignore[index]


def test_a_completion_is_retrieved_whole_by_the_sdk(oai: openai.OpenAI, settings: Settings) -> None:
    made = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=6,
        temperature=0,
    )
    again = oai.chat.completions.retrieve(made.id)
    assert again.id == made.id
    assert again.choices[0].message.content == made.choices[0].message.content
    assert again.usage == made.usage


def test_a_cursor_from_an_attempt_that_is_gone_is_refused(
    base_url: str, client: VQueueClient, db: Engine, settings: Settings
) -> None:
    reply = http.post(
        f"{base_url}/v1/completions",
        json={"model": settings.model_name, "prompt": "Hello", "max_tokens": 4},
        timeout=120,
    )
    assert reply.status_code == 200
    completion_id = reply.json()["id"]
    job_id = reply.headers["x-job-id"]
    # As if its worker had been lost after that text: the job ran again, as attempt 2.
    with db.begin() as conn:
        conn.execute(text("UPDATE jobs SET attempt = 2 WHERE id = :id"), {"id": job_id})
    url = f"{base_url}/v1/completions/{completion_id}"
    gone = http.get(url, params={"stream": "true", "cursor": "1-3"}, timeout=30)
    assert gone.status_code == 409
    assert gone.json()["error"]["code"] == "restarted"
    # From the start of the current attempt, or whole: fine.
    assert http.get(url, params={"stream": "true", "cursor": "2-0"}, timeout=30).status_code == 200
    assert (
        http.get(url, timeout=30).json()["choices"][0]["text"] == reply.json()["choices"][0]["text"]
    )
    for params, status in (
        ({"stream": "true", "cursor": "3-0"}, 400),  # an attempt the job has not had
        ({"stream": "true", "cursor": "later"}, 400),
        ({"cursor": "2-0"}, 400),  # a cursor is for a stream
    ):
        assert http.get(url, params=params, timeout=30).status_code == status
    # A completion's id is not a chat completion's, nor any job's at all.
    chat_url = f"{base_url}/v1/chat/completions/chatcmpl-{job_id}"
    assert http.get(chat_url, timeout=30).status_code == 404
    assert http.get(f"{base_url}/v1/completions/cmpl-nothing", timeout=30).status_code == 404
    # Without a key, nothing.
    assert httpx.get(url, timeout=30).status_code == 401
