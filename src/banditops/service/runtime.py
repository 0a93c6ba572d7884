"""One named deployment inside a service process: a ``Deployment`` over the shared SQL log.

The database is the source of truth. Each replica holds a :class:`~banditops.Deployment`
whose decision log is the deployment's :class:`~banditops.store.sql.SqlLog`: predictions are
logged there (committed before they are answered), and feedback goes through
``Deployment.feedback_many``, the same path the replay uses, which looks the decision up in the
log, turns the label into a reward, closes the decision once and updates the policy. Rewards
that other replicas stored reach this one through ``Deployment.catch_up``; version changes
(registrations, rollbacks, reinstatements) through :meth:`ServiceDeployment.sync`, which runs
every ``sync_interval_seconds`` and before every report or admin change.

Every ``snapshot_every`` learned rewards, and at a clean stop, the learned state (policy with
its RNG, guardrail windows, dark candidates' evidence, the log's read position) is stored; a
restart loads it and learns only the feedback after it.

Shadow scoring runs off the request path: the Deployment logs decisions without shadow
predictions (``defer_shadows=True``) and the worker calls :meth:`ServiceDeployment.shadow`
with answered requests when it has nothing else to do (see ``workers.py``). A dark version's
status is stored like any other ("dark" in the versions table); its promotion or rollback,
decided by whichever replica gets there first from the same evidence, reaches the others
through :meth:`ServiceDeployment.sync`.

Not thread-safe: the HTTP layer calls one ServiceDeployment from one worker thread.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from banditops.deployment import Deployment, Event, ShadowWork
from banditops.errors import (
    ArtifactError,
    BanditOpsError,
    DuplicateArmError,
    DuplicateFeedbackError,
    ExpiredDecisionError,
    InvalidParameterError,
    ModelError,
    StateConflictError,
    UnknownArmError,
    UnknownDecisionError,
)
from banditops.guardrails import Guardrail
from banditops.policies import make_policy
from banditops.service.artifacts import (
    LoadedArtifact,
    ServedModel,
    check_in_subprocess,
    check_nullable,
    load_artifact,
    smoke_test,
)
from banditops.service.config import DeploymentConfig, ServiceConfig
from banditops.service.features import base, nullable
from banditops.service.sources import Fetched, Sources, is_uri
from banditops.store.sql import Store

log = logging.getLogger("banditops.service")
TAKE_DOWN = {"rolled_back", "quarantined", "retired"}
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON can say "\\ud800"; UTF-8 cannot
FLOAT32_MAX = 3.4e38  # models that compute in float32 (trees, ONNX) fail past it
REINSTATABLE = ("rolled_back", "quarantined")


class VersionView(TypedDict):
    """One version in ``GET /v1/deployments/{d}``."""

    name: str
    status: str  # live, dark, rolled_back, quarantined, retired
    traffic_share: float
    decisions: int
    feedbacks: int
    reward_mean: float | None
    ci_low: float | None
    ci_high: float | None
    validation_score: float | None
    learned: int
    learned_reward_sum: float
    shadow_rewards: int  # rewards of its shadow predictions this replica learned
    shadow_reward_mean: float | None
    judgement: str | None  # "evaluating" (dark); the guardrail's "not judged yet", "ok" or
    #                        "worse" (live, with a guardrail); None otherwise
    guardrail_rewards: int | None  # rewards the guardrail judges it on (live, with one)
    model_calls: dict[str, Any] | None


class DeploymentView(TypedDict):
    """``GET /v1/deployments/{d}``."""

    name: str
    policy: str
    features: dict[str, str]
    labels: Any
    shadow: str | None  # the shadow mode, None without shadow scoring
    release: str  # "live" or "dark"
    guardrail_min_samples: int | None  # rewards a live version needs to be judged
    contextual: bool  # the policy routes on each request's features
    log_features: bool  # decisions keep their features in the log
    versions: list[VersionView]
    restored_snapshot_feedback_seq: int | None


@dataclass(frozen=True)
class FeedbackOutcome:
    decision_id: str
    status: str  # "recorded" | "duplicate" | "unknown" | "expired" | "invalid"
    reward: float | None = None
    message: str = ""
    version: str | None = None


def _outcome_of(decision_id: str, result: tuple[str, float] | BanditOpsError
                ) -> FeedbackOutcome:
    if not isinstance(result, BanditOpsError):
        version, reward = result
        return FeedbackOutcome(decision_id, "recorded", reward, version=version)
    status = ("duplicate" if isinstance(result, DuplicateFeedbackError)
              else "unknown" if isinstance(result, UnknownDecisionError)
              else "expired" if isinstance(result, ExpiredDecisionError) else "invalid")
    return FeedbackOutcome(decision_id, status, message=str(result))


class _Retired:
    """Stands in for the model of a retired version: it never serves again, so it is not
    loaded (its file may be long gone)."""

    def predict(self, rows: Any) -> Any:
        raise ModelError("a retired version does not serve")


class ServiceDeployment:
    def __init__(self, name: str, config: DeploymentConfig, service: ServiceConfig,
                 store: Store, on_event: Callable[[str, Event], None] | None = None,
                 on_model_call: Callable[[str, str, float], None] | None = None,
                 sources: Sources | None = None) -> None:
        """Builds the policy and the deployment; no I/O (see :meth:`start`).
        ``on_model_call(deployment, version, seconds)``: every model call's wall time;
        ``sources``: where uploaded and MLflow artifacts are fetched (shared by deployments)."""
        self.name = name
        self.sources = sources or Sources(service, store)
        self._origins: dict[str, dict[str, Any]] = {}  # version -> its "registered" evidence
        self.config = config
        self.service = service
        self.store = store
        self.features = list(config.features)
        # (name, "number" | "string", nullable): parsed once, read on every request
        self.schema = [(name, base(kind), nullable(kind))
                       for name, kind in config.features.items()]
        # Features some version takes as an ONNX integer input -> the range it holds:
        # requests must send whole numbers in it (grows as versions load; see _serve).
        self.integer_features: dict[str, tuple[int, int]] = {}
        self.on_event = on_event
        self.on_model_call = on_model_call
        try:
            policy = make_policy(config.policy, **config.policy_params)
        except (BanditOpsError, TypeError) as error:
            raise InvalidParameterError(
                f"deployment {name}: policy {config.policy} with {config.policy_params}: "
                f"{error}") from None
        guardrail = (Guardrail.from_params(config.guardrail.params())
                     if config.guardrail is not False else None)
        self.log = store.log(name, config.feedback_ttl_seconds)
        self.dark_launch = config.dark_launch
        shadow = config.shadow_params()
        # the mode the Deployment runs: a dark launch implies "evaluating" when none is set
        self.shadow_mode = (shadow.mode if shadow is not None
                            else "evaluating" if self.dark_launch else None)
        self.deployment = Deployment(policy, config.reward_function(), guardrail,
                                     labels=config.label_classes(), log=self.log,
                                     shadow=shadow, release=config.release_params(),
                                     defer_shadows=True, log_context=config.log_features)
        self._remote = False  # applying another replica's change: don't write it back
        self._since_snapshot = 0
        self._unloadable: dict[str, str] = {}  # version -> why this replica cannot load it
        self._refused: list[str] = []  # take-downs the database refused (see _persist_event)
        self.restored_from: int | None = None  # snapshot read position used at start-up
        self.started = False

    # ------------------------------------------------------------ start-up
    def start(self) -> None:
        """Load the versions (sha256-checked), restore the snapshot, catch up."""
        if self.started:
            return
        self._restore()
        self._load_snapshot()
        self.deployment.subscribe(self._persist_event)
        self.sync()
        self.started = True

    def _load(self, artifact: str, expected_sha256: str | None = None) -> LoadedArtifact:
        """Load a path, an upload or an MLflow model (bytes from MLflow are copied into the
        database, so other replicas and restarts load them from there)."""
        fetched = self.sources.fetch(artifact, expected_sha256)
        loaded = self._load_fetched(fetched, expected_sha256)
        if fetched.keep:
            self.store.put_artifact(loaded.sha256, fetched.path.suffix, fetched.path)
        return loaded

    def _load_fetched(self, fetched: Fetched, expected_sha256: str | None = None
                      ) -> LoadedArtifact:
        return load_artifact(fetched.path, fetched.allowed,
                             allow_pickle=self.service.allow_pickle,
                             expected_sha256=expected_sha256,
                             extra_trusted=self.service.trusted_types)

    def _serve(self, loaded: LoadedArtifact, version: str) -> ServedModel:
        """The loaded model behind the service: its inputs bound to the declared features,
        and a null in each nullable feature answered (else ArtifactError naming it)."""
        service = self.service
        report = self.on_model_call
        features = dict(self.config.features)
        try:
            served = ServedModel(loaded.model, features, service.model_timeout_ms / 1000,
                                 window=service.model_timeout_window,
                                 strikes=service.model_timeout_strikes,
                                 warmup=service.model_warmup_calls,
                                 listener=None if report is None
                                 else lambda seconds: report(self.name, version, seconds))
            check_nullable(served, features, self.deployment.labels)
        except ArtifactError as error:
            raise ArtifactError(f"deployment {self.name}, version {version}: {error}") from None
        if served.ignored:
            log.info("version %s ignores declared features", version, extra={"fields": {
                "deployment": self.name, "version": version, "ignored": served.ignored}})
        for feature, (low, high) in served.integers.items():
            bounds = self.integer_features.get(feature, (low, high))
            self.integer_features = {**self.integer_features,
                                     feature: (max(low, bounds[0]), min(high, bounds[1]))}
        return served

    def _restore(self) -> None:
        """Reconcile the config file with the database, then register every stored version
        with its stored status. The rule (README, "Config and database at start-up"):

        - in the file, not in the database: registered (event "registered", reason "from the
          config file"), live, or dark on a dark-release deployment with live versions;
        - in both: the database's status stands (a rollback, retirement or promotion sticks
          across restarts); the file's artifact must hold the bytes (sha256) recorded at
          registration, else the start-up stops: a version name stands for one model, whose
          decisions, rewards and verdicts are on record (a moved file with the same bytes is
          fine);
        - in the database only (registered through the API, or since removed from the
          file): kept as it is, with a log line; retiring is an explicit API call.

        An MLflow model (``models:/...``) already registered loads from the database's copy
        of its bytes, so a moved alias or an unreachable tracking store changes nothing.
        """
        stored = {row.name: row for row in self.store.versions(self.name)}
        # A version added to the file after the first start is a release like any other.
        status = "dark" if self.dark_launch and any(
            row.status == "live" for row in stored.values()) else "live"
        loaded: dict[str, LoadedArtifact] = {}
        added: list[Event] = []
        for version in self.config.versions:
            row = stored.get(version.name)
            if row is not None and row.status == "retired":
                continue  # never serves again, so never loaded (its file may be gone)
            pinned = (row.sha256 if row is not None and is_uri(version.artifact)
                      and row.artifact == version.artifact else None)
            artifact = self._load(str(version.artifact), pinned)
            loaded[version.name] = artifact
            if row is None:
                reason = f"from the config file ({status})"
                source = version.artifact if is_uri(version.artifact) else str(artifact.path)
                evidence = {"artifact": source, "sha256": artifact.sha256,
                            "validation_score": version.validation_score, "status": status}
                if self.store.add_version(self.name, version.name, source,
                                          version.validation_score, artifact.sha256,
                                          if_missing=True, status=status,
                                          event=(reason, evidence)):
                    added.append(Event(0, time.time(), "registered", version.name, reason,
                                       evidence))
        rows = self.store.versions(self.name)
        for row in rows:
            if row.status == "retired":
                model: Any = _Retired()
            else:
                artifact = loaded.get(row.name)
                if artifact is None:
                    artifact = self._load(row.artifact, row.sha256)
                elif row.sha256 is not None and artifact.sha256 != row.sha256:
                    raise ArtifactError(
                        f"deployment {self.name}: version {row.name} in the config file is "
                        f"{artifact.path} (sha256 {artifact.sha256}) but the database "
                        f"registered it from {row.artifact} (sha256 {row.sha256}); a version "
                        "name stands for one model: give the new file a new version name "
                        f"(and retire {row.name} through the API), or put the original file "
                        "back")
                if row.sha256 is None:
                    self.store.pin_version(self.name, row.name, artifact.sha256)
                model = self._serve(artifact, row.name)
            self._register_row(row, model)
        for row in rows:
            self._apply_status(row.name, row.status, "restored from the database")
        in_file = {version.name for version in self.config.versions}
        for row in rows:
            if row.name not in in_file and row.status != "retired":
                log.info("version not in the config file, kept as stored (retire it "
                         "through the API to take it out)", extra={"fields": {
                             "deployment": self.name, "version": row.name,
                             "status": row.status}})
        for event in added:  # stored with their rows; reported (logged) once started
            if self.on_event is not None:
                self.on_event(self.name, event)

    def _register_row(self, row: Any, model: Any) -> None:
        """Register a stored version: dark if stored dark, else live (its status follows)."""
        self._check_release(row)
        self.deployment.register(row.name, model, validation_score=row.validation_score,
                                 dark=row.status == "dark" if self.dark_launch else None)

    def _check_release(self, row: Any) -> None:
        if row.status == "dark" and not self.dark_launch:
            raise InvalidParameterError(
                f"deployment {self.name}: version {row.name} is dark (under evaluation) but "
                "the config has no release = { mode = \"dark\" }; keep that until the "
                "version is promoted or rolled back")

    def _load_snapshot(self) -> None:
        """Start from the last snapshot, if it fits this configuration; else from scratch."""
        state = self.store.load_snapshot(self.name)
        if state is None:
            return
        try:
            self.deployment.restore_learning(state)
        except BanditOpsError as error:
            log.warning("deployment %s: snapshot not used, learning all feedback again (%s)",
                        self.name, error)
            return
        self.restored_from = int(state["log"].get("high_water", 0))

    def snapshot(self) -> None:
        """Store what this replica has learned and how far it has read the feedback log.

        Runs on the deployment's worker (the state must be taken between two requests), so
        it is encoded once, by the C encoder: a learning state is plain JSON by contract, and
        only one that is not (a numpy scalar, a NaN) takes the slower :func:`json_safe`
        walk, which costs ten times more on a contextual policy's matrices."""
        state = self.deployment.learning_state()
        try:
            encoded = json.dumps(state, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError):
            encoded = json.dumps(json_safe(state), separators=(",", ":"))
        self.store.save_snapshot(self.name, encoded)
        self._since_snapshot = 0

    def _learned(self, count: int) -> None:
        self._since_snapshot += count
        if self._since_snapshot >= self.service.snapshot_every:
            self.snapshot()

    # ---------------------------------------------------- versions in step
    def _apply_status(self, version: str, status: str, reason: str) -> None:
        current = self.deployment.status(version)
        if current == status:
            return
        self._remote = True
        try:
            if status == "retired":
                self.deployment.retire(version, reason)
            elif status == "live" and current == "dark":
                self.deployment.promote(version, reason)
            elif status == "live":
                self.deployment.reinstate(version, reason)
            elif current == "dark" and status == "quarantined":
                self.deployment.quarantine(version, reason)
            elif current == "dark" and status == "rolled_back":
                self.deployment.rollback(version, reason)
            elif current == "live" and len(self.deployment.live_versions) > 1:
                if status == "quarantined":
                    self.deployment.quarantine(version, reason)
                else:
                    self.deployment.rollback(version, reason)
        finally:
            self._remote = False

    def _persist_event(self, event: Event) -> None:
        """Store this replica's changes (a status change only if it is the first to make it,
        and a take-down only if another version stays live across all replicas)."""
        if self._remote:
            return
        version = event.version or ""
        if event.kind == "registered" and version in self._origins:
            event = replace(event, evidence={**event.evidence, **self._origins.pop(version)})
        if event.kind in ("reinstated", "promoted"):
            before = REINSTATABLE if event.kind == "reinstated" else ("dark",)
            if not self.store.set_status(self.name, version, "live", only_from=before):
                stored = next((row.status for row in self.store.versions(self.name)
                               if row.name == version), None)
                if stored != "live":  # another replica took it elsewhere meanwhile
                    self._refused.append(f"{version} is {stored} (changed by another replica "
                                         f"meanwhile); it was not {event.kind}")
                return  # else: another replica recorded it already
        elif event.kind in TAKE_DOWN:
            outcome = self.store.take_down(self.name, version, event.kind)
            if outcome == "last_live":
                self._refused.append(f"{version} is the last live version (the others were "
                                     "taken down meanwhile, perhaps by another replica)")
                return  # the next sync puts it back live here
            if outcome == "already":
                return
        self.store.add_event(self.name, event.time, event.kind, event.version, event.reason,
                             json_safe(event.evidence))
        if self.on_event is not None:
            self.on_event(self.name, event)

    def sync(self) -> None:
        """Catch up on other replicas' versions, status changes and feedback."""
        self._refused.clear()
        rows = [row for row in self.store.versions(self.name)  # in release order
                if self.deployment.has_version(row.name) or self._register_remote(row)]
        # Reinstatements first: taking a version down needs another live one here.
        for row in sorted(rows, key=lambda r: r.status != "live"):
            self._apply_status(row.name, row.status, "changed by another replica")
        learned = self.deployment.catch_up()
        if learned:
            self._learned(learned)

    def _register_remote(self, row: Any) -> bool:
        """Register a version another replica added; False if it cannot load here."""
        try:
            self._check_release(row)
            model = _Retired() if row.status == "retired" else self._serve(
                self._load(row.artifact, row.sha256), row.name)
        except BanditOpsError as error:
            if self._unloadable.get(row.name) != str(error):
                log.error("deployment %s: version %s, registered by another replica, does "
                          "not load here: %s", self.name, row.name, error)
                self._unloadable[row.name] = str(error)
            return False
        self._remote = True
        try:
            self._register_row(row, model)
        finally:
            self._remote = False
        self._unloadable.pop(row.name, None)
        return True

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
            shown = [str(f)[:100] for f in extra[:10]]
            raise InvalidParameterError(f"{where}: unknown feature(s) {shown}; this deployment "
                                        f"takes {self.features}")
        for feature, kind, may_be_null in self.schema:
            value = instance[feature]
            if value is None:
                if not may_be_null:
                    raise InvalidParameterError(
                        f"{where}.{feature}: expected a {kind}, got None (the feature is "
                        "not nullable)")
            elif kind == "number":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidParameterError(
                        f"{where}.{feature}: expected a number, got {_shown(value)}")
                if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
                    raise InvalidParameterError(
                        f"{where}.{feature}: must be a finite number within float32 range "
                        f"(|x| <= {FLOAT32_MAX:g}: tree and ONNX models compute in float32), "
                        f"got {_shown(value)}")
                bounds = self.integer_features.get(feature)
                if bounds is not None and not (float(value).is_integer()
                                               and bounds[0] <= value <= bounds[1]):
                    raise InvalidParameterError(
                        f"{where}.{feature}: a version takes it as a whole number from "
                        f"{bounds[0]} to {bounds[1]}, got {_shown(value)}")
            elif not isinstance(value, str):
                raise InvalidParameterError(f"{where}.{feature}: expected a string, got "
                                            f"{_shown(value)}")
            elif "\x00" in value:
                raise InvalidParameterError(f"{where}.{feature}: NUL characters are not allowed")
            elif not value.isascii() and (surrogate := LONE_SURROGATE.search(value)):
                # valid JSON ("\ud800"), but no UTF-8 for it: an ONNX string input failed
                raise InvalidParameterError(
                    f"{where}.{feature}: not valid Unicode (a lone surrogate, "
                    f"U+{ord(surrogate.group()):04X})")
        return instance

    def predict(self, instances: list[dict[str, Any]],
                owners: list[str | None] | None = None) -> list[dict[str, Any] | BanditOpsError]:
        """Route and log validated instances (possibly of several requests); per instance an
        answer, or the ModelError that every live version raised on it. ``owners`` (digests
        of the callers' keys) are logged only when feedback must come from the same key."""
        if not self.config.feedback_same_key:
            owners = None
        results = self.deployment.predict_batch(instances, owners=owners, errors="return")
        return [r if isinstance(r, BanditOpsError) else
                {"decision_id": r.id, "version": r.version, "prediction": r.prediction,
                 "propensity": r.propensity} for r in results]

    def feedback(self, items: list[tuple[str, Any]], owner: str | None = None
                 ) -> list[FeedbackOutcome]:
        """Record ground truth; each decision is closed and learned once, whichever replica
        gets it. A decision of a version another replica registered a moment ago is
        retried after catching up."""
        results = self.deployment.feedback_many(items, owner=owner)
        retry = [i for i, r in enumerate(results) if isinstance(r, UnknownArmError)]
        if retry:
            self.sync()
            again = self.deployment.feedback_many([items[i] for i in retry], owner=owner)
            for index, result in zip(retry, again, strict=True):
                results[index] = result
        recorded = sum(1 for r in results if not isinstance(r, BanditOpsError))
        if recorded:
            self._learned(recorded)
        return [_outcome_of(decision_id, result)
                for (decision_id, _), result in zip(items, results, strict=True)]

    # ------------------------------------------------------------ admin
    def register(self, version: str, artifact: str, validation_score: float | None) -> str:
        """Check the artifact in a child process (a model that corrupts memory or spins
        takes the child down, not the server), then load, smoke-test and record it; it goes
        live on every replica, or dark (released dark while others are live). Returns its
        status."""
        return self.register_fetched(version, artifact, self.sources.fetch(artifact),
                                     validation_score)[0]

    def check_new_version(self, version: str) -> None:
        """DuplicateArmError unless ``version`` is a name this deployment never used (as far
        as the database says now: another replica may have taken it)."""
        self.sync()
        if self.deployment.has_version(version):
            raise DuplicateArmError(f"version {version!r} exists already in deployment "
                                    f"{self.name!r}; versions are never reused, pick a new "
                                    "name")

    def register_fetched(self, version: str, artifact: str, fetched: Fetched,
                         validation_score: float | None) -> tuple[str, str]:
        """:meth:`register` for an artifact fetched already (off this worker: an upload or
        an MLflow download); the bytes of an upload or an MLflow model are stored in the
        database once they passed the checks. Returns (status, sha256)."""
        service = self.service
        self.check_new_version(version)  # before any work, and before storing bytes
        try:
            check_in_subprocess(fetched.path, fetched.allowed,
                                allow_pickle=service.allow_pickle,
                                extra_trusted=service.trusted_types,
                                features=dict(self.config.features),
                                labels=None if self.deployment.labels is None
                                else list(self.deployment.labels))
            loaded = self._load_fetched(fetched)
            served = self._serve(loaded, version)
            smoke_test(served, dict(self.config.features), self.deployment.labels)
        except ArtifactError as error:
            named = _named(error, fetched)
            if named is error:
                raise
            raise named from None
        self.sync()
        dark = self.dark_launch and bool(self.deployment.live_versions)
        if fetched.keep:
            self.store.put_artifact(loaded.sha256, fetched.path.suffix, fetched.path)
        recorded = artifact if is_uri(artifact) else str(loaded.path)
        self.store.add_version(self.name, version, recorded, validation_score,
                               loaded.sha256, status="dark" if dark else "live")
        self._origins[version] = {"sha256": loaded.sha256, "artifact": recorded,
                                  **fetched.origin}
        try:
            self.deployment.register(version, served, validation_score=validation_score,
                                     dark=dark if self.dark_launch else None)
        finally:
            self._origins.pop(version, None)
        return self.deployment.status(version), loaded.sha256

    def promote(self, version: str, reason: str) -> None:
        """Put a dark version live before its evidence decides (an operator's call)."""
        self.sync()
        self.deployment.promote(version, reason)
        self._settle_refusals()

    # ------------------------------------------------------------ shadows
    @property
    def shadows(self) -> bool:
        """Whether answered requests have shadow work now: shadow scoring is on and some
        version besides the serving one is scored (another live one, or a dark one)."""
        deployment = self.deployment
        return self.shadow_mode is not None and (
            len(deployment.live_versions) + len(deployment.dark_versions) > 1)

    def shadow_targets(self, served: str) -> tuple[str, ...]:
        """The versions to shadow a request ``served`` answered (sampled now in mode rate)."""
        return self.deployment.shadow_targets(served)

    def shadow(self, items: Sequence[tuple[Any, ...]]) -> ShadowWork:
        """Shadow predictions for answered requests ``(decision id, served version,
        instance)``: one model call per scored version, attached to the decisions still
        open; returns how many took theirs and how many came too late. A shadow version
        that fails is quarantined."""
        return self.deployment.shadow_later(items)

    def rollback(self, version: str, reason: str) -> None:
        self.sync()
        self.deployment.rollback(version, reason)
        self._settle_refusals()

    def retire(self, version: str, reason: str) -> None:
        self.sync()
        self.deployment.retire(version, reason)
        self._settle_refusals()

    def _settle_refusals(self) -> None:
        """A take-down the database refused is undone here and reported as a conflict."""
        if self._refused:
            reasons = "; ".join(self._refused)
            self.sync()
            raise StateConflictError(reasons)

    def reinstate(self, version: str, reason: str) -> None:
        self.sync()
        self.deployment.reinstate(version, reason)
        self._settle_refusals()

    # ---------------------------------------------------------- reading
    @property
    def live_versions(self) -> list[str]:
        return self.deployment.live_versions

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return self.store.events(self.name, since, limit)

    def report(self) -> DeploymentView:
        self.sync()
        versions: list[VersionView] = []
        for report in self.deployment.versions():
            model = self.deployment.model(report.name)
            timing = model.stats() if isinstance(model, ServedModel) else None
            shadows = report.shadow_learned
            versions.append(VersionView(
                name=report.name, status=report.status, traffic_share=report.traffic_share,
                decisions=report.decisions, feedbacks=report.feedbacks,
                reward_mean=report.reward_mean, ci_low=report.ci_low, ci_high=report.ci_high,
                validation_score=report.validation_score, learned=report.learned,
                learned_reward_sum=report.learned_reward_sum, shadow_rewards=shadows,
                shadow_reward_mean=report.shadow_reward_sum / shadows if shadows else None,
                judgement=report.judgement, guardrail_rewards=report.guardrail_rewards,
                model_calls=timing))
        return DeploymentView(
            name=self.name, policy=self.config.policy, features=self.config.features,
            labels=self.deployment.labels, shadow=self.shadow_mode,
            release="dark" if self.dark_launch else "live",
            guardrail_min_samples=(None if self.deployment.guardrail is None
                                   else self.deployment.guardrail.min_samples),
            contextual=self.deployment.policy.contextual,
            log_features=self.deployment.log_context,
            versions=versions,
            restored_snapshot_feedback_seq=self.restored_from)


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a client may send megabytes)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays made Python, non-finite floats
    None, anything else that JSON cannot hold its ``str``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and not isinstance(value, str | int | float | bool):
        try:
            return json_safe(tolist())
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _named(error: ArtifactError, fetched: Fetched) -> ArtifactError:
    """``error`` naming an uploaded artifact by the client's filename too: its copy here is
    named by its sha256 ("4b11….onnx"), which tells the client little; a message that names
    no artifact ("the ONNX model does not parse: ...") gets the name in front."""
    filename = fetched.origin.get("filename")
    if not filename:
        return error
    stored, message = fetched.path.name, str(error)
    named = f"{filename} (sha256 {fetched.path.stem[:12]}…)"
    if stored in message:
        return type(error)(message.replace(stored, named))
    return type(error)(f"artifact {named}: {message}")
