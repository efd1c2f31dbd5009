"""Jobs that an API request ended (cancelled while queued) are announced like every other end:
one END entry per job for its stream readers and the finished-jobs counter, through
JobQueue.announce_ended, off the event loop."""

import logging
from collections.abc import Sequence

import anyio
from redis.exceptions import RedisError

from api.core.resources import Resources

log = logging.getLogger(__name__)


async def announce_ended(
    resources: Resources, ended: Sequence[tuple[str, int]], status: str, what: str
) -> None:
    """`ended`: (job id, attempt) pairs. The jobs' rows are already final, so a Redis that
    cannot be reached only delays their readers (a quiet stream checks the row): logged, not
    raised."""
    try:
        retention = resources.settings.stream_retention_s
        await anyio.to_thread.run_sync(resources.queue.announce_ended, ended, status, retention)
    except (RedisError, OSError) as exc:
        log.warning("%s: the end was not announced to streams: %s", what, exc)
