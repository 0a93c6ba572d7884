"""Guardrails: decide when a live version is rolled back, and record why.

A version is rolled back when its recent production reward is significantly below the best
live version's, by more than ``margin``. The semantics follow Flagger / Argo Rollouts:

- no data is never a pass: a version with fewer than ``min_samples`` recent rewards gets no
  verdict (it is neither cleared nor rolled back), and neither does a comparison against a
  best version that lacks data;
- NaN never counts as 0: rewards are validated before they get here, and a statistic that
  cannot be computed gives no verdict;
- the best live version is never rolled back, so the last live version never is;
- every rollback carries its evidence (counts, means, p-value or posterior probability).

Checks run every ``check_every`` rewards. The default, ``method="sequential"``, is an
anytime-valid confidence sequence whose level holds however often it looks (see
:func:`normal_mixture_radius` and :class:`Guardrail`; ``benchmarks/guardrail_aa.py`` measures
it). ``method="welch"`` and ``"bayes"`` are fixed-sample tests, kept as options: repeated every
``check_every`` rewards their error level does not hold (issue 9: 70 % false rollbacks of
identical versions at margin 0 over 20,000 rewards), but they react faster to a drop after a
long good run (a window instead of everything since release). Each check compares k - 1
versions with the best,
so the error level is Bonferroni-corrected (``(1 - confidence) / (k - 1)`` per comparison).
Repeated checks are still sequential tests, and the best is picked after looking (winner's
curse): ``confidence`` stays high (default 0.99) and ``margin`` (default 0.05) keeps
near-equal versions out of the guardrail's hands: the policy routes around a slightly worse
version anyway; the guardrail is for clearly bad ones.

The parameters are one frozen, validated :class:`GuardrailParams`; the service's config
section derives its defaults from it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.special import ndtr, stdtr

from banditops.errors import InvalidParameterError
from banditops.policies.base import check_number, check_window, set_checked

METHODS = ("welch", "bayes", "sequential")
JUDGEMENTS = ("not judged yet", "ok", "worse")


@dataclass(frozen=True, slots=True)
class GuardrailParams:
    """The guardrail's parameters (documented in :class:`Guardrail`), validated on creation.

    >>> GuardrailParams(min_samples=2000)
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidParameterError: window (1000) must be at least min_samples (2000)
    """

    confidence: float = 0.99
    min_samples: int = 200
    margin: float = 0.05
    method: str = "sequential"
    window: int | None = 1000
    check_every: int = 10

    def __post_init__(self) -> None:
        set_checked(self, "confidence", check_number(
            "confidence", self.confidence, low=0.5, high=1.0, low_open=True, high_open=True))
        check_window("min_samples", self.min_samples)
        if self.min_samples < 2:
            raise InvalidParameterError(
                f"min_samples must be at least 2 (a variance needs two), got {self.min_samples}")
        set_checked(self, "margin", check_number("margin", self.margin, low=0.0, high=1.0))
        if self.method not in METHODS:
            raise InvalidParameterError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.window is not None:
            check_window("window", self.window)
            if self.window < self.min_samples:
                raise InvalidParameterError(
                    f"window ({self.window}) must be at least min_samples ({self.min_samples})")
        check_window("check_every", self.check_every)


_DEFAULTS = GuardrailParams()


@dataclass(frozen=True, slots=True)
class Rollback:
    """A guardrail's verdict that ``version`` must stop serving."""

    version: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Window:
    """The last ``size`` rewards of one version, with running sums (``size == 0``: none kept).

    ``n_all``, ``total_all`` and ``total_sq_all`` count every reward since the window was
    created (the version's (re)registration): the sequential method uses those.
    """

    size: int | None
    rewards: deque[float] = field(default_factory=deque)
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    n_all: int = 0
    total_all: float = 0.0
    total_sq_all: float = 0.0

    def add(self, reward: float) -> None:
        self.n_all += 1
        self.total_all += reward
        self.total_sq_all += reward * reward
        self.rewards.append(reward)
        self.n += 1
        self.total += reward
        self.total_sq += reward * reward
        if self.size is not None and self.n > self.size:
            old = self.rewards.popleft()
            self.n -= 1
            self.total -= old
            self.total_sq -= old * old

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """Unbiased sample variance (needs n >= 2)."""
        return max((self.total_sq - self.total * self.total / self.n) / (self.n - 1), 0.0)


