"""GET /stats (the queue at a glance, JSON) and GET /metrics (Prometheus)."""

import secrets
import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from api.core.auth import CallerDep, authenticate
from api.core.error_schemas import ErrorResponse
from api.core.errors import ForbiddenError
from api.core.resources import Resources, ResourcesDep
from api.ops.live_workers import worker_descriptions
from api.ops.process_beat import ProcessBeat, api_processes
from api.ops.vllm_metrics import add_vllm_metrics
from api.webhooks.metrics import add_webhook_metrics
from db.stats import (
    finished_by_status,
    oldest_queued,
    open_batches,
    queued_by_priority,
    running_jobs,
    webhook_backlog,
)
from vqueue.contract.metrics import METRICS_KEY, RESTARTS_PREFIX, Exposition
from vqueue.contract.task_messages import queue_key
from vqueue.contract.wire import WorkerHeartbeat

router = APIRouter(tags=["observability"])


class QueueStats(BaseModel):
    backlog: int = Field(description="Jobs waiting to start (batch jobs not yet released too)")
    backlog_by_priority: dict[int, int]
    in_broker: int = Field(description="Waiting jobs whose message is in the broker")
    running: int
    oldest_queued_s: float | None = Field(description="How long the oldest waiting job waited")
    open_batches: int
    runners: int = Field(description="Live workers with their engine loaded")
    workers: list[dict[str, Any]] = Field(description="Each worker's model, GPU, engine, load")
    tokens_per_s: float = Field(description="Output tokens per second over the last heartbeat")
    finished: dict[str, int] = Field(description="Jobs ended, by final state")
    output_tokens: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _gather(
    resources: Resources, scope: uuid.UUID | None = None
) -> tuple[QueueStats, dict[str, str]]:
    """The queue's figures; with a scope (a key that is not an admin), that key's own jobs'
    and batches', and of the workers no more than their models."""
    # One snapshot for all of them: read statement by statement, a job that finished between
    # two reads was counted as running and as finished.
    async with resources.db.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            by_priority = (await conn.execute(queued_by_priority(scope))).all()
            running = (await conn.execute(running_jobs(scope))).scalar_one()
            oldest = (await conn.execute(oldest_queued(scope))).scalar_one()
            batches = (await conn.execute(open_batches(scope))).scalar_one()
            own = [] if scope is None else (await conn.execute(finished_by_status(scope))).all()
    raw = await resources.redis.hgetall(METRICS_KEY)
    fields = {_text(key): _text(value) for key, value in raw.items()}
    workers = await worker_descriptions(resources.redis)
    if scope is None:
        finished = {
            key.removeprefix("finished:"): int(value)
            for key, value in fields.items()
            if key.startswith("finished:")
        }
        output_tokens = int(fields.get("output_tokens", 0))
    else:
        finished = {status: count for status, count, _ in own}
        output_tokens = sum(int(tokens) for _, _, tokens in own)
    stats = QueueStats(
        backlog=sum(count for _, count, _ in by_priority),
        backlog_by_priority={priority: count for priority, count, _ in by_priority},
        in_broker=sum(released for _, _, released in by_priority),
        running=running,
        oldest_queued_s=None if oldest is None else round(float(oldest), 3),
        open_batches=batches,
        runners=len(workers),
        workers=workers if scope is None else [_public(worker) for worker in workers],
        tokens_per_s=round(sum(w["tokens_per_s"] for w in workers), 1),
        finished=finished,
        output_tokens=output_tokens,
    )
    return stats, fields


def _public(worker: WorkerHeartbeat) -> dict[str, Any]:
    """What a key that is not an admin learns of a worker: what it serves, not where."""
    return {"model": worker["model"], "max_model_len": worker["max_model_len"]}


@router.get("/stats", response_model=QueueStats)
async def stats(resources: ResourcesDep, caller: CallerDep) -> QueueStats:
    """Backlog, running jobs, live workers ("runners") with their model, GPU, engine settings
    and load, recent tokens/s and the oldest waiting job's age. A key that is not an admin
    sees its own jobs and batches only, and of the workers only their models."""
    return (await _gather(resources, caller.scope))[0]


