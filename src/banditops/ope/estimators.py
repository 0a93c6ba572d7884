"""Off-policy estimators: what a target policy would have earned on logged traffic.

Each row t of a log has the version the logging policy served, a_t, the chance it had,
mu_t = mu(a_t | x_t), and its reward r_t in [0, 1]. Walking the log, the target policy gives
its own distribution pi_t(. | x_t) over the versions live then (:mod:`banditops.ope.evaluate`).
The importance weight of a row is w_t = pi_t(a_t | x_t) / mu_t. A reward model gives
q_t(a), an estimate of the reward version a would earn on row t, made without r_t.

==================  ===================================================================
estimator           value, and what it assumes
==================  ===================================================================
``ips``             mean of w_t r_t. Unbiased when every version the target may choose
                    had a logged chance > 0 (support) and the propensities are exact;
                    variance grows with the weights (Horvitz & Thompson, 1952).
``snips``           sum w_t r_t / sum w_t: self-normalised IPS, a ratio estimator. Biased
                    by O(1/n), far less variance when the weights are large; wrong if
                    support is missing (it rescales the supported mass to 1)
                    (Swaminathan & Joachims, 2015, "The self-normalized estimator for
                    counterfactual learning").
``dr``              mean of sum_a pi_t(a) q_t(a) + w_t (r_t - q_t(a_t)): doubly robust.
                    Unbiased when the propensities are exact, whatever the reward model;
                    its variance shrinks as q_t nears the truth (Dudík, Langford & Li,
                    2011, "Doubly robust policy evaluation and learning"; Dudík, Erhan,
                    Langford & Li, 2014, Statistical Science 29(4)).
``switch-dr``       dr whose correction w_t (r_t - q_t(a_t)) is dropped on rows whose weight
                    exceeds tau: the model alone speaks where the log hardly explored
                    (Wang, Agarwal & Dudík, 2017, "Optimal and adaptive off-policy
                    evaluation in contextual bandits", ICML). tau minimises the estimated
                    MSE: variance plus the squared direct bias estimate of Su, Dimakopoulou,
                    Krishnamurthy & Dudík (2020), as Open Bandit Pipeline tunes it. Biased
                    where the model is wrong on the dropped rows: its interval is widened by
                    a 95% bound of that bias (the dropped corrections' mean and margin).
==================  ===================================================================

Every estimate has a standard error from the per-row terms (the delta method for snips), a
normal 95% interval, and Kish's effective sample size of the weights, (sum w)^2 / sum w^2:
how many on-policy rows the log is worth for this target. The terms of an adaptive log are
martingale differences around each row's value, so the variance of the mean is the mean of
their conditional variances; the sample variance used here adds the spread of the row
values themselves, so the intervals err on the wide side.

Why hand-written rather than Open Bandit Pipeline (``obp``): its last release (0.5.7,
2023) requires Python < 3.11 (banditops needs 3.11+) and installs torch, seaborn, pingouin
and pyieoe for estimators that are a few lines each; and its arrays assume a fixed action
set, while versions here come and go (a version not live has probability 0). The formulas
and the switch-DR tuning follow obp's ``ope/estimators.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditops.errors import InvalidParameterError

Z95 = 1.959963984540054
ESTIMATORS = ("ips", "snips", "dr", "switch-dr")
# Shares of the target's mass that make the support check speak up.
UNSUPPORTED_WARN = 0.001
DEFICIT_WARN = 0.01


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer: value, standard error, 95% interval, effective sample size."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    ess: float
    n: int
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high

    def as_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "value": self.value, "se": self.se,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "ess": self.ess, "n": self.n,
                "warnings": list(self.warnings), **self.details}


@dataclass(frozen=True)
class OffPolicyData:
    """The rows with feedback, as arrays (k: every version the log names, in columns).

    ``target_dist`` (n, k): pi_t(a | x_t), 0 for versions not live; rows sum to 1.
    ``q_hat`` (n, k): the reward model's q_t(a). ``action`` (n,): column of a_t.
    """

    reward: np.ndarray
    propensity: np.ndarray
    action: np.ndarray
    target_dist: np.ndarray
    q_hat: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.reward)
        if not (len(self.propensity) == len(self.action) == n
                and self.target_dist.shape[0] == n and self.q_hat.shape == self.target_dist.shape):
            raise InvalidParameterError("off-policy arrays disagree in shape")

    @property
    def n(self) -> int:
        return len(self.reward)

    @property
    def weights(self) -> np.ndarray:
        rows = np.arange(self.n)
        return self.target_dist[rows, self.action] / self.propensity

    @property
    def q_factual(self) -> np.ndarray:
        return self.q_hat[np.arange(self.n), self.action]

    @property
    def q_target(self) -> np.ndarray:
        return np.einsum("ij,ij->i", self.target_dist, self.q_hat)


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (0 when every weight is 0).

    >>> kish_ess(np.array([1.0, 1.0, 1.0, 1.0]))
    4.0
    >>> kish_ess(np.array([2.0, 0.0, 2.0, 0.0]))
    2.0
    """
    total, squares = float(np.sum(weights)), float(np.sum(np.square(weights)))
    return total * total / squares if squares > 0 else 0.0