@dataclass(slots=True)
class _Bettor:
    """A betting e-process against "``worse`` trails ``better`` by at most margin, always".

    Each increment is ``x = mean(better's new rewards) - mean(worse's new rewards) - margin``
    over the rewards both got since the last increment (a check where both got some). Under
    that null every increment has mean <= 0 *whatever the means do over time*, so the wealth
    ``prod(1 + bet * x)`` is a nonnegative supermartingale for any bet chosen from the past
    (Ville's inequality: it reaches 1/alpha with probability <= alpha). The bet follows the
    last ``_BET_WINDOW`` increments (a Kelly-style plug-in, Waudby-Smith & Ramdas 2024,
    "Estimating means of bounded random variables by betting", JRSS-B 86(1)), so evidence
    builds from the recent rewards: a drop after a long good run is caught as fast as one
    right after release, which a confidence sequence over everything since release is not.
    """

    better_mark: tuple[int, float]  # (count, sum) of ``better``'s rewards at the last increment
    worse_mark: tuple[int, float]
    recent: deque[float] = field(default_factory=deque)
    total: float = 0.0
    total_sq: float = 0.0
    log_wealth: float = 0.0

    def advance(self, better: _Window, worse: _Window, margin: float) -> None:
        """Add one increment if both versions got rewards since the last one."""
        n_b, n_w = better.n_all - self.better_mark[0], worse.n_all - self.worse_mark[0]
        if n_b <= 0 or n_w <= 0:
            return
        x = ((better.total_all - self.better_mark[1]) / n_b
             - (worse.total_all - self.worse_mark[1]) / n_w - margin)
        self.better_mark = (better.n_all, better.total_all)
        self.worse_mark = (worse.n_all, worse.total_all)
        self.log_wealth += math.log1p(_bet(len(self.recent), self.total, self.total_sq,
                                           margin) * x)
        self.recent.append(x)
        self.total += x
        self.total_sq += x * x
        if len(self.recent) > _BET_WINDOW:
            old = self.recent.popleft()
            self.total -= old
            self.total_sq -= old * old


# Increments the bet is sized from (about 1,000 rewards per version at the defaults), and how
# many it needs before it bets at all.
_BET_WINDOW = 200
_BET_WARMUP = 20


def _bet(n: int, total: float, total_sq: float, margin: float) -> float:
    """The fraction of wealth bet on the next increment: mean / (variance + mean^2) of the
    recent increments (the growth-optimal bet for small edges), never negative (a bet
    against the null only), at most 0.5 / (1 + margin) so one increment, at least
    -(1 + margin), never costs more than half the wealth."""
    if n < _BET_WARMUP:
        return 0.0
    mean = total / n
    if mean <= 0.0:
        return 0.0
    second = max(total_sq / n, mean * mean)  # variance + mean^2
    return min(mean / second, 0.5 / (1.0 + margin))


