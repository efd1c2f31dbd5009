"""The turns an earlier response lends the next (`previous_response_id`): its input and its
output, not its instructions, which applied to it alone (as in OpenAI's API)."""

from collections.abc import Mapping
from typing import Any

from api.openai.errors import invalid_request
from api.responses.views import response_id
from db.states import JobStatus


def earlier_turns(previous: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not JobStatus(previous["status"]).is_terminal:
        raise invalid_request(
            f"previous_response_id: {response_id(previous['id'])} is not finished yet",
            "previous_response_id",
        )
    turns = list(previous["messages"] or [])
    if previous["response"].get("instructions_message") and turns:
        turns = turns[1:]
    if previous["text"]:
        turns.append({"role": "assistant", "content": previous["text"]})
    return turns
