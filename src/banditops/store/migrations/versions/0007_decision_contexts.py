"""Decision contexts: the request's features, kept with each decision that needs them.

A contextual policy learns from a feedback on the features of the request it was earned on,
and a feedback may reach any replica, or a restart, so the features travel with the decision
in the shared log (``decisions.context``, JSON; null when the deployment neither routes on
them nor logs them). Off-policy evaluation of another policy reads them back in the exported
decision log (``banditops export-log``).

A nullable column without a default: PostgreSQL adds it without rewriting the table (a
catalogue change, instant on a log of millions of rows), and SQLite's ``ALTER TABLE ... ADD
COLUMN`` likewise only edits the schema. Rows logged before it read as null.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("context", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:  # SQLite rebuilds the table
        batch.drop_column("context")
