"""The interface every deployment policy implements, and the arm bookkeeping they share.

A policy is a pure decision rule over named arms (model versions). It knows nothing about
models, HTTP or storage: ``select`` names the arm for the next request, ``update`` feeds it
a reward in [0, 1], ``probabilities`` gives the chance each live arm is chosen next (the
propensity that gets logged), and ``state`` / ``from_state`` round-trip it through plain,
JSON-safe data, including the random generator, so a restored policy makes exactly the same
next choices.

Each policy's parameters are one frozen, validated dataclass (``Policy.Params``): the
constructor builds it, ``params()`` is derived from it, and a service config validates a
deployment's ``policy_params`` through it (:func:`parse_policy_params`) before any policy
exists. A parameter's default lives in that dataclass only.

Side observations (shadow scoring, issue 9): ``observe(name, reward)`` feeds a reward that
arm ``name`` earned on a request it did not serve (its prediction was computed in the shadow
and scored when the label arrived). It updates the arm's reward statistics WITHOUT counting
as a pull or a decision; it validates the reward and the arm exactly like ``update``. What
each policy does with it:

==========================  ==============================================================
Policy                      ``observe(name, reward)``
==========================  ==============================================================
EpsilonGreedy               Count, sum and mean grow as in ``update`` (the count is the
                            mean's sample size; there is no separate pull count). Clears
                            the arm's cold start. Does not decay epsilon (``decay`` counts
                            served rewards only).
UCB1                        The arm's mean and n grow (its bonus shrinks); ``t`` in
                            ``ln t`` counts served rewards (decisions) and prior
                            pseudo-counts only. Clears the arm's cold start.
SlidingWindowUCB            The reward enters the window (and pushes the oldest out) and
                            counts in the arm's windowed mean and n; ``t`` counts only the
                            served rewards in the window. Clears the cold start.
ThompsonSampling            Exactly ``update``: a posterior does not care who chose the arm.
GaussianThompsonSampling    Exactly ``update``.
DiscountedThompsonSampling  Exactly ``update``: every arm's evidence is discounted too.
FollowTheLeader             Exactly ``update``: the reward enters the arm's window (its
                            last ``window`` rewards, served or observed) and counts
                            towards ending its cold start. Without observations the
                            policy is greedy and can starve an arm for good.
ABTest                      Exactly ``update``: a champion's or challenger's observation
                            joins its test sample (and may conclude the test), so the test
                            compares all rewards of each arm, served or shadow.
Latest, ValidationChampion  No-op after validation: they ignore rewards.
==========================  ==============================================================

With ``observe`` never called every policy behaves (and draws random numbers) exactly as
before it existed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from banditops.errors import (
    DuplicateArmError,
    InvalidParameterError,
    InvalidStateError,
    NoArmsError,
    UnknownArmError,
)

STATE_FORMAT = 1
MAX_ARM_NAME = 200


@dataclass(slots=True)
class ArmInfo:
    """What a policy knows of an arm besides its rewards."""

    validation_score: float | None
    released_at: float
    order: int  # insertion order; breaks ties between equal release times


def check_seed(seed: object) -> int | None:
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed  # type: ignore[return-value]
    raise InvalidParameterError(f"seed must be an int or None, got {seed!r}")


def check_number(name: str, value: object, *, low: float, high: float,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Validate a numeric parameter against an interval and return it as float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        raise InvalidParameterError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
    return value


def check_window(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NoParams:
    """Parameters of a policy that has none (the static baselines)."""


@functools.cache
def _field_names(params_class: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(params_class))


def set_checked(params: object, name: str, value: object) -> None:
    """Store a validated (normalised) value on a frozen params object, in ``__post_init__``."""
    object.__setattr__(params, name, value)


class ColdStart:
    """Arms with no reward yet, and when each was last served to get one.

    Under delayed feedback, "serve an untried arm until its first reward arrives" would send
    it every request of the feedback delay. Instead an untried arm is served once, then again
    every ``retry`` decisions (in case that decision expires) until its first reward arrives.
    """

    __slots__ = ("decisions", "retry", "waiting")

    def __init__(self, retry: int) -> None:
        self.retry = check_window("cold_start_retry", retry)
        self.waiting: dict[str, int] = {}  # name -> decision number when last served (-1: never)
        self.decisions = 0

    def add(self, name: str, *, at_once: bool = True) -> None:
        """Start waiting for ``name``'s first reward. ``at_once=False``: first served only
        ``retry`` decisions from now (for a policy that may learn the arm from side
        observations meanwhile, and need not serve it at all)."""
        self.waiting.setdefault(name, -1 if at_once else self.decisions)

    def discard(self, name: str) -> None:
        self.waiting.pop(name, None)

    def due(self, decision: int) -> str | None:
        """The untried arm that decision number ``decision`` must serve, if any."""
        for name, last in self.waiting.items():
            if last < 0 or decision - last >= self.retry:
                return name
        return None

    def peek(self) -> str | None:
        """The untried arm the next decision will serve, if any (no side effect)."""
        return self.due(self.decisions + 1) if self.waiting else None

    def next_due(self) -> str | None:
        """Count a new decision; return (and mark served) the untried arm it must serve.

        Decisions are counted only while some arm waits: the count exists to space out
        retries, and an arm that starts waiting is served at once whatever the count.
        Callers may skip the call entirely while ``waiting`` is empty (the hot path).
        """
        if not self.waiting:
            return None
        self.decisions = decision = self.decisions + 1
        name = self.due(decision)
        if name is not None:
            self.waiting[name] = decision
        return name

    def state(self) -> dict[str, Any]:
        return {"waiting": dict(self.waiting), "decisions": self.decisions}

    def load(self, state: dict[str, Any], arms: dict[str, Any]) -> None:
        self.waiting = {str(k): int(v) for k, v in state["waiting"].items() if k in arms}
        self.decisions = int(state["decisions"])


class Policy(ABC):
    """Base class: arm registry, seeding, validation and state plumbing.

    Subclasses set ``key`` (the name used in configs and saved state) and ``Params`` (a
    frozen dataclass validated in ``__post_init__``), build ``self.p`` in ``__init__`` and
    implement ``select``, ``update``, ``observe``, ``probabilities`` and the two stats hooks.
    """

    key: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    #: False for a policy that never draws from its generator: its choices are a function of
    #: the arms and rewards alone, so its seed changes nothing (replays run it once).
    uses_randomness: ClassVar[bool] = True
    #: True for a :class:`ContextualPolicy`: its decisions take the request's features.
    contextual: ClassVar[bool] = False
    _registry: ClassVar[dict[str, type[Policy]]] = {}
    p: Any  # an instance of Params: the policy's validated, immutable parameters

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("key"):
            Policy._registry[cls.key] = cls

    def __init__(self, *, seed: int | None = None) -> None:
        self.p = NoParams()
        self.seed = check_seed(seed)
        self._rng = random.Random(seed)
        self._arms: dict[str, ArmInfo] = {}
        self._next_order = 0

    # ------------------------------------------------------------------ arms
    @property
    def arms(self) -> list[str]:
        """Live arms, in the order they were added."""
        return list(self._arms)

    def add_arm(self, name: str, *, validation_score: float | None = None,
                released_at: float | None = None) -> None:
        """Make ``name`` a live arm. ``released_at`` orders releases (default: add order)."""
        validation_score = self.check_arm(name, validation_score=validation_score)
        released = (float(self._next_order) if released_at is None
                    else check_number("released_at", released_at, low=-math.inf, high=math.inf))
        self._arms[name] = ArmInfo(validation_score, released, self._next_order)
        self._next_order += 1
        self._on_add(name)

    def check_arm(self, name: str, *, validation_score: float | None = None) -> float | None:
        """Check that ``name`` could be added as an arm; returns the checked score."""
        if not isinstance(name, str) or not name or len(name) > MAX_ARM_NAME:
            raise InvalidParameterError(
                f"arm name must be a non-empty string of at most {MAX_ARM_NAME} characters, "
                f"got {name!r}"
            )
        if name in self._arms:
            raise DuplicateArmError(
                f"arm {name!r} exists already; remove it first or pick a new name")
        if validation_score is not None:
            validation_score = check_number("validation_score", validation_score,
                                            low=-math.inf, high=math.inf)
        return validation_score

    def remove_arm(self, name: str) -> None:
        """Stop routing to ``name``; its statistics are dropped."""
        self._require_arm(name)
        del self._arms[name]
        self._on_remove(name)

    def _require_arm(self, name: str) -> ArmInfo:
        try:
            return self._arms[name]
        except (KeyError, TypeError):
            raise UnknownArmError(
                f"unknown arm {name!r}; live arms: {sorted(self._arms) or 'none'}"
            ) from None

    def _require_any_arm(self) -> None:
        if not self._arms:
            raise NoArmsError("the policy has no live arm; add_arm() first")

    def _prior(self, name: str, weight: float) -> tuple[float, float]:
        """(pseudo-count, pseudo-reward sum) that a validation score contributes to an arm.

        Used by the policies that accept ``prior_weight``: an arm with a validation score
        in [0, 1] starts as if it had ``weight`` rewards equal to that score.
        """
        score = self._arms[name].validation_score
        if weight <= 0.0 or score is None:
            return 0.0, 0.0
        if not 0.0 <= score <= 1.0:
            raise InvalidParameterError(
                f"validation_score of {name!r} is {score}; a prior needs a score in [0, 1]"
            )
        return weight, weight * score

    def _on_add(self, name: str) -> None:  # noqa: B027 (optional hook)
        """Initialise per-arm statistics (hook)."""

    def _on_remove(self, name: str) -> None:  # noqa: B027 (optional hook)
        """Drop per-arm statistics (hook)."""

    # ------------------------------------------------------------ decisions
    @abstractmethod
    def select(self) -> str:
        """Name of the arm that serves the next request."""

    @abstractmethod
    def update(self, name: str, reward: float) -> None:
        """Learn from a reward in [0, 1] observed for arm ``name``."""

    @abstractmethod
    def observe(self, name: str, reward: float) -> None:
        """Learn from a reward in [0, 1] that arm ``name`` earned on a request it did not
        serve (a shadow prediction); not a pull nor a decision. See the module's table."""

    @abstractmethod
    def probabilities(self) -> dict[str, float]:
        """Chance that each live arm is chosen by the next ``select`` (sums to 1)."""

    def propensity(self, name: str) -> float:
        """Chance that ``name`` is chosen next; subclasses override when cheaper."""
        self._require_arm(name)
        return self.probabilities()[name]

    def choose(self) -> tuple[str, float]:
        """``select()`` and the chance the chosen arm had, in one call (what a Deployment logs).

        The chance is taken before selecting: ``select`` may change what comes next.
        Subclasses override this where the propensity is cheaper to get.
        """
        probabilities = self.probabilities()
        name = self.select()
        return name, probabilities[name]

    def take_notices(self) -> list[dict[str, Any]]:
        """Noteworthy decisions made since the last call (e.g. an A/B test concluded)."""
        return []

    # ---------------------------------------------------------------- state
    def __getattr__(self, name: str) -> Any:
        """Parameters read as attributes (``policy.epsilon``) come from ``self.p``, read-only."""
        if name != "p" and name in _field_names(type(self).Params):
            return getattr(self.p, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def params(self) -> dict[str, Any]:
        """Constructor arguments (without ``seed``), JSON-safe: ``self.p`` as a dict."""
        return dataclasses.asdict(self.p)

    @classmethod
    def from_params(cls, params: Any, *, seed: int | None = None) -> Policy:
        """Build the policy from its ``Params`` object (see :func:`parse_policy_params`)."""
        if not isinstance(params, cls.Params):
            raise InvalidParameterError(
                f"{cls.__name__} needs {cls.Params.__name__}, got {type(params).__name__}")
        return cls(**dataclasses.asdict(params), seed=seed)

    @abstractmethod
    def _stats_state(self) -> dict[str, Any]:
        """Learned statistics, JSON-safe."""

    @abstractmethod
    def _load_stats(self, stats: dict[str, Any]) -> None:
        """Restore what ``_stats_state`` returned (arms are already registered)."""

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this policy is, as plain data."""
        version, internal, gauss_next = self._rng.getstate()
        return {
            "format": STATE_FORMAT,
            "policy": self.key,
            "params": self.params(),
            "seed": self.seed,
            "arms": [
                {"name": name, "validation_score": info.validation_score,
                 "released_at": info.released_at, "order": info.order}
                for name, info in self._arms.items()
            ],
            "next_order": self._next_order,
            "rng": [version, list(internal), gauss_next],
            "stats": self._stats_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy:
        """Rebuild a policy from :meth:`state`; called on ``Policy`` it picks the class."""
        if not isinstance(state, dict):
            raise InvalidStateError(f"policy state must be a dict, got {type(state).__name__}")
        if state.get("format") != STATE_FORMAT:
            raise InvalidStateError(
                f"unsupported policy state format {state.get('format')!r}; expected {STATE_FORMAT}"
            )
        key = state.get("policy")
        target = Policy._registry.get(key) if isinstance(key, str) else None
        if target is None:
            raise InvalidStateError(
                f"unknown policy {key!r} in state; known: {sorted(Policy._registry)}"
            )
        if cls is not Policy and target is not cls:
            raise InvalidStateError(f"state is of policy {key!r}, not {cls.key!r}")
        try:
            policy = target.from_params(parse_policy_params(key, state["params"]),
                                        seed=state["seed"])
            for arm in state["arms"]:
                policy._arms[arm["name"]] = ArmInfo(
                    arm["validation_score"], float(arm["released_at"]), int(arm["order"])
                )
                policy._on_add(arm["name"])
            policy._next_order = int(state["next_order"])
            version, internal, gauss_next = state["rng"]
            policy._rng.setstate((version, tuple(internal), gauss_next))
            policy._load_stats(state["stats"])
        except InvalidParameterError as error:
            raise InvalidStateError(f"invalid parameters in {key!r} state: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidStateError(f"malformed {key!r} state: {error!r}") from None
        return policy

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({params}{', ' if params else ''}seed={self.seed!r})"


def policy_class(name: str) -> type[Policy]:
    """The policy class registered under ``name`` (as in configs)."""
    cls = Policy._registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown policy {name!r}; known: {sorted(Policy._registry)}")
    return cls


def policy_params_class(name: str) -> type:
    """The frozen parameter dataclass of policy ``name``."""
    return policy_class(name).Params


def parse_policy_params(name: str, params: dict[str, Any]) -> Any:
    """Validate ``params`` (without ``seed``) for policy ``name``; return its Params object.

    Unknown names and bad values raise :class:`InvalidParameterError` naming the field.
    Names in the Params class's ``DEPRECATED`` mapping (name -> why) are accepted with a
    ``DeprecationWarning`` and dropped, so old configs and saved states still load.

    >>> parse_policy_params("ucb1", {"c": 0.5})
    UCB1Params(c=0.5, prior_weight=0.0, cold_start_retry=100)
    >>> parse_policy_params("ucb1", {"window": 3})
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidParameterError: bad parameters for policy 'ucb1': unknown parameter 'window'; known: c, prior_weight, cold_start_retry
    """  # noqa: E501
    cls = policy_params_class(name)
    if not isinstance(params, dict):
        raise InvalidParameterError(
            f"parameters of policy {name!r} must be a mapping, got {type(params).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    deprecated: dict[str, str] = getattr(cls, "DEPRECATED", {})
    for field in params:
        if field in deprecated:
            warnings.warn(f"policy {name!r}: parameter {field!r} is deprecated and ignored; "
                          f"{deprecated[field]}", DeprecationWarning, stacklevel=2)
        elif field not in known:
            raise InvalidParameterError(
                f"bad parameters for policy {name!r}: unknown parameter {field!r}; "
                f"known: {', '.join(known) or 'none'}")
    return cls(**{k: v for k, v in params.items() if k not in deprecated})


def make_policy(name: str, /, **params: Any) -> Policy:
    """Build a policy from its key (as in configs), e.g. ``make_policy("ucb1", c=0.5)``.

    ``seed`` is taken apart; every other keyword is validated through the policy's Params.
    """
    cls = policy_class(name)
    seed = check_seed(params.pop("seed", None))
    return cls.from_params(parse_policy_params(name, params), seed=seed)


def policy_names() -> list[str]:
    return sorted(Policy._registry)


class IndexPolicy(Policy):
    """Deterministic policies (UCB, follow-the-leader): arms due a try by the cold-start rule,
    else the arm with the best index; every choice has probability 1."""

    uses_randomness = False
    _cold: ColdStart

    def _best_index(self) -> str:
        raise NotImplementedError

    def select(self) -> str:
        cold = self._cold
        if cold.waiting and (due := cold.next_due()) is not None:
            return due
        return self._best_index()

    def _next_choice(self) -> str:
        """What the next select() returns, without counting a decision."""
        due = self._cold.peek()
        return due if due is not None else self._best_index()

    def probabilities(self) -> dict[str, float]:
        chosen = self._next_choice() if self._arms else None
        return {name: 1.0 if name == chosen else 0.0 for name in self._arms}

    def propensity(self, name: str) -> float:
        self._require_arm(name)
        return 1.0 if name == self._next_choice() else 0.0

    def choose(self) -> tuple[str, float]:
        return self.select(), 1.0  # deterministic: the chosen arm always had probability 1


class ContextualPolicy(Policy):
    """A policy that routes on the request's features (its *context*).

    The context is a mapping of features (encoded by the policy's
    :class:`~banditops.context.ContextEncoder`, whose ``dimension`` and ``features`` are
    parameters of every contextual policy) or an already-encoded vector. The decision
    methods take it: ``select(context)``, ``probabilities(context)``, ``choose(context)``;
    ``update`` and ``observe`` take the context of the request the reward was earned on
    (None when it is unknown, e.g. a decision logged before the policy was contextual: then
    only the arm's overall statistics learn). A :class:`~banditops.Deployment` keeps each
    decision's context in its log until the feedback comes.
    """

    contextual: ClassVar[bool] = True
    encoder: Any  # a banditops.context.ContextEncoder

    @abstractmethod
    def select(self, context: Any = None) -> str:  # type: ignore[override]
        """Name of the arm that serves a request with this context."""

    @abstractmethod
    def probabilities(self, context: Any = None) -> dict[str, float]:  # type: ignore[override]
        """Chance that each live arm is chosen for a request with this context."""

    @abstractmethod
    def update(self, name: str, reward: float,  # type: ignore[override]
               context: Any = None) -> None:
        """Learn from a reward arm ``name`` earned on a request with this context."""

    @abstractmethod
    def observe(self, name: str, reward: float,  # type: ignore[override]
                context: Any = None) -> None:
        """A side observation (shadow reward) on a request with this context."""

    def propensity(self, name: str, context: Any = None) -> float:  # type: ignore[override]
        self._require_arm(name)
        return self.probabilities(context)[name]

    def choose(self, context: Any = None) -> tuple[str, float]:  # type: ignore[override]
        probabilities = self.probabilities(context)
        name = self.select(context)
        return name, probabilities[name]
