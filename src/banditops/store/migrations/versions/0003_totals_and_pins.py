"""Running totals per version and replica; artifact sha256 pins; decision owners.

Reports read ``version_totals`` (O(versions)) instead of scanning the logs. Each replica
increments only its own rows, in the same transaction as the decisions and feedback it
writes, so totals stay exact through crashes and replicas never contend on one row.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_totals",
        sa.Column("deployment", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("replica", sa.String(32), primary_key=True),
        sa.Column("decisions", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("feedbacks", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reward_sum", sa.Float, nullable=False, server_default="0"),
        sa.Column("reward_sq", sa.Float, nullable=False, server_default="0"),
    )
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64)))
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
    # Totals of what earlier revisions logged, once.
    op.execute(
        "INSERT INTO version_totals (deployment, version, replica, decisions, feedbacks, "
        "reward_sum, reward_sq) SELECT deployment, version, 'migrated', count(*), 0, 0, 0 "
        "FROM decisions GROUP BY deployment, version")
    op.execute(
        "UPDATE version_totals SET feedbacks = (SELECT count(*) FROM feedback f WHERE "
        "f.deployment = version_totals.deployment AND f.version = version_totals.version), "
        "reward_sum = (SELECT coalesce(sum(f.reward), 0) FROM feedback f WHERE "
        "f.deployment = version_totals.deployment AND f.version = version_totals.version), "
        "reward_sq = (SELECT coalesce(sum(f.reward * f.reward), 0) FROM feedback f WHERE "
        "f.deployment = version_totals.deployment AND f.version = version_totals.version) "
        "WHERE replica = 'migrated'")


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("sha256")
    op.drop_table("version_totals")
