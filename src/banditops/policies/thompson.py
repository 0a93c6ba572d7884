"""Thompson sampling: serve the arm whose sampled mean reward is highest.

``ThompsonSampling`` keeps a Beta posterior per arm (Beta-Bernoulli; a fractional reward r is
turned into a success with probability r, the "Bernoulli trick" of Agrawal & Goyal, 2012).
``GaussianThompsonSampling`` keeps a normal posterior of the mean, for rewards that are not
naturally 0/1. ``DiscountedThompsonSampling`` (Raj & Kalyani, 2017) multiplies every arm's
evidence by ``gamma`` at each reward, so old evidence fades and a degraded version loses its
traffic quickly.

Propensities have no closed form here. They are estimated by Monte Carlo from
``propensity_samples`` joint posterior draws, smoothed as ``(wins + 0.5) / (draws + 0.5 k)`` so
that a chosen arm never gets propensity 0, and cached: the estimate is refreshed after
``propensity_refresh`` rewards (for the converging posteriors of ``ThompsonSampling`` and
``GaussianThompsonSampling``: after the larger of that and 5% of all rewards so far) or any
change of the arm set, so its cost is amortised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditops.policies.base import Policy, check_number, check_window, set_checked
from banditops.rewards import validate_reward

_FIRST_BATCH = 16  # a posterior that stays put this long is worth drawing from in batches
_MAX_BATCH = 256


def _check_common(params: Any) -> None:
    """The parameters every posterior-sampling policy shares."""
    set_checked(params, "prior_weight",
                check_number("prior_weight", params.prior_weight, low=0.0, high=1e9))
    check_window("propensity_samples", params.propensity_samples)
    check_window("propensity_refresh", params.propensity_refresh)


@dataclass(frozen=True, slots=True)
class ThompsonParams:
    """Parameters of :class:`ThompsonSampling` (documented there), validated on creation."""

    prior_weight: float = 0.0
    propensity_samples: int = 2000
    propensity_refresh: int = 50

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True, slots=True)
class DiscountedThompsonParams:
    """Parameters of :class:`DiscountedThompsonSampling`, validated on creation."""

    gamma: float = 0.99
    prior_weight: float = 0.0
    propensity_samples: int = 2000
    propensity_refresh: int = 50

    def __post_init__(self) -> None:
        set_checked(self, "gamma",
                    check_number("gamma", self.gamma, low=0.0, high=1.0, low_open=True))
        _check_common(self)


@dataclass(frozen=True, slots=True)
class GaussianThompsonParams:
    """Parameters of :class:`GaussianThompsonSampling`, validated on creation."""

    sigma2: float = 0.25
    prior_weight: float = 0.0
    propensity_samples: int = 2000
    propensity_refresh: int = 50

    def __post_init__(self) -> None:
        set_checked(self, "sigma2",
                    check_number("sigma2", self.sigma2, low=0.0, high=1e6, low_open=True))
        _check_common(self)


_TS = ThompsonParams()
_DTS = DiscountedThompsonParams()
_GTS = GaussianThompsonParams()


class _PosteriorSampling(Policy):
    """Shared machinery: per-arm sampling and the cached Monte-Carlo propensity."""

    _converges = True  # a posterior that only accumulates changes ever more slowly

    def __init__(self, params: Any, *, seed: int | None) -> None:
        super().__init__(seed=seed)
        self.p = params
        self._updates = 0
        self._cached: dict[str, float] | None = None
        self._cached_at = 0

    def _draw_one(self, name: str) -> float:
        """One draw of arm ``name``'s mean from its posterior."""
        raise NotImplementedError

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Posterior draws, shape (n_arms, size), arms in ``self._arms`` order."""
        raise NotImplementedError

    def select(self) -> str:
        if not self._arms:
            self._require_any_arm()
        draw = self._draw_one
        best, best_value = "", -math.inf
        for name in self._arms:
            value = draw(name)
            if value > best_value:
                best, best_value = name, value
        return best

    def _invalidate(self) -> None:
        self._updates += 1
        if self._cached is not None:
            age = self._updates - self._cached_at
            if age >= self.p.propensity_refresh and (
                    not self._converges or age * 20 >= self._cached_at):
                self._cached = None

    def probabilities(self) -> dict[str, float]:
        if self._cached is None:
            names = list(self._arms)
            if not names:
                return {}
            # Seeded by (seed, updates): the estimate is a pure function of the state, and it
            # never consumes the generator that drives selections.
            rng = np.random.default_rng([self.seed or 0, self._updates])
            samples = self.p.propensity_samples
            winners = self._draw_matrix(samples, rng).argmax(axis=0)
            wins = np.bincount(winners, minlength=len(names))
            smoothed = (wins + 0.5) / (samples + 0.5 * len(names))
            self._cached = dict(zip(names, smoothed.tolist(), strict=True))
            self._cached_at = self._updates
        return self._cached

    def propensity(self, name: str) -> float:
        cached = self._cached if self._cached is not None else self.probabilities()
        try:
            return cached[name]
        except KeyError:
            self._require_arm(name)
            raise

    def choose(self) -> tuple[str, float]:
        name = self.select()
        cached = self._cached  # the chosen arm is live: it has a propensity
        return name, (cached if cached is not None else self.probabilities())[name]

    def observe(self, name: str, reward: float) -> None:
        """Exactly :meth:`update`: a posterior does not care who chose the arm."""
        self.update(name, reward)


class ThompsonSampling(_PosteriorSampling):
    """Beta-Bernoulli Thompson sampling with a uniform Beta(1, 1) prior.

    Cold start: a new arm's posterior is uniform, so it is sampled above a known-mediocre arm
    often enough to be tried early. With ``prior_weight = w > 0`` an arm with validation score
    s in [0, 1] starts at Beta(1 + w s, 1 + w (1 - s)).

    Sampling is exact: each ``select`` takes one fresh draw per arm from its current posterior.
    Draws of a posterior that has not changed for a while come from a numpy batch (cheaper per
    draw); any reward for an arm discards its unused draws.

    Side observations (:meth:`observe`) are taken exactly as :meth:`update`: a Bayesian
    posterior does not care who chose the arm. A fractional observation goes through the
    same Bernoulli trick, drawing from the policy's generator.

    >>> p = ThompsonSampling(seed=7)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for _ in range(200): p.update("a", 0.0); p.update("b", 1.0)
    >>> p.select()
    'b'
    """

    key = "thompson"
    Params: ClassVar[type] = ThompsonParams

    def __init__(self, *, prior_weight: float = _TS.prior_weight,
                 propensity_samples: int = _TS.propensity_samples,
                 propensity_refresh: int = _TS.propensity_refresh,
                 seed: int | None = None) -> None:
        super().__init__(ThompsonParams(prior_weight, propensity_samples, propensity_refresh),
                         seed=seed)
        self._np_rng = np.random.default_rng(seed)
        self._alpha: dict[str, float] = {}
        self._beta: dict[str, float] = {}
        self._buffers: dict[str, list[float]] = {}
        self._batch: dict[str, int] = {}

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        self._alpha[name] = 1.0 + total
        self._beta[name] = 1.0 + count - total
        self._buffers[name] = []
        self._batch[name] = 1
        self._cached = None

    def _on_remove(self, name: str) -> None:
        del self._alpha[name], self._beta[name], self._buffers[name], self._batch[name]
        self._cached = None

    def select(self) -> str:
        """As the base class's, with the buffered draws taken inline (the common case)."""
        if not self._arms:
            self._require_any_arm()
        buffers, draw = self._buffers, self._draw_one
        best, best_value = "", -math.inf
        for name in self._arms:
            buffer = buffers[name]
            value = buffer.pop() if buffer else draw(name)
            if value > best_value:
                best, best_value = name, value
        return best

    def _draw_one(self, name: str) -> float:
        buffer = self._buffers[name]
        if buffer:
            return buffer.pop()
        size = self._batch[name]
        if size == 1:  # fresh posterior: one scalar draw, batch only if it stays put
            self._batch[name] = _FIRST_BATCH
            return self._rng.betavariate(self._alpha[name], self._beta[name])
        buffer.extend(self._np_rng.beta(self._alpha[name], self._beta[name], size).tolist())
        self._batch[name] = min(2 * size, _MAX_BATCH)
        return buffer.pop()

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        alpha = np.fromiter(self._alpha.values(), float, len(self._alpha))
        beta = np.fromiter(self._beta.values(), float, len(self._beta))
        return rng.beta(alpha[:, None], beta[:, None], (len(alpha), size))

    def update(self, name: str, reward: float) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        if name not in self._alpha:
            self._require_arm(name)
        if reward != 1.0 and reward != 0.0:  # Bernoulli trick for fractional rewards
            reward = 1.0 if self._rng.random() < reward else 0.0
        if reward:
            self._alpha[name] += 1.0
        else:
            self._beta[name] += 1.0
        self._buffers[name].clear()
        self._batch[name] = 1
        self._invalidate()

    def _stats_state(self) -> dict[str, Any]:
        return {"alpha": dict(self._alpha), "beta": dict(self._beta),
                "buffers": {k: list(v) for k, v in self._buffers.items()},
                "batch": dict(self._batch), "updates": self._updates,
                "np_rng": self._np_rng.bit_generator.state}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            self._alpha[name] = float(stats["alpha"][name])
            self._beta[name] = float(stats["beta"][name])
            self._buffers[name] = [float(x) for x in stats["buffers"][name]]
            self._batch[name] = int(stats["batch"][name])
        self._updates = int(stats["updates"])
        self._np_rng.bit_generator.state = stats["np_rng"]


