"""The job pipeline end to end: HTTP -> Postgres -> Celery -> the real engine -> Redis -> SSE."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import orjson
from redis import Redis
from sqlalchemy import Engine, text
from transformers import AutoTokenizer

from tests.helpers import http, insert_unqueued_job
from vqueue.client.api_client import ServerEvent, VQueueClient
from vqueue.contract.wire import token_log_key
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings


def deltas(events: list[ServerEvent]) -> list[ServerEvent]:
    return [event for event in events if event.event == "delta"]


def joined(events: list[ServerEvent]) -> str:
    return "".join(event.data["text"] for event in deltas(events))


def assert_offsets_match(events: list[ServerEvent], start: int = 0) -> None:
    """Every delta's id is the character offset after it: no gaps, no repeats."""
    position = start
    for event in deltas(events):
        position += len(event.data["text"])
        assert event.id == f"1-{position}"


def ts(job: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(job[key])


def test_a_job_streams_and_its_deltas_are_its_text(client: VQueueClient) -> None:
    job = client.submit(prompt="The capital of France is", max_tokens=48, temperature=0.8, seed=1)
    assert job["status"] == "queued"
    assert job["links"]["stream"] == f"/jobs/{job['id']}/stream"
    events = list(client.stream(job["id"]))
    final = client.get(job["id"])

    assert final["status"] == "succeeded"
    assert final["text"]
    assert joined(events) == final["text"]
    assert_offsets_match(events)
    assert events[-1].event == "done"
    # The done event is the job as GET shows it, without the input (tools and webhook too), the
    # output (text, log probabilities, tool calls), its wait while queued (null now) and the
    # submit's warning: here made from the summary the worker's END carried
    # (tests/test_job_follower.py), not a read.
    input_and_text = {"prompt", "messages", "prompt_token_ids", "params", "text", "logprobs"}
    input_and_text |= {"tools", "tool_choice", "tool_calls", "queue", "warning", "webhook"}
    assert events[-1].data == {
        key: value for key, value in final.items() if key not in input_and_text
    }
    assert final["usage"]["completion_tokens"] > 0
    assert final["usage"]["prompt_tokens"] > 0
    assert final["finish_reason"] in {"stop", "length"}
    assert (
        ts(final, "created_at")
        <= ts(final, "started_at")
        <= ts(final, "first_token_at")
        <= ts(final, "finished_at")
    )


def test_unicode_line_breaks_in_a_text_reach_line_splitting_clients_whole(
    client: VQueueClient, base_url: str, db: Engine, redis: Redis
) -> None:
    # U+2028, U+2029 and U+0085 are line breaks to str.splitlines, and so to httpx's
    # iter_lines; a model samples them now and then. Written into a finished job's row as if
    # sampled, the text is replayed from Postgres once its token log is gone.
    job = client.wait(client.submit(prompt="Hello", max_tokens=2)["id"])
    sampled = "line\u2028separator\u2029paragraph\u0085next line"
    with db.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET text = :text WHERE id = :id"), {"text": sampled, "id": job["id"]}
        )
    redis.delete(token_log_key(job["id"]))

    assert joined(list(client.stream(job["id"]))) == sampled
    with http.stream("GET", f"{base_url}/jobs/{job['id']}/stream", timeout=60) as response:
        data = [line[5:] for line in response.iter_lines() if line.startswith("data:")]
    assert "".join(orjson.loads(line).get("text", "") for line in data) == sampled


def test_chat_messages_go_through_the_chat_template(client: VQueueClient) -> None:
    question = "What is the product of 9 and 8?"
    chat = client.submit(messages=[{"role": "user", "content": question}], max_tokens=8)
    plain = client.submit(prompt=question, max_tokens=8)
    chat_done, plain_done = client.wait(chat["id"]), client.wait(plain["id"])
    assert chat_done["status"] == plain_done["status"] == "succeeded"
    # The template wraps the question in role markers and SmolLM's default system prompt.
    assert chat_done["usage"]["prompt_tokens"] > plain_done["usage"]["prompt_tokens"] + 10


def test_prompts_are_tokenized_as_the_engine_would(
    client: VQueueClient, settings: Settings
) -> None:
    # The worker tokenizes a message's prompts together, off the engine loop; each job must
    # still read exactly its own prompt's tokens, as the engine's tokenizer makes them.
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    prompts = ["Hi", "Ünïcode — ✓ and emoji 🙂 in a prompt", "One two three four five six " * 20]
    with ThreadPoolExecutor(len(prompts)) as pool:
        jobs = list(pool.map(lambda p: client.submit(prompt=p, max_tokens=2), prompts))
    for prompt, job in zip(prompts, jobs, strict=True):
        final = client.wait(job["id"])
        assert final["status"] == "succeeded", final
        assert final["usage"]["prompt_tokens"] == len(tokenizer(prompt)["input_ids"])


def test_a_late_subscriber_gets_the_whole_text(client: VQueueClient) -> None:
    job = client.submit(prompt="Once upon a time", max_tokens=32)
    final = client.wait(job["id"])
    events = list(client.stream(job["id"]))
    assert joined(events) == final["text"]
    assert_offsets_match(events)
    assert [event.event for event in events[-1:]] == ["done"]


