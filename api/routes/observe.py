"""GET /stats (the queue at a glance, JSON) and GET /metrics (Prometheus)."""

import os
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.deps import Resources, ResourcesDep
from api.routes.health import worker_descriptions
from db.stats import oldest_queued, open_batches, queued_by_priority, running_jobs
from vqueue.metrics import METRICS_KEY, Exposition
from vqueue.task_messages import queue_key

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


def _broker_depths(resources: Resources) -> list[int]:
    pipe = resources.queue.broker.pipeline(transaction=False)
    for priority in range(10):
        pipe.llen(queue_key(resources.settings.queue_name, priority))
    return [int(n) for n in pipe.execute()]


async def _gather(resources: Resources) -> tuple[QueueStats, dict[str, str]]:
    async with resources.db.connect() as conn:
        by_priority = (await conn.execute(queued_by_priority())).all()
        running = (await conn.execute(running_jobs())).scalar_one()
        oldest = (await conn.execute(oldest_queued())).scalar_one()
        batches = (await conn.execute(open_batches())).scalar_one()
    raw = await resources.redis.hgetall(METRICS_KEY)
    fields = {_text(key): _text(value) for key, value in raw.items()}
    workers = await worker_descriptions(resources)
    stats = QueueStats(
        backlog=sum(count for _, count, _ in by_priority),
        backlog_by_priority={priority: count for priority, count, _ in by_priority},
        in_broker=sum(released for _, _, released in by_priority),
        running=running,
        oldest_queued_s=None if oldest is None else round(float(oldest), 3),
        open_batches=batches,
        runners=len(workers),
        workers=workers,
        tokens_per_s=round(sum(w.get("tokens_per_s", 0.0) for w in workers), 1),
        finished={
            key.removeprefix("finished:"): int(value)
            for key, value in fields.items()
            if key.startswith("finished:")
        },
        output_tokens=int(fields.get("output_tokens", 0)),
    )
    return stats, fields


@router.get("/stats", response_model=QueueStats)
async def stats(resources: ResourcesDep) -> QueueStats:
    """Backlog, running jobs, live workers ("runners") with their model, GPU, engine settings
    and load, recent tokens/s and the oldest waiting job's age."""
    return (await _gather(resources))[0]


def _gc_metrics(
    out: Exposition, part: str, processes: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    """Garbage collection by generation: a long pause stalls every stream of the process.
    The API's figures are the answering process's own (one of VQUEUE_API_WORKERS)."""
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


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(resources: ResourcesDep) -> PlainTextResponse:
    """Prometheus text format (version 0.0.4)."""
    stats, fields = await _gather(resources)
    # kombu keeps one list per priority step: priorities sharing a step share its length.
    depths = await anyio.to_thread.run_sync(_broker_depths, resources)
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
    here = resources.gc_pauses.snapshot()
    _gc_metrics(out, "api", [({"pid": os.getpid()}, here)])
    return PlainTextResponse(out.text(), media_type="text/plain; version=0.0.4")
