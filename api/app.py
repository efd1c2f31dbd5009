"""The FastAPI application: resources built in the lifespan, routes, one error shape."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.batches import routes as batches
from api.core.auth import authenticate
from api.core.background import BackgroundTask
from api.core.body_limit import BodyLimitMiddleware
from api.core.callers import KeyCache
from api.core.coalesce import ReadCoalescer
from api.core.error_schemas import ErrorBody, ErrorResponse
from api.core.errors import install_error_handlers, shaped_response
from api.core.hub import EventHub
from api.core.queue_depth import QueueDepth
from api.core.redis_pool import redis_client
from api.core.resources import Resources, all_rows
from api.core.served_tokenizer import ServedTokenizer
from api.core.serving_settings import ServingSettingsMiddleware
from api.jobs import routes as jobs
from api.jobs import stream_routes as stream
from api.jobs.context_check import ContextCheck
from api.jobs.rows import JobRows
from api.jobs.services import JobServices
from api.jobs.submitter import Submitter
from api.jobs.waiting import WaitEstimator
from api.openai import batch_routes as openai_batches
from api.openai import file_routes as openai_files
from api.openai import resume_routes as resume
from api.openai import routes as openai
from api.openai import tokenize_routes as tokenize
from api.openai.errors import OPENAI_PREFIX
from api.ops import health_routes as health
from api.ops import observe_routes as observe
from api.ops import page_routes as page
from api.ops.live_workers import LiveWorkers
from api.ops.process_beat import ProcessBeat
from api.responses import routes as responses
from api.webhooks import routes as webhooks
from api.webhooks.dispatcher import Dispatcher
from db.engine import make_async_engine, make_sync_engine
from db.jobs import get_jobs
from vqueue.contract.queueing import JobQueue
from vqueue.gc_heap import GcPauses, freeze_startup_heap
from vqueue.logs import configure_logging
from vqueue.loops.batch_feeder import BatchFeeder
from vqueue.loops.reconciler import Reconciler
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
    redis = redis_client(settings, settings.redis_url)
    hub = EventHub(redis)
    hub.start()
    queue = JobQueue.from_settings(settings)
    broker = redis_client(settings, settings.effective_broker_url)
    workers = LiveWorkers(redis)
    workers.start()
    submitter = Submitter(db, broker, settings.queue_name, settings.jobs_per_message, workers)
    submitter.start()
    # The reconciler's and the batch feeder's threads, one connection each.
    background_db = make_sync_engine(
        settings.database_url, pool_size=2, idle_in_transaction_s=settings.lease_s
    )
    reconciler = Reconciler(settings, background_db, queue)
    reconciler.start()
    feeder = BatchFeeder(settings, background_db, queue)
    feeder.start()
    keys = KeyCache(settings.key_cache_s, settings.auth_failures_per_minute)
    depth = QueueDepth(db)
    gc_pauses = GcPauses().install()
    beat = ProcessBeat(redis, gc_pauses, settings.worker_heartbeat_s)
    tokenizer = ServedTokenizer(settings)
    tokenizer.start()
    context = ContextCheck(settings, workers, tokenizer)
    app.state.resources = Resources(settings, db, redis, queue, keys, depth, ReadCoalescer())
    app.state.jobs = JobServices(
        submitter,
        context,
        JobRows(lambda job_ids: all_rows(db, get_jobs(job_ids))),
        hub,
        WaitEstimator(db, lambda: workers.max_jobs),
    )
    app.state.feeder = feeder
    app.state.process_beat = beat
    # This process's event loop serves every stream it holds: a full collection over the
    # startup heap (tens of milliseconds) would stall them all (vqueue/gc_heap.py).
    freeze_startup_heap()
    beat.start()
    dispatcher = Dispatcher(settings, db, redis)
    deliveries = BackgroundTask("webhooks", dispatcher.run)
    deliveries.start()
    try:
        yield
    finally:
        await deliveries.close()
        await dispatcher.close()
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
    # Everything but the page, its assets and the probes needs a key (api/core/auth.py).
    keyed = [Depends(authenticate)]
    for module in (jobs, batches, stream, observe, webhooks):
        app.include_router(module.router, dependencies=keyed, responses=ERRORS)
    for module in (openai, resume, responses, openai_files, openai_batches, tokenize):
        app.include_router(module.router, dependencies=keyed)
    app.include_router(observe.scrape_router)
    app.include_router(health.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, settings=app.state.settings)
    app.add_middleware(ServingSettingsMiddleware, settings=app.state.settings)
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
