"""Walk a decision log with a target policy, and estimate what it would have earned.

The target runs inside a real :class:`~banditops.Deployment` (the one code path where a
label becomes a reward, a policy update and a guardrail check), with stand-in models: the
log's versions are registered as they go live (the ``live`` column, else from first to last
serve) and retired as they leave it, so a version the target's own guardrail rolls back
leaves its support exactly as in production. At each decision, in time order:

1. the logged feedback that had arrived by then reaches the Deployment (``feedback_time``,
   else ``delay`` decisions after its own; a feedback stamped at a decision's own time comes
   after that decision);
2. the target gives its distribution over the live versions (``probabilities()``; a
   contextual policy gets the row's ``feature:`` columns as a mapping) and then makes its
   choice (``choose()``), which nobody serves: it only moves the policy on as a real
   decision would (cold-start retries, A/B decision counts, random draws);
3. the logged decision enters the Deployment's log, to be closed by its feedback later.

What the target learns (``learn``), a design choice:

- ``"log"`` (default): every logged (version, reward), at its feedback time, served by
  whichever version the log served. It is deterministic given the log and uses all of it.
  The target then knows what the LOGGER explored, not what it would have explored itself:
  learning from a uniform log it knows every version better than it would online. The
  validation measures this learning-path difference (README, "Off-policy evaluation").
  The alternative, replay (Li, Chu, Langford & Wang, 2011: learn only where the target would
  have served the logged version), keeps the target's own exploration but gives it a k-th of
  the rewards per unit of time; with releases on a fixed schedule it learns each version
  more slowly than online, a bias of the other sign, and it is unbiased only for a uniform
  logger.
- ``"none"``: the target never learns (a frozen rule, such as the static baselines).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditops.deployment import Deployment, Event
from banditops.errors import BanditOpsError, InvalidParameterError, StateConflictError
from banditops.guardrails import Guardrail, GuardrailParams
from banditops.ope.estimators import ESTIMATORS, Estimate, OffPolicyData, Support, estimate, support
from banditops.ope.logfile import SHADOW, DecisionLogFrame
from banditops.ope.reward_model import DEFAULT_WINDOW, windowed_means
from banditops.policies import Policy, make_policy
from banditops.store.log import LoggedDecision

LEARN = ("log", "none")


class _StandIn:
    """A version's model in the walk: nobody is served, so it predicts nothing."""

    def predict_one(self, x: Any) -> None:
        return None


def _logged_reward(label: float, prediction: Any) -> float:
    """The walk's reward function: the "label" it is given is the logged reward itself."""
    return label


@dataclass(frozen=True)
class TargetPath:
    """The target's distribution at every decision of the log: ``dist`` (n, k), columns
    in ``versions`` order (0 for a version not live in the target's Deployment)."""

    dist: np.ndarray
    versions: list[str]
    events: list[Event] = field(default_factory=list)

    @property
    def rollbacks(self) -> list[Event]:
        return [e for e in self.events if e.kind in ("rolled_back", "quarantined")]


