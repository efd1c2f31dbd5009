"""The FastAPI application: resources built in the lifespan, routes, one error shape."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.auth import KeyCache, authenticate
from api.body_limit import BodyLimitMiddleware
from api.coalesce import ReadCoalescer
from api.deps import Resources, all_rows
from api.errors import install_error_handlers, shaped_response
from api.hub import EventHub
from api.job_rows import JobRows
from api.limits import QueueDepth
from api.live_workers import LiveWorkers
from api.openai_errors import OPENAI_PREFIX
from api.process_beat import ProcessBeat
from api.routes import batches, health, jobs, observe, openai, openai_batches, page, stream
from api.schemas import ErrorBody, ErrorResponse
from api.submitter import Submitter
from db.engine import make_async_engine, make_sync_engine
from db.jobs import get_jobs
from vqueue.batch_feeder import BatchFeeder
from vqueue.gc_heap import GcPauses, freeze_startup_heap
from vqueue.logs import configure_logging
from vqueue.queueing import JobQueue
from vqueue.reconciler import Reconciler
from vqueue.settings import Settings, get_settings

log = logging.getLogger(__name__)

# What any keyed route may answer besides its own responses.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (401, "No valid API key"),
        (422, "Invalid request: each bad field is named in `details`"),
        (429, "Over one of this key's limits (see Retry-After)"),
        (503, "Postgres or Redis unavailable, or the queue full"),
    )
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db = make_async_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    hub = EventHub(redis)
    hub.start()
    queue = JobQueue.from_settings(settings)
    broker = Redis.from_url(
        settings.effective_broker_url, socket_timeout=5, socket_connect_timeout=2
    )
    workers = LiveWorkers(redis)
    workers.start()
    submitter = Submitter(db, broker, settings.queue_name, settings.jobs_per_message, workers)
    submitter.start()
    # The reconciler's and the batch feeder's threads, one connection each.
    background_db = make_sync_engine(settings.database_url, pool_size=2)
    reconciler = Reconciler(settings, background_db, queue)
    reconciler.start()
    feeder = BatchFeeder(settings, background_db, queue)
    feeder.start()
    keys = KeyCache(settings.key_cache_s)
    depth = QueueDepth(db)
    gc_pauses = GcPauses().install()
    beat = ProcessBeat(redis, gc_pauses, settings.worker_heartbeat_s)
    app.state.resources = Resources(
        settings,
        db,
        redis,
        hub,
        queue,
        submitter,
        feeder,
        keys,
        depth,
        ReadCoalescer(),
        JobRows(lambda job_ids: all_rows(db, get_jobs(job_ids))),
        gc_pauses,
    )
    # This process's event loop serves every stream it holds: a full collection over the
    # startup heap (~90 ms on the 2-core test machine) would stall them all (vqueue/gc_heap.py).
    freeze_startup_heap()
    beat.start()
    try:
        yield
    finally:
        await beat.close()
        gc_pauses.uninstall()
        feeder.close()
        reconciler.close()
        background_db.dispose()
        await submitter.close()
        await workers.close()
        await broker.aclose()
        await hub.close()
        queue.close()
        await redis.aclose()
        await db.dispose()


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    # Only connection-level failures are "unavailable"; other database errors are bugs (500).
    assert isinstance(exc, DBAPIError)
    if not exc.connection_invalidated and "connect" not in str(exc.orig).lower():
        raise exc
    log.warning("database unavailable: %s", exc.orig)
    body = ErrorBody(code="unavailable", message="the database is unavailable; try again shortly")
    return shaped_response(request, 503, body)


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database pool exhausted: %s", exc)
    body = ErrorBody(code="overloaded", message="the database is busy; try again shortly")
    return shaped_response(request, 503, body, {"Retry-After": "1"})


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", exc)
    body = ErrorBody(code="unavailable", message="redis is unavailable; try again shortly")
    return shaped_response(request, 503, body)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="vqueue",
        summary="A durable job queue for LLM inference",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    configure_logging(app.state.settings.log_format)
    install_error_handlers(app)
    app.add_exception_handler(DBAPIError, _database_down)
    app.add_exception_handler(PoolTimeoutError, _database_busy)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    # Everything but the page, its assets and the probes needs a key (api/auth.py).
    keyed = [Depends(authenticate)]
    for module in (jobs, batches, stream, observe):
        app.include_router(module.router, dependencies=keyed, responses=ERRORS)
    for module in (openai, openai_batches):
        app.include_router(module.router, dependencies=keyed)
    app.include_router(health.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, settings=app.state.settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, less the 422 it documents on /v1 routes: those answer 400."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        for path, operations in schema["paths"].items():
            if path.startswith(OPENAI_PREFIX):
                for operation in operations.values():
                    operation["responses"].pop("422", None)
        app.openapi_schema = schema
    return app.openapi_schema
