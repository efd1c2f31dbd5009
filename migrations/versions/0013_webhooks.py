"""Webhooks: a job, response or batch may name a URL and the events it wants; each event is a
row of `webhook_deliveries` (the outbox), written by a trigger in the transaction that changed
the status, so no path that ends a job or batch can forget it and no crash can lose it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A job's or response's end. Responses name their events as OpenAI's do: an answer cut by its
# token budget is `response.incomplete` (subscribed as `completed`), an expired one failed.
# A batch job's end also schedules the batch's `progress` event, one pending at a time and
# due no sooner than the interval after the one before. It never waits: a transaction that
# ends jobs of the batch while another one that may have scheduled it is still open leaves
# the scheduling to that one (its event, rendered when sent, counts what is done by then),
# so a job's end cannot wait on another transaction's insert while holding its job rows.
# The advisory lock class of "a progress event of this batch is being scheduled".
PROGRESS_LOCK = 0x7768  # "wh"
JOB_EVENTS = f"""
CREATE FUNCTION vqueue_job_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := CASE WHEN NEW.response IS NULL THEN 'job' ELSE 'response' END;
    event text := CASE NEW.status WHEN 'succeeded' THEN 'completed' ELSE NEW.status END;
    name text;
BEGIN
    IF kind = 'response' AND event = 'expired' THEN
        event := 'failed';
    END IF;
    name := kind || '.' || event;
    IF kind = 'response' AND NEW.status = 'succeeded' AND NEW.finish_reason = 'length' THEN
        name := 'response.incomplete';
    END IF;
    IF NEW.webhook IS NOT NULL AND NEW.webhook -> 'events' ? event THEN
        INSERT INTO webhook_deliveries (owner_id, type, job_id, url)
        VALUES (NEW.owner_id, name, NEW.id, NEW.webhook ->> 'url');
    END IF;
    IF NEW.batch_id IS NOT NULL AND EXISTS (
        SELECT FROM batches b
        WHERE b.id = NEW.batch_id AND b.status = 'in_progress'
            AND b.webhook -> 'events' ? 'progress'
    ) THEN
        IF pg_try_advisory_xact_lock({PROGRESS_LOCK}, hashtext(NEW.batch_id::text)) THEN
            INSERT INTO webhook_deliveries
                (owner_id, type, batch_id, url, due_at, next_attempt_at)
            SELECT b.owner_id, 'batch.progress', b.id, b.webhook ->> 'url', due, due
            FROM batches b,
                LATERAL (
                    SELECT greatest(
                        now(),
                        max(d.due_at) + make_interval(
                            secs => (b.webhook ->> 'progress_interval_s')::float8
                        )
                    ) AS due
                    FROM webhook_deliveries d
                    WHERE d.batch_id = b.id AND d.type = 'batch.progress'
                ) AS next
            WHERE b.id = NEW.batch_id
            ON CONFLICT (batch_id) WHERE type = 'batch.progress' AND status = 'pending'
            DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_webhook_events AFTER UPDATE OF status ON jobs FOR EACH ROW
WHEN (
    OLD.status IS DISTINCT FROM NEW.status
    AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'expired')
    AND (NEW.webhook IS NOT NULL OR NEW.batch_id IS NOT NULL)
)
EXECUTE FUNCTION vqueue_job_webhook();
"""

# A batch's end; a progress event not yet tried is dropped, the end says more.
BATCH_EVENTS = """
CREATE FUNCTION vqueue_batch_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_deliveries
    WHERE batch_id = NEW.id AND type = 'batch.progress' AND status = 'pending'
        AND attempt_count = 0 AND lease_expires_at IS NULL;
    IF NEW.webhook -> 'events' ? NEW.status THEN
        INSERT INTO webhook_deliveries (owner_id, type, batch_id, url)
        VALUES (NEW.owner_id, 'batch.' || NEW.status, NEW.id, NEW.webhook ->> 'url');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER batches_webhook_events AFTER UPDATE OF status ON batches FOR EACH ROW
WHEN (
    OLD.status IS DISTINCT FROM NEW.status
    AND NEW.status IN ('completed', 'failed', 'cancelled')
    AND NEW.webhook IS NOT NULL
)
EXECUTE FUNCTION vqueue_batch_webhook();
"""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook", postgresql.JSONB))
    op.add_column("batches", sa.Column("webhook", postgresql.JSONB))
    op.create_table(
        "webhook_secrets",
        sa.Column("owner_id", sa.Uuid, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_until", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("job_id", sa.Uuid),
        sa.Column("batch_id", sa.Uuid),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "due_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("lease_token", sa.Uuid),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status_valid"
        ),
    )
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "webhook_deliveries_owner_created_at", "webhook_deliveries", ["owner_id", "created_at"]
    )
    op.create_index("webhook_deliveries_job", "webhook_deliveries", ["job_id"])
    op.create_index("webhook_deliveries_batch", "webhook_deliveries", ["batch_id", "type"])
    op.create_index(
        "webhook_deliveries_one_pending_progress",
        "webhook_deliveries",
        ["batch_id"],
        unique=True,
        postgresql_where=sa.text("type = 'batch.progress' AND status = 'pending'"),
    )
    op.execute(JOB_EVENTS)
    op.execute(BATCH_EVENTS)


def downgrade() -> None:
    op.execute("DROP TRIGGER batches_webhook_events ON batches")
    op.execute("DROP FUNCTION vqueue_batch_webhook()")
    op.execute("DROP TRIGGER jobs_webhook_events ON jobs")
    op.execute("DROP FUNCTION vqueue_job_webhook()")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_secrets")
    op.drop_column("batches", "webhook")
    op.drop_column("jobs", "webhook")
