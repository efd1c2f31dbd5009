"""Storing an upload as a batch: parse it off the event loop, then COPY its jobs in.

The batch row is written first as `validating`, so the upload shows in GET /batches while it
is read; the jobs and the move to `in_progress` commit together, so a batch has either all its
jobs or none. A refused upload deletes its row; one whose API process died midway is failed
by the reconciler. No job is sent to the broker here: the batch feeder releases them.
"""

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson

from api.batches.parse import (
    BatchFormat,
    NoPromptColumnError,
    ParsedBatch,
    TooManyJobsError,
    detect_format,
    parse_batch,
    sniff_openai,
)
from api.batches.prefix_order import release_ranks
from api.batches.schemas import BatchOptions
from api.batches.upload import Upload
from api.core.callers import Caller
from api.core.error_schemas import ErrorDetail
from api.core.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError
from api.core.limits import admit, input_tokens
from api.core.resources import Resources
from api.jobs.context_check import ContextCheck
from db.batches import copy_jobs, delete_batch, insert_batch, job_copy_row, start_batch
from db.states import BatchStatus
from vqueue.settings import Settings

# Bad lines kept on a batch stored with on_error=skip.
KEPT_LINE_ERRORS = 100


def batch_format(upload: Upload, options: BatchOptions) -> BatchFormat:
    found = detect_format(options.format, upload.content_type, upload.filename)
    if found is None:
        raise UnsupportedMediaTypeError(
            f"cannot tell the format of the upload (content type {upload.content_type!r}); "
            "pass ?format=jsonl, openai, csv or text, or name the file *.jsonl, *.csv or *.txt"
        )
    if found is BatchFormat.JSONL and sniff_openai(upload.file):
        return BatchFormat.OPENAI
    return found


