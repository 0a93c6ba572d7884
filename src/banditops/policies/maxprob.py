"""Exact max-probabilities: the chance that each of k independent arms' draws is the largest.

This is the propensity of Thompson sampling: the policy serves the arm whose posterior draw is
highest, so arm i is served with probability

    P_i = P(X_i > X_j for every j != i) = integral of f_i(x) * prod_{j != i} F_j(x) dx

for independent draws X_j with densities f_j and CDFs F_j (Beta posteriors for
:class:`~banditops.policies.thompson.ThompsonSampling` and its discounted variant, normal ones
for the Gaussian variant). Two normal arms have a closed form,
P_0 = Phi((m_0 - m_1) / sqrt(s_0^2 + s_1^2)), used here. Two Beta arms have one only as a sum
over integer parameters (Cook, "Exact calculation of beta inequalities", 2005) whose length
grows with the evidence and which does not cover the fractional counts of discounted sampling
(its recurrences are used below, to follow one reward at a time); more arms have none.

Everything else is deterministic numerical integration, chosen over Monte Carlo because a
propensity becomes an importance weight 1 / P: Monte Carlo with n draws cannot resolve P much
below 1 / n (a smoothed 2,000-draw estimate logged a true 8.7e-6 as 2.5e-4), while the error
here is below 1e-10 (worst 4e-11 against 30-digit mpmath integrals on 209 posteriors in the
tests), and small probabilities keep their relative accuracy. The method:

1. Each arm's *bulk*: its quantiles at ``_EPS`` and ``1 - _EPS`` (Beta: ``betaincinv`` /
   ``betainccinv``; normal: m +- 7.9 s). Below the largest lower bulk end no arm can be the
   maximum (up to ``_EPS``), and an arm whose bulk ends below it is *out of contention*: its
   CDF is 1 wherever the maximum can be, so it drops out of every product.
2. One set of composite Gauss–Legendre panels over the region where the maximum can be, shared
   by all arms: each arm in contention splits its own bulk into panels of 1.2 (Beta) or 1.5
   (normal) standard deviations, so every density is resolved where it lives however
   different the arms' widths (Beta(5000, 20) beside Beta(2, 2)); a fractional power x^(a-1)
   near 0 or 1 gets geometrically graded panels. Gauss–Legendre with n nodes is exact for
   polynomials of degree 2n - 1 (Davis & Rabinowitz, *Methods of Numerical Integration*, 1984,
   ch. 2 and 4).
3. Beta CDFs at the nodes: one ``betainc`` per arm at the left end of the region, then the
   density integrated panel by panel (spectral integration of the interpolant at the nodes,
   Trefethen, *Spectral Methods in MATLAB*, 2000, ch. 12), instead of one ``betainc`` per node
   and arm (0.3-0.6 µs each for posteriors of a few hundred rewards). Normal CDFs: ``ndtr``.
4. P_i is the quadrature sum of f_i * prod_{j != i} F_j.

:class:`MaxProbabilities` keeps that grid, and each arm's density and CDF on it, across calls:
when one arm's posterior changes (a policy update), only that arm's rows are recomputed, as
long as every posterior stays close to where the grid was built (mean within half a standard
deviation, standard deviation within -20% / +25%, inside margins the grid was built with);
otherwise the grid is rebuilt. A 0/1 reward of Thompson sampling moves the arm's rows by
exact recurrences (no special function), and with two arms the probability itself follows by
Cook's recurrences in a few scalar operations. A replay's choose-then-update loop then costs a
few vector operations per decision (two Beta arms: none) instead of a whole integration.

A probability below ``_TINY`` (1e-6), or of an arm out of contention, is recomputed by the
*tail method*: that arm's integrand in log space (``log_ndtr``, log of ``betainc``), zoomed in
on where it lives, so a small probability keeps its relative accuracy (the grid's error,
about 1e-11, is absolute) and a tiny one comes out tiny rather than as quadrature noise. It
costs milliseconds, but ``choose`` needs it only for an arm served less than once in a
million decisions. Below the smallest normal float, 2.2e-308, probabilities lose their
digits and underflow to 0, and 1 / P would overflow: a policy that served an arm whose
probability is that small (only the sampler's own rounding can do it) logs :data:`FLOOR`,
2.2e-308 itself (:func:`chosen_probability`), so the logged propensity is never 0 and its
importance weight stays a finite float.

Beta parameters below 1 (never a policy's: its counts start at 1) make a density singular at
0 or 1; graded panels and the mass beyond the last double below 1 (1e-5 of Beta(0.4, 0.3)),
added in closed form, keep such cases within about 1e-7 rather than 1e-9.

Point masses (a normal arm with sd 0) are exact: the draw is the mean. Ties between point
masses go to the earliest arm, as the policies' ``select`` breaks them (a strict ``>`` while
scanning the arms in order); continuous arms tie with probability 0.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import legendre
from scipy import special

from banditops.errors import InvalidParameterError

_EPS = 1e-15  # mass left outside each arm's bulk, per side
_NORMAL_Z = float(-special.ndtri(_EPS))  # 7.94: a normal's bulk is m +- _NORMAL_Z s
# Panel width in standard deviations at build (up to 25% more once sd shrank by 20%): Beta
# densities need narrower panels than normal ones for the same accuracy (skew, CDF by
# integration); about 2e-11 and 1e-14 worst errors on random posteriors.
_BETA_PANEL_SDS, _NORMAL_PANEL_SDS = 1.2, 1.5
_MAX_PANELS_PER_ARM = 96
_NODES = 10  # Gauss–Legendre nodes per panel
_TINY = 1e-6  # below this a probability is recomputed by the tail method
_TAIL_NATS = 46.0  # the tail method integrates where the integrand is within e^-46 of its peak
_SMALLEST = 1e-300  # Beta nodes stay in [_SMALLEST, 1 - _ULP], where the logs are finite
_ULP = 2.0 ** -52
# A kept grid stays valid while each posterior's mean moved less than _DRIFT build-time
# standard deviations and its standard deviation stayed within these factors of the build's.
_DRIFT, _SHRINK, _GROW = 0.5, 0.8, 1.25
FLOOR = sys.float_info.min  # the least propensity logged for a served arm (2.2e-308)


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes t and weights w on [-1, 1], and the (n + 1, n) matrix whose row m < n integrates
    the interpolant of values at the nodes from -1 to t_m, and whose last row is w."""
    t, w = legendre.leggauss(n)
    vander_inverse = np.linalg.inv(legendre.legvander(t, n - 1))
    partial = np.empty((n, n))
    for degree in range(n):
        unit = np.zeros(n)
        unit[degree] = 1.0
        partial[:, degree] = legendre.legval(t, legendre.legint(unit, lbnd=-1.0))
    return t, w, np.vstack([partial @ vander_inverse, w])


