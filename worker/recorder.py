"""Records how runs ended: the results in Postgres (exactly once), then the end of each job's
token log and its metrics.

Runs that end together are recorded together, whatever message they came in: a recorder
thread (worker/gather.py; two of them, so that a round never waits for another) takes every
ended run that has gathered and writes one UPDATE for all their results, makes one hop to the
engine loop for their log entries and one Redis pipeline for their metrics. A burst of jobs
of one length ends within a few engine steps. Recorded one by one (three blocking round trips
each, every one waiting for the GIL beside the busy engine loop) the last of 256 waited a good
fraction of a second; recorded by the thread of their message, one after another as they
ended, the last of a message of 64 waited behind the other 63, and a GPU run's throughput
fell from 0.91 to 0.84 of bare.
"""

import logging
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.attempts import AttemptResult, ClaimedJob, finish_jobs, hand_back_job
from db.states import JobStatus
from vqueue.contract.metrics import FinishedRuns
from vqueue.contract.phases import Phase, PhaseTiming
from vqueue.contract.queueing import JobQueue
from vqueue.contract.tools import ToolUse
from vqueue.contract.wire import EntryKind, LogEntry
from vqueue.logs import job_context
from worker.engine import EngineHost
from worker.gather import Gatherer
from worker.phase_events import PhaseEvents
from worker.publisher import TokenLogPublisher
from worker.tool_calls import ToolCallReader

log = logging.getLogger(__name__)

# Finished results are retried this long while Postgres is unreachable, rather than dropped.
FINISH_RETRY_S = 300.0
# Runs per round: bounded, so one statement never carries an unbounded amount of text.
MAX_RECORD = 512
# Rounds written at once. A burst's runs end over a few engine steps, and their task threads
# hand them over as they wake: with one round at a time, runs handed over just after a
# round was taken wait for all of it (the write, the END entries, the metrics and log
# lines), while the write itself mostly waits on Postgres.
RECORD_ROUNDS_AT_ONCE = 2


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
    superseded: bool = False  # a newer attempt runs elsewhere: nothing to record
    logprobs: str | None = None  # vqueue/contract/logprobs.py encode(), where asked for
    logprobs_tail: str = ""  # those of the tokens after the last delta, for the END entry
    ended_at: float | None = None  # time.time() when the run ended on the engine loop


Ended = tuple[ClaimedJob, Outcome]  # a claimed job's row and how its run ended
Recorded = tuple[AttemptResult, str]  # a result written, and its row's summary (JSON) after


