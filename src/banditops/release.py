"""Dark launch: a new version serves no traffic until its shadow rewards show it is not worse.

With ``ReleaseParams(mode="dark")`` a version registered while others are live starts
``dark``: it is no arm of the policy, so it serves nobody, but it predicts every shadowed
request (see :mod:`banditops.shadow`) and its predictions are scored when the labels arrive.
The evidence is *paired*: on each labelled request scored for both, the difference
``d = reward(live version) - reward(candidate)``. Comparing on the same requests keeps drift
out of the comparison (both saw the same rows) and the variance of ``d`` is small where the
two versions agree, so a verdict needs far fewer labels than comparing two means would.

The test is the guardrail's anytime-valid one: a confidence sequence for the mean of ``d``
against each live version (:func:`banditops.guardrails.normal_mixture_radius`, at
``1 - confidence`` split over the live versions, Bonferroni), checked every ``check_every``
paired rewards, valid however often it is checked:

- **promote** when, against every live version, the sequence lies below ``margin`` (the
  candidate is not worse than the best live version by ``margin`` or more: non-inferiority);
  it joins the policy and the policy observes its last ``carry`` shadow rewards (its
  pseudo-counts), with a ``promoted`` event carrying the evidence;
- **roll back** when, against some live version, the sequence lies above ``margin`` (it is
  worse by more than ``margin``): it is rolled back before it served a single request.

A candidate that is neither stays dark (costs shadow calls only) until an operator decides.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from banditops.errors import InvalidParameterError
from banditops.guardrails import normal_mixture_radius
from banditops.policies.base import check_number, check_window, set_checked

MODES = ("live", "dark")


@dataclass(frozen=True, slots=True)
class ReleaseParams:
    """How a new version is released (see the module docstring)."""

    mode: str = "live"
    margin: float = 0.01
    min_samples: int = 200
    check_every: int = 10
    carry: int = 500

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidParameterError(f"release mode must be one of {MODES}, got {self.mode!r}")
        set_checked(self, "margin", check_number("margin", self.margin, low=0.0, high=1.0))
        check_window("min_samples", self.min_samples)
        if self.min_samples < 2:
            raise InvalidParameterError(
                f"min_samples must be at least 2 (a variance needs two), got {self.min_samples}")
        check_window("check_every", self.check_every)
        check_window("carry", self.carry)


@dataclass(slots=True)
class _Pairs:
    """Running sums of paired differences d = reward(live) - reward(candidate)."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, difference: float) -> None:
        self.n += 1
        self.total += difference
        self.total_sq += difference * difference


@dataclass(slots=True)
class _Candidate:
    pairs: dict[str, _Pairs]
    rewards: deque[float]
    since_check: int = 0


@dataclass(frozen=True, slots=True)
class ReleaseVerdict:
    """``kind`` is ``"promote"`` or ``"rollback"``; ``evidence`` says why."""

    kind: str
    reason: str
    evidence: dict[str, Any]


