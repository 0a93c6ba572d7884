"""The SQL tables. Decisions, feedback and events are append-only logs; ``shadows`` holds the
predictions other versions made for a decision, scored when its feedback is stored;
``version_totals`` holds running totals, one row per (deployment, version, replica), each
replica incrementing only its own rows in the transaction that writes the logged rows, so
totals are exact and replicas never contend on a counter. Created and evolved by the Alembic
migrations in ``migrations/``."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()

versions = Table(
    "versions", metadata,
    Column("id", SEQUENCE, primary_key=True, autoincrement=True),
    Column("deployment", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("artifact", Text, nullable=False),
    Column("validation_score", Float),
    Column("status", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sha256", String(64)),  # the artifact's bytes, pinned at registration (0003)
    UniqueConstraint("deployment", "name", name="uq_versions_deployment_name"),
)

decisions = Table(
    "decisions", metadata,
    Column("id", String(64), primary_key=True),
    Column("deployment", String(100), nullable=False),
    Column("version", String(100), nullable=False),
    Column("prediction", JSON, nullable=False),
    Column("propensity", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("owner", String(64)),  # digest of the key that made it, when feedback must match
    # the request's features, for a contextual policy's update and off-policy evaluation
    # (null when the deployment neither routes on them nor logs them; migration 0007)
    Column("context", JSON),
    Index("ix_decisions_deployment_version", "deployment", "version"),
    Index("ix_decisions_deployment_created", "deployment", "created_at", "version"),  # 0006
)

feedback = Table(
    "feedback", metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("decision_id", String(64), ForeignKey("decisions.id"), nullable=False, unique=True),
    Column("deployment", String(100), nullable=False),
    Column("version", String(100), nullable=False),
    Column("label", JSON, nullable=False),
    Column("reward", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_feedback_deployment_seq", "deployment", "seq"),
    Index("ix_feedback_deployment_created", "deployment", "created_at", "version",
          "reward"),  # 0006: the dashboard's history
)

events = Table(
    "events", metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("deployment", String(100), nullable=False),
    Column("time", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("version", String(100)),
    Column("reason", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Index("ix_events_deployment_seq", "deployment", "seq"),
)

# What a replica had learned, and up to which feedback: a restart loads it and replays only
# the feedback after it (migration 0002).
policy_snapshots = Table(
    "policy_snapshots", metadata,
    Column("deployment", String(100), primary_key=True),
    Column("taken_at", Float, nullable=False),
    Column("high_water", BigInteger, nullable=False),
    Column("applied", JSON, nullable=False),  # {"gaps": [...], "ahead": [...]}
    Column("state", JSON, nullable=False),
)

version_totals = Table(
    "version_totals", metadata,
    Column("deployment", String(100), primary_key=True),
    Column("version", String(100), primary_key=True),
    Column("replica", String(32), primary_key=True),
    Column("decisions", BigInteger, nullable=False, server_default="0"),
    Column("feedbacks", BigInteger, nullable=False, server_default="0"),
    Column("reward_sum", Float, nullable=False, server_default="0"),
    Column("reward_sq", Float, nullable=False, server_default="0"),
)

# Predictions other versions made for a decision (banditops.shadow), attached after it was
# answered; ``reward`` is written in the transaction that stores the decision's feedback, so
# whoever reads a feedback row reads its shadow rewards too (migration 0004).
shadows = Table(
    "shadows", metadata,
    Column("decision_id", String(64), ForeignKey("decisions.id"), primary_key=True),
    Column("version", String(100), primary_key=True),
    Column("deployment", String(100), nullable=False),
    Column("prediction", JSON, nullable=False),
    Column("reward", Float),  # None until the decision's feedback arrives
)

# Uploaded and MLflow-fetched artifacts, addressed by the sha256 of their bytes (migration
# 0005): replicas share the database, not a disk, so every replica (and a restart) can load a
# version registered without a file under artifact_dirs. The bytes are stored in chunks of
# ``ARTIFACT_CHUNK_BYTES`` so that no statement carries (or holds in memory) a whole model.
artifacts = Table(
    "artifacts", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("suffix", String(10), nullable=False),  # .skops, .onnx, .joblib: the format
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

artifact_chunks = Table(
    "artifact_chunks", metadata,
    Column("sha256", String(64), ForeignKey("artifacts.sha256"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
