"""A/B testing: a champion serves; each new arm is tested against it, one test at a time.

The study's third traditional strategy. When a challenger arrives, traffic is split between
champion and challenger until each has ``min_samples`` rewards; a two-sided test at level
``alpha`` then promotes the challenger only if it is significantly better. Binary rewards use
the two-proportion z-test (statsmodels), others Welch's t-test (scipy). Challengers that
arrive during a test wait in a queue, oldest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from banditops.errors import InvalidParameterError
from banditops.policies.base import Policy, check_number, check_window, set_checked
from banditops.rewards import validate_reward

TESTS = ("auto", "z", "welch")


@dataclass(frozen=True, slots=True)
class ABTestParams:
    """Parameters of :class:`ABTest` (documented there), validated on creation."""

    min_samples: int = 1000
    alpha: float = 0.05
    split: float = 0.5
    test: str = "auto"

    def __post_init__(self) -> None:
        check_window("min_samples", self.min_samples)
        set_checked(self, "alpha", check_number("alpha", self.alpha, low=0.0, high=1.0,
                                                low_open=True, high_open=True))
        set_checked(self, "split", check_number("split", self.split, low=0.0, high=1.0,
                                                low_open=True, high_open=True))
        if self.test not in TESTS:
            raise InvalidParameterError(f"test must be one of {TESTS}, got {self.test!r}")


_DEFAULTS = ABTestParams()


@dataclass(slots=True)
class _Sample:
    """Running sums of one arm's rewards during a test."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    binary: bool = True

    def add(self, reward: float) -> None:
        self.n += 1
        self.total += reward
        self.total_sq += reward * reward
        if reward != 0.0 and reward != 1.0:
            self.binary = False

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        if self.n < 2:
            return math.nan
        variance = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return math.sqrt(max(variance, 0.0))


def two_sided_p_value(champion: _Sample, challenger: _Sample, test: str) -> tuple[str, float]:
    """(test used, two-sided p-value) for "the two arms have the same mean reward".

    A degenerate comparison (no variance at all, e.g. both arms always 1) gives NaN, which
    never counts as significant.
    """
    use_z = test == "z" or (test == "auto" and champion.binary and challenger.binary)
    if use_z:
        from statsmodels.stats.proportion import proportions_ztest

        counts = [round(challenger.total), round(champion.total)]
        if counts[0] + counts[1] in (0, challenger.n + champion.n):
            return "z", math.nan
        _, p_value = proportions_ztest(counts, [challenger.n, champion.n])
        return "z", float(p_value)
    from scipy.stats import ttest_ind_from_stats

    if champion.std == 0.0 and challenger.std == 0.0:
        return "welch", math.nan
    result = ttest_ind_from_stats(challenger.mean, challenger.std, challenger.n,
                                  champion.mean, champion.std, champion.n, equal_var=False)
    return "welch", float(result.pvalue)