class DarkLaunch:
    """The paired evidence of each dark candidate, and the verdict it supports."""

    def __init__(self, params: ReleaseParams, confidence: float) -> None:
        self.params = params
        self.confidence = confidence
        self._candidates: dict[str, _Candidate] = {}

    def add(self, name: str) -> None:
        self._candidates[name] = _Candidate({}, deque(maxlen=self.params.carry))

    def forget(self, name: str) -> None:
        self._candidates.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._candidates

    def carried(self, name: str) -> list[float]:
        """The candidate's last ``carry`` shadow rewards, oldest first."""
        return list(self._candidates[name].rewards)

    def paired(self, name: str) -> int:
        """The fewest paired rewards the candidate has with any live version."""
        pairs = self._candidates[name].pairs
        return min((p.n for p in pairs.values()), default=0)

    def observe(self, rewards: Mapping[str, float], live: Iterable[str]
                ) -> list[tuple[str, ReleaseVerdict]]:
        """One labelled request's rewards (version -> reward, served and shadow); returns
        the verdicts due for the candidates it scored."""
        live = list(live)
        verdicts = []
        for name, candidate in self._candidates.items():
            mine = rewards.get(name)
            if mine is None:
                continue
            candidate.rewards.append(mine)
            for other in live:
                theirs = rewards.get(other)
                if theirs is not None:
                    pairs = candidate.pairs.get(other)
                    if pairs is None:
                        pairs = candidate.pairs[other] = _Pairs()
                    pairs.add(theirs - mine)
            candidate.since_check += 1
            if candidate.since_check >= self.params.check_every:
                candidate.since_check = 0
                verdict = self.verdict(name, live)
                if verdict is not None:
                    verdicts.append((name, verdict))
        return verdicts

    def verdict(self, name: str, live: Iterable[str]) -> ReleaseVerdict | None:
        """Promote, roll back, or None (not enough evidence either way yet)."""
        live = list(live)
        pairs = self._candidates[name].pairs
        if not live or any(pairs.get(v, _Pairs()).n < self.params.min_samples for v in live):
            return None
        error_level = (1.0 - self.confidence) / len(live)
        margin = self.params.margin
        bounds = {v: _interval(pairs[v], error_level) for v in live}
        worst = max(live, key=lambda v: bounds[v][0])  # the live version it trails most
        low, high = bounds[worst]
        best = max(live, key=lambda v: bounds[v][1])
        evidence = {
            "method": "paired confidence sequence", "margin": margin,
            "confidence": self.confidence, "error_level": error_level,
            "versus": {v: {"n": pairs[v].n, "mean_gap": pairs[v].total / pairs[v].n,
                           "cs_lower": bounds[v][0], "cs_upper": bounds[v][1]} for v in live},
        }
        if low > margin:
            return ReleaseVerdict("rollback", (
                f"dark release {name} is worse than {worst} by more than {margin:g} on the same "
                f"{pairs[worst].n} labelled requests (gap {pairs[worst].total / pairs[worst].n:.4f}"
                f", {1 - error_level:.4g} confidence sequence [{low:.4f}, {high:.4f}])"), evidence)
        if all(bounds[v][1] < margin for v in live):
            b_low, b_high = bounds[best]
            return ReleaseVerdict("promote", (
                f"dark release {name} is not worse than {best} (the best live version) by "
                f"{margin:g} on the same {pairs[best].n} labelled requests (gap "
                f"{pairs[best].total / pairs[best].n:.4f}, {1 - error_level:.4g} confidence "
                f"sequence [{b_low:.4f}, {b_high:.4f}])"), evidence)
        return None

    def state(self) -> dict[str, Any]:
        return {name: {"pairs": {v: [p.n, p.total, p.total_sq] for v, p in c.pairs.items()},
                       "rewards": list(c.rewards), "since_check": c.since_check}
                for name, c in self._candidates.items()}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore candidates named in ``state`` that are candidates here too."""
        for name, saved in state.items():
            if name in self._candidates:
                candidate = self._candidates[name]
                candidate.pairs = {str(v): _Pairs(int(n), float(t), float(sq))
                                   for v, (n, t, sq) in saved["pairs"].items()}
                candidate.rewards.extend(float(r) for r in saved["rewards"])
                candidate.since_check = int(saved["since_check"])


def _interval(pairs: _Pairs, error_level: float) -> tuple[float, float]:
    """Anytime-valid interval for the mean paired difference (plug-in variance, regularised
    by one pseudo-observation of variance 1, the largest a difference in [-1, 1] can have,
    so that identical predictions so far do not make it infinitely sure)."""
    n, mean = pairs.n, pairs.total / pairs.n
    squares = max(pairs.total_sq - pairs.total * mean, 0.0)
    variance = (squares + 1.0) / n
    information = n / variance
    radius = normal_mixture_radius(information, error_level, tuned_for=_TUNED_FOR)
    if math.isnan(radius):
        return -math.inf, math.inf
    return mean - radius, mean + radius


# Where the boundary is tightest, in intrinsic time (information = n / variance of d), fixed
# in advance as the mixture requires: ~2,000 paired rewards of versions disagreeing on ~5 %.
_TUNED_FOR = 40_000.0
