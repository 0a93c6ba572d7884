"""Durable state through SQLAlchemy: SQLite (WAL) by default, PostgreSQL by URL.

:class:`Store` is one database: schema migrations, the version registry, events, policy
snapshots, and a :class:`SqlLog` (the :class:`~banditops.store.log.DecisionLog` of one
deployment) per deployment. Every write is committed before the request that caused it is
answered, so what a client saw acknowledged survives a crash. Feedback is idempotent by
construction: the decision id is unique in the feedback table and a second insert does
nothing. Every database failure surfaces as :class:`~banditops.errors.StoreError` (the service
answers 503); PostgreSQL connections carry connect, statement and idle-transaction timeouts, so
a stalled server fails a request instead of freezing it.

A SQLite file belongs to one process: :meth:`Store.lock` takes an exclusive lock on
``<file>.lock`` for the life of the process, and a second process is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from banditops.errors import (
    DuplicateArmError,
    DuplicateFeedbackError,
    ExpiredDecisionError,
    StoreError,
    UnknownDecisionError,
)
from banditops.store.cursor import FeedbackCursor
from banditops.store.log import (
    CaughtUp,
    Closing,
    DecisionLog,
    LoggedDecision,
    VersionTotals,
    unique_ids,
)
from banditops.store.schema import (
    artifact_chunks,
    artifacts,
    decisions,
    events,
    feedback,
    policy_snapshots,
    shadows,
    version_totals,
    versions,
)

ARTIFACT_CHUNK_BYTES = 1 << 20  # one row of artifact_chunks


class _RawJson(TypeDecorator):
    """JSON text bound as it is (encoded once by the caller, not again by SQLAlchemy)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        return None
MIGRATION_LOCK = 724_007  # PostgreSQL advisory lock id: one replica migrates at a time
GAP_SECONDS = 30.0  # how long a skipped feedback sequence number is looked for again


@dataclass(frozen=True)
class VersionRow:
    name: str
    artifact: str
    validation_score: float | None
    status: str
    sha256: str | None


@contextlib.contextmanager
def _database(what: str, url: str) -> Iterator[None]:
    """SQLAlchemy failures as one StoreError naming the operation (never the password)."""
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
        raise StoreError(f"database {url} unavailable during {what}: "
                         f"{type(error).__name__}: {detail}") from None


