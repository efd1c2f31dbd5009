"""A chat job's function tools and how they may be used (`tools`, JSON), and the tool calls its
worker read in the output (`tool_calls`, JSON text: vqueue/contract/tools.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tools", postgresql.JSONB))
    op.add_column("jobs", sa.Column("tool_calls", sa.Text))


def downgrade() -> None:
    op.drop_column("jobs", "tool_calls")
    op.drop_column("jobs", "tools")
