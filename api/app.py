"""The FastAPI application: resources built in the lifespan, routes, one error shape."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.body_limit import BodyLimitMiddleware
from api.deps import Resources
from api.errors import install_error_handlers, shaped_response
from api.hub import EventHub
from api.routes import batches, health, jobs, observe, openai, openai_batches, page, stream
from api.schemas import ErrorBody
from api.submitter import Submitter
from db.engine import make_async_engine, make_sync_engine
from vqueue.batch_feeder import BatchFeeder
from vqueue.logs import configure_logging
from vqueue.queueing import JobQueue
from vqueue.reconciler import Reconciler
from vqueue.settings import Settings, get_settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db = make_async_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    hub = EventHub(redis)
    hub.start()
    queue = JobQueue(settings.effective_broker_url, settings.redis_url, settings.queue_name)
    broker = Redis.from_url(
        settings.effective_broker_url, socket_timeout=5, socket_connect_timeout=2
    )
    submitter = Submitter(db, broker, settings.queue_name)
    submitter.start()
    # The reconciler's and the batch feeder's threads, one connection each.
    background_db = make_sync_engine(settings.database_url, pool_size=2)
    reconciler = Reconciler(settings, background_db, queue)
    reconciler.start()
    feeder = BatchFeeder(settings, background_db, queue)
    feeder.start()
    app.state.resources = Resources(settings, db, redis, hub, queue, submitter, feeder)
    try:
        yield
    finally:
        feeder.close()
        reconciler.close()
        background_db.dispose()
        await submitter.close()
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
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(openai.router)
    app.include_router(openai_batches.router)
    app.include_router(stream.router)
    app.include_router(health.router)
    app.include_router(observe.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, settings=app.state.settings)
    return app