def _graded(near: float, far: float) -> np.ndarray:
    """Distances far, far/4, far/16, ... from an endpoint, down to about ``near`` (> 0)."""
    if near <= 0.0 or far <= near:
        return np.array([far])
    count = min(math.ceil(math.log(far / near) / math.log(4.0)), 400)
    return far * 0.25 ** np.arange(count + 1)


_T, _W, _CUMULATIVE = _gauss_legendre(_NODES)
_CUMULATIVE_T = np.ascontiguousarray(_CUMULATIVE.T)
_T_TAIL, _W_TAIL, _ = _gauss_legendre(20)
_STEPS = np.arange(_MAX_PANELS_PER_ARM + 1, dtype=float)


# ------------------------------------------------------------------ public functions
def beta_max_probabilities(alpha: Sequence[float] | np.ndarray,
                           beta: Sequence[float] | np.ndarray) -> np.ndarray:
    """P(arm i's draw is the largest) for independent Beta(alpha_i, beta_i), shape (k,).

    >>> beta_max_probabilities([1, 1], [1, 1]).round(12).tolist()
    [0.5, 0.5]
    >>> round(float(beta_max_probabilities([2, 1], [1, 1])[0]), 12)  # P(max of 2 U > U)
    0.666666666667
    """
    return MaxProbabilities("beta").probabilities(*_check_beta(alpha, beta))


