"""Process-wide resources that every feature shares, built in the app's lifespan and injected
into routes."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine

from api.core.callers import KeyCache
from api.core.coalesce import ReadCoalescer
from api.core.queue_depth import QueueDepth
from vqueue.contract.queueing import JobQueue
from vqueue.settings import Settings


@dataclass
class Resources:
    """What every feature needs: settings, the stores, the queue, and what authentication and
    admission read. A feature's own services live in its folder (api/jobs/services.py,
    api/batches/service.py, api/ops/observe_routes.py)."""

    settings: Settings
    db: AsyncEngine
    redis: Redis
    queue: JobQueue
    keys: KeyCache
    depth: QueueDepth
    reads: ReadCoalescer


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
async def get_resources(request: Request) -> Resources:
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
