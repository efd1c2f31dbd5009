"""Job control and durability: priority, deadlines, leases, cancel requests, idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5")
    )
    op.add_column("jobs", sa.Column("timeout_s", sa.Integer, nullable=False, server_default="3600"))
    op.add_column("jobs", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
    op.add_column("jobs", sa.Column("idempotency_key", sa.Text))
    op.add_column("jobs", sa.Column("request_hash", sa.Text))
    op.create_check_constraint("jobs_priority_range", "jobs", "priority BETWEEN 0 AND 9")
    op.create_index("jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)
    # The reconciler's scans: running jobs by lease, queued jobs by age and expiry.
    op.create_index(
        "jobs_running_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("jobs_running_lease", "jobs")
    op.drop_index("jobs_idempotency_key", "jobs")
    op.drop_constraint("jobs_priority_range", "jobs")
    for column in (
        "request_hash",
        "idempotency_key",
        "cancel_requested_at",
        "lease_expires_at",
        "expires_at",
        "timeout_s",
        "priority",
    ):
        op.drop_column("jobs", column)
