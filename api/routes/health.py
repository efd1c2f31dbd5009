"""Liveness and readiness."""

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import Resources, ResourcesDep
from api.live_workers import worker_keys

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


async def worker_descriptions(resources: Resources) -> list[dict[str, Any]]:
    """What each live worker announces in its heartbeat (model, engine settings, load)."""
    keys = await worker_keys(resources.redis)
    values = await resources.redis.mget(keys) if keys else []
    return [orjson.loads(value) for value in values if value]


@router.get("/ready")
async def ready(resources: ResourcesDep) -> JSONResponse:
    """Postgres and Redis answer and at least one worker has its engine loaded: 200, else 503."""
    checks: dict[str, object] = {}
    try:
        async with resources.db.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except (SQLAlchemyError, OSError) as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    workers = []
    try:
        workers = await worker_descriptions(resources)
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    checks["workers"] = workers
    healthy = checks["postgres"] == "ok" and checks["redis"] == "ok" and bool(workers)
    return JSONResponse({"ready": healthy, **checks}, status_code=200 if healthy else 503)
