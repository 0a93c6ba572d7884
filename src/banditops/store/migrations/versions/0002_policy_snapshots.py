"""Policy snapshots: learned state up to a feedback sequence number.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_snapshots",
        sa.Column("deployment", sa.String(100), primary_key=True),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.Column("high_water", sa.BigInteger, nullable=False),
        sa.Column("applied", sa.JSON, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_snapshots")
