"""A response of the Responses API deleted: its texts go, its row stays, as the record of the
tokens its owner spent (the daily token limit counts them)."""

import uuid
from typing import Any

from sqlalchemy import Update, literal_column, update

from db.schema import jobs, owned_by
from db.states import TERMINAL_STATES


def delete_response(job_id: uuid.UUID, scope: uuid.UUID | None) -> Update:
    """Wipes an ended response's input, output and metadata; answers its id, or nothing when
    it is not an ended, undeleted response of this scope."""
    return (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            owned_by(jobs.c.owner_id, scope),
            jobs.c.response.is_not(None),
            ~jobs.c.response.op("?")(literal_column("'deleted'")),
            jobs.c.status.in_([str(status) for status in TERMINAL_STATES]),
        )
        .values(
            response={"deleted": True},
            messages=[],
            text=None,
            logprobs=None,
            tool_calls=None,
            metadata=None,
        )
        .returning(jobs.c.id)
    )


def is_deleted(response: dict[str, Any] | None) -> bool:
    return bool(response and response.get("deleted"))
