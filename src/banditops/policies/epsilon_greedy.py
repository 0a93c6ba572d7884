"""Epsilon-greedy: serve the best arm so far, explore a uniformly random arm with chance epsilon."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from banditops.policies.base import ColdStart, Policy, check_number, check_window, set_checked
from banditops.rewards import validate_reward


@dataclass(frozen=True, slots=True)
class EpsilonGreedyParams:
    """Parameters of :class:`EpsilonGreedy` (documented there), validated on creation.

    >>> EpsilonGreedyParams(epsilon=2)
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidParameterError: epsilon must be in [0.0, 1.0], got 2.0
    """

    epsilon: float = 0.1
    decay: float | None = None
    prior_weight: float = 0.0
    cold_start_retry: int = 100

    def __post_init__(self) -> None:
        set_checked(self, "epsilon", check_number("epsilon", self.epsilon, low=0.0, high=1.0))
        if self.decay is not None:
            set_checked(self, "decay", check_number("decay", self.decay, low=0.0, high=1.0,
                                                    low_open=True))
        set_checked(self, "prior_weight",
                    check_number("prior_weight", self.prior_weight, low=0.0, high=1e9))
        check_window("cold_start_retry", self.cold_start_retry)


_DEFAULTS = EpsilonGreedyParams()


class EpsilonGreedy(Policy):
    """Exploit the arm with the highest mean reward; with probability ``epsilon`` explore.

    Parameters
    ----------
    epsilon
        Exploration probability in [0, 1].
    decay
        Optional factor in (0, 1]: after ``t`` served rewards (``update`` calls), epsilon
        is ``epsilon * decay**t``.
    prior_weight
        Cold start. 0 (default): an arm with no reward yet is served once, then every
        ``cold_start_retry`` decisions until its first reward arrives, and gets its share of
        exploration meanwhile. ``w > 0``: an arm with a validation score starts as if it had
        ``w`` rewards equal to that score, and takes part in the greedy choice right away.

    Ties in the greedy choice stay with the arm that led first.

    Side observations (:meth:`observe`, a shadow prediction's reward): the arm's count, sum
    and mean grow exactly as in :meth:`update`. Epsilon-greedy keeps one count per arm, the
    sample size of its mean; it has no pull count of its own, so an observation counts in
    the mean like a served reward. It clears the arm's cold start (a reward arrived). It does
    not decay epsilon: ``decay`` counts served rewards, so the exploration schedule of the
    served traffic is the same with or without shadow scoring. No random number is drawn.

    >>> p = EpsilonGreedy(epsilon=0.0, seed=1)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> p.update("a", 0.2); p.update("b", 0.9)
    >>> p.select()
    'b'
    """

    key = "epsilon-greedy"
    Params: ClassVar[type] = EpsilonGreedyParams

    def __init__(self, epsilon: float = _DEFAULTS.epsilon, decay: float | None = _DEFAULTS.decay,
                 *, prior_weight: float = _DEFAULTS.prior_weight,
                 cold_start_retry: int = _DEFAULTS.cold_start_retry,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = p = EpsilonGreedyParams(epsilon, decay, prior_weight, cold_start_retry)
        self._cold = ColdStart(p.cold_start_retry)
        self._current_epsilon = p.epsilon
        self._stats: dict[str, list[float]] = {}  # name -> [count, sum, mean]; mean -inf untried
        self._names: list[str] = []
        self._best: str | None = None
        self._best_stats: list[float] = [0.0, 0.0, -math.inf]

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        self._stats[name] = [count, total, total / count if count else -math.inf]
        self._names.append(name)
        if not count:
            self._cold.add(name)
        self._rescan()

    def _on_remove(self, name: str) -> None:
        del self._stats[name]
        self._names.remove(name)
        self._cold.discard(name)
        self._rescan()

    def _rescan(self) -> None:
        stats = self._stats
        self._best = max(stats, key=lambda n: stats[n][2]) if stats else None
        self._best_stats = stats[self._best] if self._best else [0.0, 0.0, -math.inf]

    def select(self) -> str:
        cold = self._cold
        if cold.waiting and (due := cold.next_due()) is not None:
            return due
        best = self._best
        if best is None:
            self._require_any_arm()
        rng = self._rng
        if rng.random() < self._current_epsilon:
            names = self._names
            return names[int(rng.random() * len(names))]
        return best  # type: ignore[return-value]

    def choose(self) -> tuple[str, float]:
        due = self._cold.peek()
        name = self.select()
        if due is not None:
            return name, 1.0
        explore = self._current_epsilon / len(self._names)
        return name, explore + (1.0 - self._current_epsilon if name == self._best else 0.0)

    def update(self, name: str, reward: float) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)  # converts or raises; the line above is the fast path
        self._add(name, reward)
        decay = self.p.decay
        if decay is not None:
            self._current_epsilon *= decay

    def observe(self, name: str, reward: float) -> None:
        """As :meth:`update`, without decaying epsilon (see the class docstring)."""
        self._add(name, validate_reward(reward))

    def _add(self, name: str, reward: float) -> None:
        """One more reward in the arm's mean (served or observed); the best arm follows."""
        stats = self._stats.get(name)
        if stats is None:
            self._require_arm(name)
            return
        count = stats[0] = stats[0] + 1.0
        total = stats[1] = stats[1] + reward
        previous, stats[2] = stats[2], total / count
        if self._cold.waiting:
            self._cold.discard(name)
        if stats is self._best_stats:
            if stats[2] < previous:
                self._rescan()
        elif stats[2] > self._best_stats[2]:
            self._best, self._best_stats = name, stats

    def probabilities(self) -> dict[str, float]:
        return {name: self._probability(name) for name in self._names}

    def _probability(self, name: str) -> float:
        due = self._cold.peek()
        if due is not None:
            return 1.0 if name == due else 0.0
        explore = self._current_epsilon / len(self._names)
        return explore + (1.0 - self._current_epsilon if name == self._best else 0.0)

    def propensity(self, name: str) -> float:
        if name not in self._stats:
            self._require_arm(name)
        return self._probability(name)

    def _stats_state(self) -> dict[str, Any]:
        return {"counts": {n: v[0] for n, v in self._stats.items()},
                "sums": {n: v[1] for n, v in self._stats.items()},
                "cold_start": self._cold.state(), "best": self._best,
                "current_epsilon": self._current_epsilon}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            count, total = float(stats["counts"][name]), float(stats["sums"][name])
            self._stats[name] = [count, total, total / count if count else -math.inf]
        self._cold.load(stats["cold_start"], self._arms)
        if stats["best"] in self._arms:  # ties: keep the leader the saved policy had
            self._best, self._best_stats = stats["best"], self._stats[stats["best"]]
        self._current_epsilon = check_number("current_epsilon", stats["current_epsilon"],
                                             low=0.0, high=1.0)
