"""`n` choices on /v1: each a job of its own, answered and streamed together (real stack,
through the official openai SDK and plain HTTP)."""

from collections import defaultdict
from typing import Any

import openai
import orjson

from tests.helpers import http
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def test_n_choices_come_back_as_jobs_of_their_own(
    oai: openai.OpenAI, client: VQueueClient, settings: Settings
) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Name an animal."}],
        max_tokens=8,
        n=3,
        seed=7,
    )
    completion = raw.parse()
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    job_ids = raw.headers["x-job-id"].split(",")
    assert completion.id == f"chatcmpl-{job_ids[0]}"
    jobs = [client.get(job_id) for job_id in job_ids]
    # Each choice samples with a seed of its own, so they are not three copies of one.
    assert [job["params"]["seed"] for job in jobs] == [7, 8, 9]
    assert [choice.message.content for choice in completion.choices] == [
        job["text"] for job in jobs
    ]
    # The prompt counts once, as in vLLM's answer for n; the completions all.
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == jobs[0]["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == sum(
        job["usage"]["completion_tokens"] for job in jobs
    )


def test_n_streams_interleave_by_index(
    base_url: str, client: VQueueClient, settings: Settings
) -> None:
    body: dict[str, Any] = {
        "model": settings.model_name,
        "prompt": "Once upon a time",
        "max_tokens": 12,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", f"{base_url}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        job_ids = response.headers["x-job-id"].split(",")
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [orjson.loads(line) for line in lines[:-1]]
    texts: dict[int, str] = defaultdict(str)
    finished = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"] is not None:
            finished[choice["index"]] = choice["finish_reason"]
    assert set(finished) == {0, 1}
    jobs = [client.wait(job_id) for job_id in job_ids]
    assert [texts[0], texts[1]] == [job["text"] for job in jobs]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == sum(
        job["usage"]["completion_tokens"] for job in jobs
    )


def test_each_chat_choice_opens_with_its_role(oai: openai.OpenAI, settings: Settings) -> None:
    stream = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=6,
        n=2,
        stream=True,
    )
    first_delta: dict[int, Any] = {}
    for chunk in stream:
        for choice in chunk.choices:
            first_delta.setdefault(choice.index, choice.delta)
    assert sorted(first_delta) == [0, 1]
    assert all(delta.role == "assistant" for delta in first_delta.values())


def test_a_batch_line_cannot_ask_for_several_choices(client: VQueueClient) -> None:
    line = orjson.dumps(
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"prompt": "x", "max_tokens": 2, "n": 2},
        }
    )
    response = client.http.post("/batches", params={"format": "openai"}, content=line + b"\n")
    assert response.status_code == 422, response.text
    assert "body.n" in response.text