class Guardrail:
    """Roll back a live version whose reward is significantly below the best live version's.

    Parameters
    ----------
    confidence
        Required confidence that the version is worse, in (0.5, 1).
    min_samples
        Recent rewards a version (and the best) needs before it can be judged.
    margin
        How much worse than the best (in reward units) counts as degraded.
    method
        ``"sequential"`` (default, see below), ``"welch"`` or ``"bayes"``.
        ``"welch"``: one-sided Welch t-test, rolls back when p < 1 - confidence.
        ``"bayes"``: posterior probability, under Beta(1 + successes, 1 + failures)
        posteriors (normal approximation), that the version's mean is below the best's
        minus margin; rolls back when it exceeds ``confidence``.
        ``"sequential"``: anytime-valid, two tests at half the error level each, and a
        rollback when either is sure. (1) A confidence sequence for (best mean - version
        mean) over everything since release, from the two-sided normal-mixture boundary
        (:func:`normal_mixture_radius`): it rolls back when the sequence lies entirely above
        ``margin``; fastest for a version bad from the start. (2) A betting e-process per
        ordered pair of versions (:class:`_Bettor`) that bets on the recent rewards: it rolls
        back when the wealth bet on "the version trails the best by more than ``margin``"
        reaches 4 / error level (2 for the half, 2 for the two directions of a pair); its
        null is "never worse by more than margin", however the means drift, so it catches a
        drop after a long good run as fast as one at release. Both levels hold however often
        they are checked (the confidence sequence asymptotically: plug-in variances). For two
        versions this also covers picking the best after looking; for more, the Bonferroni
        split is over the k - 1 comparisons with the best, as for the other methods.
    window
        Only the last ``window`` rewards of each version count (None: all since release),
        so a version that degrades after a long good run is caught. **Ignored by
        ``"sequential"``**: a sliding window is a new sample at every step (a test repeated on
        it spends the error level again at every step); its betting e-process plays that part.
    check_every
        Run the check every this many rewards (amortises its cost).

    >>> g = Guardrail(min_samples=50, check_every=1)
    >>> for i in range(200):
    ...     _ = g.observe("good", 1.0 if i % 10 else 0.0, ["good", "bad"])
    ...     verdicts = g.observe("bad", 1.0 if i % 2 else 0.0, ["good", "bad"])
    ...     if verdicts: break
    >>> i + 1, verdicts[0].version  # judged within a few rewards of min_samples
    (55, 'bad')
    """

    def __init__(self, confidence: float = _DEFAULTS.confidence,
                 min_samples: int = _DEFAULTS.min_samples, margin: float = _DEFAULTS.margin,
                 method: str = _DEFAULTS.method, window: int | None = _DEFAULTS.window,
                 check_every: int = _DEFAULTS.check_every) -> None:
        self.p = GuardrailParams(confidence, min_samples, margin, method, window, check_every)
        self._windows: dict[str, _Window] = {}
        self._since_check = 0
        self._bettors: dict[tuple[str, str], _Bettor] = {}  # (better, worse): sequential only

    def _new_window(self) -> _Window:
        # The sequential method keeps no reward list: only its running totals since release.
        return _Window(0 if self.p.method == "sequential" else self.p.window)

    def _stats(self, window: _Window) -> tuple[int, float, float]:
        """(count, sum, sum of squares) of the rewards this method judges on."""
        if self.p.method == "sequential":
            return window.n_all, window.total_all, window.total_sq_all
        return window.n, window.total, window.total_sq

    @classmethod
    def from_params(cls, params: GuardrailParams) -> Guardrail:
        """A guardrail with these (already validated) parameters."""
        if not isinstance(params, GuardrailParams):
            raise InvalidParameterError(
                f"Guardrail.from_params needs GuardrailParams, got {type(params).__name__}")
        return cls(**asdict(params))

    # Read-only views of the parameters: ``self.p`` is the one source.
    @property
    def confidence(self) -> float:
        return self.p.confidence

    @property
    def min_samples(self) -> int:
        return self.p.min_samples

    @property
    def margin(self) -> float:
        return self.p.margin

    @property
    def method(self) -> str:
        return self.p.method

    @property
    def window(self) -> int | None:
        return self.p.window

    @property
    def check_every(self) -> int:
        return self.p.check_every

    def params(self) -> dict[str, Any]:
        """The parameters as plain, JSON-safe data."""
        return asdict(self.p)

    def observe(self, version: str, reward: float, live: Iterable[str]) -> list[Rollback]:
        """Record a (validated) reward; every ``check_every`` calls, check the live versions."""
        window = self._windows.get(version)
        if window is None:
            window = self._windows[version] = self._new_window()
        window.add(reward)
        self._since_check += 1
        if self._since_check < self.p.check_every:
            return []
        self._since_check = 0
        return self.check(live)

    def samples(self, version: str) -> int:
        """The rewards ``version`` is judged on now (since its (re)start; the last ``window``
        for welch and bayes): it needs ``min_samples`` of them for a verdict."""
        window = self._windows.get(version)
        return 0 if window is None else self._stats(window)[0]

    def forget(self, version: str) -> None:
        """Drop a version's rewards (it was rolled back, retired or re-registered)."""
        self._windows.pop(version, None)
        for pair in [pair for pair in self._bettors if version in pair]:
            del self._bettors[pair]

    def _advance_bettors(self, live: list[str]) -> None:
        """One increment for each ordered pair of live versions that both got rewards."""
        windows = [(name, w) for name in live if (w := self._windows.get(name)) is not None]
        for better, better_window in windows:
            for worse, worse_window in windows:
                if better == worse:
                    continue
                bettor = self._bettors.get((better, worse))
                if bettor is None:  # starts from now: marks at the current totals
                    self._bettors[better, worse] = _Bettor(
                        (better_window.n_all, better_window.total_all),
                        (worse_window.n_all, worse_window.total_all))
                else:
                    bettor.advance(better_window, worse_window, self.p.margin)

    def _judged(self, live: Iterable[str]) -> list[tuple[str, _Window]]:
        return [(name, w) for name in live
                if (w := self._windows.get(name)) is not None
                and self._stats(w)[0] >= self.min_samples]

    def _best(self, judged: list[tuple[str, _Window]]) -> tuple[str, _Window]:
        return max(judged, key=lambda item: _mean(self._stats(item[1])))

    def judgement(self, version: str, live: Iterable[str] | None = None) -> str:
        """``"not judged yet"``, ``"ok"`` or ``"worse"``: this method's verdict on ``version`` now.

        ``live`` defaults to every version the guardrail holds rewards of. ``"not judged
        yet"``: the version has fewer than ``min_samples`` rewards, or no other version has
        enough to be compared with (a best with too few rewards). A version alone in ``live``
        with enough rewards is ``"ok"`` (the last live version is never rolled back).
        ``"worse"`` is exactly what :meth:`check` would roll back now.
        """
        names = list(self._windows) if live is None else list(live)
        if version not in names:
            names.append(version)
        judged = self._judged(names)
        if version not in {name for name, _ in judged}:
            return "not judged yet"
        if len(judged) < 2:
            return "ok" if names == [version] else "not judged yet"
        best_name, best = self._best(judged)
        if best_name == version:
            return "ok"
        error_level = (1.0 - self.confidence) / (len(judged) - 1)
        evidence = self._compare(self._windows[version], best, error_level,
                                 (best_name, version))
        return "worse" if evidence is not None and evidence["rollback"] else "ok"

    def check(self, live: Iterable[str]) -> list[Rollback]:
        """Verdicts for the live versions now; at most all but the best are rolled back.

        (For ``"sequential"`` a check also moves its betting e-processes one increment on.)"""
        live = list(live)
        if self.p.method == "sequential":
            self._advance_bettors(live)
        judged = self._judged(live)
        if len(judged) < 2:
            return []
        best_name, best = self._best(judged)
        error_level = (1.0 - self.confidence) / (len(judged) - 1)  # Bonferroni over comparisons
        verdicts = []
        for name, window in judged:
            if name == best_name:
                continue
            evidence = self._compare(window, best, error_level, (best_name, name))
            if evidence is None:
                continue
            evidence.update(best_version=best_name)
            if evidence["rollback"]:
                del evidence["rollback"]
                verdicts.append(Rollback(name, self._reason(name, best_name, evidence), evidence))
        return verdicts

    def _compare(self, window: _Window, best: _Window, error_level: float,
                 pair: tuple[str, str]) -> dict[str, Any] | None:
        """Evidence that ``window``'s mean is below ``best``'s minus margin, or None."""
        n_v, total_v, total_sq_v = self._stats(window)
        n_b, total_b, total_sq_b = self._stats(best)
        mean_v, mean_b = total_v / n_v, total_b / n_b
        gap = mean_v - (mean_b - self.margin)
        evidence: dict[str, Any] = {
            "method": self.method, "n": n_v, "mean": mean_v,
            "best_n": n_b, "best_mean": mean_b, "margin": self.margin,
            "confidence": self.confidence, "error_level": error_level,
        }
        if self.method == "sequential":
            # Regularised plug-in variances (a pseudo-observation of variance 1/4, the
            # largest in [0, 1]) so that a version with constant rewards is not infinitely sure.
            var_v = (_squares(n_v, total_v, total_sq_v) + 0.25) / n_v
            var_b = (_squares(n_b, total_b, total_sq_b) + 0.25) / n_b
            information = 1.0 / (var_v / n_v + var_b / n_b)
            radius = normal_mixture_radius(information, error_level / 2.0,
                                           tuned_for=_SEQUENTIAL_TUNING * self.min_samples)
            lower = mean_b - mean_v - radius
            bettor = self._bettors.get(pair)
            log_wealth = bettor.log_wealth if bettor is not None else 0.0
            if math.isnan(lower) or math.isnan(log_wealth):
                return None
            evidence["cs_lower"] = lower
            evidence["cs_upper"] = mean_b - mean_v + radius
            evidence["e_value"] = math.exp(min(log_wealth, 700.0))
            evidence["e_threshold"] = 4.0 / error_level
            evidence["rollback"] = (lower > self.margin
                                    or log_wealth >= math.log(4.0 / error_level))
        elif self.method == "welch":
            var_v, var_b = window.variance / window.n, best.variance / best.n
            se2 = var_v + var_b
            if se2 == 0.0:  # no spread at all: the gap is exact
                p_value = 0.0 if gap < 0.0 else 1.0
            else:
                df = se2 * se2 / (var_v * var_v / (window.n - 1) + var_b * var_b / (best.n - 1))
                p_value = float(stdtr(df, gap / math.sqrt(se2)))
            if math.isnan(p_value):
                return None
            evidence["p_value"] = p_value
            evidence["rollback"] = p_value < error_level
        else:
            mean_v, var_v = _beta_moments(window)
            mean_b, var_b = _beta_moments(best)
            probability = float(ndtr((mean_b - self.margin - mean_v) / math.sqrt(var_v + var_b)))
            if math.isnan(probability):
                return None
            evidence["probability"] = probability
            evidence["rollback"] = probability > 1.0 - error_level
        return evidence

    def _reason(self, name: str, best: str, evidence: dict[str, Any]) -> str:
        if "cs_lower" in evidence:
            stat = (f"{1 - evidence['error_level'] / 2:.4g} confidence sequence for the gap "
                    f"[{evidence['cs_lower']:.3f}, {evidence['cs_upper']:.3f}], e-value of "
                    f"the recent rewards {evidence['e_value']:.3g} (threshold "
                    f"{evidence['e_threshold']:.3g})")
        elif "p_value" in evidence:
            stat = f"p = {evidence['p_value']:.2g}"
        else:
            stat = f"P(worse) = {evidence['probability']:.3f}"
        over = "rewards since release" if self.method == "sequential" else "rewards"
        return (f"{name} reward {evidence['mean']:.3f} over its {evidence['n']} {over} is "
                f"below {best}'s {evidence['best_mean']:.3f} by more than {self.margin:g} "
                f"({stat}, confidence {self.confidence:g})")

    def state(self) -> dict[str, Any]:
        state = {"params": self.params(), "since_check": self._since_check,
                 "windows": {name: list(w.rewards) for name, w in self._windows.items()}}
        if self.p.method == "sequential":
            state["totals"] = {name: [w.n_all, w.total_all, w.total_sq_all]
                               for name, w in self._windows.items()}
            state["bettors"] = [[better, worse, list(b.better_mark), list(b.worse_mark),
                                 b.log_wealth, list(b.recent), b.total, b.total_sq]
                                for (better, worse), b in self._bettors.items()]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Guardrail:
        guardrail = cls.from_params(GuardrailParams(**state["params"]))
        guardrail._since_check = int(state["since_check"])
        for name, rewards in state["windows"].items():
            window = guardrail._windows[name] = guardrail._new_window()
            for reward in rewards:
                window.add(float(reward))
        for name, (n, total, total_sq) in state.get("totals", {}).items():
            window = guardrail._windows.setdefault(name, guardrail._new_window())
            window.n_all, window.total_all, window.total_sq_all = int(n), total, total_sq
        for better, worse, better_mark, worse_mark, log_wealth, recent, total, total_sq in \
                state.get("bettors", []):
            guardrail._bettors[str(better), str(worse)] = _Bettor(
                (int(better_mark[0]), float(better_mark[1])),
                (int(worse_mark[0]), float(worse_mark[1])), deque(float(x) for x in recent),
                float(total), float(total_sq), float(log_wealth))
        return guardrail


