"""Process-wide resources, built in the app's lifespan and injected into routes."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine

from api.core.callers import KeyCache
from api.core.coalesce import ReadCoalescer
from api.core.hub import EventHub
from api.core.queue_depth import QueueDepth
from api.jobs.context_check import ContextCheck
from api.jobs.rows import JobRows
from api.jobs.submitter import Submitter
from vqueue.contract.queueing import JobQueue
from vqueue.gc_heap import GcPauses
from vqueue.loops.batch_feeder import BatchFeeder
from vqueue.settings import Settings


@dataclass
class Resources:
    settings: Settings
    db: AsyncEngine
    redis: Redis
    hub: EventHub
    queue: JobQueue
    submitter: Submitter
    feeder: BatchFeeder
    keys: KeyCache
    depth: QueueDepth
    reads: ReadCoalescer
    job_rows: JobRows
    gc_pauses: GcPauses
    context: ContextCheck


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def first_row(db: AsyncEngine, statement: Executable) -> Mapping[Any, Any] | None:
    """The first row a read-only statement returns, or None, on a connection of its own."""
    async with db.connect() as conn:
        return (await conn.execute(statement)).mappings().first()


async def all_rows(db: AsyncEngine, statement: Executable) -> list[Mapping[Any, Any]]:
    """Every row a read-only statement returns, on a connection of its own."""
    async with db.connect() as conn:
        return list((await conn.execute(statement)).mappings().all())
