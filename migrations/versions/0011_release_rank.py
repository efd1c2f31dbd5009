"""The order a batch's jobs are released in: prompts that share a prefix together, so that
the engine's prefix cache serves them (api/batches/prefix_order.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRELEASED = "status = 'queued' AND released_at IS NULL"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("release_rank", sa.Integer))
    # Batches stored before go on in their input order.
    op.execute(
        f"UPDATE jobs SET release_rank = batch_line WHERE batch_id IS NOT NULL AND {UNRELEASED}"
    )
    op.create_index(
        "jobs_batch_unreleased",
        "jobs",
        ["batch_id", "release_rank"],
        postgresql_where=sa.text(UNRELEASED),
    )


def downgrade() -> None:
    op.drop_index("jobs_batch_unreleased", table_name="jobs")
    op.drop_column("jobs", "release_rank")
