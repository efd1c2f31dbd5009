"""API keys, and an owner on every job, batch and file.

Rows from before keys existed belong to the anonymous owner (the nil UUID), as do those made
while VQUEUE_AUTH is off: only an admin key sees them once keys are on. Idempotency keys become
per owner, so one caller's key can neither collide with nor reveal another's request.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANONYMOUS = "00000000-0000-0000-0000-000000000000"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("max_queued_jobs", sa.Integer),
        sa.Column("tokens_per_day", sa.BigInteger),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    for table in ("jobs", "batches", "files"):
        op.add_column(
            table,
            sa.Column(
                "owner_id", sa.Uuid, nullable=False, server_default=sa.text(f"'{ANONYMOUS}'")
            ),
        )
    op.drop_index("jobs_idempotency_key", "jobs")
    op.create_index(
        "jobs_owner_idempotency_key", "jobs", ["owner_id", "idempotency_key"], unique=True
    )
    op.drop_index("batches_idempotency_key", "batches")
    op.create_index(
        "batches_owner_idempotency_key", "batches", ["owner_id", "idempotency_key"], unique=True
    )
    op.create_index("jobs_owner_created_at", "jobs", ["owner_id", "created_at"])
    # Per-key limits: queued jobs, and tokens of the jobs finished today.
    op.create_index(
        "jobs_owner_queued", "jobs", ["owner_id"], postgresql_where=sa.text("status = 'queued'")
    )
    op.create_index("jobs_owner_finished_at", "jobs", ["owner_id", "finished_at"])
    op.create_index("batches_owner_created_at", "batches", ["owner_id", "created_at"])
    op.create_index("files_owner_created_at", "files", ["owner_id", "created_at"])


def downgrade() -> None:
    op.drop_index("files_owner_created_at", "files")
    op.drop_index("batches_owner_created_at", "batches")
    op.drop_index("jobs_owner_finished_at", "jobs")
    op.drop_index("jobs_owner_queued", "jobs")
    op.drop_index("jobs_owner_created_at", "jobs")
    op.drop_index("batches_owner_idempotency_key", "batches")
    op.create_index("batches_idempotency_key", "batches", ["idempotency_key"], unique=True)
    op.drop_index("jobs_owner_idempotency_key", "jobs")
    op.create_index("jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)
    for table in ("jobs", "batches", "files"):
        op.drop_column(table, "owner_id")
    op.drop_table("api_keys")