class Recorder:
    def __init__(
        self,
        host: EngineHost,
        db: Engine,
        publisher: TokenLogPublisher,
        queue: JobQueue,
        phases: PhaseEvents | None = None,
        tool_calls: ToolCallReader | None = None,
    ) -> None:
        self.host = host
        # The worker's phase timings: the recorder emits its own and sends them all to Redis.
        self.phases = phases or PhaseEvents()
        self.db = db
        # The results go in one statement, its own transaction: no BEGIN and COMMIT round
        # trips, each another wait for the GIL beside the engine loop while a burst ends,
        # and every job's done event waits for this write.
        self._results_db = db.execution_options(isolation_level="AUTOCOMMIT")
        self.publisher = publisher
        self.queue = queue
        # Reads the calls of jobs that offered tools; without one, only named and required.
        self.tool_calls = tool_calls or ToolCallReader(None, lambda: host.tokenizer())
        self._rounds: Gatherer[list[Ended], None] = Gatherer(
            "recorder", self._serve, len, MAX_RECORD, threads=RECORD_ROUNDS_AT_ONCE
        )

    def record(self, ended: list[Ended]) -> "Future[None]":
        """Hand back the runs stopped for a shutdown and record the outcome of the others, in
        the recorder's next round; the future resolves once that is done (or raises what the
        round raised: the jobs' leases are then no longer renewed, so the reconciler takes
        them back)."""
        return self._rounds.submit(ended)

    def close(self) -> None:
        """Record what has ended, then stop."""
        self._rounds.close()

    def _tool_calls(self, row: ClaimedJob, outcome: Outcome) -> str | None:
        use = ToolUse.from_stored(row.tools)
        if use is None or outcome.status != JobStatus.SUCCEEDED:
            return None
        read = self.tool_calls.read(str(row.id), row.attempt, outcome.text, use)
        return None if read is None else read.encode()

    def _serve(self, rounds: list[list[Ended]]) -> list[None]:
        self._record_now([run for ended in rounds for run in ended])
        return [None] * len(rounds)

    def _record_now(self, ended: list[Ended]) -> None:
        taken = time.time()
        results: list[AttemptResult] = []
        rows: dict[tuple[uuid.UUID, int], ClaimedJob] = {}
        tails: dict[tuple[uuid.UUID, int], str] = {}
        for row, outcome in ended:
            if outcome.handed_back:
                if self._hand_back(row.id, row.attempt):
                    continue
                # Its cancel was asked for meanwhile: it ends cancelled, not queued again.
                outcome.handed_back = False
                outcome.status, outcome.finish_reason = JobStatus.CANCELLED, "cancelled"
            if outcome.superseded:
                with job_context(str(row.id)):
                    log.info("job %s: attempt %d superseded, stopped", row.id, row.attempt)
                continue
            rows[(row.id, row.attempt)] = row
            tails[(row.id, row.attempt)] = outcome.logprobs_tail
            results.append(
                AttemptResult(
                    row.id,
                    row.attempt,
                    outcome.status,
                    text=outcome.text,
                    finish_reason=outcome.finish_reason,
                    prompt_tokens=outcome.prompt_tokens,
                    completion_tokens=outcome.completion_tokens,
                    first_token_at=outcome.first_token_at,
                    error=outcome.error,
                    logprobs=outcome.logprobs,
                    tool_calls=self._tool_calls(row, outcome),
                )
            )
        if not results:
            return
        recorded = self._finish(results)
        written = time.time()
        # Each END carries the job's summary as written: its stream ends without a read.
        ends = [
            LogEntry(
                str(r.job_id),
                r.attempt,
                EntryKind.END,
                len(r.text or ""),
                status=r.status,
                final=summary,
                logprobs=tails.get((r.job_id, r.attempt), ""),
            )
            for r, summary in recorded
        ]
        if ends:
            self.host.submit(self._publish(ends)).result()
        published = time.time()
        # Every job's done event waited for these.
        runs_ended = [outcome.ended_at for _, outcome in ended if outcome.ended_at is not None]
        last_ended = min(max(runs_ended, default=taken), taken)
        self.phases.emit(
            PhaseTiming(Phase.RECORD_WAIT, len(recorded), last_ended, taken),
            PhaseTiming(Phase.WRITE, len(recorded), taken, written),
            PhaseTiming(Phase.PUBLISH, len(recorded), written, published),
        )
        self._observe([(rows[(r.job_id, r.attempt)], r) for r, _ in recorded])
        for r, _ in recorded:
            with job_context(str(r.job_id)):
                log.info("job %s: %s, %d tokens", r.job_id, r.status, r.completion_tokens or 0)

    def _finish(self, results: list[AttemptResult]) -> list[Recorded]:
        """Write the results; the ones recorded (a newer attempt's job keeps its row), each with
        its row's summary as written."""
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

    def _write(self, results: list[AttemptResult]) -> list[Recorded]:
        statement = finish_jobs(results)
        deadline = time.monotonic() + FINISH_RETRY_S
        delay = 0.5
        while True:
            try:
                with self._results_db.connect() as conn:
                    written: dict[tuple[uuid.UUID, int], str] = {
                        (row[0], row[1]): row[2] for row in conn.execute(statement)
                    }
                break
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("saving %d results failed, retrying: %s", len(results), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        for result in results:
            if (result.job_id, result.attempt) not in written:
                log.warning(
                    "job %s: attempt %d superseded, result dropped", result.job_id, result.attempt
                )
        return [
            (result, written[(result.job_id, result.attempt)])
            for result in results
            if (result.job_id, result.attempt) in written
        ]

    async def _publish(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            flushed = self.publisher.add(entry)
        await flushed  # one flush carries them all: nothing yielded between the adds

    def _observe(self, recorded: list[tuple[ClaimedJob, AttemptResult]]) -> None:
        """The runs' latencies and tokens, for GET /metrics."""
        if not recorded:
            return
        finished = FinishedRuns()
        for timing in self.phases.drain():
            finished.add_phase(timing)
        now = datetime.now(UTC)
        for row, result in recorded:
            finished.add(
                status=result.status,
                created_at=row.created_at,
                started_at=row.started_at,
                first_token_at=result.first_token_at,
                finished_at=now,
                completion_tokens=result.completion_tokens or 0,
                prompt_tokens=result.prompt_tokens or 0,
            )
        try:
            pipe = self.queue.redis.pipeline(transaction=False)
            finished.send(pipe)
            pipe.execute()
        except RedisError as exc:
            log.warning("metrics of %d jobs not recorded: %s", len(recorded), exc)

    def _hand_back(self, job_id: uuid.UUID, attempt: int) -> bool:
        """Back to the queue, unless its cancel was asked for (False then)."""
        with self.db.begin() as conn:
            row = conn.execute(hand_back_job(job_id, attempt)).first()
        if row is None:
            return False
        self.queue.send(str(job_id), row.priority)
        with job_context(str(job_id)):
            log.info("job %s: handed back to the queue", job_id)
        return True
