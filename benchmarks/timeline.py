"""Where a run's time to first token goes: the jobs' own timestamps from Postgres, as
milliseconds after the run began (the clients' first submit), for every stage a job passes.

The benchmark runs API, worker and clients on one host, so the clocks agree.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, select

from benchmarks.workload import spread
from db.schema import jobs

STAGES = {
    "committed": jobs.c.created_at,  # the row was inserted (the API's group commit)
    "claimed": jobs.c.started_at,  # a worker claimed it
    "first_token": jobs.c.first_token_at,  # the engine gave its first token
    "finished": jobs.c.finished_at,  # its result was stored (the worker's recorder)
}


def job_times(database_url: str, started: datetime) -> list[Any]:
    """The run's jobs as (worker, then one timestamp per stage), read once for every view."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(jobs.c.worker, *STAGES.values()).where(jobs.c.created_at >= started)
            return list(conn.execute(query).all())
    finally:
        engine.dispose()


def timeline(rows: list[Any], started: datetime) -> dict[str, Any]:
    """Per stage: first, median and last job, in ms after `started`; with several workers,
    the same for each worker's jobs under "workers" (how a burst was shared out)."""
    result: dict[str, Any] = _stages([row[1:] for row in rows], started)
    workers = sorted({row[0] for row in rows if row[0]})
    if len(workers) > 1:
        result["workers"] = {
            worker: {
                "jobs": sum(row[0] == worker for row in rows),
                **_stages([row[1:] for row in rows if row[0] == worker], started),
            }
            for worker in workers
        }
    return result


def claim_offsets(rows: list[Any], started: datetime) -> list[float]:
    """Seconds after `started` at which the run's jobs were claimed, earliest first."""
    claimed = 1 + list(STAGES).index("claimed")
    return sorted((row[claimed] - started).total_seconds() for row in rows if row[claimed])


def _stages(rows: list[Any], started: datetime) -> dict[str, dict[str, float | None]]:
    result: dict[str, dict[str, float | None]] = {}
    for index, stage in enumerate(STAGES):
        offsets = [(row[index] - started).total_seconds() * 1000 for row in rows if row[index]]
        result[stage] = spread(offsets)
    return result