def _gc_metrics(
    out: Exposition, part: str, processes: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    """Garbage collection by generation: a long pause stalls every stream of the process.
    Each API process reports its own in its beat (api/ops/process_beat.py)."""
    by_generation = [
        ({**labels, "generation": g}, gc) for labels, gc in processes for g in range(3)
    ]
    out.metric(
        f"vqueue_{part}_gc_collections_total",
        "counter",
        f"Garbage collections in the {part} process",
        [(labels, gc["collections"][labels["generation"]]) for labels, gc in by_generation],
    )
    out.metric(
        f"vqueue_{part}_gc_pause_seconds_total",
        "counter",
        f"Time the {part} process stood still in garbage collections",
        [(labels, gc["pause_ms"][labels["generation"]] / 1000) for labels, gc in by_generation],
    )


# Not behind the API-key dependency of the other routes: a scraper sends its own token.
scrape_router = APIRouter(tags=["observability"])
_bearer = HTTPBearer(auto_error=False, description="An admin key, or VQUEUE_METRICS_TOKEN")


async def scrape_access(
    request: Request,
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The scrape token, or an admin key: the figures are the whole queue's, every key's."""
    token = resources.settings.metrics_token
    if credentials is not None and token and secrets.compare_digest(credentials.credentials, token):
        return
    caller = await authenticate(request, resources, credentials)
    if not caller.admin:
        raise ForbiddenError("/metrics needs an admin key or the scrape token")


@scrape_router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(scrape_access)],
    responses={
        status: {"model": ErrorResponse, "description": description}
        for status, description in (
            (401, "No valid API key or scrape token"),
            (403, "A key that is not an admin"),
            (429, "Too many invalid keys from this address (see Retry-After)"),
            (503, "Postgres or Redis unavailable"),
        )
    },
)
async def metrics(request: Request, resources: ResourcesDep) -> PlainTextResponse:
    """Prometheus text format (version 0.0.4), for an admin key or VQUEUE_METRICS_TOKEN."""
    stats, fields = await _gather(resources)
    beat: ProcessBeat = request.app.state.process_beat
    # kombu keeps one list per priority step: priorities sharing a step share its length.
    depths = await anyio.to_thread.run_sync(resources.queue.depths)
    steps = sorted({queue_key(resources.settings.queue_name, p): p for p in range(10)}.values())
    out = Exposition()
    out.metric(
        "vqueue_queue_depth",
        "gauge",
        "Jobs waiting to start, by priority (0 runs first)",
        [({"priority": p}, n) for p, n in sorted(stats.backlog_by_priority.items())],
    )
    out.metric(
        "vqueue_broker_messages",
        "gauge",
        "Task messages in the broker's list for each priority step",
        [({"priority": p}, depths[p]) for p in steps],
    )
    out.metric("vqueue_jobs_running", "gauge", "Jobs running on a worker", [({}, stats.running)])
    out.metric(
        "vqueue_oldest_queued_seconds",
        "gauge",
        "Age of the longest-waiting queued job",
        [({}, stats.oldest_queued_s or 0.0)],
    )
    out.metric("vqueue_batches_open", "gauge", "Batches in progress", [({}, stats.open_batches)])
    out.metric(
        "vqueue_jobs_finished_total",
        "counter",
        "Jobs ended, by final state (worker runs, cancels while queued, expiries)",
        [({"status": s}, n) for s, n in sorted(stats.finished.items())],
    )
    out.metric(
        "vqueue_output_tokens_total",
        "counter",
        "Tokens generated by finished runs",
        [({}, stats.output_tokens)],
    )
    out.histograms(fields)
    out.phase_histogram(fields)
    out.metric(
        "vqueue_process_restarts_total",
        "counter",
        "Restarts of a stack process by its supervisor, after it died",
        [
            ({"process": name.removeprefix(RESTARTS_PREFIX)}, float(count))
            for name, count in sorted(fields.items())
            if name.startswith(RESTARTS_PREFIX)
        ],
    )
    out.metric(
        "vqueue_workers", "gauge", "Live workers with an engine loaded", [({}, stats.runners)]
    )
    per_worker = [({"worker": w["name"], "model": w.get("model")}, w) for w in stats.workers]
    for key, name, kind, help_text in (
        ("running", "vqueue_worker_running_jobs", "gauge", "Jobs in the worker's engine"),
        ("waiting", "vqueue_worker_waiting_jobs", "gauge", "Jobs in the engine with no token yet"),
        ("concurrency", "vqueue_worker_slots", "gauge", "Jobs the worker takes at once"),
        ("tokens_per_s", "vqueue_worker_tokens_per_second", "gauge", "Recent output rate"),
        ("output_tokens", "vqueue_worker_output_tokens_total", "counter", "Tokens generated"),
    ):
        out.metric(name, kind, help_text, [(labels, w.get(key, 0)) for labels, w in per_worker])
    # The engine's own scheduler figures, from workers that report them (VQUEUE_ENGINE_STATS).
    engines = [(labels, w["engine"]) for labels, w in per_worker if w.get("engine")]
    for key, name, help_text in (
        ("running", "vqueue_engine_running_requests", "Requests the engine is scheduling"),
        ("waiting", "vqueue_engine_waiting_requests", "Requests waiting in the engine"),
        ("kv_cache_usage", "vqueue_engine_kv_cache_usage_ratio", "Share of KV-cache blocks used"),
    ):
        out.metric(name, "gauge", help_text, [(labels, e[key]) for labels, e in engines])
    _gc_metrics(out, "worker", [(labels, w["gc"]) for labels, w in per_worker if w.get("gc")])
    async with resources.db.connect() as conn:
        pending, overdue_s = (await conn.execute(webhook_backlog())).one()
    add_webhook_metrics(out, pending, overdue_s, fields)
    beats = await api_processes(resources.redis, beat)
    _gc_metrics(out, "api", [({"process": b["name"]}, b["gc"]) for b in beats])
    add_vllm_metrics(
        out,
        model_name=resources.settings.model_name,
        backlog=stats.backlog,
        workers=stats.workers,
        fields=fields,
    )
    return PlainTextResponse(out.text(), media_type="text/plain; version=0.0.4")