def fingerprint(upload: Upload, options: BatchOptions) -> str:
    described = orjson.dumps(
        options.model_dump(mode="json", exclude={"dry_run"}), option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(upload.sha256.encode() + described).hexdigest()


def _parse(
    upload: Upload,
    fmt: BatchFormat,
    defaults: dict[str, Any],
    s: Settings,
    openai_endpoint: str | None,
) -> ParsedBatch:
    try:
        return parse_batch(
            upload.file,
            fmt,
            defaults,
            openai_endpoint=openai_endpoint,
            served_models={s.model_name, s.model},
            max_jobs=s.max_batch_jobs,
            max_line_bytes=s.max_batch_line_bytes,
        )
    except TooManyJobsError as exc:
        raise PayloadTooLargeError(f"{exc}, over the limit") from None
    except NoPromptColumnError as exc:
        raise InvalidInputError(str(exc)) from None


async def parse_upload(
    settings: Settings,
    upload: Upload,
    fmt: BatchFormat,
    defaults: dict[str, Any],
    openai_endpoint: str | None = None,
) -> ParsedBatch:
    """Every line read and checked, off the event loop."""
    return await anyio.to_thread.run_sync(_parse, upload, fmt, defaults, settings, openai_endpoint)


def refuse_over_context(parsed: ParsedBatch, context: ContextCheck) -> list[int | None]:
    """Lines whose prompt and max_tokens cannot fit the model's context become bad lines, in
    the words a single job is refused with (blocking: only a line that may not fit is
    tokenized). Answers the kept lines' prompt tokens where they were counted on the way."""
    kept, counted = [], []
    for item in parsed.jobs:
        verdict = context.verdict(item.job, item.job.max_tokens)
        if verdict.refusal is None:
            kept.append(item)
            counted.append(verdict.tokens)
        else:
            parsed.refuse(item.line, verdict.refusal)
    parsed.jobs = kept
    parsed.errors.sort(key=lambda error: error.line)
    return counted


def _check(parsed: ParsedBatch, options: BatchOptions) -> None:
    details = [ErrorDetail(field=f"line {e.line}", message=e.message) for e in parsed.errors]
    if parsed.bad_lines and options.on_error == "fail":
        raise InvalidInputError(
            f"{parsed.bad_lines} line(s) are not valid, so nothing was stored "
            f"(the first {len(details)} are listed; ?on_error=skip stores the valid lines)",
            details,
        )
    if not parsed.jobs:
        raise InvalidInputError(
            "the file holds no valid prompts" if parsed.bad_lines else "the file holds no prompts",
            details,
        )


def _rows(
    batch_id: uuid.UUID,
    parsed: ParsedBatch,
    options: BatchOptions,
    s: Settings,
    owner_id: uuid.UUID,
) -> list[tuple[Any, ...]]:
    expires_at = datetime.now(UTC) + timedelta(seconds=options.queue_timeout_s or s.queue_timeout_s)
    timeout_s = options.timeout_s or s.max_job_timeout_s
    ranks = release_ranks([item.job for item in parsed.jobs], options.release_order)
    return [
        job_copy_row(
            batch_id,
            line=item.line,
            prompt=item.job.prompt,
            messages=item.job.messages_json(),
            prompt_token_ids=item.job.prompt_token_ids,
            params=item.job.sampling(),
            custom_id=item.job.custom_id,
            metadata=item.job.metadata,
            model=s.model_name,
            priority=options.priority,
            timeout_s=timeout_s,
            expires_at=expires_at,
            owner_id=owner_id,
            tools=item.job.tools_json(),
            release_rank=rank,
        )
        for item, rank in zip(parsed.jobs, ranks, strict=True)
    ]


async def store_batch(
    resources: Resources,
    caller: Caller,
    upload: Upload,
    options: BatchOptions,
    context: ContextCheck,
    *,
    idempotency_key: str | None,
    request_hash: str | None,
    openai_endpoint: str | None = None,
    metadata: dict[str, Any] | None = None,
    webhook: dict[str, Any] | None = None,
) -> Mapping[Any, Any] | None:
    """The stored batch, in_progress; None when the idempotency key is already taken."""
    settings = resources.settings
    if upload.size == 0:
        raise InvalidInputError("the upload is empty")
    defaults = options.sampling_defaults()
    fmt = batch_format(upload, options)
    batch_id = uuid.uuid4()
    async with resources.db.begin() as conn:
        inserted = await conn.execute(
            insert_batch(),
            {
                "id": batch_id,
                "status": BatchStatus.VALIDATING,
                "format": fmt,
                "filename": upload.filename,
                "defaults": defaults,
                "priority": options.priority,
                "idempotency_key": idempotency_key,
                "request_hash": request_hash,
                "metadata": metadata,
                "webhook": webhook,
                "owner_id": caller.owner_id,
            },
        )
        if inserted.first() is None:
            return None
    try:
        parsed = await parse_upload(settings, upload, fmt, defaults, openai_endpoint)
        await anyio.to_thread.run_sync(refuse_over_context, parsed, context)
        _check(parsed, options)
        tokens = sum(input_tokens(parsed_line.job) for parsed_line in parsed.jobs)
        await admit(resources, caller, len(parsed.jobs), tokens)
        rows = await anyio.to_thread.run_sync(
            _rows, batch_id, parsed, options, settings, caller.owner_id
        )
        errors = [{"line": e.line, "message": e.message} for e in parsed.errors]
        async with resources.db.begin() as conn:
            raw = await conn.get_raw_connection()
            await copy_jobs(raw.driver_connection, rows)  # type: ignore[arg-type]
            stored = await conn.execute(
                start_batch(
                    batch_id,
                    total=len(rows),
                    skipped=parsed.bad_lines,
                    line_errors=errors[:KEPT_LINE_ERRORS],
                )
            )
            return stored.mappings().one()
    except BaseException:
        with anyio.CancelScope(shield=True):
            async with resources.db.begin() as conn:
                await conn.execute(delete_batch(batch_id))
        raise