def beta_max_probability(i: int, alpha: Sequence[float] | np.ndarray,
                         beta: Sequence[float] | np.ndarray) -> float:
    """P(arm i's draw is the largest) for independent Beta(alpha_j, beta_j): one arm."""
    a, b = _check_beta(alpha, beta)
    return MaxProbabilities("beta").probability(_check_index(i, len(a)), a, b)


def normal_max_probabilities(mean: Sequence[float] | np.ndarray,
                             sd: Sequence[float] | np.ndarray) -> np.ndarray:
    """P(arm i's draw is the largest) for independent N(mean_i, sd_i^2), shape (k,).

    ``sd`` may be 0 (a point mass); ties between point masses go to the earliest arm.

    >>> normal_max_probabilities([0.0, 0.0], [1.0, 1.0]).tolist()
    [0.5, 0.5]
    >>> normal_max_probabilities([0.5, 0.5, 0.2], [0.0, 0.0, 0.0]).tolist()
    [1.0, 0.0, 0.0]
    """
    return MaxProbabilities("normal").probabilities(*_check_normal(mean, sd))


def normal_max_probability(i: int, mean: Sequence[float] | np.ndarray,
                           sd: Sequence[float] | np.ndarray) -> float:
    """P(arm i's draw is the largest) for independent N(mean_j, sd_j^2): one arm."""
    m, s = _check_normal(mean, sd)
    return MaxProbabilities("normal").probability(_check_index(i, len(m)), m, s)


def chosen_probability(probability: float) -> float:
    """The propensity to log for an arm that was just served: its probability, raised to
    :data:`FLOOR` (2.2e-308) if below, where it underflowed (module docstring): never 0, and
    1 / P is a finite float."""
    return probability if probability >= FLOOR else FLOOR


class MaxProbabilities:
    """Max-probabilities of one family (``"beta"``: parameters alpha, beta; ``"normal"``:
    mean, sd) that keeps its quadrature grid and per-arm rows between calls, for a caller
    whose posteriors change a little at a time (see the module docstring). Parameters are
    passed on every call and are not validated (the policies' are valid by construction;
    the module's functions validate theirs).

    >>> tracker = MaxProbabilities("beta")
    >>> round(tracker.probability(0, [30.0, 20.0], [20.0, 30.0]), 9)
    0.978594773
    >>> round(tracker.probability(0, [31.0, 20.0], [20.0, 30.0]), 9)  # one step: a recurrence
    0.982821729
    """

    def __init__(self, family: str) -> None:
        if family not in ("beta", "normal"):
            raise InvalidParameterError(f'family must be "beta" or "normal", got {family!r}')
        self._kind = _Beta if family == "beta" else _Normal
        self._grid: _Family | None = None

    def probability(self, i: int, first: Sequence[float] | np.ndarray,
                    second: Sequence[float] | np.ndarray) -> float:
        """Arm i's probability of being the largest."""
        if len(first) == 1:
            return 1.0
        special_case = self._kind.direct(i, first, second)
        if special_case is not None:
            return special_case
        return self._sync(first, second).probability(i)

    def probabilities(self, first: Sequence[float] | np.ndarray,
                      second: Sequence[float] | np.ndarray) -> np.ndarray:
        """Every arm's probability of being the largest, shape (k,)."""
        k = len(first)
        if k == 1:
            return np.ones(1)
        if self._kind.direct(0, first, second) is not None:
            return np.array([self._kind.direct(i, first, second) for i in range(k)])
        return self._sync(first, second).probabilities()

    def _sync(self, first: Sequence[float] | np.ndarray,
              second: Sequence[float] | np.ndarray) -> _Family:
        grid = self._grid
        if grid is None or not grid.follow(first, second):
            grid = self._grid = self._kind(np.array(first, dtype=float),
                                           np.array(second, dtype=float))
        return grid


