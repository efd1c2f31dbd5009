"""The tables, as SQLAlchemy Core metadata; migrations/ creates them."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from db.states import JobStatus

metadata = MetaData()

_status_values = ", ".join(f"'{status.value}'" for status in JobStatus)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("status", String(16), nullable=False),
    # Exactly one of prompt / messages; messages go through the model's chat template.
    Column("prompt", Text),
    # none_as_null: a prompt job stores SQL NULL here, not the JSON value null.
    Column("messages", JSONB(none_as_null=True)),
    Column("params", JSONB, nullable=False),
    Column("model", Text),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("worker", Text),
    Column("text", Text),
    Column("finish_reason", String(32)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("first_token_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # 0 runs first, 9 last: the order of Celery's Redis priorities and of vLLM's scheduler.
    Column("priority", SmallInteger, nullable=False, server_default="5"),
    # Longest a run may take; a queued job past expires_at fails instead of running stale.
    Column("timeout_s", Integer, nullable=False, server_default="3600"),
    Column("expires_at", DateTime(timezone=True)),
    # A running job whose lease lapses lost its worker and is queued again.
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    CheckConstraint(f"status IN ({_status_values})", name="jobs_status_valid"),
    CheckConstraint("(prompt IS NULL) <> (messages IS NULL)", name="jobs_one_input"),
    CheckConstraint("priority BETWEEN 0 AND 9", name="jobs_priority_range"),
    Index("jobs_status_created_at", "status", "created_at"),
    Index("jobs_created_at", "created_at"),
    Index("jobs_idempotency_key", "idempotency_key", unique=True),
    Index("jobs_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
)
