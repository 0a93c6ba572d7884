"""A deployment's decision log as a file, for off-policy evaluation (``banditops evaluate``).

One row per decision, oldest first, in the decision-log file format of
:mod:`banditops.ope.logfile` (Parquet or CSV):

==================  =====================================================================
``decision_id``     the decision's id
``time``            when it was made (Unix seconds, the serving replica's clock)
``version``         the version that served it
``propensity``      the chance the policy gave that version (the logged one, exact)
``reward``          the reward its feedback earned; empty when none came (yet)
``feedback_time``   when that feedback arrived (Unix seconds; at least ``time``: the
                    replica that stored it may have a clock a little behind); empty
                    without feedback
``live``            JSON list of the versions live when it was made (see below)
``validation_score`` the served version's offline validation score (only when a version
                    of the deployment has one)
``feature:<name>``  each request feature, from the logged context (``log_features``, or a
                    contextual policy); absent when no decision in the range has one
``reward:<v>``      the reward version ``v``'s shadow prediction earned on the same label
                    (shadow scoring); empty where ``v`` was not scored
==================  =====================================================================

**Live versions** come from the events table, which records every status change with the
deploying replica's clock: ``registered`` (live, or dark when its evidence says so),
``promoted`` and ``reinstated`` (live), ``rolled_back``, ``quarantined`` and ``retired`` (not
live). A decision's live set is the state after every event up to its time; dark versions
serve nobody, so they are not in it. A version with no ``registered`` event (a database older
than events) counts as registered when its ``versions`` row was created. A decision always
lists the version that served it: it was live on the replica that served it, whose clock may
differ from another replica's by a few milliseconds.

**Bounded work.** Rows are read in chunks of ``CHUNK_ROWS`` by keyset pagination on
``(created_at, id)`` (the index of migration 0006), each chunk one short query on its own
connection, so an export holds no transaction open while a slow reader drains it, and memory
stays one chunk whatever the size of the log. The feature columns and shadow versions are
found first, by one grouped query over the same rows, so every chunk is written with one
schema (a Parquet file has one).

Blocking I/O throughout: call it from a thread, never from the event loop.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import String, Text, any_, bindparam, cast, func, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from banditops.errors import InvalidParameterError
from banditops.ope.logfile import csv_text
from banditops.store.schema import decisions, events, feedback, shadows, versions
from banditops.store.sql import Store

CHUNK_ROWS = 5_000  # decisions per query and per Parquet row group
BASE_COLUMNS = ("decision_id", "time", "version", "propensity", "reward", "feedback_time",
                "live")
FEATURE_PREFIX, REWARD_PREFIX = "feature:", "reward:"
FORMATS = ("parquet", "csv")
Format = Literal["parquet", "csv"]
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}
GOES_LIVE = {"promoted", "reinstated"}
TAKES_DOWN = {"rolled_back", "quarantined", "retired"}
# JSON value types, as SQLite's json_each and PostgreSQL's json_typeof name them
_NUMBER_TYPES = {"integer", "real", "number"}
_BOOLEAN_TYPES = {"true", "false", "boolean"}
_STRING_TYPES = {"text", "string"}


def format_of(path: str | Path) -> Format:
    """``parquet`` or ``csv`` from a file name's suffix; InvalidParameterError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".csv"):
        return suffix[1:]  # type: ignore[return-value]
    raise InvalidParameterError(f"{path}: the decision log is written as .parquet or .csv; "
                                f"got {suffix or 'no suffix'!r}")


# ----------------------------------------------------------------- live versions
class LiveTimeline:
    """Which versions were live at any moment, from a deployment's events."""

    def __init__(self, changes: list[tuple[float, str, str]], order: list[str]) -> None:
        """``changes``: (time, version, "live" | "dark" | "down"), in the order they
        happened; ``order``: versions in registration order (the lists' order)."""
        rank = {name: i for i, name in enumerate(order)}
        self.times: list[float] = []
        self.lists: list[str] = []  # JSON list after each change
        self.sets: list[frozenset[str]] = []
        live: set[str] = set()
        for when, version, state in changes:
            if state == "live":
                live.add(version)
            else:
                live.discard(version)
            names = sorted(live, key=lambda n: (rank.get(n, len(rank)), n))
            if self.times and self.times[-1] == when:  # same instant: the last state holds
                self.lists[-1], self.sets[-1] = _names(names), frozenset(names)
            else:
                self.times.append(when)
                self.lists.append(_names(names))
                self.sets.append(frozenset(names))
        self._rank = rank

    def at(self, when: float, served: str) -> str:
        """The JSON list of versions live at ``when``, with ``served`` among them."""
        index = bisect.bisect_right(self.times, when) - 1
        if index >= 0 and served in self.sets[index]:
            return self.lists[index]
        names = set(self.sets[index]) if index >= 0 else set()
        names.add(served)
        return _names(sorted(names, key=lambda n: (self._rank.get(n, len(self._rank)), n)))