class Store:
    """One database. Construction does no I/O; :meth:`migrate` and :meth:`lock` do."""

    def __init__(self, url: str, *, timeout_seconds: float = 5.0, logs: int = 1) -> None:
        """``logs``: how many deployment logs will write here; each holds one connection
        of the pool for its decision inserts, so the pool grows with them."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError("cannot parse the database URL (expected e.g. "
                             "sqlite:///banditops.db or postgresql+psycopg://user@host/db)"
                             ) from None
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.timeout = float(timeout_seconds)
        self.replica = secrets.token_hex(8)  # this process's rows in version_totals
        self._lock_file: Any = None
        try:
            if parsed.get_backend_name() == "sqlite":
                self.path = None if parsed.database in (None, "", ":memory:") else Path(
                    parsed.database).resolve()
                self.engine: Engine = create_engine(
                    parsed, connect_args={"check_same_thread": False,
                                          "timeout": self.timeout})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.path = None
                milliseconds = int(self.timeout * 1000)
                connect_args = {"connect_timeout": max(1, round(self.timeout)),
                                "options": f"-c statement_timeout={milliseconds} "
                                           f"-c idle_in_transaction_session_timeout="
                                           f"{milliseconds * 2}"}
                self.engine = create_engine(parsed, pool_size=4 + logs, max_overflow=5,
                                            pool_pre_ping=True, pool_timeout=self.timeout,
                                            connect_args=connect_args)
        except (SQLAlchemyError, ValueError, ImportError) as error:
            raise StoreError(f"cannot use database {self.safe_url}: {error}") from None
        self.dialect = self.engine.dialect.name
        self._checkpointer: threading.Thread | None = None

    def _guard(self, what: str):
        return _database(what, self.safe_url)

    # ------------------------------------------------------------ process
    def lock(self) -> None:
        """Own a SQLite file for this process's lifetime; a second process is refused."""
        if self.dialect != "sqlite" or self.path is None or self._lock_file is not None:
            return
        try:
            handle = open(f"{self.path}.lock", "a+")  # noqa: SIM115 (held for the process)
        except OSError as error:
            raise StoreError(f"cannot use the SQLite database {self.path}: "
                             f"{error.strerror or error}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"the SQLite database {self.path} is in use by another banditops process; "
                "a SQLite file belongs to one process (use PostgreSQL for replicas)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        self._start_checkpointer()

    def _start_checkpointer(self) -> None:
        """Move the WAL into the database from a background thread, once a second.

        SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 pages and
        stalls that request for milliseconds; connections here turn it off instead."""
        if self._checkpointer is not None:
            return

        def checkpoint() -> None:
            while True:
                time.sleep(1.0)
                try:
                    with self.engine.connect() as connection:
                        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except SQLAlchemyError:
                    continue

        self._checkpointer = threading.Thread(target=checkpoint, name="wal-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe with concurrent replicas)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        location = resources.files("banditops.store") / "migrations"
        config.set_main_option("script_location", str(location))
        with self._guard("migration"), self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"),
                                   {"id": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def revision(self) -> tuple[str | None, str]:
        """(the schema's Alembic revision, or None for an empty database; the newest one
        this banditops knows): a reader that does not migrate checks them first."""
        from alembic.script import ScriptDirectory

        location = resources.files("banditops.store") / "migrations"
        head = ScriptDirectory(str(location)).get_current_head() or ""
        with self._guard("reading the schema revision"), self.engine.connect() as connection:
            if not self.engine.dialect.has_table(connection, "alembic_version"):
                return None, head
            found = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        return (None if found is None else str(found[0])), head

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    def insert(self, table):
        """INSERT with the dialect's ON CONFLICT support."""
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    def log(self, deployment: str, ttl: float) -> SqlLog:
        """The decision log of one deployment."""
        return SqlLog(self, deployment, ttl)

    # ----------------------------------------------------------- versions
    def versions(self, deployment: str) -> list[VersionRow]:
        query = (select(versions.c.name, versions.c.artifact, versions.c.validation_score,
                        versions.c.status, versions.c.sha256)
                 .where(versions.c.deployment == deployment).order_by(versions.c.id))
        with self._guard("reading versions"), self.engine.connect() as connection:
            return [VersionRow(*row) for row in connection.execute(query)]

    def add_version(self, deployment: str, name: str, artifact: str,
                    validation_score: float | None, sha256: str, *,
                    if_missing: bool = False, status: str = "live",
                    event: tuple[str, dict[str, Any]] | None = None) -> bool:
        """Record a version as live (or ``status="dark"``, released dark); False if it
        exists and ``if_missing``. ``event`` (reason, evidence): a "registered" event stored
        in the same transaction, so it exists exactly when the row was added here."""
        now = time.time()
        values = {"deployment": deployment, "name": name, "artifact": artifact,
                  "validation_score": validation_score, "status": status,
                  "created_at": now, "sha256": sha256}
        try:
            with self._guard("registering a version"), self.engine.begin() as connection:
                if if_missing:
                    # RETURNING, not rowcount: psycopg reports -1 for this statement
                    added = connection.execute(
                        self.insert(versions).values(**values)
                        .on_conflict_do_nothing(index_elements=["deployment", "name"])
                        .returning(versions.c.id)).scalar_one_or_none() is not None
                else:
                    connection.execute(versions.insert().values(**values))
                    added = True
                if added and event is not None:
                    connection.execute(events.insert().values(
                        deployment=deployment, time=now, kind="registered", version=name,
                        reason=event[0], evidence=event[1]))
                return added
        except IntegrityError:
            raise DuplicateArmError(
                f"version {name!r} exists already in deployment {deployment!r}; versions are "
                "never reused, pick a new name") from None

    # ---------------------------------------------------------- artifacts
    def has_artifact(self, sha256: str) -> bool:
        query = select(artifacts.c.sha256).where(artifacts.c.sha256 == sha256)
        with self._guard("reading an artifact"), self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def put_artifact(self, sha256: str, suffix: str, path: Path) -> bool:
        """Store a file's bytes under their sha256 (checked again while reading them), one
        chunk per statement, all in one transaction; False if they were stored already."""
        size = path.stat().st_size
        chunks = max(1, -(-size // ARTIFACT_CHUNK_BYTES))
        header = {"sha256": sha256, "suffix": suffix, "size": size, "chunks": chunks,
                  "created_at": time.time()}
        digest = hashlib.sha256()
        with self._guard("storing an artifact"), self.engine.begin() as connection:
            inserted = connection.execute(  # rowcount is -1 here with psycopg: RETURNING
                self.insert(artifacts).values(**header)
                .on_conflict_do_nothing(index_elements=["sha256"])
                .returning(artifacts.c.sha256)).first() is not None
            if not inserted:
                return False
            with path.open("rb") as source:
                for seq in range(chunks):
                    data = source.read(ARTIFACT_CHUNK_BYTES)
                    digest.update(data)
                    connection.execute(artifact_chunks.insert().values(
                        sha256=sha256, seq=seq, data=data))
                longer = source.read(1) != b""
            if digest.hexdigest() != sha256 or longer:
                raise StoreError(f"artifact {path.name} changed while it was stored")
        return True

    def read_artifact(self, sha256: str, destination: Path) -> str | None:
        """Write a stored artifact's bytes to ``destination`` (chunk by chunk, the digest
        checked) and return its suffix; None if the database does not hold it."""
        with self._guard("reading an artifact"), self.engine.connect() as connection:
            row = connection.execute(select(artifacts.c.suffix, artifacts.c.chunks)
                                     .where(artifacts.c.sha256 == sha256)).first()
            if row is None:
                return None
            digest = hashlib.sha256()
            with destination.open("wb") as sink:
                for seq in range(row.chunks):
                    data = connection.execute(select(artifact_chunks.c.data).where(
                        artifact_chunks.c.sha256 == sha256,
                        artifact_chunks.c.seq == seq)).scalar_one_or_none()
                    if data is None:
                        raise StoreError(f"artifact {sha256}: chunk {seq} is missing")
                    digest.update(data)
                    sink.write(data)
        if digest.hexdigest() != sha256:
            destination.unlink(missing_ok=True)
            raise StoreError(f"artifact {sha256}: the stored bytes do not match their sha256")
        return row.suffix

    def pin_version(self, deployment: str, name: str, sha256: str) -> None:
        """Record the sha256 of a version registered before pins existed."""
        query = (update(versions).where(versions.c.deployment == deployment,
                                        versions.c.name == name, versions.c.sha256.is_(None))
                 .values(sha256=sha256))
        with self._guard("pinning a version"), self.engine.begin() as connection:
            connection.execute(query)

    def set_status(self, deployment: str, name: str, status: str, *,
                   only_from: Sequence[str] | None = None) -> bool:
        """Change a version's status; with ``only_from``, only if it is one of those (atomic)."""
        query = (update(versions).where(versions.c.deployment == deployment,
                                        versions.c.name == name).values(status=status))
        if only_from is not None:
            query = query.where(versions.c.status.in_(list(only_from)))
        with self._guard("changing a version's status"), self.engine.begin() as connection:
            return connection.execute(query).rowcount == 1

    def take_down(self, deployment: str, name: str, status: str) -> str:
        """Take a version (live, or dark: it serves nobody) out of service unless that would
        leave no live version.

        "changed", "already" (another replica took it down first), or "last_live" (the other
        live versions were taken down meanwhile, e.g. by another replica's rollback). The
        deployment's version rows are locked first (PostgreSQL), so two replicas taking down
        the last two live versions at once cannot both succeed."""
        rows = (select(versions.c.name, versions.c.status)
                .where(versions.c.deployment == deployment).order_by(versions.c.id))
        if self.dialect == "postgresql":
            rows = rows.with_for_update()
        with self._guard("taking a version down"), self.engine.begin() as connection:
            statuses = dict(connection.execute(rows).all())
            current = statuses.get(name)
            if current is None or current == status or current == "retired" or (
                    current not in ("live", "dark") and status != "retired"):
                return "already"
            if current == "live" and not any(
                    s == "live" for n, s in statuses.items() if n != name):
                return "last_live"
            connection.execute(update(versions).where(
                versions.c.deployment == deployment, versions.c.name == name)
                .values(status=status))
            return "changed"

    # ---------------------------------------------------------- snapshots
    def save_snapshot(self, deployment: str, state: dict[str, Any] | str) -> None:
        """Upsert what a replica has learned (the state holds its log position); ``state``
        may come encoded as JSON text already (then it is stored as it is)."""
        stored: Any = state if not isinstance(state, str) else type_coerce(state, _RawJson())
        values = {"deployment": deployment, "taken_at": time.time(), "high_water": 0,
                  "applied": {}, "state": stored}
        statement = self.insert(policy_snapshots).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["deployment"],
            set_={k: statement.excluded[k] for k in values if k != "deployment"})
        with self._guard("saving a snapshot"), self.engine.begin() as connection:
            connection.execute(statement)

    def load_snapshot(self, deployment: str) -> dict[str, Any] | None:
        query = (select(policy_snapshots.c.state)
                 .where(policy_snapshots.c.deployment == deployment))
        with self._guard("loading a snapshot"), self.engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    # ------------------------------------------------------------- events
    def add_event(self, deployment: str, when: float, kind: str, version: str | None,
                  reason: str, evidence: dict[str, Any]) -> None:
        with self._guard("recording an event"), self.engine.begin() as connection:
            connection.execute(events.insert().values(
                deployment=deployment, time=when, kind=kind, version=version, reason=reason,
                evidence=evidence))

    def events(self, deployment: str, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = (select(events).where(events.c.deployment == deployment, events.c.seq >= since)
                 .order_by(events.c.seq).limit(limit))
        with self._guard("reading events"), self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


class SqlLog(DecisionLog):
    """One deployment's decisions and feedback in SQL, shared by every replica.

    Used from one thread at a time (the deployment's worker): decision inserts and shadow
    attachments go through one held connection as driver SQL, which keeps the hot path to
    one round trip and no statement compilation.

    A decision's context (the request's features, ``LoggedDecision.context``) is stored with
    it when it is a mapping, and read back by :meth:`lookup_many` and :meth:`catch_up`, so a
    contextual policy learns a feedback on the features it was earned on, whichever replica
    gets the feedback.

    Shadow predictions live in the ``shadows`` table, one row per decision and version.
    The rewards they earned are written in the transaction that stores the decision's
    feedback, so a replica that reads a feedback row (catch-up) reads its shadow rewards
    too, and learns each exactly once, as it does the served reward. Shadows attached after
    the answer (:meth:`add_shadows`) race with a feedback closing the decision on another
    replica; see there for why a decision closed meanwhile keeps none.
    """

    keeps_shadows = True

    def __init__(self, store: Store, deployment: str, ttl: float) -> None:
        self.store = store
        self.deployment = deployment
        self.ttl = ttl
        self.cursor = FeedbackCursor(GAP_SECONDS)
        self._writer = None
        marker = "?" if store.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_decisions = (
            "INSERT INTO decisions (id, deployment, version, prediction, propensity, "
            f"created_at, owner, context) VALUES ({', '.join([marker] * 8)})")
        self._insert_shadows = (
            "INSERT INTO shadows (decision_id, version, deployment, prediction) "
            f"VALUES ({', '.join([marker] * 4)})")
        self._count_decisions = (
            "INSERT INTO version_totals (deployment, version, replica, decisions, feedbacks, "
            f"reward_sum, reward_sq) VALUES ({marker}, {marker}, {marker}, {marker}, 0, 0, 0) "
            "ON CONFLICT (deployment, version, replica) DO UPDATE SET "
            "decisions = version_totals.decisions + excluded.decisions")
        self._count_feedback = (
            "INSERT INTO version_totals (deployment, version, replica, decisions, feedbacks, "
            f"reward_sum, reward_sq) VALUES ({marker}, {marker}, {marker}, 0, {marker}, "
            f"{marker}, {marker}) ON CONFLICT (deployment, version, replica) DO UPDATE SET "
            "feedbacks = version_totals.feedbacks + excluded.feedbacks, "
            "reward_sum = version_totals.reward_sum + excluded.reward_sum, "
            "reward_sq = version_totals.reward_sq + excluded.reward_sq")
        self._add_feedback = (store.insert(feedback).on_conflict_do_nothing(
            index_elements=["decision_id"]).returning(feedback.c.seq))
        postgres = store.dialect == "postgresql"
        self._score_shadows = (
            f"UPDATE shadows SET reward = {marker} WHERE decision_id = {marker} "
            f"AND version = {marker}")
        self._drop_unscored = (
            "DELETE FROM shadows WHERE decision_id = ANY(%s) AND reward IS NULL" if postgres
            else "DELETE FROM shadows WHERE decision_id IN (SELECT value FROM json_each(?)) "
            "AND reward IS NULL")
        # add_shadows, as driver SQL (it runs after every answered request): the open
        # decisions of a batch (locked, on PostgreSQL), then their shadow rows unless their
        # feedback was stored meanwhile.
        unshadowed = ("NOT EXISTS (SELECT 1 FROM feedback f WHERE f.decision_id = d.id) AND "
                      "NOT EXISTS (SELECT 1 FROM shadows s WHERE s.decision_id = d.id)")
        self._open_decisions = (
            f"SELECT d.id FROM decisions d WHERE d.deployment = %s AND d.id = ANY(%s) AND "
            f"{unshadowed} FOR UPDATE OF d SKIP LOCKED" if postgres else
            "SELECT d.id FROM json_each(?) j CROSS JOIN decisions d ON d.id = j.value "
            f"WHERE d.deployment = ? AND {unshadowed}")  # CROSS JOIN: by primary key
        self._attach_shadows = (
            "INSERT INTO shadows (decision_id, version, deployment, prediction) "
            "SELECT s.d, s.v, %s, s.p::json FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "AS s(d, v, p) WHERE NOT EXISTS (SELECT 1 FROM feedback f WHERE "
            "f.decision_id = s.d) ON CONFLICT DO NOTHING RETURNING decision_id" if postgres
            else "INSERT OR IGNORE INTO shadows (decision_id, version, deployment, prediction) "
            "SELECT json_extract(s.value, '$[0]'), json_extract(s.value, '$[1]'), ?, "
            "json_extract(s.value, '$[2]') FROM json_each(?) s WHERE NOT EXISTS (SELECT 1 "
            "FROM feedback f WHERE f.decision_id = json_extract(s.value, '$[0]'))")

    def _connection(self):
        writer = self._writer
        if writer is None or writer.closed or writer.invalidated:
            writer = self._writer = self.store.engine.connect()
        return writer

    def record(self, decisions_: Sequence[LoggedDecision]) -> None:
        if not decisions_:
            return
        params = [(d.id, self.deployment, d.version, json.dumps(d.prediction), d.propensity,
                   d.created_at, d.owner, None if d.context is None else context_json(d.context))
                  for d in decisions_]
        counts: dict[str, int] = {}
        for d in decisions_:
            counts[d.version] = counts.get(d.version, 0) + 1
        inline = [(d.id, name, self.deployment, json.dumps(prediction))
                  for d in decisions_ if d.shadows for name, prediction in d.shadows]
        writer = self._connection()
        try:
            with self.store._guard("logging decisions"), writer.begin():
                writer.exec_driver_sql(self._insert_decisions, params)
                if inline:
                    writer.exec_driver_sql(self._insert_shadows, inline)
                writer.exec_driver_sql(self._count_decisions, [
                    (self.deployment, version, self.store.replica, n)
                    for version, n in counts.items()])
        except Exception:
            writer.close()  # a broken connection is replaced on the next call
            raise

    def add_shadows(self, shadows_: Mapping[str, tuple[tuple[str, Any], ...]]) -> int:
        """Attach shadow predictions to this deployment's open decisions: two statements in
        one transaction for the whole batch. A decision closed meanwhile, here or on another
        replica, keeps none: every shadow row of a closed decision holds the reward learned.
        A decision that has shadows already keeps them.

        A close that looked a decision up before its shadows were attached did not score
        them, and deletes them (see :meth:`close`); what must not happen is an insert after
        that close committed. SQLite writes one transaction at a time, so each insert's
        check for feedback holds until it commits. On PostgreSQL the decisions' rows are
        locked first (``FOR UPDATE SKIP LOCKED``), then the insert skips any that has
        feedback. Storing a feedback takes a key-share lock on its decision's row (the
        foreign key), which conflicts with that lock: a decision whose feedback is being
        stored right now is skipped (never waited for); a feedback committed before the
        lock is seen by the insert (a later statement, so a later snapshot); one arriving
        after the lock waits until these shadows are committed, then its close deletes
        them."""
        ids = [i for i in unique_ids(shadows_) if isinstance(i, str) and shadows_[i]]
        if not ids:
            return 0
        postgres = self.store.dialect == "postgresql"
        writer = self._connection()
        try:
            with self.store._guard("attaching shadow predictions"), writer.begin():
                open_ids = {row[0] for row in writer.exec_driver_sql(
                    self._open_decisions, (self.deployment, ids) if postgres
                    else (json.dumps(ids), self.deployment))}
                rows = [(i, name, json.dumps(prediction))
                        for i in ids if i in open_ids for name, prediction in shadows_[i]]
                if not rows:
                    return 0
                if postgres:
                    columns = list(zip(*rows, strict=True))
                    added = writer.exec_driver_sql(self._attach_shadows, (
                        self.deployment, list(columns[0]), list(columns[1]),
                        list(columns[2])))
                    return len({row[0] for row in added})
                # SQLite: the insert checks for feedback under the database's write lock;
                # the rows travel as one JSON array (no binding per row).
                writer.exec_driver_sql(self._attach_shadows, (self.deployment,
                                                              json.dumps(rows)))
                return len({row[0] for row in rows})
        except Exception:
            writer.close()  # a broken connection is replaced on the next call
            raise

    def lookup(self, decision_id: str, now: float, owner: str | None = None) -> LoggedDecision:
        found = self.lookup_many([decision_id], now, owner)[decision_id]
        if isinstance(found, Exception):
            raise found
        return found

    def lookup_many(self, ids: Sequence[str], now: float, owner: str | None = None
                    ) -> dict[str, Any]:
        wanted = unique_ids(ids)
        query = (select(decisions.c.id, decisions.c.deployment, decisions.c.version,
                        decisions.c.prediction, decisions.c.propensity, decisions.c.created_at,
                        decisions.c.owner, decisions.c.context, feedback.c.seq,
                        shadows.c.version.label("shadow_version"),
                        shadows.c.prediction.label("shadow_prediction"))
                 .select_from(decisions)
                 .outerjoin(feedback, feedback.c.decision_id == decisions.c.id)
                 .outerjoin(shadows, shadows.c.decision_id == decisions.c.id)
                 .where(decisions.c.id.in_(wanted)))
        rows: dict[str, Any] = {}
        predictions: dict[str, list[tuple[str, Any]]] = {}
        with self.store._guard("reading decisions"), self.store.engine.connect() as connection:
            for row in connection.execute(query):
                rows.setdefault(row.id, row)
                if row.shadow_version is not None:
                    predictions.setdefault(row.id, []).append(
                        (row.shadow_version, row.shadow_prediction))
        found: dict[str, Any] = {}
        for decision_id in wanted:
            row = rows.get(decision_id)
            if row is None or row.deployment != self.deployment or (
                    row.owner is not None and row.owner != owner):
                found[decision_id] = UnknownDecisionError(
                    f"unknown decision id {decision_id!r}")
            elif row.seq is not None:
                found[decision_id] = DuplicateFeedbackError(
                    f"decision {decision_id} already has feedback; counted once")
            elif now - row.created_at > self.ttl:
                found[decision_id] = ExpiredDecisionError(
                    f"decision {decision_id} is older than feedback_ttl_seconds={self.ttl:g}")
            else:
                found[decision_id] = LoggedDecision(
                    row.id, row.version, row.prediction, row.propensity, row.created_at,
                    row.owner, tuple(sorted(predictions.get(decision_id, ()),
                                            key=lambda p: p[0])), row.context)
        return found

    def close(self, closings: Sequence[Closing], now: float) -> list[int | None]:
        """Store the feedback, its totals and the shadow rewards in one transaction."""
        seqs: list[int | None] = []
        sums: dict[str, list[float]] = {}
        scored: list[tuple[float, str, str]] = []
        closed: list[str] = []
        with self.store._guard("recording feedback"), \
                self.store.engine.begin() as connection:
            for decision, label, reward, shadow_rewards in closings:
                seq = connection.execute(self._add_feedback, {
                    "decision_id": decision.id, "deployment": self.deployment,
                    "version": decision.version, "label": label, "reward": reward,
                    "created_at": now}).scalar_one_or_none()
                seqs.append(seq)
                if seq is not None:
                    total = sums.setdefault(decision.version, [0, 0.0, 0.0])
                    total[0] += 1
                    total[1] += reward
                    total[2] += reward * reward
                    closed.append(decision.id)
                    scored += [(r, decision.id, name) for name, r in shadow_rewards]
            if scored:
                connection.exec_driver_sql(self._score_shadows, scored)
            if closed:
                # Shadows attached (on another replica) after the decision was looked up:
                # unscored, so nobody learns them (see add_shadows).
                connection.exec_driver_sql(self._drop_unscored, (
                    closed if self.store.dialect == "postgresql" else json.dumps(closed),))
            if sums:
                connection.exec_driver_sql(self._count_feedback, [
                    (self.deployment, version, self.store.replica, int(n), s, sq)
                    for version, (n, s, sq) in sums.items()])
        for seq in seqs:
            if seq is not None:
                self.cursor.wrote(seq)
        return seqs

    def catch_up(self) -> list[CaughtUp]:
        """Feedback other replicas wrote, with its shadow rewards and its decision's context:
        rows above the cursor or in its gaps.

        Rows of other deployments are read too (sequence numbers are shared), so that their
        numbers settle instead of lingering as gaps; only this deployment's are learned.
        Shadow rewards are committed with their feedback row, so one read sees both."""
        now = time.monotonic()
        cursor = self.cursor
        condition = feedback.c.seq > cursor.high_water
        gaps = cursor.wanted(now)
        if gaps:
            condition = condition | feedback.c.seq.in_(gaps)
        query = (select(feedback.c.seq, feedback.c.deployment, feedback.c.version,
                        feedback.c.reward, decisions.c.context,
                        shadows.c.version.label("shadow_version"),
                        shadows.c.reward.label("shadow_reward"))
                 .select_from(feedback)
                 .join(decisions, decisions.c.id == feedback.c.decision_id)
                 .outerjoin(shadows, (shadows.c.decision_id == feedback.c.decision_id)
                            & shadows.c.reward.is_not(None))
                 .where(condition).order_by(feedback.c.seq, shadows.c.version))
        with self.store._guard("catching up"), self.store.engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return []
        first: dict[int, Any] = {}
        rewards: dict[int, list[tuple[str, float]]] = {}
        for row in rows:
            first.setdefault(row.seq, row)
            if row.shadow_version is not None:
                rewards.setdefault(row.seq, []).append((row.shadow_version, row.shadow_reward))
        learn = set(cursor.advance(list(first), now))
        return [CaughtUp(row.version, row.reward, tuple(rewards.get(seq, ())), row.context)
                for seq, row in first.items()
                if seq in learn and row.deployment == self.deployment]

    def position(self) -> dict[str, Any]:
        return self.cursor.state()

    def restore_position(self, position: dict[str, Any]) -> None:
        self.cursor.load(position, time.monotonic())

    def totals(self) -> dict[str, VersionTotals]:
        query = (select(version_totals.c.version, func.sum(version_totals.c.decisions),
                        func.sum(version_totals.c.feedbacks),
                        func.sum(version_totals.c.reward_sum),
                        func.sum(version_totals.c.reward_sq))
                 .where(version_totals.c.deployment == self.deployment)
                 .group_by(version_totals.c.version))
        with self.store._guard("reading totals"), self.store.engine.connect() as connection:
            return {version: VersionTotals(int(n or 0), int(f or 0), 0, float(s or 0.0),
                                           float(sq or 0.0))
                    for version, n, f, s, sq in connection.execute(query)}


# One encoder for every context: json.dumps with options builds a new one per call (a third
# of the cost of encoding a request's features).
_encode_context = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def context_json(context: Any) -> str | None:
    """A decision's context as the log stores it: a mapping of features as JSON; None for
    anything else (an encoded vector means nothing without its encoder, so none is kept).

    The service's contexts are its validated instances (names to finite numbers, strings,
    booleans or null), which ``json.dumps`` takes as they are; other values (numpy scalars,
    NaN from a frame) are made plain: NaN and infinities null, as the encoder reads NaN."""
    if type(context) is not dict:
        if not isinstance(context, Mapping):
            return None
        context = dict(context)
    try:
        return _encode_context(context)
    except (TypeError, ValueError):
        return json.dumps({str(k): _plain(v) for k, v in context.items()},
                          separators=(",", ":"))


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, str | int | float | bool):
        try:
            value = item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _sqlite_pragmas(connection, _record) -> None:
    """WAL: readers never block the writer; NORMAL sync survives a killed process."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # see Store._start_checkpointer
    cursor.close()
