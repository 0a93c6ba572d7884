"""One named deployment inside a service process: a ``Deployment`` kept in step with the store.

The database is the source of truth; each replica holds a :class:`~banditops.Deployment`
that routes its requests. A decision is committed before it is returned. A feedback is
committed once (the decision id is unique in the feedback log), then learned. Every replica
*catches up* on the feedback log (rows with a sequence number it has not applied) and on
version status changes every ``sync_interval_seconds`` (a task between requests, on a shared
PostgreSQL; a SQLite file has one process) and before every report or admin change, so all
replicas learn every reward exactly once. Every ``snapshot_every`` rewards the learned state
is stored with the sequence numbers it covers; a restart loads it and replays the rest of
the log, ending with the same policy state.

Sequence numbers can commit out of order under concurrency, so a number skipped during
catch-up is looked for again for :data:`GAP_SECONDS` before it is given up (a failed insert
leaves a hole for good).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from banditops.deployment import Deployment, Event, reward_interval
from banditops.errors import (
    BanditOpsError,
    InvalidParameterError,
    ModelError,
    StateConflictError,
    StoreError,
)
from banditops.guardrails import Guardrail
from banditops.policies import make_policy
from banditops.rewards import cost_matrix, resolve_reward, validate_reward
from banditops.service.artifacts import ServedModel, load_artifact
from banditops.service.config import DeploymentConfig, ServiceConfig
from banditops.service.store import Store

GAP_SECONDS = 30.0
log = logging.getLogger("banditops.service")
TAKE_DOWN = {"rolled_back", "quarantined", "retired"}


@dataclass(frozen=True)
class FeedbackOutcome:
    decision_id: str
    status: str  # "recorded" | "duplicate" | "unknown" | "expired" | "invalid"
    reward: float | None = None
    message: str = ""
    version: str | None = None


class ServiceDeployment:
    def __init__(self, name: str, config: DeploymentConfig, service: ServiceConfig,
                 store: Store, on_event=None) -> None:
        self.name = name
        self.config = config
        self.service = service
        self.store = store
        self.features = list(config.features)
        self.on_event = on_event
        reward = (resolve_reward(config.reward) if isinstance(config.reward, str)
                  else cost_matrix(**config.reward.model_dump()))
        guardrail = (Guardrail(**config.guardrail.model_dump())
                     if config.guardrail is not False else None)
        try:
            policy = make_policy(config.policy, **config.policy_params)
        except (BanditOpsError, TypeError) as error:
            raise InvalidParameterError(
                f"deployment {name}: policy {config.policy} with {config.policy_params}: "
                f"{error}") from None
        self.deployment = Deployment(policy, reward, guardrail, record_pending=False)
        self._high_water = 0
        self._gaps: dict[int, float] = {}  # seq -> when first missed
        self._ahead: set[int] = set()  # learned directly, before catch-up reached them
        self._remote = False  # applying another replica's change: don't write it back
        self._since_snapshot = 0
        self.restored_from: int | None = None  # snapshot high-water mark used at start-up

    def start(self) -> None:
        """SHIM: the start-up I/O the constructor used to do."""
        with _store_errors():
            self._restore()
            self._load_snapshot()
            self.deployment.subscribe(self._persist_event)
            self.sync()

    @property
    def live_versions(self) -> list[str]:
        return self.deployment.live_versions

    def events(self, since: int, limit: int) -> list[dict[str, Any]]:
        with _store_errors():
            return self.store.events(self.name, since, limit)

    def reinstate(self, version: str, reason: str) -> None:
        with _store_errors(), _conflicts():
            self.sync()
            self.deployment.reinstate(version, reason)

    # ------------------------------------------------------------ state
    def _load(self, artifact: str) -> ServedModel:
        model = load_artifact(artifact, self.service.artifact_dirs,
                              allow_pickle=self.service.allow_pickle)
        return ServedModel(model, self.features, self.service.model_timeout_ms / 1000)

    def _restore(self) -> None:
        """Versions from the config (first start) and the store; statuses as stored."""
        for version in self.config.versions:
            self.store.add_version(self.name, version.name, str(version.artifact),
                                   version.validation_score, if_missing=True)
        rows = self.store.versions(self.name)
        for row in rows:
            self.deployment.register(row.name, self._load(row.artifact),
                                     validation_score=row.validation_score)
        for row in rows:
            self._apply_status(row.name, row.status, "restored from the database")

    def _load_snapshot(self) -> None:
        """Start from the last snapshot, if it fits this configuration; else from scratch."""
        row = self.store.load_snapshot(self.name)
        if row is None:
            return
        try:
            self.deployment.restore_learning(row.state)
        except BanditOpsError as error:
            log.warning("deployment %s: snapshot not used, replaying all feedback (%s)",
                        self.name, error)
            return
        now = time.monotonic()
        self._high_water = int(row.high_water)
        self._gaps = {int(seq): now for seq in row.applied["gaps"]}
        self._ahead = {int(seq) for seq in row.applied["ahead"]}
        self.restored_from = self._high_water

    def snapshot(self) -> None:
        """Store what this replica has learned and up to which feedback (see the store)."""
        self.store.save_snapshot(self.name, self._high_water,
                                 {"gaps": sorted(self._gaps), "ahead": sorted(self._ahead)},
                                 _json_safe(self.deployment.learning_state()))
        self._since_snapshot = 0

    def _learned(self, count: int) -> None:
        self._since_snapshot += count
        if self._since_snapshot >= self.service.snapshot_every:
            self.snapshot()

    def _apply_status(self, version: str, status: str, reason: str) -> None:
        current = self.deployment.status(version)
        if current == status:
            return
        self._remote = True
        try:
            if status == "retired":
                self.deployment.retire(version, reason)
            elif status == "live":
                self.deployment.reinstate(version, reason)
            elif current == "live" and len(self.deployment.live_versions) > 1:
                if status == "quarantined":
                    self.deployment.quarantine(version, reason)
                else:
                    self.deployment.rollback(version, reason)
        finally:
            self._remote = False

    def _persist_event(self, event: Event) -> None:
        if self._remote:
            return
        if event.kind in TAKE_DOWN or event.kind == "reinstated":
            status = "live" if event.kind == "reinstated" else event.kind
            first = self.store.set_status(self.name, event.version or "", status,
                                          only_from=None if status in ("live", "retired")
                                          else "live")
            if not first:
                return  # another replica recorded it already
        evidence = _json_safe(event.evidence)
        self.store.add_event(self.name, event.time, event.kind, event.version, event.reason,
                             evidence)
        if self.on_event is not None:
            self.on_event(self.name, event)

    def sync(self) -> None:
        """Catch up on other replicas' feedback and version changes."""
        now = time.monotonic()
        for row in self.store.versions(self.name):
            if not self.deployment.has_version(row.name):
                self._remote = True
                try:
                    self.deployment.register(row.name, self._load(row.artifact),
                                             validation_score=row.validation_score)
                finally:
                    self._remote = False
            self._apply_status(row.name, row.status, "changed by another replica")
        expired = [seq for seq, first in self._gaps.items() if now - first > GAP_SECONDS]
        for seq in expired:
            del self._gaps[seq]
        learned = 0
        for seq, version, reward in self.store.feedback_after(self.name, self._high_water,
                                                              self._gaps):
            self._gaps.pop(seq, None)
            if seq > self._high_water:
                for missing in range(self._high_water + 1, seq):
                    self._gaps.setdefault(missing, now)
                self._high_water = seq
            if seq in self._ahead:
                self._ahead.discard(seq)
                continue
            self.deployment.learn(version, reward)
            learned += 1
        if learned:
            self._learned(learned)

    # -------------------------------------------------------- requests
    def validate(self, instance: Any, where: str) -> dict[str, Any]:
        """The instance's features, checked against the declared schema."""
        if not isinstance(instance, dict):
            raise InvalidParameterError(f"{where}: expected an object of features")
        missing = [f for f in self.features if f not in instance]
        extra = [f for f in instance if f not in self.config.features]
        if missing:
            raise InvalidParameterError(f"{where}: missing feature(s) {missing}")
        if extra:
            raise InvalidParameterError(f"{where}: unknown feature(s) {extra}; this deployment "
                                        f"takes {self.features}")
        for feature, kind in self.config.features.items():
            value = instance[feature]
            if kind == "number":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidParameterError(
                        f"{where}.{feature}: expected a number, got {value!r}")
                if not math.isfinite(value):
                    raise InvalidParameterError(
                        f"{where}.{feature}: must be a finite number, got {value!r}")
            elif not isinstance(value, str):
                raise InvalidParameterError(f"{where}.{feature}: expected a string, got "
                                            f"{value!r}")
        return instance

    def predict(self, instances: list[dict[str, Any]], owners: list[str | None] | None = None
                ) -> list[dict[str, Any] | BanditOpsError]:
        """SHIM over the old predict: validated instances, a ModelError per failed instance."""
        now = time.time()
        rows: list[dict[str, Any]] = []
        answers: list[dict[str, Any] | BanditOpsError] = []
        for x in instances:
            try:
                decision = self.deployment.predict(x)
            except ModelError as error:
                answers.append(error)
                continue
            prediction = _json_safe(decision.prediction)
            rows.append({"id": decision.id, "deployment": self.name,
                         "version": decision.version, "prediction": prediction,
                         "propensity": decision.propensity, "created_at": now})
            answers.append({"decision_id": decision.id, "version": decision.version,
                            "prediction": prediction, "propensity": decision.propensity})
        with _store_errors():
            if rows:
                self.store.add_decisions(rows)
        return answers

    def feedback(self, items: list[tuple[str, Any]], owner: str | None = None
                 ) -> list[FeedbackOutcome]:
        """SHIM: the old feedback, database errors as StoreError."""
        with _store_errors():
            return self._feedback(items)

    def _feedback(self, items: list[tuple[str, Any]]) -> list[FeedbackOutcome]:
        """Record ground truth; each item is learned once, whichever replica gets it."""
        found = self.store.decisions_by_id(d for d, _ in items)
        if any(not self.deployment.has_version(d.version) for d in found.values()):
            self.sync()  # another replica registered a version we have not seen
        now = time.time()
        outcomes: dict[int, FeedbackOutcome] = {}
        rows, row_items = [], []
        for index, (decision_id, label) in enumerate(items):
            decision = found.get(decision_id)
            if decision is None or decision.deployment != self.name:
                outcomes[index] = FeedbackOutcome(decision_id, "unknown",
                                                  message=f"unknown decision id {decision_id!r}")
                continue
            if now - decision.created_at > self.config.feedback_ttl_seconds:
                outcomes[index] = FeedbackOutcome(
                    decision_id, "expired", message=f"decision {decision_id} is older than "
                    f"feedback_ttl_seconds={self.config.feedback_ttl_seconds:g}")
                continue
            try:
                reward = validate_reward(self.deployment.reward(label, decision.prediction))
            except Exception as error:
                outcomes[index] = FeedbackOutcome(
                    decision_id, "invalid", message=f"label {label!r} gives no reward: {error}")
                continue
            rows.append({"decision_id": decision_id, "deployment": self.name,
                         "version": decision.version, "label": label, "reward": reward,
                         "created_at": now})
            row_items.append(index)
        seqs = self.store.add_feedback(rows) if rows else []
        recorded = 0
        for index, row, seq in zip(row_items, rows, seqs, strict=True):
            if seq is None:
                outcomes[index] = FeedbackOutcome(
                    row["decision_id"], "duplicate", row["reward"],
                    f"decision {row['decision_id']} already has feedback; counted once")
                continue
            outcomes[index] = FeedbackOutcome(row["decision_id"], "recorded", row["reward"],
                                              version=row["version"])
            self._ahead.add(seq)
            self.deployment.learn(row["version"], row["reward"])
            recorded += 1
        while self._high_water + 1 in self._ahead:  # contiguous: no catch-up needed for them
            self._high_water += 1
            self._ahead.discard(self._high_water)
        if recorded:
            self._learned(recorded)
        return [outcomes[i] for i in range(len(items))]

    # ------------------------------------------------------------ admin
    def register(self, version: str, artifact: str, validation_score: float | None) -> None:
        """Load, check and record a new version; it goes live on every replica."""
        model = self._load(artifact)
        with _store_errors():
            self.sync()
            self.store.add_version(self.name, version, artifact, validation_score)
            self.deployment.register(version, model, validation_score=validation_score)

    def rollback(self, version: str, reason: str) -> None:
        with _store_errors(), _conflicts():
            self.sync()
            self.deployment.rollback(version, reason)

    def retire(self, version: str, reason: str) -> None:
        with _store_errors(), _conflicts():
            self.sync()
            self.deployment.retire(version, reason)

    # ---------------------------------------------------------- reading
    def report(self) -> dict[str, Any]:
        with _store_errors():
            return self._report()

    def _report(self) -> dict[str, Any]:
        self.sync()
        totals = self.store.totals(self.name)
        versions = []
        for report in self.deployment.versions():
            total = totals.get(report.name)
            mean = low = high = None
            if total and total.feedbacks:
                mean = total.reward_sum / total.feedbacks
                binary = abs(total.reward_sq - total.reward_sum) < 1e-9
                low, high = reward_interval(total.feedbacks, total.reward_sum, total.reward_sq,
                                            binary)
            versions.append({
                "name": report.name, "status": report.status,
                "traffic_share": report.traffic_share,
                "decisions": total.decisions if total else 0,
                "feedbacks": total.feedbacks if total else 0,
                "reward_mean": mean, "ci_low": low, "ci_high": high,
                "validation_score": report.validation_score,
                "learned": report.feedbacks,
                "learned_reward_sum": (report.reward_mean or 0.0) * report.feedbacks})
        return {"name": self.name, "policy": self.config.policy,
                "features": self.config.features, "versions": versions,
                "restored_from_snapshot_at": self.restored_from}


@contextlib.contextmanager
def _store_errors():
    """SHIM: database failures as StoreError (the new store raises it itself)."""
    try:
        yield
    except SQLAlchemyError as error:
        raise StoreError(f"database error: {type(error).__name__}") from None


@contextlib.contextmanager
def _conflicts():
    """SHIM: the old Deployment's state errors as StateConflictError."""
    try:
        yield
    except InvalidParameterError as error:
        raise StateConflictError(str(error)) from None


def _json_safe(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