def _names(names: list[str]) -> str:
    return json.dumps(names, separators=(",", ":"))  # as banditops.ope.logfile.live_json


def live_timeline(store: Store, deployment: str) -> LiveTimeline:
    """The deployment's :class:`LiveTimeline`, from its events and versions tables."""
    kinds = ["registered", *GOES_LIVE, *TAKES_DOWN]
    query = (select(events.c.seq, events.c.time, events.c.kind, events.c.version,
                    events.c.evidence)
             .where(events.c.deployment == deployment, events.c.kind.in_(kinds),
                    events.c.version.is_not(None)))
    rows_query = (select(versions.c.name, versions.c.created_at, versions.c.status)
                  .where(versions.c.deployment == deployment).order_by(versions.c.id))
    with store._guard("reading events"), store.engine.connect() as connection:
        found = connection.execute(query).all()
        stored = connection.execute(rows_query).all()
    changes: list[tuple[float, int, str, str]] = []
    registered: set[str] = set()
    promoted = {row.version for row in found if row.kind == "promoted"}
    for row in found:
        if row.kind == "registered":
            registered.add(row.version)
            evidence = row.evidence if isinstance(row.evidence, dict) else {}
            dark = evidence.get("dark") is True or evidence.get("status") == "dark"
            state = "dark" if dark else "live"
        else:
            state = "live" if row.kind in GOES_LIVE else "down"
        changes.append((float(row.time), int(row.seq), row.version, state))
    for name, created_at, status in stored:
        if name not in registered:  # no event (an old database): registered with its row
            first = "dark" if status == "dark" or name in promoted else "live"
            changes.append((float(created_at), -1, name, first))
    changes.sort(key=lambda change: (change[0], change[1]))
    return LiveTimeline([(when, version, state) for when, _, version, state in changes],
                        [row.name for row in stored])


# ------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class ExportPlan:
    """What an export holds: its rows (at most ``limit``), feature columns and shadow
    versions, known before the first row is written."""

    deployment: str
    since: float | None
    until: float | None
    limit: int | None
    rows: int  # decisions the export holds
    truncated: bool  # whether [since, until) holds more than ``limit``
    features: dict[str, str]  # name -> "number" | "string" | "boolean"
    shadow_versions: tuple[str, ...]
    scores: dict[str, float]  # validation scores of the deployment's versions (if any)

    @property
    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *(["validation_score"] if self.scores else []),
                *(FEATURE_PREFIX + name for name in self.features),
                *(REWARD_PREFIX + name for name in self.shadow_versions)]


def _in_range(deployment: str, since: float | None, until: float | None) -> list[Any]:
    conditions: list[Any] = [decisions.c.deployment == deployment]
    if since is not None:
        conditions.append(decisions.c.created_at >= since)
    if until is not None:
        conditions.append(decisions.c.created_at < until)
    return conditions


def check_deployment(store: Store, deployment: str) -> None:
    """InvalidParameterError naming the deployments that have decisions, when ``deployment``
    has none (a typo would otherwise export an empty log)."""
    with store._guard("listing deployments"), store.engine.connect() as connection:
        if connection.execute(select(decisions.c.id).where(
                decisions.c.deployment == deployment).limit(1)).first() is not None:
            return
        known = connection.execute(
            select(decisions.c.deployment).group_by(decisions.c.deployment)
            .order_by(decisions.c.deployment)).scalars().all()
    raise InvalidParameterError(
        f"deployment {deployment!r} has no decisions in this database; deployments with "
        f"decisions: {', '.join(known) or 'none'}")


