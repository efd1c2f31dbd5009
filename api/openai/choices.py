"""A /v1 request's `n` choices: each is a job of its own (durable, visible at GET /jobs/{id}),
submitted together, and followed together into one answer or one stream."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

from api.core.callers import Caller
from api.core.limits import admit, input_tokens
from api.core.resources import Resources
from api.jobs.schemas import JobCreate
from api.jobs.service import new_job_row
from api.jobs.services import JobServices

T = TypeVar("T")

_SEED_SPAN = 2**63


def choice_jobs(job: JobCreate, n: int) -> list[JobCreate]:
    """The job of each choice. With a seed, choice i samples with seed + i: reproducible, and
    not n copies of one answer."""
    if n == 1 or job.seed is None:
        return [job] * n
    return [job.model_copy(update={"seed": (job.seed + i) % _SEED_SPAN}) for i in range(n)]


async def submit_choices(
    resources: Resources,
    services: JobServices,
    caller: Caller,
    jobs: list[JobCreate],
    body: dict[str, Any],
) -> list[Mapping[Any, Any]]:
    """All or none admitted; submitted at once, so the submitter writes them in one INSERT."""
    await admit(resources, caller, len(jobs), sum(input_tokens(job) for job in jobs))
    user = body.get("user")
    metadata = {"user": user} if isinstance(user, str) else None
    rows = [new_job_row(job, resources.settings, caller, metadata=metadata) for job in jobs]
    submitted = await asyncio.gather(*(services.submitter.submit(row) for row in rows))
    assert all(row is not None for row in submitted)  # no idempotency key: no conflict
    return [row for row in submitted if row is not None]


async def merged(streams: Sequence[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T], None]:
    """The items of all streams as they come, each with its stream's index; an error in one
    ends all."""
    queue: asyncio.Queue[tuple[int, T | None, BaseException | None, bool]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item, None, False))
        except Exception as exc:
            await queue.put((index, None, exc, True))
            return
        await queue.put((index, None, None, True))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item, error, done = await queue.get()
            if error is not None:
                raise error
            if done:
                running -= 1
                continue
            yield index, item  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
