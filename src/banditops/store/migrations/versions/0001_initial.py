"""Initial schema: versions, decisions, feedback, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "versions",
        sa.Column("id", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("artifact", sa.Text, nullable=False),
        sa.Column("validation_score", sa.Float),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("deployment", "name", name="uq_versions_deployment_name"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("prediction", sa.JSON, nullable=False),
        sa.Column("propensity", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_decisions_deployment_version", "decisions", ["deployment", "version"])
    op.create_table(
        "feedback",
        sa.Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.id"),
                  nullable=False, unique=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("label", sa.JSON, nullable=False),
        sa.Column("reward", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_feedback_deployment_seq", "feedback", ["deployment", "seq"])
    op.create_table(
        "events",
        sa.Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("version", sa.String(100)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_deployment_seq", "events", ["deployment", "seq"])


def downgrade() -> None:
    for table in ("events", "feedback", "decisions", "versions"):
        op.drop_table(table)
