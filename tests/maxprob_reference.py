"""High-precision reference max-probabilities for tests/test_propensities.py.

Each case is k independent Beta or normal arms; its reference is, for every arm i,
P_i = integral of f_i(x) * prod_{j != i} F_j(x) dx computed by ``mpmath.quad`` at
30 significant digits, with the CDFs from ``mpmath.betainc`` / ``mpmath.ncdf`` and the
interval split at each arm's quantiles, so every subinterval is smooth. Point masses (normal
sd 0) are exact products of normal CDFs. This shares nothing with
:mod:`banditops.policies.maxprob` but the formula.

The cases are drawn from a fixed seed, so the stored file can be remade and checked:
``python tests/maxprob_reference.py [SHARD SHARDS]`` (about an hour of CPU: mpmath's incomplete
beta function costs 0.1-5 ms a call; shards run side by side and resume) rewrites
``tests/data/maxprob_reference.json``; the tests recompute a few cases live to show the file
is what this code makes.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
from scipy import special

PATH = Path(__file__).parent / "data" / "maxprob_reference.json"
DIGITS = 30
_QUANTILES = (1e-300, 1e-100, 1e-40, 1e-15, 1e-6, 0.02, 0.5)
# Inside (0, 1) the subintervals are smooth, so Gauss–Legendre up to degree 4 (24 nodes,
# after 3, 6 and 12: mpmath's error estimate is the change from the previous degree) is
# plenty; each probability records mpmath's error estimate, relative to it.
_METHOD, _MAX_DEGREE = "gauss-legendre", 4


def cases() -> list[dict[str, Any]]:
    """Every reference case: {"kind", "family", "p", "q"} (Beta: alpha, beta; normal: mean, sd)."""
    rng = np.random.default_rng(20261129)
    out: list[dict[str, Any]] = []

    def beta(kind: str, a: Any, b: Any) -> None:
        out.append({"kind": kind, "family": "beta", "p": [float(v) for v in a],
                    "q": [float(v) for v in b]})

    def normal(kind: str, m: Any, s: Any) -> None:
        out.append({"kind": kind, "family": "normal", "p": [float(v) for v in m],
                    "q": [float(v) for v in s]})

    # Thompson sampling posteriors: integer counts, 1 to 1,000 rewards per arm, similar means
    # (mpmath's incomplete beta function takes 50-150 ms a call with thousands of successes
    # and failures; larger posteriors are checked against scipy in the tests).
    for _ in range(80):
        k = int(rng.integers(2, 7))
        base = rng.uniform(0.05, 0.95)
        means = np.clip(base + rng.normal(0.0, 10 ** rng.uniform(-2.5, -0.7), k), 0.01, 0.99)
        n = 10 ** rng.uniform(0.0, 3.0, k)
        beta("thompson", 1 + np.round(n * means), 1 + np.round(n * (1 - means)))
    # Discounted posteriors: fractional counts of a few dozen rewards.
    for _ in range(25):
        k = int(rng.integers(2, 7))
        means = np.clip(rng.uniform(0.3, 0.9) + rng.normal(0.0, 0.05, k), 0.01, 0.99)
        n = rng.uniform(0.5, 100.0, k)
        beta("discounted", 1 + n * means, 1 + n * (1 - means))
    # Very peaked posteriors near 1 (and the example).
    beta("peaked", [5000, 4990], [20, 30])
    for _ in range(11):
        k = int(rng.integers(2, 5))
        n = rng.uniform(1e3, 2e4, k)
        failures = rng.uniform(5, 60, k)
        beta("peaked", np.round(n), np.round(failures))
    # Near-ties: equal or almost equal posteriors.
    for _ in range(12):
        k = int(rng.integers(2, 7))
        a, b = rng.uniform(2, 600), rng.uniform(2, 600)
        jitter = rng.choice([0.0, 1e-6, 1e-3, 1.0])
        beta("near-tie", a + jitter * rng.normal(size=k), b + jitter * rng.normal(size=k))
    # Far apart: the trailing arms' probabilities around 1e-8 (z about 5.6).
    for _ in range(14):
        k = int(rng.integers(2, 5))
        n = rng.uniform(200, 1000)
        p = rng.uniform(0.2, 0.8)
        gap = rng.uniform(5.0, 6.5) * math.sqrt(2 * p * (1 - p) / n)
        means = np.clip(p - gap * np.arange(k) / max(k - 1, 1) * rng.uniform(0.9, 1.1, k),
                        0.01, 0.99)
        means[0] = p
        beta("far-apart", 1 + n * means, 1 + n * (1 - means))
    # Small parameters (below 1: densities unbounded at 0 or 1).
    for _ in range(10):
        k = int(rng.integers(2, 5))
        beta("small", rng.uniform(0.3, 3.0, k), rng.uniform(0.3, 3.0, k))
    # Gaussian Thompson posteriors.
    for _ in range(30):
        k = int(rng.integers(2, 7))
        normal("gaussian", rng.normal(0.5, 0.05, k), rng.uniform(0.003, 0.08, k))
    for _ in range(8):  # very different widths
        k = int(rng.integers(2, 6))
        normal("gaussian-mixed", rng.normal(0.5, 0.02, k), 10 ** rng.uniform(-4, -1, k))
    for _ in range(8):  # far apart
        k = int(rng.integers(2, 5))
        s = rng.uniform(0.005, 0.03, k)
        m = 0.6 - rng.uniform(5.0, 6.5) * math.sqrt(2) * np.arange(k) / max(k - 1, 1) * s.max()
        normal("gaussian-far", m, s)
    for _ in range(10):  # point masses, some tied
        k = int(rng.integers(2, 6))
        m = np.round(rng.normal(0.5, 0.05, k), 2)
        s = np.where(rng.random(k) < 0.5, 0.0, rng.uniform(0.005, 0.05, k))
        s[0] = 0.0
        if k > 2:
            m[2], s[2] = m[0], 0.0  # a tie between point masses: the earlier arm wins
        normal("point-mass", m, s)
    return out


def _lower(a: float, b: float, q: float) -> float:
    """The q quantile; 0 where scipy gives up (it returns NaN for some at 1e-300)."""
    x = float(special.betaincinv(a, b, q))
    return 0.0 if math.isnan(x) else x


def _upper(a: float, b: float, q: float) -> float:
    """The 1 - q quantile; 1 where scipy gives up."""
    x = float(special.betainccinv(a, b, q))
    return 1.0 if math.isnan(x) else x


def _beta_reference(a: list[float], b: list[float]) -> list[tuple[str, float]]:
    k = len(a)
    mp_a, mp_b = [mpmath.mpf(v) for v in a], [mpmath.mpf(v) for v in b]
    log_norm = [mpmath.log(mpmath.beta(x, y)) for x, y in zip(mp_a, mp_b, strict=True)]
    cdf_cache: dict[tuple[int, Any], Any] = {}

    def cdf(j: int, x: Any) -> Any:
        key = (j, x)
        if key not in cdf_cache:
            cdf_cache[key] = mpmath.betainc(mp_a[j], mp_b[j], 0, x, regularized=True)
        return cdf_cache[key]

    # Only where the maximum can be: below the largest 1e-300 quantile no arm is the largest
    # (to 1e-300), so probabilities down to about 1e-290 are right. Split at each arm's
    # quantiles there.
    low = max(_lower(a[j], b[j], 1e-300) for j in range(k))
    points = {low, 1.0}
    for j in range(k):
        if _upper(a[j], b[j], 1e-300) <= low:
            continue  # out of contention: its CDF is 1 wherever the maximum can be
        for q in _QUANTILES:
            points.add(_lower(a[j], b[j], q))
            points.add(_upper(a[j], b[j], q))
    # Edges within 1e-9 of 0 or 1 move onto it: there a small parameter's x^(a-1) or
    # (1-x)^(b-1) is singular, and tanh-sinh wants the singularity at the interval's end.
    near = {0.0 if x < 1e-9 else 1.0 if x > 1.0 - 1e-9 else x for x in points if x >= low}
    edges = [mpmath.mpf(x) for x in sorted(near)]
    result = []
    for i in range(k):
        def integrand(x: Any, i: int = i) -> Any:
            if x <= 0 or x >= 1:
                return mpmath.mpf(0)
            value = mpmath.exp((mp_a[i] - 1) * mpmath.log(x) + (mp_b[i] - 1) * mpmath.log1p(-x)
                               - log_norm[i])
            for j in range(k):
                if j != i:
                    value *= cdf(j, x)
            return value
        result.append(_quad(integrand, edges))
    return result


def _quad(integrand: Any, edges: list[Any]) -> tuple[str, float]:
    """Sum over the intervals: Gauss–Legendre inside, tanh-sinh on the first and the last
    (which may reach infinity) and on any closer to 0 or 1 than it is long, where
    x^(a-1) or (1-x)^(b-1) may be singular (tanh-sinh is made for both)."""
    total, error = mpmath.mpf(0), mpmath.mpf(0)
    last = len(edges) - 2
    for number, (start, stop) in enumerate(itertools.pairwise(edges)):
        length = stop - start
        at_end = number in (0, last) or (0 <= start < length) or (0 <= 1 - stop < length)
        value, err = mpmath.quad(integrand, [start, stop],
                                 method="tanh-sinh" if at_end else _METHOD,
                                 maxdegree=_MAX_DEGREE + (4 if at_end else 0), error=True)
        total, error = total + value, error + err
    return mpmath.nstr(total, 25), float(error / total) if total else 0.0


def _normal_reference(m: list[float], s: list[float]) -> list[tuple[str, float]]:
    k = len(m)
    mp_m, mp_s = [mpmath.mpf(v) for v in m], [mpmath.mpf(v) for v in s]
    points = [j for j in range(k) if s[j] == 0.0]
    continuous = [j for j in range(k) if s[j] > 0.0]
    top = max((mp_m[j] for j in points), default=None)
    result = []
    for i in range(k):
        if s[i] == 0.0:
            first = next(j for j in points if m[j] == max(m[p] for p in points))
            if i != first:
                result.append(("0", 0.0))
                continue
            value = mpmath.mpf(1)
            for j in continuous:
                value *= mpmath.ncdf(top, mp_m[j], mp_s[j])
            result.append((mpmath.nstr(value, 25), 0.0))
            continue

        def integrand(x: Any, i: int = i) -> Any:
            value = mpmath.npdf(x, mp_m[i], mp_s[i])
            for j in continuous:
                if j != i:
                    value *= mpmath.ncdf(x, mp_m[j], mp_s[j])
            return value
        cuts = set()
        for j in continuous:
            for z in (-40, -20, -12, -8, -5, -3, -1.5, 0, 1.5, 3, 5, 8, 12, 20, 40):
                cuts.add(m[j] + z * s[j])
        lowest = -mpmath.inf if top is None else top
        inner = sorted(mpmath.mpf(c) for c in cuts if top is None or c > top)
        edges = [lowest, *inner, mpmath.inf]
        result.append(_quad(integrand, edges))
    return result


def reference(case: dict[str, Any]) -> list[str]:
    """The case's probabilities as decimal strings (25 significant digits)."""
    return reference_with_error(case)[0]


