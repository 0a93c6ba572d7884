"""Per-arm ridge regression of the reward on the request's encoded features: what the linear
contextual bandits (:mod:`~banditops.policies.linear_thompson`, :mod:`~banditops.policies.linucb`)
share.

Each arm ``a`` is a disjoint linear model (Li et al., 2010, "disjoint LinUCB"): with the
requests it learned from as rows ``x`` (from :class:`~banditops.context.ContextEncoder`) and
their rewards ``r``,

    A_a = lambda I + sum x x^T,    b_a = lambda m_a e_0 + sum r x,    theta_a = A_a^-1 b_a

where ``e_0`` is the bias slot and ``m_a`` the arm's prior mean reward (its validation score
when it has one in [0, 1], else ``prior_mean``): a new version is predicted at ``m_a`` for
every request until its own rewards say otherwise, instead of at 0, which would make every
new release look terrible to a policy that serves ~0.85 on average. ``A_a^-1`` is kept by
the Sherman-Morrison formula (one O(d^2) rank-one update per reward, never a d x d
inversion on the request path; the update keeps it exactly symmetric) and ``theta_a`` by
its O(d) companion, recomputed as ``A_a^-1 b_a`` every ``REFRESH`` rewards so rounding
does not accumulate; the score's variance ``x^T A^-1 x`` is floored at 0 against rounding.

Forgetting (``gamma < 1``, for drifting streams): each reward first multiplies the arm's
evidence by ``gamma``, ``A <- gamma A + x x^T``, ``b <- gamma b + r x`` (``A^-1`` is divided
by ``gamma``, then the rank-one update), so a reward ``t`` rewards old weighs ``gamma^t``.
The prior fades with it, and is restored to its full weight every ``REFRESH`` rewards
(``A += lambda (1 - gamma^k) I``, ``b_0 += lambda m (1 - gamma^k)``, then ``A`` is inverted
exactly), so the matrix never loses rank in directions no request takes: the prior's weight
stays between ``gamma^REFRESH lambda`` (0.9 lambda for gamma = 0.999) and ``lambda``. Only
the discounting policies keep ``A`` itself.

State is plain lists of floats (JSON's round trip of a float is exact), so a restored model
continues bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from banditops.context import ContextEncoder, check_dimension, check_features
from banditops.errors import InvalidStateError
from banditops.policies.base import ContextualPolicy, check_number, set_checked
from banditops.rewards import validate_reward

REFRESH = 100  # rewards between exact re-inversions of a discounting arm's matrix
MIN_RIDGE = 1e-6  # smaller ridges (and gammas) overflow the model to NaN (check_linear_params)
MIN_GAMMA = 0.5  # a reward's weight halves at most per reward: 2^100 between re-inversions


class RidgeModels:
    """Every live arm's ridge model (see the module), stacked so that scoring a request
    for all arms is three array operations: ``A^-1`` (k, d, d), ``b`` and ``theta`` (k, d).
    Arms are added and removed rarely (a release, a rollback): the stacks are rebuilt then.
    """

    def __init__(self, dimension: int, ridge: float, gamma: float) -> None:
        self.dimension = dimension
        self.ridge = ridge
        self.gamma = gamma
        self.index: dict[str, int] = {}
        self.a_inv = np.zeros((0, dimension, dimension))
        self.b = np.zeros((0, dimension))
        self.theta = np.zeros((0, dimension))
        self.a = np.zeros((0, dimension, dimension)) if gamma < 1.0 else None
        self.prior: list[float] = []
        self.since: list[int] = []  # rewards since theta (and A^-1, discounting) was exact
        self.count: list[int] = []  # rewards learned, with or without a context
        self.reward_sum: list[float] = []

    def add(self, name: str, prior: float) -> None:
        """A fresh arm whose prediction is ``prior`` for every request."""
        d, ridge = self.dimension, self.ridge
        b = np.zeros(d)
        b[0] = ridge * prior
        self._append(name, np.eye(d) / ridge, b, np.eye(d) * ridge, prior, 0, 0, 0.0)

    def _append(self, name: str, a_inv: np.ndarray, b: np.ndarray, a: np.ndarray | None,
                prior: float, since: int, count: int, reward_sum: float) -> None:
        self.index[name] = len(self.prior)
        self.a_inv = np.concatenate([self.a_inv, a_inv[None]])
        self.b = np.concatenate([self.b, b[None]])
        self.theta = np.concatenate([self.theta, (a_inv @ b)[None]])
        if self.a is not None:
            self.a = np.concatenate([self.a, a[None]])  # type: ignore[index]
        self.prior.append(prior)
        self.since.append(since)
        self.count.append(count)
        self.reward_sum.append(reward_sum)

    def remove(self, name: str) -> None:
        i = self.index.pop(name)
        self.a_inv = np.delete(self.a_inv, i, axis=0)
        self.b = np.delete(self.b, i, axis=0)
        self.theta = np.delete(self.theta, i, axis=0)
        if self.a is not None:
            self.a = np.delete(self.a, i, axis=0)
        for values in (self.prior, self.since, self.count, self.reward_sum):
            del values[i]
        self.index = {n: j - (j > i) for n, j in self.index.items()}

    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted reward, its variance factor ``x^T A^-1 x``) of every arm, shape (k,)."""
        variance = (self.a_inv @ x) @ x
        return self.theta @ x, np.maximum(variance, 0.0)

    def count_reward(self, name: str, reward: float) -> None:
        i = self.index[name]
        self.count[i] += 1
        self.reward_sum[i] += reward

    def learn(self, name: str, x: np.ndarray, reward: float) -> None:
        """Arm ``name`` earned ``reward`` on a request encoded as ``x`` (counted apart)."""
        i = self.index[name]
        a_inv, b, gamma = self.a_inv[i], self.b[i], self.gamma  # views: updated in place
        if gamma < 1.0:
            a = self.a[i]  # type: ignore[index]
            a *= gamma
            a += np.outer(x, x)
            b *= gamma
            a_inv /= gamma
        ax = a_inv @ x
        scale = 1.0 / (1.0 + float(x @ ax))
        a_inv -= np.outer(ax * scale, ax)  # exactly symmetric when a_inv is
        b += reward * x
        theta = self.theta[i]
        self.since[i] = since = self.since[i] + 1
        if since < REFRESH:
            # (gamma A + x x^T)^-1 (gamma b + r x) = theta + (new A^-1 x)(r - x^T theta),
            # the new A^-1 x being ax * scale: O(d)
            theta += ax * (scale * (reward - float(x @ theta)))
            return
        self.since[i] = 0
        if gamma < 1.0:  # restore the prior's weight, invert exactly
            restored = self.ridge * (1.0 - gamma ** since)
            a[np.diag_indices_from(a)] += restored
            b[0] += restored * self.prior[i]
            inverse = np.linalg.inv(a)
            a_inv[...] = 0.5 * (inverse + inverse.T)
        theta[...] = a_inv @ b

    def state(self) -> dict[str, Any]:
        arms = {}
        for name, i in self.index.items():
            arm: dict[str, Any] = {"a_inv": self.a_inv[i].tolist(), "b": self.b[i].tolist(),
                                   "theta": self.theta[i].tolist(), "prior": self.prior[i],
                                   "since": self.since[i], "count": self.count[i],
                                   "reward_sum": self.reward_sum[i]}
            if self.a is not None:
                arm["a"] = self.a[i].tolist()
            arms[name] = arm
        return arms

    def load(self, arms: dict[str, Any], names: list[str]) -> None:
        """Replace every arm by its state in ``arms`` (``names``: the live arms, in order)."""
        d = self.dimension
        for name in list(self.index):
            self.remove(name)
        for name in names:
            arm = arms[name]
            self._append(name, _matrix(arm["a_inv"], (d, d), "a_inv"),
                         _matrix(arm["b"], (d,), "b"),
                         _matrix(arm["a"], (d, d), "a") if self.a is not None else None,
                         float(arm["prior"]), int(arm["since"]), int(arm["count"]),
                         float(arm["reward_sum"]))
            self.theta[-1] = _matrix(arm["theta"], (d,), "theta")


