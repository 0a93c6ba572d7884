"""Deployment: where a request becomes a Decision and ground truth becomes a policy update.

Replay experiments and the HTTP service both go through this class, so what an experiment
measures is what production runs. A Deployment owns the model versions (the policy's arms),
asks the policy which one serves, logs each decision with its propensity, turns feedback into
a reward, updates the policy, lets the guardrail roll back a degraded version, and quarantines
a version whose model raises.

Pending decisions are bounded. A decision is kept for feedback until ``pending_ttl`` seconds
have passed (None: no age limit) or ``max_pending`` newer decisions are pending; then it
*expires*: it teaches the policy nothing, counts in its version's ``expired`` total, and late
feedback for it raises :class:`ExpiredDecisionError` (the service answers 410).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from banditops.errors import (
    BanditOpsError,
    DuplicateArmError,
    DuplicateFeedbackError,
    ExpiredDecisionError,
    InvalidParameterError,
    ModelError,
    UnknownArmError,
    UnknownDecisionError,
)
from banditops.guardrails import Guardrail
from banditops.policies.base import Policy, check_number, check_window
from banditops.rewards import RewardFunction, resolve_reward, validate_reward


class Status(StrEnum):
    LIVE = "live"
    ROLLED_BACK = "rolled_back"
    QUARANTINED = "quarantined"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class Decision:
    """Which version served a request, what it predicted, and the chance it had of serving."""

    id: str
    version: str
    prediction: Any
    propensity: float


@dataclass(frozen=True, slots=True)
class Event:
    """Something an operator should know: a release, a rollback, a quarantine, a test result."""

    seq: int
    time: float
    kind: str
    version: str | None
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionReport:
    """A version's standing: status, current traffic share, and its production reward."""

    name: str
    status: str
    traffic_share: float
    decisions: int
    feedbacks: int
    expired: int
    reward_mean: float | None
    ci_low: float | None
    ci_high: float | None
    validation_score: float | None


@dataclass(slots=True)
class _Version:
    name: str
    model: Any
    predict_one: Callable[[Any], Any]
    validation_score: float | None
    status: Status = Status.LIVE
    decisions: int = 0
    feedbacks: int = 0
    expired: int = 0
    reward_sum: float = 0.0
    reward_sq: float = 0.0
    binary: bool = True


def _batch_of_one(x: Any) -> Any:
    """What ``model.predict`` receives for one instance: a one-row frame or a one-row list."""
    if isinstance(x, Mapping):
        import pandas as pd

        return pd.DataFrame([x])
    return [x]


def _plain(value: Any) -> Any:
    """numpy scalars become Python scalars, so decisions are JSON-safe."""
    return value.item() if isinstance(value, np.generic) else value


def _single_predictor(model: Any) -> Callable[[Any], Any]:
    """Prefer the model's own ``predict_one`` (River's convention); else wrap ``predict``."""
    predict_one = getattr(model, "predict_one", None)
    if callable(predict_one):
        return predict_one
    predict = model.predict
    return lambda x: _plain(predict(_batch_of_one(x))[0])


