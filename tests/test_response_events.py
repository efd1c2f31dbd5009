"""A response's stream ending, from its job's final state alone (api/responses/events.py; the
routes and the engine are tests/test_responses.py's): a response that ends with no text at
all still closes its message with the numbers fixed for an empty text."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson

from api.jobs.follower import Final, FollowEvent
from api.jobs.views import job_summary
from api.responses.events import ResponseStream
from db.attempts import SUMMARY_COLUMNS


def ended_row(**given: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row |= {
        "id": uuid.uuid4(),
        "priority": 5,
        "timeout_s": 60,
        "model": "m",
        "created_at": now,
        "finished_at": now,
        "params": {},
        "tools": None,
        "text": "",
        "response": {"background": True},
        **given,
    }
    return row


def frames(row: dict[str, Any]) -> list[dict[str, Any]]:
    async def events() -> AsyncIterator[FollowEvent]:
        yield Final(job_summary(row), text=row["text"])

    async def read() -> list[bytes]:
        return [frame async for frame in ResponseStream(row).frames(events())]

    return [orjson.loads(data.split(b"data: ", 1)[1]) for data in asyncio.run(read())]


def test_a_response_with_no_text_ends_with_an_empty_message() -> None:
    row = ended_row(
        status="succeeded", attempt=1, finish_reason="stop", prompt_tokens=5, completion_tokens=1
    )
    sent = frames(row)
    assert [(e["type"], e["sequence_number"]) for e in sent] == [
        ("response.created", 0),
        ("response.in_progress", 1),
        ("response.output_item.added", 2),
        ("response.content_part.added", 3),
        ("response.output_text.done", 4),
        ("response.content_part.done", 5),
        ("response.output_item.done", 6),
        ("response.completed", 7),
    ]
    assert sent[6]["item"]["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]
    assert sent[-1]["response"]["output"] == []
