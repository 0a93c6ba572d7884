"""Deployment: where a request becomes a Decision and ground truth becomes a policy update.

Replay experiments and the HTTP service both go through this class, so what an experiment
measures is what production runs. A Deployment owns the model versions (the policy's arms),
asks the policy which one serves, logs each decision with its propensity in a
:class:`~banditops.store.log.DecisionLog`, turns feedback into a reward, updates the policy,
lets the guardrail roll back a degraded version, and quarantines a version whose model raises.

:meth:`Deployment.feedback` is the one place where a label becomes a reward: the replay calls
it with an in-memory log (bounded pending decisions with a TTL; see
:class:`~banditops.store.memory.MemoryLog`), the service with the SQL log its replicas share.
Rewards another replica computed reach this one through :meth:`Deployment.catch_up`, which
reads them from the log.

A contextual policy (:class:`~banditops.policies.base.ContextualPolicy`) routes on each
request's features, its *context*: by default the instance itself when it is a mapping of
features (the service's instances are), else what the caller passes as ``context``. The
decision keeps its context in the log (``LoggedDecision.context``) until the label comes, so
the reward, and every shadow reward, is learned on the request it was earned on. A
context-free policy's path is unchanged: it never sees a context, and nothing is logged
unless ``log_context=True``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from typing import Any, NamedTuple

from banditops.errors import (
    BanditOpsError,
    DuplicateArmError,
    DuplicateFeedbackError,
    InvalidLabelError,
    InvalidParameterError,
    InvalidStateError,
    ModelError,
    ModelTimeoutError,
    StateConflictError,
    UnknownArmError,
    UnknownDecisionError,
)
from banditops.guardrails import Guardrail
from banditops.instances import Rows, predict_rows, single_predictor
from banditops.policies.base import Policy
from banditops.release import DarkLaunch, ReleaseParams
from banditops.rewards import (
    LabelSet,
    RewardFunction,
    accuracy,
    check_label,
    label_kind,
    resolve_reward,
    validate_reward,
)
from banditops.shadow import Shadowing, ShadowParams
from banditops.store.log import Closing, DecisionLog, LoggedDecision, VersionTotals
from banditops.store.memory import MemoryLog


class Status(StrEnum):
    LIVE = "live"
    ROLLED_BACK = "rolled_back"
    QUARANTINED = "quarantined"
    RETIRED = "retired"
    DARK = "dark"  # released dark: scored in the shadow, serves nobody (banditops.release)


class Decision(NamedTuple):
    """Which version served a request, what it predicted, and the chance it had of serving.

    A named tuple, not a frozen dataclass: a batch of 10,000 builds 10,000 of them, and a
    tuple is built in a third of the time (benchmarks/predict_batch.py)."""

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
    """A version's standing: status, current traffic share, its production reward (from the
    log, all replicas together) and how many rewards this instance's policy learned."""

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
    learned: int = 0
    learned_reward_sum: float = 0.0
    shadow_learned: int = 0
    shadow_reward_sum: float = 0.0
    judgement: str | None = None  # the guardrail's, for a live version: "not judged yet"...
    guardrail_rewards: int | None = None  # what the guardrail judges a live version on


class ShadowWork(NamedTuple):
    """What :meth:`Deployment.shadow_later` did: decisions that took their shadow predictions,
    and decisions whose predictions came too late (their feedback had closed them)."""

    attached: int
    late: int


@dataclass(slots=True)
class _Version:
    name: str
    model: Any
    predict_one: Callable[[Any], Any]
    validation_score: float | None
    status: Status = Status.LIVE
    learned: int = 0
    learned_sum: float = 0.0
    input_failures: int = 0  # requests it failed while another version served them
    shadow_learned: int = 0  # rewards of its shadow predictions (side observations)
    shadow_sum: float = 0.0


_SCORED = (Status.LIVE, Status.DARK)  # versions whose predictions are still scored
_SHADOW_RETRY_FAILURES = 3  # rows a failed shadow batch retries one by one before giving up
_DARK_FAILURES = 20  # a dark version failing on this many inputs (and a tenth) is quarantined


