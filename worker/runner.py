"""One job's run: claim it in Postgres, generate on the shared engine, record the outcome once."""

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.jobs import claim_job, finish_job
from db.states import JobStatus
from vqueue.contract import EntryKind, LogEntry
from worker.engine import EngineHost
from worker.publisher import TokenLogPublisher
from worker.sampling import to_sampling_params

log = logging.getLogger(__name__)

# Finished results are retried this long while Postgres is unreachable, rather than dropped.
FINISH_RETRY_S = 300.0


@dataclass
class Outcome:
    status: JobStatus
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    first_token_at: datetime | None = None
    error: str | None = None


class JobRunner:
    def __init__(
        self, host: EngineHost, db: Engine, publisher: TokenLogPublisher, worker_name: str
    ) -> None:
        self.host = host
        self.db = db
        self.publisher = publisher
        self.worker_name = worker_name

    def run(self, job_id: str) -> JobStatus | None:
        """Run the job if it is still queued; returns its final status, None if not ours."""
        job_uuid = uuid.UUID(job_id)
        with self.db.begin() as conn:
            row = conn.execute(claim_job(job_uuid, self.worker_name)).mappings().first()
        if row is None:
            log.info("job %s: not queued any more, skipped", job_id)
            return None
        attempt: int = row["attempt"]
        log.info("job %s: attempt %d started", job_id, attempt)
        try:
            prompt = self._prompt_text(row)
            sampling = to_sampling_params(row["params"])
            outcome = self.host.submit(self._generate(job_id, attempt, prompt, sampling)).result()
        except Exception as exc:
            # The input could not be made into a request (e.g. no chat template).
            log.warning("job %s: failed before generating: %s", job_id, exc)
            outcome = Outcome(JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        self._finish(job_uuid, attempt, outcome)
        end = LogEntry(job_id, attempt, EntryKind.END, len(outcome.text), status=outcome.status)
        self.host.submit(self._publish_end(end)).result()
        log.info("job %s: %s, %d tokens", job_id, outcome.status, outcome.completion_tokens)
        return outcome.status

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

    async def _generate(self, job_id: str, attempt: int, prompt: str, sampling: Any) -> Outcome:
        outcome = Outcome(JobStatus.SUCCEEDED)
        parts: list[str] = []
        end = 0
        try:
            async for output in self.host.engine.generate(prompt, sampling, f"{job_id}:{attempt}"):
                completion = output.outputs[0]
                if outcome.prompt_tokens is None:
                    outcome.prompt_tokens = len(output.prompt_token_ids or ())
                if completion.token_ids and outcome.first_token_at is None:
                    outcome.first_token_at = datetime.now(UTC)
                outcome.completion_tokens += len(completion.token_ids)
                if completion.text:
                    end += len(completion.text)
                    parts.append(completion.text)
                    delta = LogEntry(job_id, attempt, EntryKind.DELTA, end, completion.text)
                    self.publisher.add(delta)
                if output.finished:
                    outcome.finish_reason = completion.finish_reason
        except Exception as exc:
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

    def _finish(self, job_id: uuid.UUID, attempt: int, outcome: Outcome) -> None:
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
                            "job %s: attempt %d was superseded, result dropped", job_id, attempt
                        )
                return
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("job %s: saving the result failed, retrying: %s", job_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
