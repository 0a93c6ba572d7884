"""Thompson sampling: serve the arm whose sampled mean reward is highest.

``ThompsonSampling`` keeps a Beta posterior per arm (Beta-Bernoulli; a fractional reward r is
turned into a success with probability r, the "Bernoulli trick" of Agrawal & Goyal, 2012).
``GaussianThompsonSampling`` keeps a normal posterior of the mean, for rewards that are not
naturally 0/1. ``DiscountedThompsonSampling`` (Raj & Kalyani, 2017) multiplies every arm's
evidence by ``gamma`` at each reward, so old evidence fades and a degraded version loses its
traffic quickly.

Propensities are exact: the probability that the chosen arm's posterior draw is the largest,
computed for the current posterior by :mod:`banditops.policies.maxprob` (deterministic
integration; a closed form for two Gaussian arms), with no smoothing floor. They are cached
until the next change of the posterior or of the arm set; ``choose`` computes only the chosen
arm's. ``propensity_samples`` and ``propensity_refresh`` (the Monte Carlo estimate that this
replaced) are deprecated: accepted in configs and saved states, ignored.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditops.policies import maxprob
from banditops.policies.base import Policy, check_number, set_checked
from banditops.rewards import validate_reward

_FIRST_BATCH = 16  # a posterior that stays put this long is worth drawing from in batches
_MAX_BATCH = 256
#: Parameters of the Monte Carlo propensity estimate that exact propensities replaced: still
#: accepted (configs and saved states name them), ignored.
_DEPRECATED = {
    "propensity_samples": "propensities are exact now (banditops.policies.maxprob)",
    "propensity_refresh": "propensities are exact now (banditops.policies.maxprob)",
}


def _check_common(params: Any) -> None:
    """The parameters every posterior-sampling policy shares."""
    set_checked(params, "prior_weight",
                check_number("prior_weight", params.prior_weight, low=0.0, high=1e9))


def _ignore_deprecated(policy: str, **given: int | None) -> None:
    """Warn about deprecated constructor arguments that were actually passed."""
    for name, value in given.items():
        if value is not None:
            warnings.warn(f"{policy}: {name} is deprecated and ignored; {_DEPRECATED[name]}",
                          DeprecationWarning, stacklevel=3)


@dataclass(frozen=True, slots=True)
class ThompsonParams:
    """Parameters of :class:`ThompsonSampling` (documented there), validated on creation."""

    DEPRECATED: ClassVar[dict[str, str]] = _DEPRECATED
    prior_weight: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True, slots=True)
class DiscountedThompsonParams:
    """Parameters of :class:`DiscountedThompsonSampling`, validated on creation."""

    DEPRECATED: ClassVar[dict[str, str]] = _DEPRECATED
    gamma: float = 0.99
    prior_weight: float = 0.0

    def __post_init__(self) -> None:
        set_checked(self, "gamma",
                    check_number("gamma", self.gamma, low=0.0, high=1.0, low_open=True))
        _check_common(self)


@dataclass(frozen=True, slots=True)
class GaussianThompsonParams:
    """Parameters of :class:`GaussianThompsonSampling`, validated on creation."""

    DEPRECATED: ClassVar[dict[str, str]] = _DEPRECATED
    sigma2: float = 0.25
    prior_weight: float = 0.0

    def __post_init__(self) -> None:
        set_checked(self, "sigma2",
                    check_number("sigma2", self.sigma2, low=0.0, high=1e6, low_open=True))
        _check_common(self)


_TS = ThompsonParams()
_DTS = DiscountedThompsonParams()
_GTS = GaussianThompsonParams()


class _PosteriorSampling(Policy):
    """Shared machinery: per-arm sampling and the exact, cached propensities."""

    _family = "beta"  # of the posteriors, for maxprob

    def __init__(self, params: Any, *, seed: int | None) -> None:
        super().__init__(seed=seed)
        self.p = params
        self._updates = 0
        # The current posterior's probabilities, as far as computed; emptied by every change.
        self._known: dict[str, float] = {}
        self._tracker = maxprob.MaxProbabilities(self._family)

    def _draw_one(self, name: str) -> float:
        """One draw of arm ``name``'s mean from its posterior."""
        raise NotImplementedError

    def _exact(self, index: int | None) -> Any:
        """The probability that arm number ``index`` (in ``self._arms`` order) is served next,
        or (``index=None``) every arm's, as an array."""
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

    def _changed(self) -> None:
        """The posterior or the arm set changed: forget its probabilities."""
        self._known.clear()

    def probabilities(self) -> dict[str, float]:
        known = self._known
        if len(known) < len(self._arms):
            for name, value in zip(self._arms, self._exact(None).tolist(), strict=True):
                known.setdefault(name, value)  # keep any value choose() logged already
        return {name: known[name] for name in self._arms}

    def propensity(self, name: str) -> float:
        value = self._known.get(name)
        if value is None:
            self._require_arm(name)
            value = self._known[name] = self._exact(list(self._arms).index(name))
        return value

    def choose(self) -> tuple[str, float]:
        """``select`` and the exact probability it had: only the chosen arm's is computed.

        An arm whose probability underflows (below 2.2e-308) but was served nonetheless is
        logged with :data:`~banditops.policies.maxprob.FLOOR` (2.2e-308), never 0.
        """
        name = self.select()
        value = self._known.get(name)
        if value is None:
            value = self._known[name] = self._exact(list(self._arms).index(name))
        return name, maxprob.chosen_probability(value)

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
                 seed: int | None = None,
                 propensity_samples: int | None = None,
                 propensity_refresh: int | None = None) -> None:
        _ignore_deprecated(self.key, propensity_samples=propensity_samples,
                           propensity_refresh=propensity_refresh)
        super().__init__(ThompsonParams(prior_weight), seed=seed)
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
        self._changed()

    def _on_remove(self, name: str) -> None:
        del self._alpha[name], self._beta[name], self._buffers[name], self._batch[name]
        self._changed()

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

    def _exact(self, index: int | None) -> Any:
        alpha, beta = list(self._alpha.values()), list(self._beta.values())
        if index is None:
            return self._tracker.probabilities(alpha, beta)
        return self._tracker.probability(index, alpha, beta)

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
        self._updates += 1
        self._changed()

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
        self._changed()
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

    def __init__(self, gamma: float = _DTS.gamma, *, prior_weight: float = _DTS.prior_weight,
                 seed: int | None = None,
                 propensity_samples: int | None = None,
                 propensity_refresh: int | None = None) -> None:
        _ignore_deprecated(self.key, propensity_samples=propensity_samples,
                           propensity_refresh=propensity_refresh)
        super().__init__(DiscountedThompsonParams(gamma, prior_weight), seed=seed)
        self._successes: dict[str, float] = {}
        self._failures: dict[str, float] = {}

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        self._successes[name] = total
        self._failures[name] = count - total
        self._changed()

    def _on_remove(self, name: str) -> None:
        del self._successes[name], self._failures[name]
        self._changed()

    def _draw_one(self, name: str) -> float:
        return self._rng.betavariate(1.0 + self._successes[name], 1.0 + self._failures[name])

    def _exact(self, index: int | None) -> Any:
        alpha = [1.0 + s for s in self._successes.values()]
        beta = [1.0 + f for f in self._failures.values()]
        if index is None:
            return self._tracker.probabilities(alpha, beta)
        return self._tracker.probability(index, alpha, beta)

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
        self._updates += 1
        self._changed()

    def _stats_state(self) -> dict[str, Any]:
        return {"successes": dict(self._successes), "failures": dict(self._failures),
                "updates": self._updates}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            self._successes[name] = float(stats["successes"][name])
            self._failures[name] = float(stats["failures"][name])
        self._updates = int(stats["updates"])
        self._changed()


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
    _family = "normal"

    def __init__(self, *, sigma2: float = _GTS.sigma2, prior_weight: float = _GTS.prior_weight,
                 seed: int | None = None,
                 propensity_samples: int | None = None,
                 propensity_refresh: int | None = None) -> None:
        _ignore_deprecated(self.key, propensity_samples=propensity_samples,
                           propensity_refresh=propensity_refresh)
        super().__init__(GaussianThompsonParams(sigma2, prior_weight), seed=seed)
        self._counts: dict[str, float] = {}
        self._sums: dict[str, float] = {}

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        if not count:
            count, total = 1.0, 0.5
        self._counts[name], self._sums[name] = count, total
        self._changed()

    def _on_remove(self, name: str) -> None:
        del self._counts[name], self._sums[name]
        self._changed()

    def _draw_one(self, name: str) -> float:
        count = self._counts[name]
        return self._rng.gauss(self._sums[name] / count, math.sqrt(self.p.sigma2 / count))

    def _exact(self, index: int | None) -> Any:
        sigma2, sums = self.p.sigma2, self._sums
        mean = [sums[name] / count for name, count in self._counts.items()]
        sd = [math.sqrt(sigma2 / count) for count in self._counts.values()]
        if index is None:
            return self._tracker.probabilities(mean, sd)
        return self._tracker.probability(index, mean, sd)

    def update(self, name: str, reward: float) -> None:
        reward = validate_reward(reward)
        if name not in self._counts:
            self._require_arm(name)
        self._counts[name] += 1.0
        self._sums[name] += reward
        self._updates += 1
        self._changed()

    def _stats_state(self) -> dict[str, Any]:
        return {"counts": dict(self._counts), "sums": dict(self._sums), "updates": self._updates}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            self._counts[name] = float(stats["counts"][name])
            self._sums[name] = float(stats["sums"][name])
        self._updates = int(stats["updates"])
        self._changed()