MAX_STATE = 1e100  # a learned value is far smaller (A^-1 <= 2^100 / MIN_RIDGE): larger
# ones (a corrupted snapshot) would overflow every score to inf and refuse every request


def _matrix(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.array(value, dtype=float)
    if array.shape != shape or not np.isfinite(array).all() \
            or (array.size and np.abs(array).max() > MAX_STATE):
        raise InvalidStateError(f"{name} must be {shape} finite numbers within "
                                f"{MAX_STATE:g}, got shape {array.shape}")
    return array


def prior_mean(validation_score: float | None, default: float) -> float:
    """An arm's prior mean reward: its validation score when it is one in [0, 1]."""
    if validation_score is not None and 0.0 <= validation_score <= 1.0 \
            and math.isfinite(validation_score):
        return float(validation_score)
    return default


def check_linear_params(params: Any) -> None:
    """The parameters every linear contextual bandit shares (validated, normalised)."""
    check_dimension(params.dimension)
    set_checked(params, "features", check_features(params.features))
    # Bounded away from 0: a ridge of 1e-300 (A^-1 = 1e300 I) or a gamma of 1e-300
    # (A^-1 / gamma each reward) overflows the Sherman-Morrison update to NaN at once.
    set_checked(params, "ridge", check_number("ridge", params.ridge, low=MIN_RIDGE,
                                              high=1e6))
    set_checked(params, "gamma", check_number("gamma", params.gamma, low=MIN_GAMMA,
                                              high=1.0))
    set_checked(params, "prior_mean", check_number("prior_mean", params.prior_mean,
                                                   low=0.0, high=1.0))


MEAN_CONTEXT_WINDOW = 1000  # requests the average request is taken over


class LinearBandit(ContextualPolicy):
    """A contextual policy over per-arm ridge models (:class:`RidgeModels`).

    A request without a context (None: e.g. a decision logged before the policy was
    contextual, or a dashboard asking for traffic shares) is routed as the *average request*
    (the mean of the last ~1,000 encoded contexts learned from); a reward without one only
    counts in the arm's totals. :meth:`observe` (a shadow reward) is exactly :meth:`update`:
    a regression does not care who chose the arm.
    """

    def __init__(self, params: Any, *, seed: int | None) -> None:
        super().__init__(seed=seed)
        self.p = params
        self.encoder = ContextEncoder(params.dimension, params.features)
        self._models = RidgeModels(params.dimension, params.ridge, params.gamma)
        self._mean = np.zeros(params.dimension)
        self._mean[0] = 1.0
        self._contexts = 0

    def _on_add(self, name: str) -> None:
        self._models.add(name, prior_mean(self._arms[name].validation_score,
                                          self.p.prior_mean))

    def _on_remove(self, name: str) -> None:
        self._models.remove(name)

    def _vector(self, context: Any) -> np.ndarray:
        if not self._arms:
            self._require_any_arm()
        return self._mean if context is None else self.encoder.encode(context)

    def update(self, name: str, reward: float, context: Any = None) -> None:
        reward = validate_reward(reward)
        self._require_arm(name)
        models = self._models
        models.count_reward(name, reward)
        if context is None:
            return
        x = self.encoder.encode(context)
        self._contexts = seen = self._contexts + 1
        self._mean += (x - self._mean) / min(seen, MEAN_CONTEXT_WINDOW)
        models.learn(name, x, reward)

    def observe(self, name: str, reward: float, context: Any = None) -> None:
        """Exactly :meth:`update` (full information: the model learns every arm's reward)."""
        self.update(name, reward, context)

    def _stats_state(self) -> dict[str, Any]:
        return {"models": self._models.state(), "mean_context": self._mean.tolist(),
                "contexts": self._contexts}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._models.load(stats["models"], list(self._arms))
        self._mean = _matrix(stats["mean_context"], (self.p.dimension,), "mean_context")
        self._contexts = int(stats["contexts"])

    def arm_totals(self) -> dict[str, tuple[int, float]]:
        """Per arm: (rewards learned, their sum), with or without a context."""
        models = self._models
        return {name: (models.count[i], models.reward_sum[i])
                for name, i in models.index.items()}