class DiscountedThompsonSampling(_PosteriorSampling):
    """Beta Thompson sampling whose evidence decays by ``gamma`` per reward.

    After every reward each arm's success and failure counts are multiplied by ``gamma``
    (0 < gamma <= 1; 1 is plain Thompson sampling), then the rewarded arm's counts grow.
    The effective memory is about ``1 / (1 - gamma)`` rewards. Posterior: Beta(1 + S, 1 + F).
    Cold start and ``prior_weight`` as in :class:`ThompsonSampling` (the prior fades too).
    Side observations (:meth:`observe`) are taken exactly as :meth:`update`, discount
    included: the memory is then about ``1 / (1 - gamma)`` rewards of either kind.

    >>> p = DiscountedThompsonSampling(gamma=0.95, seed=3)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for _ in range(100): p.update("a", 1.0); p.update("b", 0.5)
    >>> for _ in range(100): p.update("a", 0.0); p.update("b", 0.5)  # "a" collapses
    >>> p.select()
    'b'
    """

    key = "discounted-thompson"
    Params: ClassVar[type] = DiscountedThompsonParams
    _converges = False

    def __init__(self, gamma: float = _DTS.gamma, *, prior_weight: float = _DTS.prior_weight,
                 propensity_samples: int = _DTS.propensity_samples,
                 propensity_refresh: int = _DTS.propensity_refresh,
                 seed: int | None = None) -> None:
        super().__init__(DiscountedThompsonParams(gamma, prior_weight, propensity_samples,
                                                  propensity_refresh), seed=seed)
        self._successes: dict[str, float] = {}
        self._failures: dict[str, float] = {}

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        self._successes[name] = total
        self._failures[name] = count - total
        self._cached = None

    def _on_remove(self, name: str) -> None:
        del self._successes[name], self._failures[name]
        self._cached = None

    def _draw_one(self, name: str) -> float:
        return self._rng.betavariate(1.0 + self._successes[name], 1.0 + self._failures[name])

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        alpha = 1.0 + np.fromiter(self._successes.values(), float, len(self._successes))
        beta = 1.0 + np.fromiter(self._failures.values(), float, len(self._failures))
        return rng.beta(alpha[:, None], beta[:, None], (len(alpha), size))

    def update(self, name: str, reward: float) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        if name not in self._successes:
            self._require_arm(name)
        if reward != 1.0 and reward != 0.0:
            reward = 1.0 if self._rng.random() < reward else 0.0
        gamma, successes, failures = self.p.gamma, self._successes, self._failures
        for arm in successes:
            successes[arm] *= gamma
            failures[arm] *= gamma
        if reward:
            successes[name] += 1.0
        else:
            failures[name] += 1.0
        self._invalidate()

    def _stats_state(self) -> dict[str, Any]:
        return {"successes": dict(self._successes), "failures": dict(self._failures),
                "updates": self._updates}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            self._successes[name] = float(stats["successes"][name])
            self._failures[name] = float(stats["failures"][name])
        self._updates = int(stats["updates"])


