"""What a submit must pass before anything is written: the key's own limits (429) and the
global bound on the queue (503). Each answer carries Retry-After.

- queued jobs per key: the key's jobs waiting now, plus the ones being submitted;
- tokens per key per day (UTC): prompt and output tokens of its jobs finished today. A job
  is admitted while the key is under its limit, so the last one may take it past the limit;
- the queue, all keys together, in jobs and in tokens (each job's max_tokens plus its
  prompt at about four characters a token): a backlog of a few very long jobs is refused as
  one of many jobs is, before their wait grows without end. Counted at most once
  a second per API process, so a bound may be overshot by one second's submits.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from api.core.callers import Caller
from api.core.errors import OverloadedError, TooManyRequestsError
from api.core.resources import Resources
from db.queue_load import CHARS_PER_TOKEN, job_tokens, queued_jobs, tokens_since

# Retry-After for a full queue: long enough for the workers to drain some of it.
QUEUE_FULL_RETRY_S = 5


def input_tokens(job: Any) -> int:
    """`job_tokens` of a JobCreate or a batch line (a prompt, messages or token ids, and
    max_tokens)."""
    chars = len(job.prompt or "") + sum(message.size for message in job.messages or [])
    chars += len(job.prompt_token_ids or ()) * CHARS_PER_TOKEN
    return job_tokens(chars, job.max_tokens)


async def admit(resources: Resources, caller: Caller, new_jobs: int, new_tokens: int) -> None:
    """Raise unless `new_jobs` more jobs, of `new_tokens` tokens (`job_tokens`), may be queued
    for this caller now."""
    depth, settings = resources.depth, resources.settings
    await depth.refresh()
    if depth.jobs + new_jobs > settings.max_queued_jobs:
        raise OverloadedError(
            f"the queue is full ({settings.max_queued_jobs} jobs waiting); try again shortly",
            QUEUE_FULL_RETRY_S,
        )
    if depth.tokens + new_tokens > settings.max_queued_tokens:
        raise OverloadedError(
            f"the queue is full ({depth.tokens} tokens waiting, of at most "
            f"{settings.max_queued_tokens}); try again shortly",
            QUEUE_FULL_RETRY_S,
        )
    if caller.max_queued_jobs is None and caller.tokens_per_day is None:
        return
    async with resources.db.connect() as conn:
        if (limit := caller.max_queued_jobs) is not None:
            waiting = (await conn.execute(queued_jobs(caller.owner_id))).scalar_one()
            if waiting + new_jobs > limit:
                raise TooManyRequestsError(
                    f"this key may have {limit} jobs queued; it has {waiting} and this request "
                    f"adds {new_jobs}",
                    QUEUE_FULL_RETRY_S,
                )
        if (limit := caller.tokens_per_day) is not None:
            now = datetime.now(UTC)
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            used = (await conn.execute(tokens_since(caller.owner_id, midnight))).scalar_one()
            if used >= limit:
                tomorrow = midnight + timedelta(days=1)
                raise TooManyRequestsError(
                    f"this key has used its {limit} tokens for today (UTC)",
                    int((tomorrow - now).total_seconds()) + 1,
                )
    depth.add(new_jobs, new_tokens)
