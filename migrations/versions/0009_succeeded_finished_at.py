"""An index of succeeded jobs by when they finished: the workers' recent pace, which a batch's
dry run reads for its estimate (db/pace.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "jobs_succeeded_finished_at",
        "jobs",
        ["finished_at"],
        postgresql_where=sa.text("status = 'succeeded'"),
    )


def downgrade() -> None:
    op.drop_index("jobs_succeeded_finished_at", table_name="jobs")
