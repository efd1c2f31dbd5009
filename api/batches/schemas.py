"""Request options and response bodies of the batches API."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError

from api.batches.parse import BatchFormat
from api.batches.prefix_order import ReleaseOrder
from api.core.serving_settings import at_most
from api.jobs.schemas import SamplingFields
from api.webhooks.schemas import BatchWebhook
from db.states import BatchStatus


class BatchOptions(BaseModel):
    """Query parameters of POST /batches. The sampling fields are defaults for every line
    that does not set its own; they are checked like a job's (see SamplingFields)."""

    model_config = ConfigDict(extra="forbid")

    format: BatchFormat | None = Field(
        None, description="Default: from the file name's suffix, else the content type"
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: any bad line refuses the whole file; skip: store the rest"
    )
    priority: int = Field(5, ge=0, le=9, description="Of every job of the batch")
    release_order: ReleaseOrder = Field(
        "prefix",
        description="prefix: release lines that begin alike together, for the engine's "
        "prefix cache; input: in the file's order",
    )
    dry_run: bool = Field(
        False,
        description="Store nothing: answer with the lines' checks, token counts and an "
        "estimate of the time the batch would take (docs/api.md, *Dry run*)",
    )
    timeout_s: Annotated[int, at_most("max_job_timeout_s")] | None = Field(None, ge=1)
    queue_timeout_s: Annotated[int, at_most("queue_timeout_s")] | None = Field(None, ge=1)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    ignore_eos: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None
    min_tokens: int | None = None
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None
    logit_bias: Json[dict[str, Any]] | None = Field(None, description="As JSON text")
    structured_outputs: Json[dict[str, Any]] | None = Field(
        None, description='As JSON text, e.g. {"choice": ["yes", "no"]}'
    )
    logprobs: int | None = None
    webhook_url: str | None = Field(
        None,
        max_length=2048,
        description="Where the batch's events are sent, signed (docs/api.md, *Webhooks*)",
    )
    webhook_events: str = Field(
        "completed,failed,cancelled",
        description="Comma-separated: completed, failed, cancelled, progress",
    )

    def webhook(self, progress_interval_s: float) -> dict[str, Any] | None:
        """The batch's webhook as stored; a bad URL or event is a 422 naming the parameter."""
        if self.webhook_url is None:
            return None
        events = [event.strip() for event in self.webhook_events.split(",") if event.strip()]
        try:
            spec = BatchWebhook.model_validate({"url": self.webhook_url, "events": events})
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("query", f"webhook_{error['loc'][0]}", *error["loc"][1:])}
                for error in exc.errors()
            ]
            raise RequestValidationError(errors) from None
        return spec.stored(progress_interval_s=progress_interval_s)

    def sampling_defaults(self) -> dict[str, Any]:
        """The sampling fields given, validated; a bad one is a 422 naming the parameter."""
        given = {
            name: value
            for name in SamplingFields.model_fields
            if (value := getattr(self, name)) is not None
        }
        try:
            SamplingFields.model_validate(given)
        except ValidationError as exc:
            errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
            raise RequestValidationError(errors) from None
        return given


class BatchCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int = Field(0, description="Past the batch's queue timeout before they started")


class BatchLineError(BaseModel):
    line: int
    message: str


class BatchLinks(BaseModel):
    self: str
    results: str
    jobs: str
    cancel: str


class BatchPublic(BaseModel):
    id: uuid.UUID
    status: BatchStatus
    format: BatchFormat
    filename: str | None
    priority: int
    defaults: dict[str, Any] = Field(description="Sampling defaults given with the upload")
    counts: BatchCounts
    skipped: int = Field(description="Bad lines left out (on_error=skip)")
    line_errors: list[BatchLineError] = Field(description="The first of the skipped lines")
    completion_tokens: int = Field(description="Output tokens of the finished jobs so far")
    estimated_seconds_left: float | None = Field(
        description="From the pace so far; None until a job has finished"
    )
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    webhook: dict[str, Any] | None = Field(None, description="Where its events are sent")
    links: BatchLinks


class BatchesPublic(BaseModel):
    data: list[BatchPublic]
    count: int