class Deployment:
    """Route requests between model versions with a policy; learn from delayed feedback.

    Parameters
    ----------
    policy
        Any :class:`~banditops.policies.Policy`; the Deployment adds and removes its arms.
    reward
        ``(label, prediction) -> float`` in [0, 1], or ``"accuracy"``.
    guardrail
        Optional :class:`~banditops.guardrails.Guardrail` for automatic rollback.
    max_pending, pending_ttl
        Bounds on decisions awaiting feedback (see the module docstring).
    record_pending
        False when decisions are kept elsewhere (the service's database) and rewards arrive
        through :meth:`learn`; then :meth:`feedback` knows no decision.
    clock
        Seconds as a float; injectable so replays and tests control time.

    >>> from banditops.policies import Latest
    >>> class Constant:
    ...     def __init__(self, value): self.value = value
    ...     def predict(self, rows): return [self.value for _ in rows]
    >>> d = Deployment(Latest(), reward="accuracy")
    >>> d.register("v1", Constant(0)); d.register("v2", Constant(1))
    >>> decision = d.predict([3.0, 4.0])
    >>> decision.version, decision.prediction, decision.propensity
    ('v2', 1, 1.0)
    >>> d.feedback(decision.id, 1)
    1.0
    """

    def __init__(self, policy: Policy, reward: str | RewardFunction = "accuracy",
                 guardrail: Guardrail | None = None, *, max_pending: int = 100_000,
                 pending_ttl: float | None = None, record_pending: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(policy, Policy):
            raise InvalidParameterError(
                f"policy must be a banditops Policy, got {type(policy).__name__}")
        if guardrail is not None and not isinstance(guardrail, Guardrail):
            raise InvalidParameterError(
                f"guardrail must be a Guardrail or None, got {type(guardrail).__name__}")
        if policy.arms:
            raise InvalidParameterError(
                "policy already has arms; register versions through the Deployment instead")
        self.policy = policy
        self.reward = resolve_reward(reward)
        self.guardrail = guardrail
        self.max_pending = check_window("max_pending", max_pending)
        self.pending_ttl = None if pending_ttl is None else check_number(
            "pending_ttl", pending_ttl, low=0.0, high=math.inf, low_open=True)
        self.record_pending = bool(record_pending)
        self._clock = clock
        self._versions: dict[str, _Version] = {}
        self._live: list[str] = []
        self._pending: OrderedDict[str, tuple[str, Any, float]] = OrderedDict()
        self._closed: OrderedDict[str, str] = OrderedDict()  # id -> "feedback" | "expired"
        self._prefix = secrets.token_hex(8) + "-"  # unique across replicas and restarts
        self._counter = 0
        self._events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []

    # ------------------------------------------------------------- versions
    def register(self, name: str, model: Any, *, validation_score: float | None = None) -> None:
        """Add a model version (anything with ``predict`` or ``predict_one``); it goes live."""
        if not (callable(getattr(model, "predict", None))
                or callable(getattr(model, "predict_one", None))):
            raise InvalidParameterError(
                f"model for version {name!r} has no predict() or predict_one() method "
                f"(got {type(model).__name__})")
        if name in self._versions:
            raise DuplicateArmError(
                f"version {name!r} is registered already (status "
                f"{self._versions[name].status}); use a new version name")
        self.policy.add_arm(name, validation_score=validation_score)  # validates both
        self._versions[name] = _Version(name, model, _single_predictor(model), validation_score)
        self._live.append(name)
        self._emit("registered", name, f"version {name} registered and live",
                   {"validation_score": validation_score})

    def rollback(self, name: str, reason: str = "manual rollback",
                 evidence: dict[str, Any] | None = None) -> None:
        """Take a live version out of service; it keeps its history."""
        self._take_down(name, Status.ROLLED_BACK, reason, evidence or {})

    def quarantine(self, name: str, reason: str,
                   evidence: dict[str, Any] | None = None) -> None:
        """Take a live version out of service because it is broken (raises, times out)."""
        self._take_down(name, Status.QUARANTINED, reason, evidence or {})

    def retire(self, name: str, reason: str = "retired") -> None:
        """Take a version out of service for good (live or already taken down)."""
        version = self._require_version(name)
        if version.status is Status.LIVE:
            self._take_down(name, Status.RETIRED, reason, {})
        elif version.status is not Status.RETIRED:
            version.status = Status.RETIRED
            self._emit("retired", name, reason, {})

    def reinstate(self, name: str, reason: str = "reinstated") -> None:
        """Put a rolled-back or quarantined version live again, with fresh policy statistics."""
        version = self._require_version(name)
        if version.status not in (Status.ROLLED_BACK, Status.QUARANTINED):
            raise InvalidParameterError(
                f"only rolled-back or quarantined versions can be reinstated; {name} is "
                f"{version.status}")
        self.policy.add_arm(name, validation_score=version.validation_score)
        version.status = Status.LIVE
        self._live.append(name)
        self._emit("reinstated", name, reason, {})

    def _take_down(self, name: str, status: Status, reason: str, evidence: dict[str, Any]) -> None:
        version = self._require_version(name)
        if version.status is not Status.LIVE:
            raise InvalidParameterError(f"version {name} is not live (status {version.status})")
        if len(self._live) == 1:
            raise InvalidParameterError(
                f"{name} is the last live version; register another before taking it down")
        self.policy.remove_arm(name)
        self._live.remove(name)
        version.status = status
        if self.guardrail is not None:
            self.guardrail.forget(name)
        self._emit(str(status), name, reason, evidence)

    def _require_version(self, name: str) -> _Version:
        try:
            return self._versions[name]
        except (KeyError, TypeError):
            raise UnknownArmError(
                f"unknown version {name!r}; versions: {sorted(self._versions) or 'none'}"
            ) from None

    @property
    def live_versions(self) -> list[str]:
        return list(self._live)

    def has_version(self, name: str) -> bool:
        """Whether ``name`` was ever registered here (whatever its status now)."""
        return name in self._versions

    def status(self, name: str) -> str:
        """A version's status, without the statistics :meth:`versions` computes."""
        return str(self._require_version(name).status)

    def model(self, name: str) -> Any:
        return self._require_version(name).model

    # ------------------------------------------------------------ decisions
    def predict(self, x: Any) -> Decision:
        """Route one instance: a mapping of features, a feature row, or whatever the models take."""
        now = self._clock()
        if self.pending_ttl is not None:
            self._expire(now)
        name, propensity = self.policy.choose()
        version = self._versions[name]
        try:
            prediction = version.predict_one(x)
        except Exception as error:  # a broken model must not fail the request
            name, prediction, propensity = self._serve_elsewhere(x, name, error)
            version = self._versions[name]
        self._counter += 1
        decision_id = f"{self._prefix}{self._counter:x}"
        version.decisions += 1
        if self.record_pending:
            pending = self._pending
            pending[decision_id] = (name, prediction, now)
            if len(pending) > self.max_pending:
                self._expire_oldest()
        return Decision(decision_id, name, prediction, propensity)

    def predict_batch(self, instances: Iterable[Any]) -> list[Decision]:
        """Route each instance of a batch (rows of a DataFrame or array, or a list)."""
        if hasattr(instances, "iloc") and hasattr(instances, "columns"):
            rows: Iterable[Any] = (row.to_dict() for _, row in instances.iterrows())
        else:
            rows = instances
        return [self.predict(x) for x in rows]

    def _serve_elsewhere(self, x: Any, failed: str, error: Exception) -> tuple[str, Any, float]:
        """Serve with another live version; quarantine the failed ones if one succeeds."""
        failures = {failed: error}
        shares = self.policy.probabilities()
        for name in sorted(self._live, key=lambda n: -shares.get(n, 0.0)):
            if name in failures:
                continue
            try:
                prediction = self._versions[name].predict_one(x)
            except Exception as other_error:
                failures[name] = other_error
                continue
            for bad, bad_error in failures.items():
                self._take_down(bad, Status.QUARANTINED,
                                f"model raised {type(bad_error).__name__}: {bad_error}",
                                {"error": repr(bad_error)})
            return name, prediction, self.policy.propensity(name)
        details = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in failures.items())
        raise ModelError(f"every live version failed on this input ({details})") from error

    def feedback(self, decision_id: str, label: Any) -> float:
        """Record ground truth for a decision; returns the reward it earned."""
        entry = self._pending.get(decision_id) if isinstance(decision_id, str) else None
        if entry is None:
            self._raise_for_missing(decision_id)
        name, prediction, _ = entry  # type: ignore[misc]
        try:
            reward = validate_reward(self.reward(label, prediction))
        except BanditOpsError:
            raise
        except Exception as error:
            raise InvalidParameterError(
                f"reward function failed for label {label!r} and prediction {prediction!r}: "
                f"{type(error).__name__}: {error}") from None
        del self._pending[decision_id]
        self._close(decision_id, "feedback")
        self._learn(self._versions[name], reward)
        return reward

    def learn(self, name: str, reward: float) -> None:
        """Learn a reward for a decision this object did not record itself.

        The service keeps decisions in its database so that any replica, or the same one
        after a restart, can take their feedback; it computes the reward and hands it here.
        A version that is no longer live only counts it.
        """
        self._learn(self._require_version(name), validate_reward(reward))

    def _learn(self, version: _Version, reward: float) -> None:
        name = version.name
        version.feedbacks += 1
        version.reward_sum += reward
        version.reward_sq += reward * reward
        if reward != 0.0 and reward != 1.0:
            version.binary = False
        if version.status is Status.LIVE:
            policy = self.policy
            policy.update(name, reward)
            for notice in policy.take_notices():
                self._emit("policy", notice.get("challenger") or notice.get("champion"),
                           notice["kind"].replace("_", " "), notice)
            if self.guardrail is not None:
                for verdict in self.guardrail.observe(name, reward, self._live):
                    if len(self._live) > 1:
                        self._take_down(verdict.version, Status.ROLLED_BACK, verdict.reason,
                                        verdict.evidence)

    def _raise_for_missing(self, decision_id: Any) -> None:
        if not isinstance(decision_id, str):
            raise UnknownDecisionError(
                f"decision id must be a string, got {type(decision_id).__name__}")
        closed = self._closed.get(decision_id)
        if closed == "feedback":
            raise DuplicateFeedbackError(f"decision {decision_id} already received feedback")
        if closed == "expired":
            raise ExpiredDecisionError(
                f"decision {decision_id} expired before its feedback arrived "
                f"(pending_ttl={self.pending_ttl}, max_pending={self.max_pending})")
        raise UnknownDecisionError(f"unknown decision id {decision_id!r}")

    def _close(self, decision_id: str, outcome: str) -> None:
        closed = self._closed
        closed[decision_id] = outcome
        if len(closed) > self.max_pending:
            closed.popitem(last=False)

    def _expire_oldest(self) -> None:
        decision_id, (name, _, _) = self._pending.popitem(last=False)
        self._versions[name].expired += 1
        self._close(decision_id, "expired")

    def _expire(self, now: float) -> None:
        limit = now - self.pending_ttl  # type: ignore[operator]
        pending = self._pending
        while pending and next(iter(pending.values()))[2] < limit:
            self._expire_oldest()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ----------------------------------------------------------- snapshots
    def learning_state(self) -> dict[str, Any]:
        """What this Deployment has learned, JSON-safe: the policy (with its RNG), the
        guardrail's windows and each version's reward totals. Versions and their models are
        not included: they are registered again before :meth:`restore_learning`."""
        return {
            "policy": self.policy.state(),
            "guardrail": None if self.guardrail is None else self.guardrail.state(),
            "versions": {name: {"feedbacks": v.feedbacks, "reward_sum": v.reward_sum,
                                "reward_sq": v.reward_sq, "binary": v.binary}
                         for name, v in self._versions.items()},
        }

    def restore_learning(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`learning_state`, after registering the versions again.

        Refuses (``InvalidStateError``) a state of another policy or guardrail configuration.
        Versions live now but not then start fresh; arms no longer live are dropped.
        """
        from banditops.errors import InvalidStateError

        try:
            policy = Policy.from_state(state["policy"])
            guardrail_state = state["guardrail"]
            totals = state["versions"]
        except (KeyError, TypeError) as error:
            raise InvalidStateError(f"malformed learning state: {error!r}") from None
        if policy.key != self.policy.key or policy.params() != self.policy.params():
            raise InvalidStateError(
                f"the state is of {policy!r}, this deployment runs {self.policy!r}")
        if (guardrail_state is None) != (self.guardrail is None) or (
                self.guardrail is not None
                and guardrail_state["params"] != self.guardrail.params()):
            raise InvalidStateError("the state is of another guardrail configuration")
        for arm in policy.arms:
            if arm not in self._live:
                policy.remove_arm(arm)
        for name in self._live:
            if name not in policy.arms:
                policy.add_arm(name, validation_score=self._versions[name].validation_score)
        self.policy = policy
        if self.guardrail is not None:
            self.guardrail = Guardrail.from_state(guardrail_state)
        for name, total in totals.items():
            version = self._versions.get(name)
            if version is not None:
                version.feedbacks = int(total["feedbacks"])
                version.reward_sum = float(total["reward_sum"])
                version.reward_sq = float(total["reward_sq"])
                version.binary = bool(total["binary"])

    # ------------------------------------------------------------ reporting
    def versions(self) -> list[VersionReport]:
        """Every registered version with status, traffic share and reward (95% CI)."""
        shares = self.policy.probabilities()
        return [self._report(v, shares.get(v.name, 0.0)) for v in self._versions.values()]

    def _report(self, v: _Version, share: float) -> VersionReport:
        mean = low = high = None
        if v.feedbacks:
            mean = v.reward_sum / v.feedbacks
            low, high = reward_interval(v.feedbacks, v.reward_sum, v.reward_sq, v.binary)
        return VersionReport(v.name, str(v.status), share, v.decisions, v.feedbacks, v.expired,
                             mean, low, high, v.validation_score)

    def events(self, since: int = 0) -> list[Event]:
        """Events with ``seq >= since``, oldest first."""
        return [e for e in self._events if e.seq >= since]

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every event from now on, as it happens."""
        self._listeners.append(listener)

    def _emit(self, kind: str, version: str | None, reason: str,
              evidence: dict[str, Any]) -> None:
        event = Event(len(self._events), self._clock(), kind, version, reason, evidence)
        self._events.append(event)
        for listener in self._listeners:
            listener(event)


def reward_interval(n: int, total: float, total_sq: float, binary: bool,
                    level: float = 0.95) -> tuple[float | None, float | None]:
    """95% interval of a mean reward: Wilson for 0/1 rewards, Student t otherwise."""
    if binary:
        from statsmodels.stats.proportion import proportion_confint

        low, high = proportion_confint(round(total), n, alpha=1 - level, method="wilson")
        return float(low), float(high)
    if n < 2:
        return None, None
    from scipy.stats import t

    mean = total / n
    variance = max((total_sq - total * total / n) / (n - 1), 0.0)
    half = float(t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(variance / n)
    return max(0.0, mean - half), min(1.0, mean + half)
