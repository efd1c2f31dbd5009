"""The tables, as SQLAlchemy Core metadata; migrations/ creates them."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
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
    CheckConstraint(f"status IN ({_status_values})", name="jobs_status_valid"),
    CheckConstraint("(prompt IS NULL) <> (messages IS NULL)", name="jobs_one_input"),
    Index("jobs_status_created_at", "status", "created_at"),
    Index("jobs_created_at", "created_at"),
)
