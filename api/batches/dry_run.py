"""POST /batches?dry_run=true: what a batch would be, without storing anything.

Every line is read and checked as for a stored batch (a line whose prompt and max_tokens do
not fit the model's context included), and each valid one's prompt is counted with the
model's tokenizer as the engine will see it (a chat line rendered with the chat template and
its tools).

The estimate divides output tokens by the pace the workers kept lately: the output tokens of
the jobs that succeeded in the last RECENT_S seconds, over the time from the first one's
start to the last one's end. It counts each job's max_tokens (a job ends sooner at its stop
or end-of-sequence token), so it is an upper bound on a busy queue's time; idle moments in
the window make the pace look slower, so they lengthen it too. Prefill time is not counted
apart: it is in the pace. No finished jobs lately, no estimate (`estimate_unavailable` says
why).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from pydantic import BaseModel, Field

from api.batches.parse import MAX_REPORTED_ERRORS, ParsedBatch
from api.batches.schemas import BatchLineError, BatchOptions
from api.batches.store import batch_format, parse_upload, refuse_over_context
from api.batches.upload import Upload
from api.core.errors import InvalidInputError
from api.core.resources import Resources
from api.jobs.context_check import ContextCheck
from db.pace import output_ahead, recent_output

# How far back the workers' pace is measured.
RECENT_S = 900


class BatchEstimate(BaseModel):
    output_tokens_per_s: float = Field(description="The workers' recent pace")
    measured_jobs: int = Field(description="Jobs that succeeded in the window measured")
    gpu_seconds: float = Field(description="This batch's output tokens at that pace")
    ahead_jobs: int = Field(description="Jobs queued or running at this priority or before")
    ahead_output_tokens: int = Field(description="Their max_tokens, added up")
    start_by: datetime = Field(description="When the work ahead is done, at that pace")
    finish_by: datetime


class BatchDryRun(BaseModel):
    object: str = "batch.dry_run"
    format: str
    lines: int = Field(description="Lines read (blank lines of a text file are not lines)")
    valid: int = Field(description="Lines that would be jobs")
    invalid: int
    errors: list[BatchLineError] = Field(
        description=f"Up to {MAX_REPORTED_ERRORS} of the bad lines, in line order"
    )
    prompt_tokens: int | None = Field(
        description="The valid lines' prompts in tokens; None where the API has no tokenizer"
    )
    max_output_tokens: int = Field(description="The valid lines' max_tokens, added up")
    context_limit: int | None = Field(description="The model's context, where known")
    estimate: BatchEstimate | None
    estimate_unavailable: str | None = None


@dataclass
class _Counted:
    valid: int
    prompt_tokens: int | None
    max_output_tokens: int


def _count(parsed: ParsedBatch, context: ContextCheck) -> _Counted:
    """Lines over the context move to the errors, as in a stored batch; the others' prompts
    are counted (blocking: tokenizing)."""
    counted = refuse_over_context(parsed, context)
    total: int | None = 0
    for item, known in zip(parsed.jobs, counted, strict=True):
        tokens = known if known is not None else context.count(item.job)
        total = None if tokens is None or total is None else total + tokens
    output = sum(item.job.max_tokens for item in parsed.jobs)
    return _Counted(len(parsed.jobs), total, output)


async def estimate(
    resources: Resources, priority: int, output_tokens: int
) -> tuple[BatchEstimate | None, str | None]:
    """The estimate, or why there is none."""
    async with resources.db.connect() as conn:
        jobs, tokens, span_s = (await conn.execute(recent_output(RECENT_S))).one()
        ahead_jobs, ahead_tokens = (await conn.execute(output_ahead(priority))).one()
    if not jobs or not tokens or not span_s or span_s <= 0:
        minutes = RECENT_S // 60
        return None, f"no job finished in the last {minutes} minutes to measure the pace by"
    pace = float(tokens) / float(span_s)
    now = datetime.now(UTC)
    start_s = int(ahead_tokens) / pace
    gpu_s = output_tokens / pace
    return (
        BatchEstimate(
            output_tokens_per_s=round(pace, 1),
            measured_jobs=int(jobs),
            gpu_seconds=round(gpu_s, 1),
            ahead_jobs=int(ahead_jobs),
            ahead_output_tokens=int(ahead_tokens),
            start_by=now + timedelta(seconds=start_s),
            finish_by=now + timedelta(seconds=start_s + gpu_s),
        ),
        None,
    )


async def dry_run(
    resources: Resources,
    context: ContextCheck,
    upload: Upload,
    options: BatchOptions,
    openai_endpoint: str | None = None,
) -> BatchDryRun:
    """The upload read and checked as a stored batch's is, counted and estimated."""
    if upload.size == 0:
        raise InvalidInputError("the upload is empty")
    fmt = batch_format(upload, options)
    defaults = options.sampling_defaults()
    parsed = await parse_upload(resources.settings, upload, fmt, defaults, openai_endpoint)
    counted = await anyio.to_thread.run_sync(_count, parsed, context)
    found, unavailable = (
        await estimate(resources, options.priority, counted.max_output_tokens)
        if counted.valid
        else (None, "no valid lines")
    )
    return BatchDryRun(
        format=fmt,
        lines=counted.valid + parsed.bad_lines,
        valid=counted.valid,
        invalid=parsed.bad_lines,
        errors=[BatchLineError(line=e.line, message=e.message) for e in parsed.errors],
        prompt_tokens=counted.prompt_tokens,
        max_output_tokens=counted.max_output_tokens,
        context_limit=context.limit(),
        estimate=found,
        estimate_unavailable=unavailable,
    )