# The sequential boundary is tightest at an intrinsic time (information) of this many times
# min_samples: with the defaults about 4,000, i.e. ~1,000 rewards per version at Bernoulli(0.85).
_SEQUENTIAL_TUNING = 20


def normal_mixture_radius(information: float, alpha: float, tuned_for: float) -> float:
    """Half-width of a time-uniform (1 - alpha) confidence sequence for a mean difference.

    The two-sided normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021),
    "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2)
    (Robbins' mixture of Gaussian likelihood ratios, mixing variance ``rho2``): with
    ``S = information * (estimate - truth)`` behaving as a Brownian motion in intrinsic time
    ``information`` (inverse variance of the estimate), ``|S| < sqrt((I + 1/rho2) *
    (2 log(1/alpha) + log(1 + rho2 I)))`` for all I at once with probability >= 1 - alpha
    (Ville's inequality). With plug-in variances this is the asymptotic confidence sequence
    of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024), "Time-uniform central limit
    theory and asymptotic confidence sequences", Ann. Statist.: valid as the counts grow,
    for a mean difference when each version's share of the rewards settles (shadow scoring:
    equal shares). ``rho2`` makes the boundary tightest at ``tuned_for`` (their rule).

    Written here because the one library, ``confseq`` (0.0.11, January 2023), ships only a
    source distribution of a C++ extension that needs a compiler and the Boost headers, and
    pulls matplotlib in: not a well-kept dependency for one closed-form line.

    >>> round(normal_mixture_radius(4000.0, 0.01, tuned_for=4000.0), 4)
    0.0565
    """
    log_term = 2.0 * math.log(1.0 / alpha)
    rho2 = (log_term + math.log(1.0 + log_term)) / tuned_for
    return math.sqrt((information + 1.0 / rho2)
                     * (log_term + math.log(1.0 + rho2 * information))) / information


def _mean(stats: tuple[int, float, float]) -> float:
    return stats[1] / stats[0]


def _squares(n: int, total: float, total_sq: float) -> float:
    """Sum of squared deviations from the mean (never negative)."""
    return max(total_sq - total * total / n, 0.0)


def _beta_moments(window: _Window) -> tuple[float, float]:
    """Mean and variance of Beta(1 + successes, 1 + failures) for a window of rewards."""
    a = 1.0 + window.total
    b = 1.0 + window.n - window.total
    total = a + b
    return a / total, a * b / (total * total * (total + 1.0))