def _feedback_keys(log: DecisionLogFrame, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """(decision key, feedback key) per row, comparable: a feedback reaches decision j when
    its key is below j's decision key."""
    frame = log.frame
    if log.has_feedback_time:
        return frame["time"].to_numpy(float), frame["feedback_time"].to_numpy(float)
    rows = np.arange(len(frame), dtype=float)
    return rows, rows + delay


def target_path(log: DecisionLogFrame, policy: Policy, *, guardrail: Guardrail | None = None,
                learn: str = "log", delay: int = 0,
                validation_scores: Mapping[str, float] | None = None) -> TargetPath:
    """Walk the log with ``policy`` (fresh, no arms) under ``guardrail`` (module docstring).
    ``delay``: decisions between a decision and its feedback, for a log without
    ``feedback_time``."""
    if learn not in LEARN:
        raise InvalidParameterError(f"learn must be one of {', '.join(LEARN)}, got {learn!r}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise InvalidParameterError(f"delay must be a non-negative integer, got {delay!r}")
    versions = log.versions
    column = {name: i for i, name in enumerate(versions)}
    scores = dict(log.validation_scores())
    scores.update(validation_scores or {})
    frame = log.frame
    n = len(frame)
    ids = frame["decision_id"].tolist()
    served = frame["version"].tolist()
    propensity = frame["propensity"].tolist()
    rewards = frame["reward"].to_numpy(float)
    decision_key, feedback_key = _feedback_keys(log, delay)
    pending = [row for row in np.argsort(feedback_key, kind="stable").tolist()
               if not math.isnan(rewards[row])] if learn == "log" else []
    contextual = bool(getattr(policy, "contextual", False))
    if contextual:  # else it would route on nothing but its bias slot, silently
        _check_target_features(log, getattr(getattr(policy, "encoder", None), "features", ()))
    contexts = log.contexts() if contextual else None
    with_context = "context" in LoggedDecision._fields
    clock = [0.0]
    deployment = Deployment(policy, reward=_logged_reward, guardrail=guardrail,
                            max_pending=n + 1, clock=lambda: clock[0])
    live_sets = log.live_sets
    dist = np.zeros((n, len(versions)))
    previous: tuple[str, ...] | None = None
    next_feedback = 0
    record, feedback = deployment.log.record_one, deployment.feedback
    for row in range(n):
        clock[0] = float(decision_key[row])
        while (next_feedback < len(pending)
               and feedback_key[pending[next_feedback]] < decision_key[row]):
            done = pending[next_feedback]
            next_feedback += 1
            feedback(ids[done], float(rewards[done]))
        live = live_sets[row]
        if live != previous:
            _sync(deployment, live, scores)
            previous = live
        context = contexts[row] if contexts is not None else None
        shares = policy.probabilities(context) if contextual else policy.probabilities()
        for name, share in shares.items():
            if share:
                dist[row, column[name]] = share
        if contextual:
            policy.choose(context)
        else:
            policy.choose()
        extra = {"context": context} if with_context and contextual else {}
        record(LoggedDecision(ids[row], served[row], None, propensity[row], clock[0], **extra))
    return TargetPath(dist, versions, deployment.events())


def _sync(deployment: Deployment, live: tuple[str, ...], scores: Mapping[str, float]) -> None:
    """Make the Deployment's versions follow the log's live set: new ones registered, gone
    ones retired. One the target's guardrail rolled back stays down while others are live."""
    for name in live:
        if not deployment.has_version(name):
            deployment.register(name, _StandIn(), validation_score=scores.get(name))
    wanted = set(live)
    for name in deployment.live_versions:
        if name not in wanted:
            if len(deployment.live_versions) == 1:
                _bring_back(deployment, live)
            deployment.retire(name, "no longer live in the log")
    if not deployment.live_versions:  # pragma: no cover - guarded above
        _bring_back(deployment, live)


def _bring_back(deployment: Deployment, live: tuple[str, ...]) -> None:
    """Every version the log keeps live was rolled back by the target's guardrail: the
    newest comes back (the log has nothing else to serve)."""
    for name in reversed(live):
        try:
            deployment.reinstate(name, "the log has no other live version")
            return
        except StateConflictError:
            continue
    raise BanditOpsError(f"no version of {list(live)} can serve the target")  # pragma: no cover


@dataclass(frozen=True)
class Evaluation:
    """What ``banditops evaluate`` reports for one target."""

    target: str
    estimates: list[Estimate]
    support: Support
    decisions: int
    feedbacks: int
    logged_mean: float
    versions: list[str]
    rollbacks: list[dict[str, Any]]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "decisions": self.decisions, "feedbacks": self.feedbacks,
                "logged_mean_reward": self.logged_mean, "versions": self.versions,
                "estimates": [e.as_dict() for e in self.estimates],
                "support": self.support.as_dict(), "rollbacks": self.rollbacks,
                "warnings": list(self.warnings)}


def log_arrays(log: DecisionLogFrame, versions: list[str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """(action column, propensity, reward, shadow rewards by column) of every row."""
    column = {name: i for i, name in enumerate(versions)}
    frame = log.frame
    action = frame["version"].map(column).to_numpy(dtype=np.int64)
    shadows = {column[name]: frame[SHADOW + name].to_numpy(float)
               for name in log.shadow_versions if name in column}
    return (action, frame["propensity"].to_numpy(float), frame["reward"].to_numpy(float),
            shadows)


def estimate_path(log: DecisionLogFrame, path: TargetPath, *,
                  estimators: tuple[str, ...] | list[str] = ESTIMATORS,
                  q_hat: np.ndarray | None = None, window: int = DEFAULT_WINDOW
                  ) -> tuple[list[Estimate], Support]:
    """Every estimator, and the support check, for a target's path over ``log``."""
    action, propensity, reward, shadows = log_arrays(log, path.versions)
    if q_hat is None:
        q_hat = windowed_means(action, reward, len(path.versions), shadows=shadows,
                               window=window)
    checked = support(path.dist, action, propensity, path.versions)
    rows = ~np.isnan(reward)
    data = OffPolicyData(reward[rows], propensity[rows], action[rows], path.dist[rows],
                         q_hat[rows])
    found = estimate(data, list(estimators))
    notes = checked.warnings
    return [dataclasses.replace(e, warnings=e.warnings + notes) for e in found], checked


def describe_target(name: str, params: Mapping[str, Any],
                    guardrail: GuardrailParams | None) -> str:
    text = name + "".join(f" {k}={v}" for k, v in params.items())
    if guardrail is not None:
        text += " +guardrail(" + ", ".join(
            f"{k}={v}" for k, v in dataclasses.asdict(guardrail).items()) + ")"
    return text


def _check_target_features(log: DecisionLogFrame, wanted: tuple[str, ...]) -> None:
    """A contextual target needs the log's features: the ones it names, or some at all."""
    logged = log.features
    if not logged:
        raise InvalidParameterError(
            "a contextual target needs the requests' features, and the log has no feature: "
            "columns (a deployment with log_features = false keeps them out)")
    missing = [name for name in wanted if name not in logged]
    if missing:
        raise InvalidParameterError(
            f"feature {missing[0]!r} of the target is not in the log; its features: "
            f"{', '.join(logged)}")


def evaluate(log: DecisionLogFrame, policy: str, params: Mapping[str, Any] | None = None, *,
             guardrail: GuardrailParams | None = None, seed: int = 0, learn: str = "log",
             delay: int = 0, estimators: tuple[str, ...] | list[str] = ESTIMATORS,
             validation_scores: Mapping[str, float] | None = None) -> Evaluation:
    """Estimate what ``policy`` with ``params`` (and ``guardrail``) would have earned on
    the log's traffic; every estimator, the support check and the target's rollbacks."""
    params = dict(params or {})
    target = make_policy(policy, seed=seed, **params)
    path = target_path(log, target, learn=learn, delay=delay,
                       guardrail=None if guardrail is None else Guardrail.from_params(guardrail),
                       validation_scores=validation_scores)
    estimates, checked = estimate_path(log, path, estimators=estimators)
    reward = log.frame["reward"].to_numpy(float)
    feedbacks = int(np.sum(~np.isnan(reward)))
    warnings = list(checked.warnings)
    if feedbacks < len(reward):
        warnings.append(f"{len(reward) - feedbacks:,} of {len(reward):,} decisions have no "
                        "feedback: they are left out (assumed missing at random)")
    return Evaluation(
        describe_target(policy, params, guardrail), estimates, checked, len(reward), feedbacks,
        float(np.nanmean(reward)) if feedbacks else math.nan, path.versions,
        [{"version": e.version, "time": e.time, "reason": e.reason} for e in path.rollbacks],
        tuple(warnings))
