"""Batches: bulk uploads whose jobs are released to the broker a window at a time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'validating', 'in_progress', 'completed', 'failed', 'cancelling', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("filename", sa.Text),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("line_errors", JSONB, nullable=False, server_default="[]"),
        sa.Column("defaults", JSONB, nullable=False, server_default="{}"),
        sa.Column("metadata", JSONB),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
        sa.Column("error", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="batches_status_valid"),
    )
    op.create_index("batches_created_at", "batches", ["created_at"])
    op.create_index("batches_idempotency_key", "batches", ["idempotency_key"], unique=True)
    op.create_index(
        "batches_open",
        "batches",
        ["status"],
        postgresql_where=sa.text("status IN ('in_progress', 'cancelling')"),
    )
    op.add_column(
        "jobs", sa.Column("batch_id", sa.Uuid, sa.ForeignKey("batches.id", ondelete="CASCADE"))
    )
    op.add_column("jobs", sa.Column("batch_line", sa.Integer))
    op.add_column("jobs", sa.Column("custom_id", sa.Text))
    op.add_column("jobs", sa.Column("metadata", JSONB))
    # Existing jobs were all sent at submit: they count as released when this runs.
    op.add_column(
        "jobs",
        sa.Column("released_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index(
        "jobs_queued_released",
        "jobs",
        ["released_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index("jobs_batch_line", "jobs", ["batch_id", "batch_line"])
    op.create_index(
        "jobs_batch_active",
        "jobs",
        ["batch_id", "status", "batch_line"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("jobs_batch_active", "jobs")
    op.drop_index("jobs_batch_line", "jobs")
    op.drop_index("jobs_queued_released", "jobs")
    for column in ("released_at", "metadata", "custom_id", "batch_line", "batch_id"):
        op.drop_column("jobs", column)
    op.drop_table("batches")
