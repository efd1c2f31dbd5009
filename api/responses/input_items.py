"""A response's input items (`GET /v1/responses/{id}/input_items`): the turns of its own
input, as the Responses API lists them, read back from its job's messages.

The job's messages hold, in order, the system message of its instructions, the turns an
earlier response lent it (`previous_response_id`) and its own input; the last
`input_count` of them are its input.
"""

import uuid
from collections.abc import Mapping
from typing import Any

from api.openai.errors import invalid_request
from api.openai.lists import list_page


def _item_id(prefix: str, job_id: uuid.UUID, *place: int) -> str:
    return f"{prefix}_{job_id.hex}_" + "_".join(str(n) for n in place)


def _items(job_id: uuid.UUID, index: int, turn: dict[str, Any]) -> list[dict[str, Any]]:
    role = turn["role"]
    if role == "tool":
        return [
            {
                "id": _item_id("fco", job_id, index),
                "type": "function_call_output",
                "call_id": turn.get("tool_call_id"),
                "output": turn.get("content") or "",
                "status": "completed",
            }
        ]
    made = []
    if turn.get("content") is not None:
        kind = "output_text" if role == "assistant" else "input_text"
        part: dict[str, Any] = {"type": kind, "text": turn["content"]}
        if kind == "output_text":
            part["annotations"] = []
        made.append(
            {
                "id": _item_id("msg", job_id, index),
                "type": "message",
                "role": role,
                "status": "completed",
                "content": [part],
            }
        )
    for number, call in enumerate(turn.get("tool_calls") or []):
        made.append(
            {
                "id": _item_id("fc", job_id, index, number),
                "type": "function_call",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    return made


def input_items(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """This response's own input, oldest first."""
    turns: list[dict[str, Any]] = list(row["messages"] or [])
    echoed = row["response"]
    count = echoed.get("input_count")
    if count is None:  # stored before the count was: all but its instructions
        count = len(turns) - int(bool(echoed.get("instructions_message")))
    first = max(0, len(turns) - count)
    return [
        item
        for index in range(first, len(turns))
        for item in _items(row["id"], index, turns[index])
    ]


def items_page(
    items: list[dict[str, Any]], *, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """One page of OpenAI's list, newest first unless `order` is asc."""
    ordered = items if order == "asc" else list(reversed(items))
    start = 0
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise invalid_request(f"after: no input item {after!r} in this response", "after")
        start = ids.index(after) + 1
    page = ordered[start : start + limit]
    return list_page(page, has_more=start + limit < len(ordered))
