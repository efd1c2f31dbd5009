"""What a caller names to get webhooks, and the shapes the webhook routes answer with."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.webhooks.destinations import MAX_URL_CHARS, parse_url

JobEvent = Literal["completed", "failed", "cancelled", "expired"]
ResponseEvent = Literal["completed", "failed", "cancelled"]
BatchEvent = Literal["completed", "failed", "cancelled", "progress"]


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_CHARS,
        description="http(s) URL that receives the events, signed (Standard Webhooks); it must "
        "resolve to public addresses unless the service allows more",
    )

    @field_validator("url")
    @classmethod
    def _a_url(cls, url: str) -> str:
        parse_url(url)
        return url

    def stored(self, **extra: Any) -> dict[str, Any]:
        events: list[str] = getattr(self, "events")  # noqa: B009 (each subclass has its own)
        return {"url": self.url, "events": sorted(set(events)), **extra}


class JobWebhook(_Webhook):
    events: list[JobEvent] = Field(
        ["completed", "failed", "cancelled", "expired"],
        min_length=1,
        description="Which ends of the job are announced (job.completed, ...)",
    )


class ResponseWebhook(_Webhook):
    events: list[ResponseEvent] = Field(
        ["completed", "failed", "cancelled"],
        min_length=1,
        description="response.completed (and response.incomplete), response.failed, "
        "response.cancelled",
    )


class BatchWebhook(_Webhook):
    events: list[BatchEvent] = Field(
        ["completed", "failed", "cancelled"],
        min_length=1,
        description="Its end, and `progress`: at most one every VQUEUE_WEBHOOK_PROGRESS_INTERVAL_S "
        "while its jobs finish",
    )


class Attempt(BaseModel):
    at: datetime | None
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class DeliveryPublic(BaseModel):
    id: str = Field(description="Its webhook-id: the same on every try and re-send")
    type: str
    status: Literal["pending", "delivered", "failed"]
    url: str
    job_id: str | None
    batch_id: str | None
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="While pending")
    delivered_at: datetime | None
    attempts: list[Attempt]
    event: dict[str, Any] | None = Field(description="The body sent (none before the first try)")


class DeliveriesPublic(BaseModel):
    data: list[DeliveryPublic]
    has_more: bool


class SecretPublic(BaseModel):
    secret: str | None = Field(None, description="Shown once, when it is made")
    created_at: datetime
    previous_valid_until: datetime | None = Field(
        None, description="The secret it replaced also signs until then"
    )
