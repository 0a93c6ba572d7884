"""Indexes for the dashboard's history (``GET /v1/deployments/{d}/history``): decisions and
feedback of one deployment in a time range, grouped by version.

Both are covering (PostgreSQL answers from the index alone once the table is vacuumed), so
the history of the last hour reads that hour's index entries, not the whole log.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_decisions_deployment_created", "decisions",
                    ["deployment", "created_at", "version"])
    op.create_index("ix_feedback_deployment_created", "feedback",
                    ["deployment", "created_at", "version", "reward"])


def downgrade() -> None:
    op.drop_index("ix_feedback_deployment_created", "feedback")
    op.drop_index("ix_decisions_deployment_created", "decisions")
