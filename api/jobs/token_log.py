"""Reads a job's token log (a Redis Stream) written by the workers."""

from typing import Any

from redis.asyncio import Redis

from vqueue.contract.wire import EntryKind, LogEntry, entry_from_stream, token_log_key


async def read_after(redis: Redis, job_id: str, attempt: int, position: int) -> list[LogEntry]:
    """Entries of `attempt` ending past `position` characters, then those of later attempts."""
    rows = await redis.xrange(token_log_key(job_id), min=f"{max(attempt, 0)}-{position + 1}")
    return _entries(job_id, rows)


async def text_so_far(redis: Redis, job_id: str, attempt: int) -> str:
    rows = await redis.xrange(token_log_key(job_id), min=f"{attempt}-0", max=f"{attempt}")
    entries = _entries(job_id, rows)
    return "".join(entry.text for entry in entries if entry.kind is EntryKind.DELTA)


def _entries(job_id: str, rows: Any) -> list[LogEntry]:
    return [entry_from_stream(job_id, _str(sid), _fields(raw)) for sid, raw in rows or ()]


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {_str(key): _str(value) for key, value in raw.items()}


async def log_exists(redis: Redis, job_id: str) -> bool:
    return bool(await redis.exists(token_log_key(job_id)))
