"""The tables, as SQLAlchemy Core metadata; migrations/ creates them."""

import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from db.states import BatchStatus, JobStatus
from db.stored_text import StoredJSON, StoredText

metadata = MetaData()

_status_values = ", ".join(f"'{status.value}'" for status in JobStatus)
_batch_status_values = ", ".join(f"'{status.value}'" for status in BatchStatus)

# The owner of what was made with no key (VQUEUE_AUTH off, or before keys existed).
ANONYMOUS_OWNER = uuid.UUID(int=0)


def owned_by(column: Column[uuid.UUID], scope: uuid.UUID | None) -> ColumnElement[bool]:
    """The rows one owner may see: its own, or all of them (scope None: an admin)."""
    return true() if scope is None else column == scope


def may_see(owner_id: uuid.UUID, scope: uuid.UUID | None) -> bool:
    """`owned_by` for a row already read: whether a caller of this scope may see it."""
    return scope is None or owner_id == scope


def _owner() -> Column[uuid.UUID]:
    return Column("owner_id", Uuid, nullable=False, server_default=text(f"'{ANONYMOUS_OWNER}'"))


# Only the SHA-256 of a key is stored; `prefix` (its first characters) names it in listings.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("admin", Boolean, nullable=False, server_default=text("false")),
    # Limits; NULL is unlimited.
    Column("requests_per_minute", Integer),
    Column("max_queued_jobs", Integer),
    Column("tokens_per_day", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("status", String(16), nullable=False),
    # jsonl, openai, csv or text: how the upload was read.
    Column("format", String(16), nullable=False),
    Column("filename", StoredText),
    Column("total", Integer, nullable=False, server_default="0"),
    # Lines refused under on_error=skip, and the first of their errors ({line, message}).
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("line_errors", StoredJSON, nullable=False, server_default="[]"),
    Column("defaults", StoredJSON, nullable=False, server_default="{}"),
    Column("metadata", StoredJSON),
    Column("priority", SmallInteger, nullable=False, server_default="5"),
    Column("error", StoredText),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    # Where its events go: {url, events, progress_interval_s} (api/webhooks/).
    Column("webhook", JSONB),
    _owner(),
    CheckConstraint(f"status IN ({_batch_status_values})", name="batches_status_valid"),
    Index("batches_created_at", "created_at"),
    Index("batches_owner_idempotency_key", "owner_id", "idempotency_key", unique=True),
    Index("batches_owner_created_at", "owner_id", "created_at"),
    Index(
        "batches_open", "status", postgresql_where=text("status IN ('in_progress', 'cancelling')")
    ),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("status", String(16), nullable=False),
    # Exactly one of prompt / messages; messages go through the model's chat template.
    # Callers' text may hold NUL: these columns store it escaped (db/stored_text.py).
    Column("prompt", StoredText),
    # none_as_null: a prompt job stores SQL NULL here, not the JSON value null.
    Column("messages", StoredJSON(none_as_null=True)),
    # Or a prompt given as token ids, as vLLM's server takes them.
    Column("prompt_token_ids", ARRAY(Integer)),
    Column("params", StoredJSON, nullable=False),
    Column("model", Text),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("worker", Text),
    Column("text", Text),
    Column("finish_reason", String(32)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("error", Text),
    # The output tokens' log probabilities, where the job asked for them: JSON text
    # (vqueue/contract/logprobs.py), which escapes every NUL a token may hold.
    Column("logprobs", Text),
    # A chat job's function tools and tool choice (vqueue/contract/tools.py ToolUse), and the
    # tool calls its worker read in the output (ToolCalls, JSON text).
    Column("tools", StoredJSON(none_as_null=True)),
    Column("tool_calls", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("first_token_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # 0 runs first, 9 last: the order of Celery's Redis priorities and of vLLM's scheduler.
    Column("priority", SmallInteger, nullable=False, server_default="5"),
    # Longest a run may take; a queued job past expires_at expires instead of running stale.
    Column("timeout_s", Integer, nullable=False, server_default="3600"),
    Column("expires_at", DateTime(timezone=True)),
    # When the caller needs it done by: queued past it, it expires; running, it is cancelled.
    Column("deadline_at", DateTime(timezone=True)),
    # A running job whose lease lapses lost its worker and is queued again.
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    # A batch's jobs: its id, the line of the upload, the caller's id and extra columns.
    Column("batch_id", Uuid, ForeignKey("batches.id", ondelete="CASCADE")),
    Column("batch_line", Integer),
    # The order its feeder releases a batch's jobs in: prompts sharing a prefix together
    # (api/batches/prefix_order.py), so the engine's prefix cache serves them.
    Column("release_rank", Integer),
    Column("custom_id", StoredText),
    Column("metadata", StoredJSON),
    # A response of the Responses API (api/responses/): what that API echoes back, and which
    # earlier response it follows. NULL for every other job.
    Column("response", StoredJSON(none_as_null=True)),
    # Where its end is announced: {url, events} (api/webhooks/); a trigger writes the event.
    Column("webhook", JSONB),
    # When the job's message was (last) handed to the broker. A batch's jobs are inserted
    # with none and released a window at a time (vqueue/loops/batch_feeder.py).
    Column("released_at", DateTime(timezone=True), server_default=func.now()),
    _owner(),
    CheckConstraint(f"status IN ({_status_values})", name="jobs_status_valid"),
    CheckConstraint("num_nonnulls(prompt, messages, prompt_token_ids) = 1", name="jobs_one_input"),
    CheckConstraint("priority BETWEEN 0 AND 9", name="jobs_priority_range"),
    Index("jobs_status_created_at", "status", "created_at"),
    Index("jobs_created_at", "created_at"),
    Index("jobs_owner_idempotency_key", "owner_id", "idempotency_key", unique=True),
    Index("jobs_owner_created_at", "owner_id", "created_at"),
    Index("jobs_owner_queued", "owner_id", postgresql_where=text("status = 'queued'")),
    Index("jobs_owner_finished_at", "owner_id", "finished_at"),
    # The workers' recent pace (db/pace.py), read by a batch's dry run.
    Index(
        "jobs_succeeded_finished_at",
        "finished_at",
        postgresql_where=text("status = 'succeeded'"),
    ),
    Index("jobs_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
    Index("jobs_queued_released", "released_at", postgresql_where=text("status = 'queued'")),
    Index("jobs_batch_line", "batch_id", "batch_line"),
    Index(
        "jobs_batch_unreleased",
        "batch_id",
        "release_rank",
        postgresql_where=text("status = 'queued' AND released_at IS NULL"),
    ),
    Index(
        "jobs_batch_active",
        "batch_id",
        "status",
        "batch_line",
        postgresql_where=text("status IN ('queued', 'running')"),
    ),
)

# Files uploaded through the OpenAI Files API (purpose "batch"): the input of /v1/batches.
files = Table(
    "files",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("filename", StoredText, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _owner(),
    Index("files_owner_created_at", "owner_id", "created_at"),
)

# A key's webhook signing secret (`whsec_` and base64), shown once; after a rotation the one
# before still signs until `previous_until`, so receivers can move over.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("owner_id", Uuid, primary_key=True),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text),
    Column("previous_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The webhook outbox: one row per event, inserted by the triggers of migration 0013 in the
# transaction that ended the job or batch; API processes deliver and retry them.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("owner_id", Uuid, nullable=False),
    Column("type", String(32), nullable=False),
    Column("job_id", Uuid),
    Column("batch_id", Uuid),
    Column("url", Text, nullable=False),
    # The event (JSON text) as first sent; every retry sends the same bytes.
    Column("payload", Text),
    Column("status", String(16), nullable=False, server_default="pending"),
    # [{at, status_code, error, duration_ms}], one per answered (or lost) try.
    Column("attempts", JSONB, nullable=False, server_default="[]"),
    # Tries since it was made or re-sent: the index into the retry schedule.
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("due_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The sending process's claim; one whose lease lapsed died, and another takes it over.
    Column("lease_token", Uuid),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    CheckConstraint(
        "status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status_valid"
    ),
    Index("webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("webhook_deliveries_owner_created_at", "owner_id", "created_at"),
    Index("webhook_deliveries_job", "job_id"),
    Index("webhook_deliveries_batch", "batch_id", "type"),
    Index(
        "webhook_deliveries_one_pending_progress",
        "batch_id",
        unique=True,
        postgresql_where=text("type = 'batch.progress' AND status = 'pending'"),
    ),
)
