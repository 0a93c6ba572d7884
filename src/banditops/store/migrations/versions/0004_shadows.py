"""Shadow predictions: one row per decision and shadow version, scored with the feedback.

A decision's shadow predictions (see ``banditops.shadow``) are attached after it was answered;
the reward each earned is written in the transaction that stores the decision's feedback, so
a replica that reads the feedback row reads its shadow rewards too (catch-up joins on
``decision_id``, the primary key's first column). Version status ``dark`` needs no schema
change (``versions.status`` is free text).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadows",
        sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.id"),
                  primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("prediction", sa.JSON, nullable=False),
        sa.Column("reward", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("shadows")
