"""Deadlines: a job may say by when it must be done, and one whose time ran out before it
started ends `expired` (a status of its own, not a failure).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "'queued', 'running', 'succeeded', 'failed', 'cancelled'"
AFTER = f"{BEFORE}, 'expired'"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("deadline_at", sa.DateTime(timezone=True)))
    op.drop_constraint("jobs_status_valid", "jobs")
    op.create_check_constraint("jobs_status_valid", "jobs", f"status IN ({AFTER})")


def downgrade() -> None:
    # An expired job was a failed one before this revision.
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'expired'")
    op.drop_constraint("jobs_status_valid", "jobs")
    op.create_check_constraint("jobs_status_valid", "jobs", f"status IN ({BEFORE})")
    op.drop_column("jobs", "deadline_at")
