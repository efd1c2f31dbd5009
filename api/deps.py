"""Process-wide resources, built in the app's lifespan and injected into routes."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from api.coalesce import ReadCoalescer
from api.hub import EventHub
from api.submitter import Submitter
from vqueue.batch_feeder import BatchFeeder
from vqueue.queueing import JobQueue
from vqueue.settings import Settings

if TYPE_CHECKING:  # both import this module
    from api.auth import KeyCache
    from api.limits import QueueDepth


@dataclass
class Resources:
    settings: Settings
    db: AsyncEngine
    redis: Redis
    hub: EventHub
    queue: JobQueue
    submitter: Submitter
    feeder: BatchFeeder
    keys: "KeyCache"
    depth: "QueueDepth"
    reads: ReadCoalescer


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]