def _mean_estimate(name: str, terms: np.ndarray, weights: np.ndarray,
                   details: dict[str, Any] | None = None) -> Estimate:
    n = len(terms)
    if n == 0:
        return Estimate(name, math.nan, math.nan, math.nan, math.nan, 0.0, 0,
                        ("no row with feedback",))
    value = float(np.mean(terms))
    se = float(np.std(terms, ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return Estimate(name, value, se, value - Z95 * se, value + Z95 * se, kish_ess(weights), n,
                    details=details or {})


def ips(data: OffPolicyData) -> Estimate:
    """Inverse propensity scoring (Horvitz & Thompson, 1952)."""
    weights = data.weights
    return _mean_estimate("ips", weights * data.reward, weights)


def snips(data: OffPolicyData) -> Estimate:
    """Self-normalised IPS (Swaminathan & Joachims, 2015); standard error by the delta
    method, sqrt(sum w^2 (r - V)^2) / sum w."""
    weights = data.weights
    total = float(np.sum(weights))
    if data.n == 0 or total <= 0:
        return Estimate("snips", math.nan, math.nan, math.nan, math.nan, 0.0, data.n,
                        ("the target gives no logged row any probability",))
    value = float(np.sum(weights * data.reward) / total)
    se = float(math.sqrt(np.sum(np.square(weights * (data.reward - value)))) / total)
    return Estimate("snips", value, se, value - Z95 * se, value + Z95 * se,
                    kish_ess(weights), data.n)


def dr(data: OffPolicyData) -> Estimate:
    """Doubly robust (Dudík et al., 2011, 2014)."""
    weights = data.weights
    terms = data.q_target + weights * (data.reward - data.q_factual)
    return _mean_estimate("dr", terms, weights)


def switch_dr(data: OffPolicyData, taus: np.ndarray | None = None) -> Estimate:
    """Switch doubly robust (Wang et al., 2017), tau chosen by estimated MSE (see module)."""
    weights = data.weights
    if data.n == 0:
        return _mean_estimate("switch-dr", weights, weights)
    residual = weights * (data.reward - data.q_factual)
    base = data.q_target
    if taus is None:
        positive = weights[weights > 0]
        taus = np.unique(np.concatenate([
            np.quantile(positive, np.linspace(0.5, 1.0, 11)) if len(positive) else [],
            [np.inf]]))
    best: tuple[float, float, np.ndarray] | None = None
    for tau in taus:
        kept = weights <= tau
        terms = base + np.where(kept, residual, 0.0)
        variance = float(np.var(terms, ddof=1)) / data.n if data.n > 1 else math.inf
        bias = abs(float(np.mean(np.where(kept, 0.0, residual))))
        mse = variance + bias * bias
        if best is None or mse < best[0]:
            best = (mse, float(tau), terms)
    assert best is not None
    _, tau, terms = best
    kept = weights <= tau
    found = _mean_estimate("switch-dr", terms, np.where(kept, weights, 0.0),
                           {"tau": tau, "switched_rows": int(np.sum(~kept))})
    # The dropped corrections estimate the bias (their mean is what DR adds back): the
    # interval widens by that estimate and its own 95% margin, so it covers the bias too.
    dropped = np.where(kept, 0.0, residual)
    bias = abs(float(np.mean(dropped))) + Z95 * float(np.std(dropped, ddof=1)) / math.sqrt(
        data.n) if data.n > 1 and not kept.all() else 0.0
    half = Z95 * found.se + bias
    return dataclasses.replace(found, ci_low=found.value - half, ci_high=found.value + half,
                               details={**found.details, "bias_bound": bias})


FUNCTIONS = {"ips": ips, "snips": snips, "dr": dr, "switch-dr": switch_dr}


def estimate(data: OffPolicyData, names: list[str] | tuple[str, ...] = ESTIMATORS
             ) -> list[Estimate]:
    """Every named estimator on ``data``."""
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        raise InvalidParameterError(
            f"unknown estimator(s) {unknown}; known: {', '.join(ESTIMATORS)}")
    return [FUNCTIONS[name](data) for name in dict.fromkeys(names)]


@dataclass(frozen=True)
class Support:
    """How much of the target's probability mass the log can speak for.

    ``unlogged``: mean mass on versions the log never served. ``zero_propensity``: mean
    mass on versions other than the served one at rows whose logged propensity is 1 (the
    logger could not have served them there). Both are exact lower bounds of the mass
    without support. ``mean_weight`` estimates 1 minus ALL the unsupported mass, on any
    (context, version) pair: E_mu[pi/mu] sums pi over the versions the logger could serve.
    """

    unlogged: float
    zero_propensity: float
    mean_weight: float
    mean_weight_se: float
    unlogged_versions: tuple[str, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        found = []
        if self.unlogged > UNSUPPORTED_WARN:
            names = ", ".join(self.unlogged_versions[:5])
            found.append(f"support: {self.unlogged:.1%} of the target's probability goes to "
                         f"versions the log never served ({names})")
        if self.zero_propensity > UNSUPPORTED_WARN:
            found.append(f"support: {self.zero_propensity:.1%} of the target's probability "
                         "goes to versions the logger could not serve (logged propensity 1 "
                         "for another version)")
        deficit = 1.0 - self.mean_weight
        if (not found and deficit > DEFICIT_WARN
                and deficit > Z95 * self.mean_weight_se):
            found.append(f"support: the mean importance weight is {self.mean_weight:.3f} "
                         f"(se {self.mean_weight_se:.3f}): about {deficit:.1%} of the target's "
                         "probability has no logged support")
        return tuple(found)

    def as_dict(self) -> dict[str, Any]:
        return {"unlogged": self.unlogged, "zero_propensity": self.zero_propensity,
                "mean_weight": self.mean_weight, "mean_weight_se": self.mean_weight_se,
                "unlogged_versions": list(self.unlogged_versions)}


def support(target_dist: np.ndarray, action: np.ndarray, propensity: np.ndarray,
            names: list[str]) -> Support:
    """The support check over every decision of the log (with or without feedback)."""
    n = len(action)
    if n == 0:
        return Support(0.0, 0.0, math.nan, math.nan, ())
    rows = np.arange(n)
    served = np.zeros(target_dist.shape[1], dtype=bool)
    served[np.unique(action)] = True
    unlogged_mass = target_dist[:, ~served].sum(axis=1)
    certain = propensity >= 1.0
    other = target_dist.sum(axis=1) - target_dist[rows, action] - unlogged_mass
    weights = target_dist[rows, action] / propensity
    used = np.flatnonzero(~served & (target_dist.max(axis=0) > 0))
    return Support(
        unlogged=float(unlogged_mass.mean()),
        zero_propensity=float(np.where(certain, np.clip(other, 0.0, None), 0.0).mean()),
        mean_weight=float(weights.mean()),
        mean_weight_se=float(np.std(weights, ddof=1) / math.sqrt(n)) if n > 1 else math.inf,
        unlogged_versions=tuple(names[i] for i in used))
