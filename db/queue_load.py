"""The queue's load in tokens, and a key's share of it: the weight of a job before any
tokenizer has seen it (its max_tokens plus its prompt at about four characters a token), the
same rule in Python for a request and in SQL for what is queued."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, Text, cast, func, select

from db.schema import jobs
from db.states import JobStatus

CHARS_PER_TOKEN = 4
# What a job without max_tokens in its parameters is counted as (JobCreate's default).
DEFAULT_MAX_TOKENS = 256


def job_tokens(prompt_chars: int, max_tokens: int) -> int:
    """A queued job's weight in tokens, before any tokenizer has seen it."""
    return max_tokens + prompt_chars // CHARS_PER_TOKEN


def queued_load() -> Select[Any, Any]:
    """The queued jobs, and their weight in tokens (as `job_tokens`, in SQL)."""
    chars = (
        func.coalesce(func.length(jobs.c.prompt), 0)
        + func.coalesce(func.length(cast(jobs.c.messages, Text)), 0)
        # A prompt of token ids: each id counted as the characters of a token.
        + func.coalesce(func.cardinality(jobs.c.prompt_token_ids), 0) * CHARS_PER_TOKEN
    )
    asked = cast(jobs.c.params["max_tokens"].astext, Integer)
    max_tokens = func.coalesce(asked, DEFAULT_MAX_TOKENS)
    tokens = func.coalesce(func.sum(max_tokens + chars // CHARS_PER_TOKEN), 0)
    return select(func.count(), tokens).where(jobs.c.status == JobStatus.QUEUED)


def queued_jobs(owner: uuid.UUID | None = None) -> Select[Any]:
    query = select(func.count()).where(jobs.c.status == JobStatus.QUEUED)
    return query if owner is None else query.where(jobs.c.owner_id == owner)


def tokens_since(owner: uuid.UUID, since: datetime) -> Select[Any]:
    tokens = func.coalesce(jobs.c.prompt_tokens, 0) + func.coalesce(jobs.c.completion_tokens, 0)
    return select(func.coalesce(func.sum(tokens), 0)).where(
        jobs.c.owner_id == owner, jobs.c.finished_at >= since
    )
