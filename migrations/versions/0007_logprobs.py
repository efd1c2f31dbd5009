"""The log probabilities of a job's output tokens, where it asked for them (`logprobs`): one
JSON text per job (vqueue/contract/logprobs.py), written with its result.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("logprobs", sa.Text))


def downgrade() -> None:
    op.drop_column("jobs", "logprobs")