def check_range(since: float | None, until: float | None, limit: int | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and not math.isfinite(value):
            raise InvalidParameterError(f"{name} must be a finite Unix time, got {value!r}")
    if since is not None and until is not None and since > until:
        raise InvalidParameterError(f"since ({since:g}) is after until ({until:g}); the "
                                    "export holds decisions with since <= time < until")
    if limit is not None and limit < 1:
        raise InvalidParameterError(f"limit must be at least 1, got {limit}")


def plan_export(store: Store, deployment: str, *, since: float | None = None,
                until: float | None = None, limit: int | None = None) -> ExportPlan:
    """Count the rows and find the columns of an export (decisions with
    ``since <= time < until``, oldest first, at most ``limit``)."""
    check_range(since, until, limit)
    conditions = _in_range(deployment, since, until)
    chosen = (select(decisions.c.id, decisions.c.context).where(*conditions)
              .order_by(decisions.c.created_at, decisions.c.id))
    if limit is not None:
        chosen = chosen.limit(limit + 1)  # one more: whether the range holds more
    counted = chosen.subquery("chosen")
    postgres = store.dialect == "postgresql"
    with store._guard("planning an export"), store.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(counted)).scalar_one()
        truncated = limit is not None and total > limit
        rows = min(total, limit) if limit is not None else total
        kept = chosen.limit(limit) if limit is not None else chosen
        kept_sub = kept.subquery("kept")
        # every feature name and the JSON types its values take, over the exported rows
        # (json_each in FROM reads the row before it, as a lateral join, in both dialects)
        pairs = func.json_each(kept_sub.c.context).table_valued(
            "key", "value" if postgres else "type")
        kind = func.json_typeof(pairs.c.value) if postgres else pairs.c.type
        keys = (select(pairs.c.key, kind).distinct().select_from(kept_sub)
                .join(pairs, true()).where(kept_sub.c.context.is_not(None)))
        types: dict[str, set[str]] = {}
        for key, value_kind in connection.execute(keys):
            types.setdefault(str(key), set()).add(str(value_kind))
        shadowed = connection.execute(
            select(shadows.c.version).distinct()
            .join(kept_sub, kept_sub.c.id == shadows.c.decision_id)
            .where(shadows.c.reward.is_not(None))).scalars().all()
        scores = {name: float(score) for name, score in connection.execute(
            select(versions.c.name, versions.c.validation_score)
            .where(versions.c.deployment == deployment,
                   versions.c.validation_score.is_not(None)))}
    features = {name: _kind(kinds) for name, kinds in sorted(types.items())}
    return ExportPlan(deployment, since, until, limit, int(rows), bool(truncated), features,
                      tuple(sorted(shadowed)), scores)


def _kind(kinds: set[str]) -> str:
    values = kinds - {"null"}
    if values and values <= _NUMBER_TYPES:
        return "number"
    if values and values <= _BOOLEAN_TYPES:
        return "boolean"
    return "string"  # strings, or a mix (written as text), or only nulls


def export_frames(store: Store, plan: ExportPlan, *, chunk_rows: int = CHUNK_ROWS
                  ) -> Iterator[pd.DataFrame]:
    """The export's rows as frames of at most ``chunk_rows``, with the plan's columns."""
    timeline = live_timeline(store, plan.deployment)
    conditions = _in_range(plan.deployment, plan.since, plan.until)
    query = (select(decisions.c.id, decisions.c.created_at, decisions.c.version,
                    decisions.c.propensity,
                    cast(decisions.c.context, Text).label("context"))  # parsed below
             .order_by(decisions.c.created_at, decisions.c.id))
    left = plan.rows
    after: tuple[float, str] | None = None
    postgres = store.dialect == "postgresql"
    while left > 0:
        where = list(conditions)
        if after is not None:  # the bound first, so the index's range starts there
            where += [decisions.c.created_at >= after[0],
                      or_(decisions.c.created_at > after[0], decisions.c.id > after[1])]
        size = min(chunk_rows, left)
        with store._guard("exporting decisions"), store.engine.connect() as connection:
            rows = connection.execute(query.where(*where).limit(size)).all()
            ids = [row.id for row in rows]
            # by primary key, per chunk: a join would let the planner scan all feedback
            closed = {decision_id: (reward, created_at) for decision_id, reward, created_at
                      in connection.execute(
                          select(feedback.c.decision_id, feedback.c.reward,
                                 feedback.c.created_at)
                          .where(_among(feedback.c.decision_id, ids, postgres)))} if ids else {}
            rewards: dict[tuple[str, str], float] = {}
            if ids and plan.shadow_versions:
                for decision_id, version, reward in connection.execute(
                        select(shadows.c.decision_id, shadows.c.version, shadows.c.reward)
                        .where(_among(shadows.c.decision_id, ids, postgres),
                               shadows.c.reward.is_not(None))):
                    rewards[(decision_id, version)] = reward
        if not rows:
            return
        left -= len(rows)
        after = (rows[-1].created_at, rows[-1].id)
        yield _frame(rows, closed, rewards, plan, timeline)


def _among(column: Any, ids: list[str], postgres: bool) -> Any:
    """``column IN ids``: one array parameter on PostgreSQL (5,000 parameters cost psycopg
    more than the query), a list on SQLite."""
    if postgres:
        return column == any_(bindparam("ids", ids, type_=ARRAY(String)))
    return column.in_(ids)


