"""A decision log read straight from the service's SQL database (``banditops evaluate --db``).

The tables are those of :mod:`banditops.store.schema`: ``decisions`` (with the request's
features in the ``context`` JSON column from migration 0007 on; older databases have no
features, and the log simply has no ``feature:`` columns), ``feedback`` (the reward and when
it arrived), ``shadows`` (shadow rewards), ``versions`` (validation scores) and ``events``
(releases, rollbacks and retirements, from which the versions live at each decision are
rebuilt). The frame follows :mod:`banditops.ope.logfile`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from banditops.errors import InvalidParameterError, StoreError
from banditops.ope.logfile import FEATURE, SHADOW, live_json

_UP = ("promoted", "reinstated")
_DOWN = ("rolled_back", "quarantined", "retired")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def log_from_database(url: str, deployment: str) -> pd.DataFrame:
    """The decision log of ``deployment`` (decisions with their feedback, time order)."""
    from sqlalchemy import MetaData, Table, create_engine, inspect, select
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as error:
        raise InvalidParameterError(f"--db: not a usable database URL ({error})") from None
    try:
        with engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
            missing = {"decisions", "feedback"} - names
            if missing:
                raise InvalidParameterError(
                    f"the database has no {', '.join(sorted(missing))} table: not a banditops "
                    "database, or its migrations have not run")
            meta = MetaData()
            tables = {name: Table(name, meta, autoload_with=connection)
                      for name in ("decisions", "feedback", "shadows", "versions", "events")
                      if name in names}
            decisions = tables["decisions"]
            columns = [decisions.c.id, decisions.c.version, decisions.c.propensity,
                       decisions.c.created_at]
            has_context = "context" in decisions.c
            if has_context:
                columns.append(decisions.c.context)
            frame = pd.DataFrame(connection.execute(
                select(*columns).where(decisions.c.deployment == deployment)).all(),
                columns=["decision_id", "version", "propensity", "time",
                         *(["context"] if has_context else [])])
            if frame.empty:
                known = sorted(connection.execute(select(decisions.c.deployment).distinct())
                               .scalars())
                raise InvalidParameterError(
                    f"deployment {deployment!r} has no decisions in this database; "
                    f"deployments with decisions: {', '.join(known) or 'none'}")
            feedback = tables["feedback"]
            rewards = pd.DataFrame(connection.execute(
                select(feedback.c.decision_id, feedback.c.reward, feedback.c.created_at)
                .where(feedback.c.deployment == deployment)).all(),
                columns=["decision_id", "reward", "feedback_time"])
            shadows = None
            if "shadows" in tables:
                table = tables["shadows"]
                shadows = pd.DataFrame(connection.execute(
                    select(table.c.decision_id, table.c.version, table.c.reward)
                    .where(table.c.deployment == deployment)
                    .where(table.c.reward.is_not(None))).all(),
                    columns=["decision_id", "version", "reward"])
            scores: dict[str, float] = {}
            if "versions" in tables:
                table = tables["versions"]
                scores = {name: score for name, score in connection.execute(
                    select(table.c.name, table.c.validation_score)
                    .where(table.c.deployment == deployment)) if score is not None}
            events = []
            if "events" in tables:
                table = tables["events"]
                events = [(time, kind, version, _json(evidence)) for time, kind, version,
                          evidence in connection.execute(
                              select(table.c.time, table.c.kind, table.c.version,
                                     table.c.evidence)
                              .where(table.c.deployment == deployment)
                              .order_by(table.c.seq))]
    except SQLAlchemyError as error:
        raise StoreError(f"cannot read the decision log: {type(error).__name__}: "
                         f"{str(error).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return _assemble(frame, rewards, shadows, scores, events)


def _assemble(frame: pd.DataFrame, rewards: pd.DataFrame, shadows: pd.DataFrame | None,
              scores: Mapping[str, float], events: list[tuple[float, str, str | None, Any]]
              ) -> pd.DataFrame:
    frame = frame.merge(rewards, on="decision_id", how="left")
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    frame["decision_id"] = frame["decision_id"].astype(str)
    if scores:
        frame["validation_score"] = frame["version"].map(scores).astype(float)
    if shadows is not None and not shadows.empty:
        wide = shadows.pivot_table(index="decision_id", columns="version", values="reward",
                                   aggfunc="first")
        wide.columns = [SHADOW + str(c) for c in wide.columns]
        frame = frame.merge(wide, left_on="decision_id", right_index=True, how="left")
    live = _live_column(frame["time"].to_numpy(float), frame["version"].tolist(), events)
    if live is not None:
        frame["live"] = live
    if "context" in frame.columns:
        contexts = [_json(c) for c in frame.pop("context")]
        if any(isinstance(c, Mapping) for c in contexts):
            features = pd.DataFrame([c if isinstance(c, Mapping) else {} for c in contexts])
            frame = pd.concat([frame, features.add_prefix(FEATURE)], axis=1)
    return frame


def _live_column(times: np.ndarray, served: list[str],
                 events: list[tuple[float, str, str | None, Any]]) -> list[str] | None:
    """The versions live at each decision, from the events (None without registrations)."""
    if not any(kind == "registered" for _, kind, _, _ in events):
        return None
    live: list[str] = []
    column: list[str] = []
    position = 0
    text = live_json(live)
    for time, name in zip(times, served, strict=True):
        while position < len(events) and events[position][0] <= time:
            _, kind, version, evidence = events[position]
            position += 1
            if version is None:
                continue
            dark = isinstance(evidence, Mapping) and bool(evidence.get("dark"))
            if (kind == "registered" and not dark) or kind in _UP:
                if version not in live:
                    live.append(version)
            elif kind in _DOWN and version in live:
                live.remove(version)
            text = live_json(live)
        if name not in live:  # served by a version whose events this log lacks
            live.append(name)
            text = live_json(live)
        column.append(text)
    return column