class ABTest(Policy):
    """Champion/challenger testing with a fixed split and a fixed sample size per arm.

    Parameters
    ----------
    min_samples
        Rewards each of champion and challenger needs before the test is run.
    alpha
        Significance level of the two-sided test.
    split
        Share of traffic the challenger gets during a test, in (0, 1).
    test
        ``"auto"`` (z-test when every reward in the test was 0 or 1, else Welch), ``"z"``
        or ``"welch"``.

    The first arm added is the champion. Outside a test the champion takes all traffic;
    arms that lost their test get none. If the champion is removed during a test, the
    challenger takes over; otherwise the remaining arm with the best mean in its last test
    (then the newest) does. Each concluded test is reported by :meth:`take_notices`.

    Side observations (:meth:`observe`, shadow rewards) are taken exactly as :meth:`update`:
    an observation of the champion or challenger joins its test sample (and may conclude the
    test); other arms' are validated and ignored. The test then compares all rewards of each
    arm, served or shadow, and ``min_samples`` is reached sooner. Under full shadow scoring
    both samples score the same requests, so they are paired rather than independent; the
    unpaired test stays valid but is conservative (it ignores the positive correlation).

    >>> p = ABTest(min_samples=2, seed=0)
    >>> p.add_arm("v1"); p.add_arm("v2")
    >>> p.probabilities()
    {'v1': 0.5, 'v2': 0.5}
    """

    key = "ab-test"
    Params: ClassVar[type] = ABTestParams

    def __init__(self, min_samples: int = _DEFAULTS.min_samples, alpha: float = _DEFAULTS.alpha,
                 split: float = _DEFAULTS.split, test: str = _DEFAULTS.test, *,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = ABTestParams(min_samples, alpha, split, test)
        self._champion: str | None = None
        self._challenger: str | None = None
        self._queue: list[str] = []
        self._samples: dict[str, _Sample] = {}
        self._last_means: dict[str, float] = {}
        self._notices: list[dict[str, Any]] = []

    @property
    def champion(self) -> str | None:
        return self._champion

    @property
    def challenger(self) -> str | None:
        return self._challenger

    def _on_add(self, name: str) -> None:
        if self._champion is None:
            self._champion = name
        else:
            self._queue.append(name)
            self._start_next_test()

    def _start_next_test(self) -> None:
        if self._challenger is None and self._queue and self._champion is not None:
            self._challenger = self._queue.pop(0)
            self._samples = {self._champion: _Sample(), self._challenger: _Sample()}

    def _end_test(self) -> None:
        self._challenger = None
        self._samples = {}
        self._start_next_test()

    def _on_remove(self, name: str) -> None:
        if name in self._queue:
            self._queue.remove(name)
        self._last_means.pop(name, None)
        if name == self._challenger:
            self._notices.append({"kind": "ab_test_abandoned", "challenger": name,
                                  "champion": self._champion, "reason": "challenger removed"})
            self._end_test()
        elif name == self._champion:
            if self._challenger is not None:
                new = self._challenger
                reason = "champion removed during the test; the challenger takes over untested"
                self._challenger, self._samples = None, {}
            else:
                new = self._fallback_champion()
                reason = "champion removed; best remaining arm by its last test"
            self._champion = new
            if new in self._queue:
                self._queue.remove(new)
            self._notices.append({"kind": "champion_replaced", "removed": name,
                                  "champion": new, "reason": reason})
            self._start_next_test()

    def _fallback_champion(self) -> str | None:
        candidates = [n for n in self._arms if n not in self._queue] or list(self._arms)
        if not candidates:
            return None
        return max(candidates, key=lambda n: (n in self._last_means, self._last_means.get(n, 0.0),
                                              self._arms[n].released_at, self._arms[n].order))

    def select(self) -> str:
        champion = self._champion
        if champion is None:
            self._require_any_arm()
        if self._challenger is not None and self._rng.random() < self.p.split:
            return self._challenger
        return champion  # type: ignore[return-value]

    def update(self, name: str, reward: float) -> None:
        reward = validate_reward(reward)
        self._require_arm(name)
        sample = self._samples.get(name)
        if sample is None:
            return  # outside a test, rewards do not move traffic
        sample.add(reward)
        champion, challenger = self._samples[self._champion], self._samples[self._challenger]
        min_samples = self.p.min_samples
        if champion.n >= min_samples and challenger.n >= min_samples:
            self._conclude(champion, challenger)

    def observe(self, name: str, reward: float) -> None:
        """Exactly :meth:`update` (see the class docstring)."""
        self.update(name, reward)

    def _conclude(self, champion: _Sample, challenger: _Sample) -> None:
        test, p_value = two_sided_p_value(champion, challenger, self.p.test)
        promoted = bool(p_value < self.p.alpha and challenger.mean > champion.mean)
        old, new = self._champion, self._challenger
        self._last_means[old] = champion.mean  # type: ignore[index]
        self._last_means[new] = challenger.mean  # type: ignore[index]
        self._notices.append({
            "kind": "ab_test_concluded", "champion": old, "challenger": new,
            "promoted": promoted, "test": test, "p_value": p_value, "alpha": self.p.alpha,
            "champion_mean": champion.mean, "challenger_mean": challenger.mean,
            "champion_n": champion.n, "challenger_n": challenger.n,
        })
        if promoted:
            self._champion = new
        self._end_test()

    def probabilities(self) -> dict[str, float]:
        shares = dict.fromkeys(self._arms, 0.0)
        if self._champion is not None:
            shares[self._champion] = 1.0
            if self._challenger is not None:
                shares[self._champion] = 1.0 - self.p.split
                shares[self._challenger] = self.p.split
        return shares

    def propensity(self, name: str) -> float:
        self._require_arm(name)
        if self._challenger is None:
            return 1.0 if name == self._champion else 0.0
        split = self.p.split
        if name == self._challenger:
            return split
        return 1.0 - split if name == self._champion else 0.0

    def choose(self) -> tuple[str, float]:
        name = self.select()  # select only draws a random number: the shares stand
        return name, self.propensity(name)

    def take_notices(self) -> list[dict[str, Any]]:
        notices, self._notices = self._notices, []
        return notices

    def _stats_state(self) -> dict[str, Any]:
        return {
            "champion": self._champion, "challenger": self._challenger, "queue": list(self._queue),
            "samples": {n: [s.n, s.total, s.total_sq, s.binary] for n, s in self._samples.items()},
            "last_means": dict(self._last_means), "notices": list(self._notices),
        }

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._champion = stats["champion"]
        self._challenger = stats["challenger"]
        self._queue = [str(n) for n in stats["queue"]]
        self._samples = {n: _Sample(int(v[0]), float(v[1]), float(v[2]), bool(v[3]))
                         for n, v in stats["samples"].items()}
        self._last_means = {n: float(v) for n, v in stats["last_means"].items()}
        self._notices = list(stats["notices"])
