"""Reads a job's token log (a Redis Stream) written by the workers."""

from redis.asyncio import Redis

from vqueue.contract.wire import EntryKind, LogEntry, entries_from_xrange, token_log_key


async def read_after(redis: Redis, job_id: str, attempt: int, position: int) -> list[LogEntry]:
    """Entries of `attempt` ending past `position` characters, then those of later attempts."""
    rows = await redis.xrange(token_log_key(job_id), min=f"{max(attempt, 0)}-{position + 1}")
    return entries_from_xrange(job_id, rows)


async def text_so_far(redis: Redis, job_id: str, attempt: int) -> str:
    rows = await redis.xrange(token_log_key(job_id), min=f"{attempt}-0", max=f"{attempt}")
    entries = entries_from_xrange(job_id, rows)
    return "".join(entry.text for entry in entries if entry.kind is EntryKind.DELTA)


async def log_exists(redis: Redis, job_id: str) -> bool:
    return bool(await redis.exists(token_log_key(job_id)))
