"""Records how runs ended: the results in Postgres (exactly once), then the end of each job's
token log and its metrics.

Runs that end together are recorded together: one UPDATE for all their results, one hop to
the engine loop for their log entries, one Redis pipeline for their metrics. A burst of jobs
of one length ends in the same engine step, and recording them one by one (three blocking
round trips each, every one waiting for the GIL beside the busy engine loop) delayed the last
of 256 by a good fraction of a second.
"""

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.jobs import AttemptResult, finish_jobs, hand_back_job
from db.states import JobStatus
from vqueue.contract import EntryKind, LogEntry
from vqueue.logs import job_context
from vqueue.metrics import observe_job
from vqueue.queueing import JobQueue
from worker.engine import EngineHost
from worker.publisher import TokenLogPublisher

log = logging.getLogger(__name__)

# Finished results are retried this long while Postgres is unreachable, rather than dropped.
FINISH_RETRY_S = 300.0

Row = Mapping[Any, Any]


@dataclass
class Outcome:
    status: JobStatus
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    first_token_at: datetime | None = None
    error: str | None = None
    handed_back: bool = False


class Recorder:
    def __init__(
        self, host: EngineHost, db: Engine, publisher: TokenLogPublisher, queue: JobQueue
    ) -> None:
        self.host = host
        self.db = db
        self.publisher = publisher
        self.queue = queue

    def record(self, ended: list[tuple[Row, Outcome]]) -> None:
        """Hand back the runs stopped for a shutdown; record the outcome of the others."""
        results: list[AttemptResult] = []
        rows: dict[uuid.UUID, Row] = {}
        for row, outcome in ended:
            if outcome.handed_back:
                self._hand_back(row["id"], row["attempt"])
                continue
            rows[row["id"]] = row
            results.append(
                AttemptResult(
                    row["id"],
                    row["attempt"],
                    outcome.status,
                    text=outcome.text,
                    finish_reason=outcome.finish_reason,
                    prompt_tokens=outcome.prompt_tokens,
                    completion_tokens=outcome.completion_tokens,
                    first_token_at=outcome.first_token_at,
                    error=outcome.error,
                )
            )
        if not results:
            return
        recorded = self._finish(results)
        ends = [
            LogEntry(str(r.job_id), r.attempt, EntryKind.END, len(r.text or ""), status=r.status)
            for r in recorded
        ]
        if ends:
            self.host.submit(self._publish(ends)).result()
        self._observe([(rows[r.job_id], r) for r in recorded])
        for r in recorded:
            with job_context(str(r.job_id)):
                log.info("job %s: %s, %d tokens", r.job_id, r.status, r.completion_tokens or 0)

    def _finish(self, results: list[AttemptResult]) -> list[AttemptResult]:
        """Write the results; the ones recorded (a newer attempt's job keeps its row)."""
        try:
            return self._write(results)
        except Exception as exc:
            if len(results) > 1:
                # One result Postgres refuses must not cost the others theirs.
                log.warning("saving %d results failed (%s); saving each alone", len(results), exc)
                return [kept for result in results for kept in self._finish([result])]
            (result,) = results
            # Never leave the job running with nobody working on it: record the failure.
            log.exception("job %s: saving the result failed", result.job_id)
            failed = AttemptResult(
                result.job_id,
                result.attempt,
                JobStatus.FAILED,
                completion_tokens=result.completion_tokens,
                error=f"saving the result failed: {exc}",
            )
            return self._write([failed])

    def _write(self, results: list[AttemptResult]) -> list[AttemptResult]:
        statement = finish_jobs(results)
        deadline = time.monotonic() + FINISH_RETRY_S
        delay = 0.5
        while True:
            try:
                with self.db.begin() as conn:
                    written = set(conn.execute(statement).scalars())
                break
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("saving %d results failed, retrying: %s", len(results), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        for result in results:
            if result.job_id not in written:
                log.warning(
                    "job %s: attempt %d superseded, result dropped", result.job_id, result.attempt
                )
        return [result for result in results if result.job_id in written]

    async def _publish(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            flushed = self.publisher.add(entry)
        await flushed  # one flush carries them all: nothing yielded between the adds

    def _observe(self, recorded: list[tuple[Row, AttemptResult]]) -> None:
        """The runs' latencies and tokens, for GET /metrics."""
        if not recorded:
            return
        try:
            pipe = self.queue.redis.pipeline(transaction=False)
            for row, result in recorded:
                observe_job(
                    pipe,
                    status=result.status,
                    created_at=row["created_at"],
                    started_at=row["started_at"],
                    first_token_at=result.first_token_at,
                    finished_at=datetime.now(UTC),
                    completion_tokens=result.completion_tokens or 0,
                )
            pipe.execute()
        except RedisError as exc:
            log.warning("metrics of %d jobs not recorded: %s", len(recorded), exc)

    def _hand_back(self, job_id: uuid.UUID, attempt: int) -> None:
        with self.db.begin() as conn:
            row = conn.execute(hand_back_job(job_id, attempt)).first()
        if row is not None:
            self.queue.send(str(job_id), row.priority)
            with job_context(str(job_id)):
                log.info("job %s: handed back to the queue", job_id)
