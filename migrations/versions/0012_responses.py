"""A job that is a response of the Responses API (api/responses/) keeps what that API echoes
back (instructions, the text format, background, the earlier response it follows).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("response", postgresql.JSONB))


def downgrade() -> None:
    op.drop_column("jobs", "response")
