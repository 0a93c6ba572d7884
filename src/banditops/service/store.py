"""Durable state of the service, through SQLAlchemy: SQLite (WAL) by default, PostgreSQL by URL.

Every write is committed before the request that caused it is answered, so what a client
saw acknowledged survives a crash. Feedback is idempotent by construction: the decision id
is unique in the feedback table and a second insert does nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from banditops.errors import DuplicateArmError, StoreError
from banditops.service.schema import decisions, events, feedback, policy_snapshots, versions

MIGRATION_LOCK = 724_007  # PostgreSQL advisory lock id: one replica migrates at a time


@dataclass(frozen=True)
class VersionRow:
    name: str
    artifact: str
    validation_score: float | None
    status: str


@dataclass(frozen=True)
class Totals:
    decisions: int = 0
    feedbacks: int = 0
    reward_sum: float = 0.0
    reward_sq: float = 0.0


class Store:
    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds  # SHIM: not applied yet
        try:
            if url.startswith("sqlite"):
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
                self._start_checkpointer()
            else:
                self.engine = create_engine(url, pool_size=5, max_overflow=5,
                                            pool_pre_ping=True)
        except (SQLAlchemyError, ValueError) as error:
            raise StoreError(f"cannot use database {url!r}: {error}") from None
        self.dialect = self.engine.dialect.name
        self._writer = None  # one held connection for the hot decision inserts
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_decision = (
            "INSERT INTO decisions (id, deployment, version, prediction, propensity, "
            f"created_at) VALUES ({', '.join([marker] * 6)})")

    def _start_checkpointer(self) -> None:
        """Move the WAL into the database from a background thread, once a second.

        SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 pages and
        stalls that request for milliseconds; connections here turn it off instead."""
        import threading

        def checkpoint() -> None:
            while True:
                time.sleep(1.0)
                try:
                    with self.engine.connect() as connection:
                        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except SQLAlchemyError:
                    continue

        threading.Thread(target=checkpoint, name="wal-checkpoint", daemon=True).start()

    # ------------------------------------------------------------ schema
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe with concurrent replicas)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        location = resources.files("banditops.service") / "migrations"
        config.set_main_option("script_location", str(location))
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"),
                                       {"id": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as error:
            raise StoreError(f"cannot migrate database {self.safe_url}: {error}") from None

    def lock(self) -> None:
        """SHIM: no file lock yet."""

    def close(self) -> None:
        """SHIM."""
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def _insert(self, table):
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    # ----------------------------------------------------------- versions
    def versions(self, deployment: str) -> list[VersionRow]:
        query = (select(versions.c.name, versions.c.artifact, versions.c.validation_score,
                        versions.c.status)
                 .where(versions.c.deployment == deployment).order_by(versions.c.id))
        with self.engine.connect() as connection:
            return [VersionRow(*row) for row in connection.execute(query)]

    def add_version(self, deployment: str, name: str, artifact: str,
                    validation_score: float | None, *, if_missing: bool = False) -> bool:
        """Record a version as live; False if it exists and ``if_missing``."""
        values = {"deployment": deployment, "name": name, "artifact": artifact,
                  "validation_score": validation_score, "status": "live",
                  "created_at": time.time()}
        try:
            with self.engine.begin() as connection:
                if if_missing:
                    result = connection.execute(
                        self._insert(versions).values(**values)
                        .on_conflict_do_nothing(index_elements=["deployment", "name"]))
                    return result.rowcount == 1
                connection.execute(versions.insert().values(**values))
                return True
        except IntegrityError:
            raise DuplicateArmError(
                f"version {name!r} exists already in deployment {deployment!r}; versions are "
                "never reused, pick a new name") from None

    def set_status(self, deployment: str, name: str, status: str, *,
                   only_from: str | None = None) -> bool:
        """Change a version's status; with ``only_from``, only if it is still that (atomic)."""
        query = (update(versions).where(versions.c.deployment == deployment,
                                        versions.c.name == name).values(status=status))
        if only_from is not None:
            query = query.where(versions.c.status == only_from)
        with self.engine.begin() as connection:
            return connection.execute(query).rowcount == 1

    # ---------------------------------------------------------- decisions
    def add_decisions(self, rows: list[dict[str, Any]]) -> None:
        """Commit decisions: the hot path of every prediction.

        The service calls this from its event loop only, so one held connection serves
        every request (no pool checkout per decision) and the INSERT is sent as driver SQL
        (no statement compilation per call)."""
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.engine.connect()
        params = [(r["id"], r["deployment"], r["version"], json.dumps(r["prediction"]),
                   r["propensity"], r["created_at"]) for r in rows]
        try:
            with self._writer.begin():
                self._writer.exec_driver_sql(self._insert_decision, params)
        except SQLAlchemyError:
            self._writer.close()  # a broken connection is replaced on the next call
            raise

    def decisions_by_id(self, ids: Iterable[str]) -> dict[str, Any]:
        ids = list(ids)
        query = select(decisions).where(decisions.c.id.in_(ids))
        with self.engine.connect() as connection:
            return {row.id: row for row in connection.execute(query)}

    def add_feedback(self, rows: list[dict[str, Any]]) -> list[int | None]:
        """Insert feedback rows; each gets its sequence number, or None if already given."""
        statement = (self._insert(feedback).on_conflict_do_nothing(
            index_elements=["decision_id"]).returning(feedback.c.seq))
        seqs: list[int | None] = []
        with self.engine.begin() as connection:
            for row in rows:
                seqs.append(connection.execute(statement, row).scalar_one_or_none())
        return seqs

    def feedback_after(self, deployment: str, after: int, also: Iterable[int] = ()
                       ) -> list[tuple[int, str, float]]:
        """(seq, version, reward) with seq > ``after`` or in ``also``, in seq order."""
        condition = feedback.c.seq > after
        also = list(also)
        if also:
            condition = condition | feedback.c.seq.in_(also)
        query = (select(feedback.c.seq, feedback.c.version, feedback.c.reward)
                 .where(feedback.c.deployment == deployment, condition)
                 .order_by(feedback.c.seq))
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def totals(self, deployment: str) -> dict[str, Totals]:
        """Per version: decisions logged, feedback received, reward sum and sum of squares."""
        counts = (select(decisions.c.version, func.count())
                  .where(decisions.c.deployment == deployment).group_by(decisions.c.version))
        sums = (select(feedback.c.version, func.count(), func.sum(feedback.c.reward),
                       func.sum(feedback.c.reward * feedback.c.reward))
                .where(feedback.c.deployment == deployment).group_by(feedback.c.version))
        with self.engine.connect() as connection:
            made = dict(connection.execute(counts).all())
            learned = {row[0]: row[1:] for row in connection.execute(sums)}
        return {name: Totals(made.get(name, 0), *(learned.get(name) or (0, 0.0, 0.0)))
                for name in set(made) | set(learned)}

    # ---------------------------------------------------------- snapshots
    def save_snapshot(self, deployment: str, high_water: int, applied: dict[str, list[int]],
                      state: dict[str, Any]) -> None:
        """Upsert what a replica has learned: every feedback with seq <= ``high_water`` but
        those in ``applied["gaps"]``, plus those in ``applied["ahead"]``."""
        values = {"deployment": deployment, "taken_at": time.time(), "high_water": high_water,
                  "applied": applied, "state": state}
        statement = self._insert(policy_snapshots).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["deployment"],
            set_={k: statement.excluded[k] for k in values if k != "deployment"})
        with self.engine.begin() as connection:
            connection.execute(statement)

    def load_snapshot(self, deployment: str) -> Any:
        query = select(policy_snapshots).where(policy_snapshots.c.deployment == deployment)
        with self.engine.connect() as connection:
            return connection.execute(query).first()

    # ------------------------------------------------------------- events
    def add_event(self, deployment: str, when: float, kind: str, version: str | None,
                  reason: str, evidence: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(events.insert().values(
                deployment=deployment, time=when, kind=kind, version=version, reason=reason,
                evidence=evidence))

    def events(self, deployment: str, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = (select(events).where(events.c.deployment == deployment, events.c.seq >= since)
                 .order_by(events.c.seq).limit(limit))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


def _sqlite_pragmas(connection, _record) -> None:
    """WAL: readers never block the writer; NORMAL sync survives a killed process."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # see Store._start_checkpointer
    cursor.close()