class GaussianThompsonSampling(_PosteriorSampling):
    """Thompson sampling with a normal posterior of each arm's mean reward.

    The mean of arm i is drawn from N(m_i, sigma2 / (k0 + n_i)), where m_i averages the
    rewards with ``k0`` pseudo-rewards of 0.5 (or, with ``prior_weight = w > 0`` and a
    validation score, ``w`` pseudo-rewards at the score). ``sigma2 = 0.25`` is the largest
    variance a reward in [0, 1] can have, so the posterior is never overconfident.
    Side observations (:meth:`observe`) are taken exactly as :meth:`update`.

    >>> p = GaussianThompsonSampling(seed=0)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for _ in range(200): p.update("a", 0.3); p.update("b", 0.6)
    >>> p.select()
    'b'
    """

    key = "gaussian-thompson"
    Params: ClassVar[type] = GaussianThompsonParams

    def __init__(self, *, sigma2: float = _GTS.sigma2, prior_weight: float = _GTS.prior_weight,
                 propensity_samples: int = _GTS.propensity_samples,
                 propensity_refresh: int = _GTS.propensity_refresh,
                 seed: int | None = None) -> None:
        super().__init__(GaussianThompsonParams(sigma2, prior_weight, propensity_samples,
                                                propensity_refresh), seed=seed)
        self._counts: dict[str, float] = {}
        self._sums: dict[str, float] = {}

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        if not count:
            count, total = 1.0, 0.5
        self._counts[name], self._sums[name] = count, total
        self._cached = None

    def _on_remove(self, name: str) -> None:
        del self._counts[name], self._sums[name]
        self._cached = None

    def _draw_one(self, name: str) -> float:
        count = self._counts[name]
        return self._rng.gauss(self._sums[name] / count, math.sqrt(self.p.sigma2 / count))

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        counts = np.fromiter(self._counts.values(), float, len(self._counts))
        sums = np.fromiter(self._sums.values(), float, len(self._sums))
        return rng.normal((sums / counts)[:, None], np.sqrt(self.p.sigma2 / counts)[:, None],
                          (len(counts), size))

    def update(self, name: str, reward: float) -> None:
        reward = validate_reward(reward)
        if name not in self._counts:
            self._require_arm(name)
        self._counts[name] += 1.0
        self._sums[name] += reward
        self._invalidate()

    def _stats_state(self) -> dict[str, Any]:
        return {"counts": dict(self._counts), "sums": dict(self._sums), "updates": self._updates}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            self._counts[name] = float(stats["counts"][name])
            self._sums[name] = float(stats["sums"][name])
        self._updates = int(stats["updates"])