def _frame(rows: list[Any], closed: dict[str, tuple[float, float]],
           rewards: dict[tuple[str, str], float], plan: ExportPlan,
           timeline: LiveTimeline) -> pd.DataFrame:
    nan = math.nan
    none = (nan, nan)
    feedbacks = [closed.get(row.id, none) for row in rows]
    columns: dict[str, Any] = {
        "decision_id": [row.id for row in rows],
        "time": [float(row.created_at) for row in rows],
        "version": [row.version for row in rows],
        "propensity": [float(row.propensity) for row in rows],
        "reward": [float(reward) for reward, _ in feedbacks],
        # never before its decision: another replica's clock may run a little behind
        "feedback_time": [max(float(when), float(row.created_at)) if when == when else nan
                          for row, (_, when) in zip(rows, feedbacks, strict=True)],
        "live": [timeline.at(row.created_at, row.version) for row in rows],
    }
    if plan.scores:
        columns["validation_score"] = [plan.scores.get(row.version, nan) for row in rows]
    if plan.features:
        names = list(plan.features)
        features = pd.DataFrame.from_records(_contexts(rows), columns=names)
        for name, kind in plan.features.items():
            values = features[name]
            if kind == "number":
                columns[FEATURE_PREFIX + name] = values.astype(float).to_numpy()
            elif kind == "boolean":
                columns[FEATURE_PREFIX + name] = pd.array(values.tolist(), dtype="boolean")
            else:
                columns[FEATURE_PREFIX + name] = pd.array(
                    [None if v is None or v != v else v if isinstance(v, str)
                     else json.dumps(v) for v in values.tolist()], dtype="string")
    for version in plan.shadow_versions:
        columns[REWARD_PREFIX + version] = [rewards.get((row.id, version), nan)
                                            for row in rows]
    return pd.DataFrame(columns, columns=plan.columns)


def _contexts(rows: list[Any]) -> list[dict[str, Any]]:
    """Each row's context as a dict ({} without one), from its JSON text (cast to text in
    the query, so the driver does not parse it row by row): one parse per chunk."""
    texts = [row.context for row in rows]
    if any(isinstance(t, str) for t in texts):
        texts = json.loads("[" + ",".join(t if isinstance(t, str) else "null"
                                          for t in texts) + "]")
    return [t if isinstance(t, dict) else {} for t in texts]


# ---------------------------------------------------------------------- writing
class _Chunks(io.RawIOBase):
    """A write-only stream whose bytes are taken out as they come (bounded memory)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _arrow_schema(plan: ExportPlan) -> Any:
    import pyarrow as pa

    kinds = {"number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}
    return pa.schema(
        [("decision_id", pa.string()), ("time", pa.float64()), ("version", pa.string()),
         ("propensity", pa.float64()), ("reward", pa.float64()),
         ("feedback_time", pa.float64()), ("live", pa.string())]
        + ([("validation_score", pa.float64())] if plan.scores else [])
        + [(FEATURE_PREFIX + name, kinds[kind]) for name, kind in plan.features.items()]
        + [(REWARD_PREFIX + name, pa.float64()) for name in plan.shadow_versions])


def export_bytes(store: Store, plan: ExportPlan, fmt: Format, *,
                 chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """The export file, in pieces of about one chunk each (for a streamed answer)."""
    if fmt not in FORMATS:
        raise InvalidParameterError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "csv":
        header = io.StringIO()
        csv.writer(header, lineterminator="\r\n").writerow(plan.columns)
        yield header.getvalue().encode()
        for frame in export_frames(store, plan, chunk_rows=chunk_rows):
            yield csv_text(frame, header=False).encode()  # safe to open in a spreadsheet
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(plan)
    sink = _Chunks()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for frame in export_frames(store, plan, chunk_rows=chunk_rows):
            writer.write_table(pa.Table.from_pandas(frame, schema=schema,
                                                    preserve_index=False))
            yield sink.take()
    yield sink.take()  # the footer


def export_log(store: Store, deployment: str, path: str | Path, *,
               since: float | None = None, until: float | None = None,
               limit: int | None = None) -> ExportPlan:
    """Write a deployment's decision log to ``path`` (.parquet or .csv); the plan says what
    it holds. The file appears whole or not at all (written beside it, then renamed)."""
    path = Path(path)
    fmt = format_of(path)
    plan = plan_export(store, deployment, since=since, until=until, limit=limit)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as sink:
            for piece in export_bytes(store, plan, fmt):
                sink.write(piece)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return plan