# ------------------------------------------------------------------ validation
def _check_index(i: int, k: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < k:
        raise InvalidParameterError(f"arm index must be an integer in [0, {k}), got {i!r}")
    return int(i)


def _as_vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a sequence of numbers, got {values!r}") \
            from None
    if array.ndim != 1 or not len(array):
        raise InvalidParameterError(f"{name} must be a non-empty 1-D sequence, got {values!r}")
    if not np.isfinite(array).all():
        raise InvalidParameterError(f"{name} must be finite, got {values!r}")
    return array


def _check_beta(alpha: Sequence[float] | np.ndarray,
                beta: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector("alpha", alpha), _as_vector("beta", beta)
    if a.shape != b.shape:
        raise InvalidParameterError(f"alpha and beta differ in length: {len(a)} != {len(b)}")
    if (a <= 0.0).any() or (b <= 0.0).any():
        raise InvalidParameterError(
            f"Beta parameters must be > 0, got alpha={a.tolist()}, beta={b.tolist()}")
    return a, b


def _check_normal(mean: Sequence[float] | np.ndarray,
                  sd: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, s = _as_vector("mean", mean), _as_vector("sd", sd)
    if m.shape != s.shape:
        raise InvalidParameterError(f"mean and sd differ in length: {len(m)} != {len(s)}")
    if (s < 0.0).any():
        raise InvalidParameterError(f"sd must be >= 0, got {s.tolist()}")
    return m, s


# ------------------------------------------------------------------ the integration
class _Family:
    """k independent continuous arms and the shared quadrature grid built for them.

    Subclasses compute ``mean``, ``sd`` and the bulk ends ``lo``, ``hi`` from the parameters
    (``p``, ``q``) in ``_stats``, and density and CDF rows on the grid in ``_rows``.
    """

    support = (-math.inf, math.inf)
    panel_sds = _NORMAL_PANEL_SDS
    p: np.ndarray
    q: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __init__(self, p: np.ndarray, q: np.ndarray, *, floor: float = -math.inf) -> None:
        self.k = len(p)
        self.floor = floor  # a lower limit of integration (normal: the highest point mass)
        self.p, self.q = p, q
        self._stats()
        self._build()

    # hooks -------------------------------------------------------------
    def _stats(self) -> None:
        """Compute mean, sd, lo, hi of every arm from p, q."""
        raise NotImplementedError

    def _moments(self, p: float, q: float) -> tuple[float, float]:
        """(mean, sd) of one arm, in plain floats (the cheap validity check)."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Per-grid precomputation (Beta: log x, log(1 - x) at the nodes)."""

    def _rows(self, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(densities, CDFs) of ``arms`` at the nodes: each (len(arms), nodes)."""
        raise NotImplementedError

    def _logpdf(self, i: int, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _logcdf(self, arms: np.ndarray, x: np.ndarray) -> np.ndarray:
        """log F_j(x): (len(arms), len(x)), -inf where F_j underflows."""
        raise NotImplementedError

    def _tail_range(self, i: int) -> tuple[float, float]:
        """Where arm i has any mass at all (all but about 1e-300)."""
        raise NotImplementedError

    def _graded_cuts(self, j: int, start: float, stop: float, width: float) -> list[np.ndarray]:
        """Extra panel edges where arm j's density is not smooth at the panels' scale."""
        return []

    # the grid ----------------------------------------------------------
    def _build(self) -> None:
        """Grid over where the maximum can be, with margins for later drift, and the rows."""
        lo, hi, mean, sd = self.lo, self.hi, self.mean, self.sd
        below = 0.25 * (mean - lo) + sd  # margins: how far a bulk may move before a rebuild
        above = 0.25 * (hi - mean) + sd
        low_support, high_support = self.support
        low = max(float((lo - below).max()), low_support, self.floor)
        arms = np.flatnonzero(hi + above > low)
        high = min(float((hi[arms] + above[arms]).max()), high_support)
        cuts = [np.array([low, high])]
        widths = self.panel_sds * sd[arms]
        narrowest, uniform = float(widths.min()), None
        if float(widths.max()) <= 2.0 * narrowest:  # similar widths: one uniform grid has
            panels = min(math.ceil((high - low) / narrowest),  # fewer panels than a union
                         _MAX_PANELS_PER_ARM * len(arms))  # of misaligned ones
            uniform = low + (high - low) / panels * np.arange(panels + 1.0)
            cuts.append(uniform)
        for j in arms:
            start = max(float(lo[j] - below[j]), low)
            stop = min(float(hi[j] + above[j]), high)
            if stop > start:
                width = self.panel_sds * float(sd[j])
                if uniform is None:
                    panels = min(math.ceil((stop - start) / width), _MAX_PANELS_PER_ARM)
                    cuts.append(start + (stop - start) / panels * _STEPS[:panels + 1])
                cuts.extend(self._graded_cuts(int(j), start, stop, width))
        edges = np.unique(np.concatenate(cuts))
        edges = edges[(edges >= low) & (edges <= high)]
        half = 0.5 * np.diff(edges)
        self.low, self.high, self.half = low, high, half
        self.x = ((edges[:-1] + half)[:, None] + half[:, None] * _T).ravel()
        self.w = (half[:, None] * _W).ravel()
        self.arms = arms
        self.row_of = {int(j): row for row, j in enumerate(arms)}
        self.others = [np.delete(np.arange(len(arms)), row) for row in range(len(arms))]
        self.built_mean, self.built_sd = mean.copy(), sd.copy()
        self._prepare()
        self.density, self.cdf = self._rows(arms)
        self.beyond: np.ndarray | None = None  # each arm's mass above the grid, if any
        self.pair: float | None = None  # P(arm 0 > arm 1), when a recurrence follows it
        self.stale = False  # True once the pair moved on without the rows

    def follow(self, p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> bool:
        """Move to parameters (p, q): recompute the rows of the arms that changed and return
        True, or return False when the grid no longer fits them (the caller rebuilds)."""
        if len(p) != self.k:
            return False
        own_p, own_q = self.p, self.q
        changed = [j for j in range(self.k) if p[j] != own_p[j] or q[j] != own_q[j]]
        if not changed:
            return True
        built_mean, built_sd, moments = self.built_mean, self.built_sd, self._moments
        means, sds = [], []
        for j in changed:
            mean, sd = moments(float(p[j]), float(q[j]))
            reference = float(built_sd[j])
            if (abs(mean - float(built_mean[j])) > _DRIFT * reference
                    or not _SHRINK * reference <= sd <= _GROW * reference):
                return False
            means.append(mean)
            sds.append(sd)
        if len(changed) == 1:  # a policy update: one arm, perhaps one step of a recurrence
            j = changed[0]
            old = float(own_p[j]), float(own_q[j])
            own_p[j], own_q[j] = p[j], q[j]
            return self._moved(j, *old)
        if self.stale:
            return False  # the rows were left behind by the pair's recurrence
        own_p[changed], own_q[changed] = [p[j] for j in changed], [q[j] for j in changed]
        self.mean[changed], self.sd[changed] = means, sds
        self._renormalise(changed)
        rows = [self.row_of[j] for j in changed if j in self.row_of]
        if rows:
            density, cdf = self._rows(self.arms[rows])
            self.density[rows], self.cdf[rows] = density, cdf
        self._rows_changed()
        return True

    def _rows_changed(self) -> None:
        """The rows were recomputed (hook: Beta's pair follows them)."""

    def _renormalise(self, arms: list[int]) -> None:
        """The parameters of ``arms`` changed (hook: Beta's normalising constants)."""

    def _moved(self, j: int, old_p: float, old_q: float) -> bool:
        """Arm j alone changed (from old_p, old_q): update its statistics and rows; False if
        the grid cannot follow (the caller rebuilds)."""
        arms = np.array([j])
        self.mean[j], self.sd[j] = self._moments(float(self.p[j]), float(self.q[j]))
        self._renormalise([j])
        row = self.row_of.get(j)
        if row is not None:
            density, cdf = self._rows(arms)
            self.density[row], self.cdf[row] = density[0], cdf[0]
        return True

    # the probabilities -------------------------------------------------
    def probability(self, i: int) -> float:
        row = self.row_of.get(i)
        if row is None:
            return self.tail_probability(i)
        if len(self.arms) == 1:
            return 1.0  # every other arm is out of contention: each has at most _EPS
        if self.pair is not None:
            value = self.pair if i == 0 else 1.0 - self.pair
            return value if value >= _TINY else self.tail_probability(i)
        others = self.cdf[self.others[row]]
        product = others[0] if len(others) == 1 else others.prod(axis=0)
        value = float(np.dot(self.density[row] * product, self.w))
        beyond = self.beyond
        if beyond is not None:  # the mass above the grid, where the others' CDFs are ~1
            value += float(beyond[i]) * math.prod(1.0 - float(beyond[j]) for j in self.arms
                                                  if j != i)
        if value < _TINY:
            return self.tail_probability(i)
        return min(value, 1.0)

    def probabilities(self) -> np.ndarray:
        result = np.array([self.probability(i) for i in range(self.k)])
        if len(self.arms) == 1:  # the one contender is the rest, to within k * _EPS
            only = int(self.arms[0])
            result[only] = max(1.0 - (result.sum() - 1.0), 0.0)
        return result

    def tail_probability(self, i: int) -> float:
        """Arm i's probability with relative accuracy when it is tiny: its integrand's log,
        zoomed in (log-concave for Beta parameters >= 1 and for normals, so the part within
        e^-46 of its peak is one interval), then Gauss–Legendre over that interval."""
        others = np.delete(np.arange(self.k), i)
        low, high = self._tail_range(i)

        def log_integrand(x: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore"):
                return self._logpdf(i, x) + self._logcdf(others, x).sum(axis=0)

        for _ in range(12):
            x = np.linspace(low, high, 129)
            values = log_integrand(x)
            top = values.max()
            if not np.isfinite(top):
                return 0.0
            inside = np.flatnonzero(values >= top - _TAIL_NATS)
            first, last = max(int(inside[0]) - 1, 0), min(int(inside[-1]) + 1, len(x) - 1)
            low, high = float(x[first]), float(x[last])
            if last - first >= 64:
                break
        edges = np.linspace(low, high, 17)
        half = 0.5 * np.diff(edges)
        nodes = ((edges[:-1] + half)[:, None] + half[:, None] * _T_TAIL).ravel()
        weights = (half[:, None] * _W_TAIL).ravel()
        values = log_integrand(nodes)
        peak = values.max()
        if not np.isfinite(peak):
            return 0.0
        return min(float(math.exp(peak) * np.dot(np.exp(values - peak), weights)), 1.0)


class _Beta(_Family):
    """Beta(a, b) arms: p = a, q = b."""

    support = (_SMALLEST, 1.0 - _ULP)
    panel_sds = _BETA_PANEL_SDS

    @staticmethod
    def direct(i: int, a: Sequence[float] | np.ndarray,
               b: Sequence[float] | np.ndarray) -> float | None:
        return None  # no closed form worth having (module docstring)

    def _stats(self) -> None:
        a, b = self.p, self.q
        total = a + b
        self.mean, self.sd = a / total, np.sqrt(a * b / (total * total * (total + 1.0)))
        # fmax / fmin: where scipy's inversion gives up (NaN), the support's end.
        self.lo = np.fmax(special.betaincinv(a, b, _EPS), _SMALLEST)
        self.hi = np.fmin(special.betainccinv(a, b, _EPS), 1.0 - _ULP)
        self.log_norm = special.betaln(a, b)

    def _moments(self, a: float, b: float) -> tuple[float, float]:
        total = a + b
        return a / total, math.sqrt(a * b / (total * total * (total + 1.0)))

    def _renormalise(self, arms: list[int]) -> None:
        self.log_norm[arms] = special.betaln(self.p[arms], self.q[arms])
        if self.beyond is not None:
            self.beyond[arms] = special.betaincc(self.p[arms], self.q[arms], self.high)

    def _build(self) -> None:
        super()._build()
        # With b < 1 the density is singular at 1 and noticeable mass can lie beyond the
        # last double below 1 (Beta(0.4, 0.3): 1e-5), where the grid cannot go.
        self.beyond = (special.betaincc(self.p, self.q, self.high)
                       if (self.q[self.arms] < 1.0).any() else None)
        self._rows_changed()

    def _prepare(self) -> None:
        x = self.x
        self.log_x, self.log_1mx = np.log(x), np.log1p(-x)
        self.one_mx = 1.0 - x
        self.x_1mx = x * self.one_mx

    def _moved(self, j: int, old_a: float, old_b: float) -> bool:
        """One reward of Thompson sampling adds 1 to a or b: the rows then follow exactly from
        I_x(a + 1, b) = I_x(a, b) - x^a (1 - x)^b / (a B(a, b)) and
        I_x(a, b + 1) = I_x(a, b) + x^a (1 - x)^b / (b B(a, b)) (DLMF 8.17.20-21), where
        x^a (1 - x)^b / B(a, b) = f(x) x (1 - x): five vector operations, no special function.
        With two arms the probability itself follows, in a few scalar operations, from
        Cook's recurrences for g = P(X_0 > X_1), X_0 ~ B(a, b), X_1 ~ B(c, d) (Cook 2005):
        g(a + 1) = g + h / a, g(b + 1) = g - h / b, g(c + 1) = g - h / c, g(d + 1) = g + h / d,
        h = B(a + c, b + d) / (B(a, b) B(c, d)). Rounding adds about 1e-16 per step; a
        rebuild (a posterior left the grid's range) starts afresh."""
        a, b = float(self.p[j]), float(self.q[j])
        self.mean[j], self.sd[j] = self._moments(a, b)
        old_norm = float(self.log_norm[j])
        self.log_norm[j] = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        success = b == old_b and a == old_a + 1.0
        failure = a == old_a and b == old_b + 1.0
        if self.pair is not None and (success or failure):
            other = 1 - j
            c, d = float(self.p[other]), float(self.q[other])
            h = math.exp(math.lgamma(old_a + c) + math.lgamma(old_b + d)
                         - math.lgamma(old_a + old_b + c + d) - old_norm
                         - float(self.log_norm[other]))
            step = h / old_a if success else -h / old_b  # for arm j beating the other
            self.pair = min(max(self.pair + (step if j == 0 else -step), 0.0), 1.0)
            self.stale = True
            return True
        if self.stale:
            return False
        row = self.row_of.get(j)
        if row is None:
            return True
        density, cdf = self.density[row], self.cdf[row]
        if success:
            step_row = density * self.x_1mx
            step_row *= 1.0 / old_a
            cdf -= step_row
            density *= self.x
            density *= (old_a + old_b) / old_a
        elif failure:
            step_row = density * self.x_1mx
            step_row *= 1.0 / old_b
            cdf += step_row
            density *= self.one_mx
            density *= (old_a + old_b) / old_b
        else:
            new_density, new_cdf = self._rows(np.array([j]))
            density[:], cdf[:] = new_density[0], new_cdf[0]
        self._rows_changed()
        return True

    def _rows_changed(self) -> None:
        if self.k == 2 and len(self.arms) == 2:  # both in contention: follow P(X_0 > X_1)
            self.pair = None
            self.pair = _Family.probability(self, 0)

    def _rows(self, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Densities from the logs at the nodes; CDFs from one ``betainc`` at the left end of
        the grid plus the density integrated panel by panel."""
        a, b = self.p[arms, None], self.q[arms, None]
        density = np.exp((a - 1.0) * self.log_x + (b - 1.0) * self.log_1mx
                         - self.log_norm[arms, None])
        n, half = len(arms), self.half
        start = special.betainc(self.p[arms], self.q[arms], self.low)
        partial = density.reshape(n, len(half), _NODES) @ _CUMULATIVE_T
        partial *= half[:, None]
        totals = partial[:, :, -1]
        before = np.cumsum(totals, axis=1)
        before -= totals
        before += start[:, None]
        cdf = partial[:, :, :-1]
        cdf += before[:, :, None]
        return density, np.minimum(cdf.reshape(n, -1), 1.0)

    def _logpdf(self, i: int, x: np.ndarray) -> np.ndarray:
        a, b = self.p[i], self.q[i]
        return (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) - special.betaln(a, b)

    def _logcdf(self, arms: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.log(special.betainc(self.p[arms, None], self.q[arms, None], x))

    def _tail_range(self, i: int) -> tuple[float, float]:
        a, b = self.p[i], self.q[i]  # (scipy returns NaN for some at 1e-300: then the end)
        return (float(np.fmax(special.betaincinv(a, b, 1e-300), _SMALLEST)),
                float(np.fmin(special.betainccinv(a, b, 1e-300), 1.0 - _ULP)))

    def _graded_cuts(self, j: int, start: float, stop: float, width: float) -> list[np.ndarray]:
        """x^(a-1) (1-x)^(b-1) with a fractional exponent is not smooth at 0 (or 1): where the
        bulk comes within a panel of that end, panels shrink geometrically (ratio 4) towards
        it, each 3 times as wide as its distance to the end, so Gauss–Legendre converges again
        (graded meshes: Davis & Rabinowitz 1984, sec. 2.12)."""
        cuts, lo, hi = [], float(self.lo[j]), float(self.hi[j])
        if not float(self.p[j]).is_integer() and lo < width:  # down to the bulk's end only
            cuts.append(_graded(max(start, lo), min(stop, width)))
        if not float(self.q[j]).is_integer() and 1.0 - hi < width:
            cuts.append(1.0 - _graded(max(1.0 - stop, 1.0 - hi), min(1.0 - start, width)))
        return cuts


class _Normal(_Family):
    """Continuous normal arms: p = mean, q = sd (> 0). Point masses and two arms are exact
    and handled by :meth:`direct` before any grid."""

    def _stats(self) -> None:
        self.mean, self.sd = self.p.copy(), self.q.copy()
        self.lo = np.maximum(self.p - _NORMAL_Z * self.q, self.floor)
        self.hi = self.p + _NORMAL_Z * self.q

    def _moments(self, m: float, s: float) -> tuple[float, float]:
        return m, s

    def _rows(self, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.q[arms, None]
        z = (self.x - self.p[arms, None]) / s
        density = np.exp(-0.5 * z * z) / (s * math.sqrt(2.0 * math.pi))
        return density, special.ndtr(z)

    def _logpdf(self, i: int, x: np.ndarray) -> np.ndarray:
        z = (x - self.p[i]) / self.q[i]
        return -0.5 * z * z - math.log(self.q[i] * math.sqrt(2.0 * math.pi))

    def _logcdf(self, arms: np.ndarray, x: np.ndarray) -> np.ndarray:
        return special.log_ndtr((x - self.p[arms, None]) / self.q[arms, None])

    def _tail_range(self, i: int) -> tuple[float, float]:
        m, s = float(self.p[i]), float(self.q[i])
        low = max(m - 38.0 * s, self.floor)
        return low, max(m + 38.0 * s, low)

    @staticmethod
    def direct(i: int, m: Sequence[float] | np.ndarray,
               s: Sequence[float] | np.ndarray) -> float | None:
        """Arm i's probability when it needs no grid: two continuous arms (closed form) or
        some point masses (exact, reducing to continuous arms above the highest of them)."""
        k = len(m)
        if k == 2 and s[0] > 0.0 and s[1] > 0.0:
            z = (m[i] - m[1 - i]) / math.hypot(s[0], s[1])
            return 0.5 * math.erfc(-z / math.sqrt(2.0))
        points = [j for j in range(k) if s[j] == 0.0]
        if not points:
            return None
        top = max(m[j] for j in points)
        continuous = [j for j in range(k) if s[j] > 0.0]
        if s[i] == 0.0:
            if m[i] != top or next(j for j in points if m[j] == top) != i:
                return 0.0  # below the highest point mass, or a tie lost to an earlier arm
            return math.prod(0.5 * math.erfc((m[j] - top) / (s[j] * math.sqrt(2.0)))
                             for j in continuous)  # every continuous draw falls below it
        # A continuous arm must beat the highest point mass and the other continuous arms.
        if len(continuous) == 1:
            return 0.5 * math.erfc((top - m[i]) / (s[i] * math.sqrt(2.0)))
        rest = _Normal(np.array([m[j] for j in continuous], dtype=float),
                       np.array([s[j] for j in continuous], dtype=float), floor=float(top))
        return rest.probability(continuous.index(i))

