"""One job's run: claim it in Postgres, generate on the shared engine, record the outcome once.

A run can be stopped from outside (`stop`): a cancel request, or a worker shutting down that
hands its jobs back. Stopping cancels the run's task on the engine loop, which aborts the
engine request (its KV cache is freed at once) and keeps the text produced so far.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.jobs import claim_job, finish_job, hand_back_job
from db.states import JobStatus
from vqueue.contract import EntryKind, LogEntry
from vqueue.queueing import JobQueue
from vqueue.settings import Settings
from worker.engine import EngineHost
from worker.publisher import TokenLogPublisher
from worker.sampling import to_sampling_params

log = logging.getLogger(__name__)

# Finished results are retried this long while Postgres is unreachable, rather than dropped.
FINISH_RETRY_S = 300.0


def storable(text: str) -> str:
    """Postgres text cannot hold NUL, which a model may well emit: it becomes U+FFFD in the
    stream and in the row alike (one character for one, so offsets stay valid)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"


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


@dataclass
class ActiveRun:
    attempt: int
    task: "asyncio.Task[Any] | None" = None
    reason: StopReason | None = None


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        host: EngineHost,
        db: Engine,
        publisher: TokenLogPublisher,
        queue: JobQueue,
        worker_name: str,
        on_engine_dead: Callable[[BaseException], None],
    ) -> None:
        self.settings = settings
        self.host = host
        self.db = db
        self.publisher = publisher
        self.queue = queue
        self.worker_name = worker_name
        self.on_engine_dead = on_engine_dead
        self._active: dict[str, ActiveRun] = {}
        self._lock = threading.Lock()

    def active_ids(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def stop(self, job_id: str, reason: StopReason) -> None:
        """Abort a running job from any thread; it ends as cancelled, or goes back to the queue."""
        with self._lock:
            run = self._active.get(job_id)
            if run is None or run.reason is not None:
                return
            run.reason = reason
            task = run.task
        if task is not None:
            self.host.loop.call_soon_threadsafe(task.cancel)

    def run(self, job_id: str) -> JobStatus | None:
        """Run the job if it is still queued; returns its final status, None if not ours."""
        job_uuid = uuid.UUID(job_id)
        self.queue.forget(job_id)
        with self.db.begin() as conn:
            claim = claim_job(job_uuid, self.worker_name, self.settings.lease_s)
            row = conn.execute(claim).mappings().first()
        if row is None:
            log.info("job %s: not queued any more, skipped", job_id)
            return None
        attempt: int = row["attempt"]
        log.info("job %s: attempt %d started", job_id, attempt)
        with self._lock:
            self._active[job_id] = ActiveRun(attempt)
        try:
            outcome = self._execute(job_id, attempt, row)
        finally:
            with self._lock:
                self._active.pop(job_id, None)
        if outcome.handed_back:
            self._hand_back(job_uuid, attempt)
            return JobStatus.QUEUED
        try:
            recorded = self._finish(job_uuid, attempt, outcome)
        except Exception as exc:
            # Never leave the job running with nobody working on it: record the failure.
            log.exception("job %s: saving the result failed", job_id)
            outcome = Outcome(JobStatus.FAILED, error=f"saving the result failed: {exc}")
            recorded = self._finish(job_uuid, attempt, outcome)
        if recorded:
            end = LogEntry(job_id, attempt, EntryKind.END, len(outcome.text), status=outcome.status)
            self.host.submit(self._publish_end(end)).result()
        log.info("job %s: %s, %d tokens", job_id, outcome.status, outcome.completion_tokens)
        return outcome.status

    def _execute(self, job_id: str, attempt: int, row: Mapping[Any, Any]) -> Outcome:
        try:
            prompt = self._prompt_text(row)
            sampling = to_sampling_params(row["params"])
        except Exception as exc:
            # The input could not be made into a request (e.g. no chat template).
            log.warning("job %s: failed before generating: %s", job_id, exc)
            return Outcome(JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        run = self._generate(job_id, attempt, prompt, sampling, row["priority"], row["timeout_s"])
        return self.host.submit(run).result()

    def _prompt_text(self, row: Mapping[Any, Any]) -> str:
        if row["messages"] is None:
            prompt: str = row["prompt"]
            return prompt
        tokenizer = self.host.tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model has no chat template; send a plain prompt instead")
        rendered: str = tokenizer.apply_chat_template(
            row["messages"], tokenize=False, add_generation_prompt=True
        )
        return rendered

    async def _generate(
        self, job_id: str, attempt: int, prompt: str, sampling: Any, priority: int, timeout_s: int
    ) -> Outcome:
        with self._lock:
            run = self._active[job_id]
            run.task = asyncio.current_task()
            stopped_early = run.reason is not None
        outcome = Outcome(JobStatus.SUCCEEDED)
        parts: list[str] = []
        end = 0
        try:
            if stopped_early:
                raise asyncio.CancelledError
            async with asyncio.timeout(timeout_s):
                request_id = f"{job_id}:{attempt}"
                generator = self.host.engine.generate(
                    prompt, sampling, request_id, priority=priority
                )
                async for output in generator:
                    completion = output.outputs[0]
                    if outcome.prompt_tokens is None:
                        outcome.prompt_tokens = len(output.prompt_token_ids or ())
                    if completion.token_ids and outcome.first_token_at is None:
                        outcome.first_token_at = datetime.now(UTC)
                    outcome.completion_tokens += len(completion.token_ids)
                    if text := storable(completion.text):
                        end += len(text)
                        parts.append(text)
                        delta = LogEntry(
                            job_id, attempt, EntryKind.DELTA, end, text, at=time.time()
                        )
                        self.publisher.add(delta)
                    if output.finished:
                        outcome.finish_reason = completion.finish_reason
        except asyncio.CancelledError:
            # Our own stop(): the engine request was aborted as the cancellation unwound it.
            if run.reason is StopReason.HANDED_BACK:
                outcome.handed_back = True
            else:
                outcome.status = JobStatus.CANCELLED
                outcome.finish_reason = "cancelled"
        except TimeoutError:
            outcome.status = JobStatus.FAILED
            outcome.finish_reason = "timeout"
            outcome.error = f"timed out: still running after its timeout of {timeout_s}s"
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":
                self.on_engine_dead(exc)
                raise
            # E.g. a prompt too long for the context: the job fails with the engine's reason,
            # keeping any text already streamed, and the worker carries on.
            log.warning("job %s: generation failed: %s", job_id, exc)
            outcome.status = JobStatus.FAILED
            outcome.error = f"{type(exc).__name__}: {exc}"
        # The stored text is exactly the published deltas joined, so streams and polls agree.
        outcome.text = "".join(parts)
        return outcome

    async def _publish_end(self, entry: LogEntry) -> None:
        await self.publisher.add(entry)

    def _hand_back(self, job_id: uuid.UUID, attempt: int) -> None:
        with self.db.begin() as conn:
            row = conn.execute(hand_back_job(job_id, attempt)).first()
        if row is not None:
            self.queue.send(str(job_id), row.priority)
            log.info("job %s: handed back to the queue", job_id)

    def _finish(self, job_id: uuid.UUID, attempt: int, outcome: Outcome) -> bool:
        """Record the outcome; False when a newer attempt owns the job (nothing written)."""
        statement = finish_job(
            job_id,
            attempt,
            outcome.status,
            text=outcome.text,
            finish_reason=outcome.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            first_token_at=outcome.first_token_at,
            error=outcome.error,
        )
        deadline = time.monotonic() + FINISH_RETRY_S
        delay = 0.5
        while True:
            try:
                with self.db.begin() as conn:
                    if conn.execute(statement).first() is None:
                        log.warning(
                            "job %s: attempt %d superseded, result dropped", job_id, attempt
                        )
                        return False
                return True
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("job %s: saving the result failed, retrying: %s", job_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
