"""Liveness and readiness."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from api.core.resources import ResourcesDep
from api.ops.live_workers import worker_descriptions
from db.engine import ping

router = APIRouter(tags=["health"])
try:
    _VQUEUE_VERSION = package_version("vqueue")
except PackageNotFoundError:  # run from a source tree that was not installed (a GPU host)
    _VQUEUE_VERSION = "0+source"


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/version")
async def version(resources: ResourcesDep) -> dict[str, str | None]:
    """As vLLM's server answers it: `version` is the vLLM release the live workers run (null
    while none is live); `vqueue` is this API's own."""
    workers = await worker_descriptions(resources.redis)
    releases = sorted({worker["vllm_version"] for worker in workers})
    return {"version": releases[0] if releases else None, "vqueue": _VQUEUE_VERSION}


@router.get("/ready")
async def ready(resources: ResourcesDep) -> JSONResponse:
    """Postgres and Redis answer and at least one worker has its engine loaded: 200, else 503."""
    checks: dict[str, object] = {}
    try:
        async with resources.db.connect() as conn:
            await conn.execute(ping())
        checks["postgres"] = "ok"
    except (SQLAlchemyError, OSError) as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    workers = []
    try:
        workers = await worker_descriptions(resources.redis)
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    checks["workers"] = workers
    healthy = checks["postgres"] == "ok" and checks["redis"] == "ok" and bool(workers)
    return JSONResponse({"ready": healthy, **checks}, status_code=200 if healthy else 503)