def test_a_reconnect_resumes_after_last_event_id(client: VQueueClient) -> None:
    job = client.submit(prompt="Count slowly:", max_tokens=96, ignore_eos=True)
    first: list[ServerEvent] = []
    for event in client.stream(job["id"]):
        first.append(event)
        if len(deltas(first)) == 5:
            break  # the client disconnects mid-stream
    assert first[-1].id is not None
    resumed = list(client.stream(job["id"], last_event_id=first[-1].id))
    final = client.wait(job["id"])

    # Disconnecting did not cancel the job: it ran to its full length.
    assert final["status"] == "succeeded"
    assert final["usage"]["completion_tokens"] == 96
    assert joined(first) + joined(resumed) == final["text"]
    assert_offsets_match(resumed, start=int(first[-1].id.removeprefix("1-")))


def test_the_text_so_far_is_served_while_running(client: VQueueClient) -> None:
    job = client.submit(prompt="Write a long story:", max_tokens=200, ignore_eos=True)
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline:
        polled = client.get(job["id"])
        if polled["status"] == "running" and polled["text"]:
            partial = polled["text"]
            break
        assert polled["status"] in {"queued", "running"}
        time.sleep(0.05)
    final = client.wait(job["id"])
    assert partial is not None
    assert len(partial) < len(final["text"])
    assert final["text"].startswith(partial)


def test_streams_replay_from_postgres_once_the_log_is_gone(
    client: VQueueClient, redis: Redis
) -> None:
    job = client.submit(prompt="Tell me about Paris.", max_tokens=24, ignore_eos=True)
    final = client.wait(job["id"])
    redis.delete(token_log_key(job["id"]))  # as if it expired, or Redis restarted

    events = list(client.stream(job["id"]))
    assert joined(events) == final["text"]
    assert events[0].id == f"1-{len(final['text'])}"
    resumed = list(client.stream(job["id"], last_event_id=3))
    assert joined(resumed) == final["text"][3:]
    assert resumed[-1].data["status"] == "succeeded"


def test_sampling_parameters_take_effect(client: VQueueClient) -> None:
    seeded = {"prompt": "Name a colour:", "max_tokens": 24, "temperature": 1.0, "seed": 1234}
    # One after the other: run in one batch, the two share steps of different shapes, and
    # bf16 logits that differ in the last bit can flip a near tie (CI saw them part at the
    # 20th token).
    first_done = client.wait(client.submit(**seeded)["id"])
    second_done = client.wait(client.submit(**seeded)["id"])
    # Greedy: a sampled continuation may go 64 tokens without a comma (it did once in CI).
    stopped = client.submit(
        prompt="List three fruits: apple,", max_tokens=64, stop=[","], temperature=0
    )
    stopped_done = client.wait(stopped["id"])
    assert first_done["text"] == second_done["text"]
    assert stopped_done["finish_reason"] == "stop"
    assert "," not in stopped_done["text"]


def test_a_prompt_too_long_for_the_context_fails_the_job_not_the_worker(
    client: VQueueClient, db: Engine
) -> None:
    too_long = "hello " * 3000  # past VQUEUE_MAX_MODEL_LEN=2048
    # POST /jobs and a batch upload refuse it before anything is written.
    refused = client.http.post("/jobs", json={"prompt": too_long, "max_tokens": 4})
    assert refused.status_code == 400
    upload = client.http.post(
        "/batches", content=too_long.encode() + b"\n", headers={"content-type": "text/plain"}
    )
    assert upload.status_code == 422
    assert "maximum context length" in upload.text
    # One that got past an API which could not tell (its tokenizer not loaded yet, or a
    # worker with a smaller context than the one it knew) reaches a worker, which fails that
    # job alone.
    job = {"id": insert_unqueued_job(db, prompt=too_long)}
    client.wait(job["id"], timeout=300)
    events = list(client.stream(job["id"]))
    final = client.get(job["id"])
    assert final["status"] == "failed"
    assert "maximum context length" in final["error"]
    assert [event.event for event in events] == ["error", "done"]
    assert "maximum context length" in events[0].data["message"]
    # The worker carries on.
    after = client.wait(client.submit(prompt="Hi", max_tokens=4)["id"])
    assert after["status"] == "succeeded"


def _run_to_completion(client: VQueueClient, body: dict[str, Any]) -> dict[str, Any]:
    return client.wait(client.submit(**body)["id"], interval=0.05)


def test_concurrent_jobs_share_the_engine(client: VQueueClient) -> None:
    body = {"prompt": "Describe the sea.", "max_tokens": 64, "ignore_eos": True, "temperature": 0}
    _run_to_completion(client, body)  # warm-up
    started = time.monotonic()
    _run_to_completion(client, body)
    one = time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _run_to_completion(client, body), range(16)))
    sixteen = time.monotonic() - started

    assert all(job["status"] == "succeeded" for job in results)
    assert all(job["usage"]["completion_tokens"] == 64 for job in results)
    # Run one after another they would take 16x; batched in one engine, far less.
    assert sixteen <= 16 * one / 3, f"16 jobs took {sixteen:.2f}s, one took {one:.2f}s"


def test_an_idle_stream_sends_keep_alive_comments(base_url: str, db: Engine) -> None:
    # A queued job nobody has sent to the broker yet: nothing happens on its stream for a
    # while (until the reconciler sends it), so only keep-alives flow (every 1 s in tests).
    job_id = insert_unqueued_job(db)
    lines = []
    with http.stream("GET", f"{base_url}/jobs/{job_id}/stream", timeout=10) as response:
        started = time.monotonic()
        for line in response.iter_lines():
            lines.append(line)
            if line == ": keep-alive" or time.monotonic() - started > 5:
                break
    assert ": keep-alive" in lines
