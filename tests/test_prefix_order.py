"""A batch's jobs are released with the prompts that begin alike together (the engine's
prefix cache serves them), or in the file's order when asked: the ranking apart, and as the
API stores and the feeder releases a real upload."""

import time
from typing import Any

import orjson
from sqlalchemy import Engine, text

from api.batches.prefix_order import release_ranks
from api.jobs.schemas import JobInput
from tests.helpers import http
from vqueue.client.api_client import VQueueClient

# Long enough to fill whole blocks of the engine's KV cache, which is what its prefix cache holds.
SYSTEM_A = "You are a careful translator. " * 60
SYSTEM_B = "You are a terse grader of arithmetic. " * 60


def chat(system: str, user: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def test_lines_that_begin_alike_are_ranked_together_in_file_order() -> None:
    lines = [
        JobInput.model_validate(chat(SYSTEM_A, "one")),
        JobInput.model_validate(chat(SYSTEM_B, "two")),
        JobInput.model_validate(chat(SYSTEM_A, "three")),
        JobInput.model_validate(chat(SYSTEM_B, "four")),
        JobInput.model_validate(chat(SYSTEM_A, "one")),  # the same as the first
    ]
    ranks = release_ranks(lines, "prefix")
    released = [index for _, index in sorted(zip(ranks, range(len(lines)), strict=True))]
    # Each system prompt's lines one after another; equal lines keep the file's order.
    groups = [{0, 2, 4}, {1, 3}]
    assert {*released[:3]} in groups
    assert {*released[3:]} in groups
    assert released.index(0) < released.index(4)
    assert release_ranks(lines, "input") == [0, 1, 2, 3, 4]


def test_prompts_token_ids_and_chats_in_one_file_are_ranked_without_error() -> None:
    lines = [
        JobInput.model_validate({"prompt": "Translate: b"}),
        JobInput.model_validate({"prompt_token_ids": [5, 6, 7]}),
        JobInput.model_validate(chat(SYSTEM_A, "x")),
        JobInput.model_validate({"prompt": "Translate: a"}),
        JobInput.model_validate({"prompt_token_ids": [5, 6]}),
    ]
    ranks = release_ranks(lines, "prefix")
    assert sorted(ranks) == [0, 1, 2, 3, 4]
    # Prompts first, sorted (a before b), then token ids ([5, 6] before [5, 6, 7]), then chats.
    assert ranks == [1, 3, 4, 0, 2]


def test_an_upload_is_released_in_prefix_order_unless_asked_otherwise(
    client: VQueueClient, db: Engine
) -> None:
    interleaved = [chat(SYSTEM_A if i % 2 == 0 else SYSTEM_B, f"item {i}") for i in range(8)]
    content = b"".join(orjson.dumps(line) + b"\n" for line in interleaved)

    def released(batch_id: str) -> list[int]:
        """Line numbers in the order the feeder gave them to the workers."""
        with db.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT batch_line, release_rank FROM jobs WHERE batch_id = :b "
                    "ORDER BY release_rank"
                ),
                {"b": batch_id},
            ).all()
        return [line for line, _ in rows]

    hits = prefix_cache_hits(client)
    by_prefix = client.upload_batch(content, filename="chats.jsonl", max_tokens=2)
    as_given = client.upload_batch(
        content, filename="chats.jsonl", max_tokens=2, release_order="input"
    )
    for batch in (by_prefix, as_given):
        assert client.wait_batch(batch["id"])["status"] == "completed"
    lines = released(by_prefix["id"])
    evens, odds = [1, 3, 5, 7], [2, 4, 6, 8]  # lines are numbered from 1
    assert lines in ([*evens, *odds], [*odds, *evens]), lines
    assert released(as_given["id"]) == list(range(1, 9))
    # Past the first of each system prompt, the lines found it in the engine's prefix cache:
    # three of each four in the first batch, all in the second (well over 200 tokens each).
    wait_for_hits(client, hits + 14 * 200)
    # Either way each result is told by its own line number.
    results = client.batch_results(by_prefix["id"])
    assert sorted(result["line"] for result in results) == list(range(1, 9))


def prefix_cache_hits(client: VQueueClient) -> int:
    """Prompt tokens the engines found in their prefix caches so far (VQUEUE_ENGINE_STATS)."""
    engines = [w.get("engine") or {} for w in client.http.get("/stats").json()["workers"]]
    return sum(engine.get("prefix_cache_hits", 0) for engine in engines)


def wait_for_hits(client: VQueueClient, at_least: int) -> None:
    """Until the workers' heartbeats (a beat a second here) tell of that many hits."""
    deadline = time.monotonic() + 60
    while (found := prefix_cache_hits(client)) < at_least:
        assert time.monotonic() < deadline, f"{found} prefix-cache hits, not {at_least}"
        time.sleep(0.5)


def test_an_unknown_order_is_refused_naming_it(base_url: str) -> None:
    response = http.post(
        f"{base_url}/batches?format=jsonl&release_order=random", content=b'{"prompt": "hi"}\n'
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "release_order"