def _short(text: str, limit: int = 300) -> str:
    """Error text for events and logs, cut short (an input may be megabytes)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _DecisionIds:
    """Decision ids of 128 random bits, so nobody can guess another client's decision.

    Hand-written because ``secrets.token_hex(16)`` costs 0.9 us per call, a tenth of a
    replayed request; one ``os.urandom`` read per 256 ids costs 0.15 us per id."""

    __slots__ = ("_buffer", "_next")

    def __init__(self) -> None:
        self._buffer, self._next = "", 0

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._buffer):
            self._buffer, start = os.urandom(16 * 256).hex(), 0
        self._next = start + 32
        return self._buffer[start:start + 32]

    def many(self, n: int) -> list[str]:
        """``n`` ids from one ``os.urandom`` read (a batch's)."""
        text = os.urandom(16 * n).hex()
        return [text[i:i + 32] for i in range(0, 32 * n, 32)]


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
    labels
        The classes a label may take (type-aware: ``1`` and ``"1"`` differ); feedback with
        any other label is refused with :class:`~banditops.errors.InvalidLabelError` and the
        decision stays open for the right label. Default: the reward's own classes (a cost
        matrix has two), else any JSON scalar.
    log
        Where decisions wait for their feedback. Default: a
        :class:`~banditops.store.memory.MemoryLog` bounded by ``max_pending`` and
        ``pending_ttl`` seconds (see there for expiry).
    shadow
        :class:`~banditops.shadow.ShadowParams` to score other live versions' predictions on
        every label too (side observations for the policy, evidence for the guardrail); only
        where the label does not depend on the served prediction (see :mod:`banditops.shadow`).
    release
        :class:`~banditops.release.ReleaseParams`; ``mode="dark"`` registers new versions
        dark (they serve nobody until their shadow rewards show they are not worse than
        the best live version; see :mod:`banditops.release`). Implies shadow scoring
        (``ShadowParams(mode="evaluating")`` unless ``shadow`` says otherwise).
    defer_shadows
        Log decisions without shadow predictions; the caller computes them after answering
        with :meth:`shadow_later` (the service does, off the request path).
    log_context
        Keep each decision's context (the request's features) in the log, for a policy that
        does not route on it (e.g. to evaluate a contextual one off-policy later). Always on
        for a contextual policy.
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
                 guardrail: Guardrail | None = None, *, labels: Sequence[Any] | None = None,
                 log: DecisionLog | None = None, max_pending: int = 100_000,
                 pending_ttl: float | None = None, shadow: ShadowParams | None = None,
                 release: ReleaseParams | None = None, defer_shadows: bool = False,
                 log_context: bool = False,
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
        if log is not None and not isinstance(log, DecisionLog):
            raise InvalidParameterError(
                f"log must be a DecisionLog or None, got {type(log).__name__}")
        self.policy = policy
        self._contextual = bool(policy.contextual)
        self.log_context = bool(log_context) or self._contextual
        self.reward = resolve_reward(reward)
        self.guardrail = guardrail
        if labels is None:
            labels = getattr(self.reward, "classes", None)
        self.labels = None if labels is None else LabelSet(labels)
        self.log = log if log is not None else MemoryLog(max_pending, pending_ttl)
        if shadow is not None and not isinstance(shadow, ShadowParams):
            raise InvalidParameterError(
                f"shadow must be ShadowParams or None, got {type(shadow).__name__}")
        if release is not None and not isinstance(release, ReleaseParams):
            raise InvalidParameterError(
                f"release must be ReleaseParams or None, got {type(release).__name__}")
        self._dark_launch = None
        if release is not None and release.mode == "dark":
            shadow = shadow or ShadowParams(mode="evaluating")
            confidence = guardrail.confidence if guardrail is not None else 0.99
            self._dark_launch = DarkLaunch(release, confidence)
        if shadow is not None and not self.log.keeps_shadows:
            raise InvalidParameterError(
                f"{type(self.log).__name__} does not keep shadow predictions yet")
        self._shadowing = None if shadow is None else Shadowing(shadow)
        self.defer_shadows = bool(defer_shadows)
        self._dark: list[str] = []
        self._clock = clock
        self._versions: dict[str, _Version] = {}
        self._live: list[str] = []
        self._new_id = _DecisionIds()
        self._events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []

    # ------------------------------------------------------------- versions
    def register(self, name: str, model: Any, *, validation_score: float | None = None,
                 dark: bool | None = None) -> None:
        """Add a model version (anything with ``predict`` or ``predict_one``); it goes live,
        or dark (``dark=True``, default: the release mode) while other versions are live."""
        if not (callable(getattr(model, "predict", None))
                or callable(getattr(model, "predict_one", None))):
            raise InvalidParameterError(
                f"model for version {name!r} has no predict() or predict_one() method "
                f"(got {type(model).__name__})")
        if name in self._versions:
            raise DuplicateArmError(
                f"version {name!r} is registered already (status "
                f"{self._versions[name].status}); use a new version name")
        if dark is None:
            dark = self._dark_launch is not None
        if dark and self._dark_launch is None:
            raise InvalidParameterError(
                "dark=True needs a deployment with release=ReleaseParams(mode='dark')")
        if dark and self._live:
            self.policy.check_arm(name, validation_score=validation_score)
            self._versions[name] = _Version(name, model, single_predictor(model),
                                            validation_score, Status.DARK)
            self._dark.append(name)
            self._dark_launch.add(name)  # type: ignore[union-attr]
            self._emit("registered", name, f"version {name} registered dark: it serves no "
                       "traffic until its shadow rewards show it is not worse than the best "
                       "live version", {"validation_score": validation_score, "dark": True})
            return
        self.policy.add_arm(name, validation_score=validation_score)  # validates both
        self._versions[name] = _Version(name, model, single_predictor(model), validation_score)
        self._live.append(name)
        self._emit("registered", name, f"version {name} registered and live",
                   {"validation_score": validation_score})

    def promote(self, name: str, reason: str = "promoted by an operator",
                evidence: dict[str, Any] | None = None) -> None:
        """Put a dark version live: it joins the policy, which observes the shadow rewards it
        gathered (its last ``carry``: its pseudo-counts)."""
        version = self._require_version(name)
        if version.status is not Status.DARK:
            raise StateConflictError(f"only dark versions can be promoted; {name} is "
                                     f"{version.status}")
        carried = self._dark_launch.carried(name)  # type: ignore[union-attr]
        self._dark.remove(name)
        self._dark_launch.forget(name)  # type: ignore[union-attr]
        self.policy.add_arm(name, validation_score=version.validation_score)
        for reward in carried:
            self.policy.observe(name, reward)
        version.status = Status.LIVE
        self._live.append(name)
        self._emit("promoted", name, reason, {**(evidence or {}), "carried": len(carried)})

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
        if version.status in (Status.LIVE, Status.DARK):
            self._take_down(name, Status.RETIRED, reason, {})
        elif version.status is not Status.RETIRED:
            version.status = Status.RETIRED
            self._emit("retired", name, reason, {})

    def reinstate(self, name: str, reason: str = "reinstated") -> None:
        """Put a rolled-back or quarantined version live again, with fresh policy statistics."""
        version = self._require_version(name)
        if version.status not in (Status.ROLLED_BACK, Status.QUARANTINED):
            raise StateConflictError(
                f"only rolled-back or quarantined versions can be reinstated; {name} is "
                f"{version.status}")
        reset = getattr(version.model, "reset", None)
        if callable(reset):
            reset()  # e.g. a served model's slow-call record starts afresh
        self.policy.add_arm(name, validation_score=version.validation_score)
        version.status = Status.LIVE
        self._live.append(name)
        self._emit("reinstated", name, reason, {})

    def _take_down(self, name: str, status: Status, reason: str, evidence: dict[str, Any]) -> None:
        version = self._require_version(name)
        if version.status is Status.DARK:  # serves nobody: no policy arm, never the last
            self._dark.remove(name)
            self._dark_launch.forget(name)  # type: ignore[union-attr]
            version.status = status
            if self.guardrail is not None:
                self.guardrail.forget(name)
            self._emit(str(status), name, reason, evidence)
            return
        if version.status is not Status.LIVE:
            raise StateConflictError(f"version {name} is not live (status {version.status})")
        if len(self._live) == 1:
            raise StateConflictError(
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

    @property
    def dark_versions(self) -> list[str]:
        """Versions released dark and still under evaluation (they serve nobody)."""
        return list(self._dark)

    def has_version(self, name: str) -> bool:
        """Whether ``name`` was ever registered here (whatever its status now)."""
        return name in self._versions

    def status(self, name: str) -> str:
        """A version's status, without the statistics :meth:`versions` computes."""
        return str(self._require_version(name).status)

    def model(self, name: str) -> Any:
        return self._require_version(name).model

    # ------------------------------------------------------------ decisions
    def predict(self, x: Any, *, owner: str | None = None, context: Any = None) -> Decision:
        """Route one instance: a mapping of features, a feature row, or whatever the models take.

        ``owner`` (e.g. a digest of the caller's key) is logged with the decision; feedback
        that names another owner is refused as unknown. ``context``: the request's features
        for a contextual policy (a mapping, or a vector its encoder made); default: ``x``
        when it is a mapping, else none (the policy routes as for an average request)."""
        if getattr(x, "ndim", 1) > 1:  # an array or frame of rows, not one instance
            raise InvalidParameterError(
                f"predict() routes one instance; got {type(x).__name__} of shape "
                f"{getattr(x, 'shape', '?')}: use predict_batch() for several rows (or pass "
                "one row, e.g. X[0])")
        now = self._clock()
        if self.log_context:
            if context is None and isinstance(x, Mapping):
                context = x
            name, propensity = (self.policy.choose(context) if self._contextual  # type: ignore[call-arg]
                                else self.policy.choose())
        else:
            name, propensity = self.policy.choose()
        version = self._versions[name]
        try:
            prediction = version.predict_one(x)
        except Exception as error:  # a broken model must not fail the request
            name, prediction, propensity = self._serve_elsewhere(x, name, error, context)
        decision_id = self._new_id()
        shadows = () if self._shadowing is None or self.defer_shadows \
            else self._shadow_one(x, name)
        self.log.record_one(LoggedDecision(decision_id, name, prediction, propensity, now, owner,
                                           shadows, context if self.log_context else None))
        return Decision(decision_id, name, prediction, propensity)

    def _shadow_one(self, x: Any, served: str) -> tuple[tuple[str, Any], ...]:
        """Other live versions' predictions for ``x``; a version that fails is handled as a
        failed serving one would be, without touching the request."""
        shadows = []
        for name in self._shadow_versions(served):
            version = self._versions[name]
            if version.status not in _SCORED:
                continue  # taken down by an earlier shadow's failure
            try:
                shadows.append((name, version.predict_one(x)))
            except Exception as error:
                self._model_failed(version, error, "shadow prediction")
        return tuple(shadows)

    def _shadow_versions(self, served: str) -> list[str]:
        return self._shadowing.versions(  # type: ignore[union-attr]
            served, self._live, self._reward_counts, self._dark)

    def _reward_counts(self) -> dict[str, int]:
        return {n: v.learned + v.shadow_learned for n, v in self._versions.items()}

    def shadow_targets(self, served: str) -> tuple[str, ...]:
        """The versions to predict a request ``served`` answered, in its shadow, chosen now
        (mode ``rate`` samples here): pass them to :meth:`shadow_later` with the request."""
        return () if self._shadowing is None else tuple(self._shadow_versions(served))

    def shadow_later(self, items: Sequence[tuple[Any, ...]]) -> ShadowWork:
        """Shadow predictions for decisions answered already: ``(decision id, served version,
        instance)`` each, or with a fourth element, the :meth:`shadow_targets` chosen when
        it was answered; one model call per version for the batch. They are attached to the
        log's open decisions and scored when the labels arrive. Returns how many decisions
        took theirs, and how many came too late (feedback that came first closed them)."""
        if self._shadowing is None or not items:
            return ShadowWork(0, 0)
        targets = [item[3] if len(item) > 3 else self._shadow_versions(item[1])
                   for item in items]
        shadows = self._shadow_rows(Rows([item[2] for item in items]), targets)
        found = {item[0]: shadow for item, shadow in zip(items, shadows, strict=True) if shadow}
        attached = self.log.add_shadows(found)
        return ShadowWork(attached, len(found) - attached)

    def _shadow_rows(self, rows: Rows, targets: Sequence[Sequence[str]]
                     ) -> list[tuple[tuple[str, Any], ...]]:
        """Each row's shadow predictions by its ``targets``, in their order: one model call
        per version for the rows that want it. A failed call is retried row by row, to find
        out whether the model or a row is at fault, for at most ``_SHADOW_RETRY_FAILURES``
        failing rows; the rest of that version's rows go without (as do all rows of a
        version taken down meanwhile)."""
        wanted: dict[str, list[int]] = {}
        for index, names in enumerate(targets):
            for name in names:
                indexes = wanted.get(name)
                if indexes is None:
                    wanted[name] = [index]
                else:
                    indexes.append(index)
        scored: dict[str, dict[int, Any]] = {}
        for name, indexes in wanted.items():
            got = scored[name] = {}
            version = self._versions.get(name)
            if version is None or version.status not in _SCORED:
                continue
            try:
                got.update(zip(indexes, predict_rows(version.model, rows, indexes), strict=True))
                continue
            except Exception:
                pass  # row by row
            failed = 0
            for index in indexes:
                if version.status not in _SCORED or failed >= _SHADOW_RETRY_FAILURES:
                    break  # taken down, or failing row after row: the rest of it is dropped
                try:
                    got[index] = version.predict_one(rows.row(index))
                except Exception as error:
                    failed += 1
                    self._model_failed(version, error, "shadow prediction")
        return [tuple((name, scored[name][index]) for name in names if index in scored[name])
                for index, names in enumerate(targets)]

    def _model_failed(self, version: _Version, error: Exception, what: str) -> None:
        """A live version raised on one input while the request was served anyway: quarantine
        it, unless its model vouches for itself (``healthy()``: it still predicts its
        known-good rows), so no client can take a healthy version out with a crafted input.
        A timeout is never excused: the model judged itself slow over many calls already."""
        if version.status not in _SCORED or (
                version.status is Status.LIVE and len(self._live) < 2):
            return
        version.input_failures += 1
        healthy = getattr(version.model, "healthy", None)
        if not isinstance(error, ModelTimeoutError) and callable(healthy) and healthy() \
                and not self._failing_dark(version):
            return
        self._take_down(version.name, Status.QUARANTINED,
                        f"{what} raised {type(error).__name__}: {_short(str(error))}",
                        {"error": _short(repr(error)), "failed_inputs": version.input_failures})

    @staticmethod
    def _failing_dark(version: _Version) -> bool:
        """A dark version serves nobody, so the benefit of the doubt a live one gets (the
        input may be at fault) runs out: it is quarantined once it failed on at least
        ``_DARK_FAILURES`` requests and on a tenth of those it was asked about."""
        failures = version.input_failures
        return (version.status is Status.DARK and failures >= _DARK_FAILURES
                and failures * 10 >= failures + version.shadow_learned)

    def predict_batch(self, instances: Iterable[Any], *,
                      owners: Sequence[str | None] | None = None,
                      errors: str = "raise", contexts: Sequence[Any] | None = None
                      ) -> list[Any]:
        """Route each instance of a batch (rows of a DataFrame or 2-D array, or a list).

        Each version predicts its share of the batch in one model call (a slice of the frame
        or array). The policy chooses per instance, in order, exactly as that many
        :meth:`predict` calls would. An instance on which every live version fails raises
        :class:`ModelError` (``errors="raise"``; nothing of the batch is logged) or gets
        the error in its place (``errors="return"``; the service answers it 503).
        ``contexts``: one per instance, as :meth:`predict`'s ``context``; default: each
        instance that is a mapping, or each row of a DataFrame (as a mapping).
        """
        if errors not in ("raise", "return"):
            raise InvalidParameterError(f'errors must be "raise" or "return", got {errors!r}')
        rows = Rows(instances)
        n = len(rows)
        if owners is not None and len(owners) != n:
            raise InvalidParameterError(f"{len(owners)} owners for {n} instances")
        if contexts is not None and len(contexts) != n:
            raise InvalidParameterError(f"{len(contexts)} contexts for {n} instances")
        if not n:
            return []
        now = self._clock()
        logged_contexts: list[Any] | None = None
        if self.log_context:
            logged_contexts, choice_contexts = self._batch_contexts(rows, contexts)
            if self._contextual:
                choose = self.policy.choose
                choices = [choose(context) for context in choice_contexts]  # type: ignore[call-arg]
            else:
                choose = self.policy.choose
                choices = [choose() for _ in range(n)]
        else:
            choose = self.policy.choose
            choices = [choose() for _ in range(n)]
        served, propensities = (list(column) for column in zip(*choices, strict=True))
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(served):
            group = groups.get(name)
            if group is None:
                groups[name] = [index]
            else:
                group.append(index)
        predictions: list[Any] = [None] * n
        failures: dict[int, ModelError] = {}
        for name, indexes in groups.items():
            version = self._versions[name]
            predicted = None  # None: row by row, as predict() would (finds rows at fault)
            if version.status is Status.LIVE:  # not quarantined by an earlier group's rows
                try:
                    predicted = predict_rows(version.model, rows, indexes)
                except Exception:
                    predicted = None
            if predicted is None:
                self._serve_one_by_one(rows, version, indexes, served, predictions,
                                       propensities, failures, errors, logged_contexts)
            elif len(indexes) == n:
                predictions = predicted
            else:
                for index, prediction in zip(indexes, predicted, strict=True):
                    predictions[index] = prediction
        ids = self._new_id.many(n)
        shadows = None
        if self._shadowing is not None and not self.defer_shadows:
            shadows = self._shadow_batch(self._shadowing, rows, served, failures)
        columns = [ids, served, predictions, propensities, repeat(now, n),
                   repeat(None, n) if owners is None else owners,
                   repeat((), n) if shadows is None else shadows]
        if logged_contexts is not None:
            columns.append(logged_contexts)
        logged = list(map(LoggedDecision, *columns))
        results: list[Any] = list(map(Decision, ids, served, predictions, propensities))
        if failures:
            logged = [d for i, d in enumerate(logged) if i not in failures]
            for index, failure in failures.items():
                results[index] = failure
        if logged:
            self.log.record(logged)
        return results

    def _batch_contexts(self, rows: Rows, contexts: Sequence[Any] | None
                        ) -> tuple[list[Any], Sequence[Any]]:
        """(the context logged for each row, what the policy chooses on for each row).

        A DataFrame's rows are turned into mappings in one call (``to_dict("records")``, a
        few microseconds a row; ``iloc`` row by row costs fifty), and a contextual policy
        chooses on the frame encoded column by column (``encode_frame``), which gives the
        vectors ``encode`` would give each row's mapping, at a fraction of the cost."""
        frame = rows.frame
        if contexts is not None:
            logged = list(contexts)
            return logged, logged
        if frame is not None:
            logged = frame.to_dict("records")
            if self._contextual:
                return logged, list(self.policy.encoder.encode_frame(frame))
            return logged, logged
        if rows.array is not None:
            return [None] * len(rows), [None] * len(rows)
        logged = [x if isinstance(x, Mapping) else None for x in rows.instances]
        return logged, logged

    def _serve_one_by_one(self, rows: Rows, version: _Version, indexes: list[int],
                          served: list[str], predictions: list[Any], propensities: list[float],
                          failures: dict[int, ModelError], errors: str,
                          contexts: list[Any] | None = None) -> None:
        """A version's share of a batch whose one call failed, served as :meth:`predict`
        would serve each row: by the version, else by another live one."""
        name = version.name
        for index in indexes:
            row = rows.row(index)
            try:
                if version.status is not Status.LIVE:
                    raise ModelError(f"version {name} was taken down in this batch")
                predictions[index] = version.predict_one(row)
            except Exception as error:
                try:
                    served[index], predictions[index], propensities[index] = \
                        self._serve_elsewhere(row, name, error,
                                              None if contexts is None else contexts[index])
                except ModelError as failure:
                    if errors == "raise":
                        raise
                    failures[index] = failure

    def _shadow_batch(self, shadowing: Shadowing, rows: Rows, served: list[str],
                      failures: Mapping[int, Any]) -> list[tuple[tuple[str, Any], ...]]:
        """Each served row's shadow predictions (a failed row has none)."""
        counts = self._reward_counts() if shadowing.params.mode == "evaluating" else {}

        def reward_counts() -> dict[str, int]:  # none is learned during a batch
            return counts

        pick, live, dark = shadowing.versions, self._live, self._dark
        targets = [() if index in failures else pick(name, live, reward_counts, dark)
                   for index, name in enumerate(served)]
        return self._shadow_rows(rows, targets)

    def _serve_elsewhere(self, x: Any, failed: str, error: Exception, context: Any = None
                         ) -> tuple[str, Any, float]:
        """Serve with another live version; the failed ones are judged by :meth:`_model_failed`
        once one succeeds (if none does, the input may be at fault: nothing is quarantined).
        The logged propensity is the chance the policy gave the version that served (for a
        contextual policy, on this request's context)."""
        failures = {failed: error}
        shares = (self.policy.probabilities(context) if self._contextual  # type: ignore[call-arg]
                  else self.policy.probabilities())
        for name in sorted(self._live, key=lambda n: -shares.get(n, 0.0)):
            if name in failures:
                continue
            try:
                prediction = self._versions[name].predict_one(x)
            except Exception as other_error:
                failures[name] = other_error
                continue
            for bad, bad_error in failures.items():
                self._model_failed(self._versions[bad], bad_error, "model")
            return name, prediction, (
                self.policy.propensity(name, context) if self._contextual  # type: ignore[call-arg]
                else self.policy.propensity(name))
        details = "; ".join(f"{n}: {type(e).__name__}: {_short(str(e))}"
                            for n, e in failures.items())
        raise ModelError(f"every live version failed on this input ({details})") from error

    # ------------------------------------------------------------- feedback
    def feedback(self, decision_id: str, label: Any, *, owner: str | None = None) -> float:
        """Record ground truth for a decision; returns the reward it earned.

        Raises UnknownDecisionError, DuplicateFeedbackError, ExpiredDecisionError, or
        InvalidLabelError / InvalidParameterError for a label that gives no reward (the
        decision then stays open for the right label)."""
        now = self._clock()
        decision = self.log.lookup(decision_id, now, owner)
        reward = self._reward_for(decision, label, owner)
        shadow_rewards = self._shadow_rewards(decision, label) if decision.shadows else ()
        if self.log.close_one(decision, label, reward, now, shadow_rewards) is None:
            raise DuplicateFeedbackError(f"decision {decision_id} already has feedback; "
                                         "counted once")
        self._learn_decision(decision.version, reward, shadow_rewards, decision.context)
        return reward

    def feedback_many(self, items: Sequence[tuple[str, Any]], *, owner: str | None = None
                      ) -> list[tuple[str, float] | BanditOpsError]:
        """:meth:`feedback` for a batch: one log round trip; per item, (version, reward) or
        the error that refused it (the others still count)."""
        now = self._clock()
        found = self.log.lookup_many([decision_id for decision_id, _ in items], now, owner)
        results: list[tuple[str, float] | BanditOpsError] = []
        closings: list[Closing] = []
        positions: list[int] = []
        seen: set[str] = set()
        for decision_id, label in items:
            decision = found.get(decision_id) if isinstance(decision_id, str) else None
            try:
                if not isinstance(decision, LoggedDecision):
                    raise decision if isinstance(decision, BanditOpsError) else \
                        UnknownDecisionError(f"unknown decision id {decision_id!r}")
                reward = self._reward_for(decision, label, owner)
                if decision_id in seen:
                    raise DuplicateFeedbackError(
                        f"decision {decision_id} already has feedback; counted once")
            except BanditOpsError as error:
                results.append(error)
                continue
            seen.add(decision_id)
            positions.append(len(results))
            results.append((decision.version, reward))
            closings.append(Closing(decision, label, reward,
                                    self._shadow_rewards(decision, label)
                                    if decision.shadows else ()))
        seqs = self.log.close(closings, now) if closings else []
        for position, closing, seq in zip(positions, closings, seqs, strict=True):
            if seq is None:
                results[position] = DuplicateFeedbackError(
                    f"decision {closing.decision.id} already has feedback; counted once")
            else:
                self._learn_decision(closing.decision.version, closing.reward,
                                     closing.shadow_rewards, closing.decision.context)
        return results

    def _reward_for(self, decision: LoggedDecision, label: Any, owner: str | None) -> float:
        if decision.owner is not None and decision.owner != owner:
            raise UnknownDecisionError(f"unknown decision id {decision.id!r}")
        if decision.version not in self._versions:  # registered by another writer just now
            raise UnknownArmError(f"decision {decision.id} was served by version "
                                  f"{decision.version!r}, which this deployment has not seen")
        for name, _ in decision.shadows:  # likewise a shadow version (its reward would be lost)
            if name not in self._versions:
                raise UnknownArmError(f"decision {decision.id} was shadow-scored by version "
                                      f"{name!r}, which this deployment has not seen")
        label = check_label(label, self.labels)
        if self.labels is None and self.reward is accuracy:  # equality is the reward
            kinds = label_kind(label), label_kind(decision.prediction)
            if None not in kinds and kinds[0] is not kinds[1]:
                raise InvalidLabelError(
                    f"label {_short(repr(label), 80)} ({kinds[0].__name__}) is not the kind of "
                    f"value the model predicts ({kinds[1].__name__}); declare the deployment's "
                    "labels to check them fully")
        try:
            return validate_reward(self.reward(label, decision.prediction))
        except BanditOpsError:
            raise
        except Exception as error:
            raise InvalidParameterError(
                f"reward function failed for label {label!r} and prediction "
                f"{decision.prediction!r}: {type(error).__name__}: {error}") from None

    def _shadow_rewards(self, decision: LoggedDecision, label: Any
                        ) -> tuple[tuple[str, float], ...]:
        """The reward each shadow prediction earned on this (checked) label; one whose reward
        cannot be computed earns none."""
        rewards = []
        for name, prediction in decision.shadows:
            try:
                rewards.append((name, validate_reward(self.reward(label, prediction))))
            except Exception:
                continue
        return tuple(rewards)

    def catch_up(self) -> int:
        """Learn the rewards other writers of a shared log stored since the last call."""
        rows = self.log.catch_up()
        for row in rows:
            context = row[3] if len(row) > 3 else None  # a log written before contexts
            self._learn_decision(row[0], validate_reward(row[1]), tuple(
                (n, validate_reward(r)) for n, r in row[2]), context)
        return len(rows)

    def _learn_decision(self, served: str, reward: float,
                        shadow_rewards: tuple[tuple[str, float], ...],
                        context: Any = None) -> None:
        """One labelled request: the served reward updates the policy; each shadow reward is
        a side observation for the policy and evidence for the guardrail (a version no
        longer live only counts it); dark candidates gather their paired evidence. A
        contextual policy learns each of them on the request's context."""
        version = self._versions.get(served)
        if version is not None:
            self._learn(version, reward, context)
        if not shadow_rewards:
            return
        for name, shadow_reward in shadow_rewards:
            version = self._versions.get(name)
            if version is None:
                continue
            version.shadow_learned += 1
            version.shadow_sum += shadow_reward
            if version.status is Status.LIVE:
                if self._contextual:
                    self.policy.observe(name, shadow_reward, context)  # type: ignore[call-arg]
                else:
                    self.policy.observe(name, shadow_reward)
                self._guard(name, shadow_reward)
        if self._dark:
            rewards = dict(shadow_rewards)
            rewards[served] = reward
            live = [n for n in self._live if n in rewards]
            for name, verdict in self._dark_launch.observe(rewards, live):  # type: ignore[union-attr]
                if self._versions[name].status is not Status.DARK:
                    continue
                if verdict.kind == "promote":
                    self.promote(name, verdict.reason, verdict.evidence)
                else:
                    self._take_down(name, Status.ROLLED_BACK, verdict.reason, verdict.evidence)

    def _learn(self, version: _Version, reward: float, context: Any = None) -> None:
        name = version.name
        version.learned += 1
        version.learned_sum += reward
        if version.status is Status.LIVE:
            policy = self.policy
            if self._contextual:
                policy.update(name, reward, context)  # type: ignore[call-arg]
            else:
                policy.update(name, reward)
            for notice in policy.take_notices():
                self._emit("policy", notice.get("challenger") or notice.get("champion"),
                           notice["kind"].replace("_", " "), notice)
            self._guard(name, reward)

    def _guard(self, name: str, reward: float) -> None:
        """The guardrail sees every reward of a live version, served or shadow."""
        if self.guardrail is not None:
            for verdict in self.guardrail.observe(name, reward, self._live):
                if len(self._live) > 1 and self._versions[verdict.version].status is Status.LIVE:
                    self._take_down(verdict.version, Status.ROLLED_BACK, verdict.reason,
                                    verdict.evidence)

    @property
    def pending_count(self) -> int:
        """Decisions awaiting feedback in an in-memory log."""
        return self.log.pending_count

    # ----------------------------------------------------------- snapshots
    def learning_state(self) -> dict[str, Any]:
        """What this Deployment has learned, JSON-safe: the policy (with its RNG), the
        guardrail's windows, each version's learned totals and how far the log was read.
        Versions and their models are not included: they are registered again before
        :meth:`restore_learning`."""
        return {
            "policy": self.policy.state(),
            "guardrail": None if self.guardrail is None else self.guardrail.state(),
            "learned": {name: [v.learned, v.learned_sum, v.shadow_learned, v.shadow_sum]
                        for name, v in self._versions.items()},
            "log": self.log.position(),
            "dark": None if self._dark_launch is None else self._dark_launch.state(),
        }

    def restore_learning(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`learning_state`, after registering the versions again.

        Refuses (``InvalidStateError``) a state of another policy or guardrail configuration.
        Versions live now but not then start fresh; arms no longer live are dropped.
        """
        try:
            policy = Policy.from_state(state["policy"])
            guardrail_state = state["guardrail"]
            learned = {str(k): (int(v[0]), float(v[1]), *(float(x) for x in v[2:4]))
                       for k, v in state["learned"].items()}
            position = state["log"]
        except (KeyError, TypeError, ValueError, IndexError) as error:
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
        self.log.restore_position(position)
        self.policy = policy
        if self.guardrail is not None:
            self.guardrail = Guardrail.from_state(guardrail_state)
        if self._dark_launch is not None and state.get("dark"):
            try:
                self._dark_launch.load(state["dark"])
            except (KeyError, TypeError, ValueError) as error:
                raise InvalidStateError(f"malformed dark-launch state: {error!r}") from None
        for name, (count, total, *shadow) in learned.items():
            version = self._versions.get(name)
            if version is not None:
                version.learned, version.learned_sum = count, total
                if shadow:
                    version.shadow_learned, version.shadow_sum = int(shadow[0]), shadow[1]

    # ------------------------------------------------------------ reporting
    def versions(self) -> list[VersionReport]:
        """Every registered version with status, traffic share and reward (95% CI). A
        contextual policy's share is its choice for a request of unknown features."""
        shares = self.policy.probabilities()
        totals = self.log.totals()
        return [self._report(v, shares.get(v.name, 0.0), totals.get(v.name) or VersionTotals(),
                             self._judgement(v), self._guardrail_rewards(v))
                for v in self._versions.values()]

    def _judgement(self, version: _Version) -> str | None:
        """The guardrail's judgement of a live version; a dark one is "evaluating"."""
        if version.status is Status.DARK:
            return "evaluating"
        if self.guardrail is not None and version.status is Status.LIVE:
            return self.guardrail.judgement(version.name, self._live)
        return None

    def _guardrail_rewards(self, version: _Version) -> int | None:
        """The rewards the guardrail judges a live version on (it needs min_samples)."""
        if self.guardrail is not None and version.status is Status.LIVE:
            return self.guardrail.samples(version.name)
        return None

    @staticmethod
    def _report(v: _Version, share: float, totals: VersionTotals,
                judgement: str | None, guardrail_rewards: int | None = None) -> VersionReport:
        mean = low = high = None
        if totals.feedbacks:
            mean = totals.reward_sum / totals.feedbacks
            low, high = reward_interval(totals.feedbacks, totals.reward_sum, totals.reward_sq,
                                        totals.binary)
        return VersionReport(v.name, str(v.status), share, totals.decisions, totals.feedbacks,
                             totals.expired, mean, low, high, v.validation_score, v.learned,
                             v.learned_sum, v.shadow_learned, v.shadow_sum, judgement,
                             guardrail_rewards)

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
