"""A prompt given as token ids (vLLM's server takes them on /v1/completions): a third kind of
input beside a text prompt and chat messages, exactly one of which a job has.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("prompt_token_ids", ARRAY(sa.Integer)))
    op.drop_constraint("jobs_one_input", "jobs", type_="check")
    op.create_check_constraint(
        "jobs_one_input", "jobs", "num_nonnulls(prompt, messages, prompt_token_ids) = 1"
    )


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE prompt_token_ids IS NOT NULL")
    op.drop_constraint("jobs_one_input", "jobs", type_="check")
    op.create_check_constraint("jobs_one_input", "jobs", "(prompt IS NULL) <> (messages IS NULL)")
    op.drop_column("jobs", "prompt_token_ids")