def reference_with_error(case: dict[str, Any]) -> tuple[list[str], list[float]]:
    """:func:`reference` and mpmath's error estimate of each probability, relative to it
    (0 for the exact point masses)."""
    with mpmath.workdps(DIGITS):
        if case["family"] == "beta":
            pairs = _beta_reference(case["p"], case["q"])
        else:
            pairs = _normal_reference(case["p"], case["q"])
    return [value for value, _ in pairs], [error for _, error in pairs]


def main(shard: int = 0, shards: int = 1) -> None:
    """Compute the cases (those with index % shards == shard; finished ones are kept in a
    progress file beside the output, so runs resume and shards can run side by side) and
    write the output once every case is done."""
    all_cases = cases()
    progress = PATH.with_suffix(".progress.jsonl")
    PATH.parent.mkdir(exist_ok=True)
    done = _progress(progress)
    for number, case in enumerate(all_cases):
        if number % shards != shard or number in done:
            continue
        values, errors = reference_with_error(case)
        with progress.open("a") as file:
            file.write(json.dumps({"index": number, "reference": values,
                                   "relative_errors": errors}) + "\n")
        print(f"{number + 1}/{len(all_cases)} {case['kind']}", file=sys.stderr, flush=True)
    done = _progress(progress)
    if len(done) == len(all_cases):
        out = [{**case, **done[number]} for number, case in enumerate(all_cases)]
        PATH.write_text(json.dumps({"digits": DIGITS, "cases": out}, indent=1) + "\n")
        progress.unlink()


def _progress(path: Path) -> dict[int, dict[str, Any]]:
    if not path.exists():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        item = json.loads(line)
        done[item.pop("index")] = item
    return done


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
