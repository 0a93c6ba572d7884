"""Epsilon-greedy: serve the best arm so far, explore a uniformly random arm with chance epsilon."""

from __future__ import annotations

import math
from typing import Any

from banditops.policies.base import ColdStart, Policy, check_number
from banditops.rewards import validate_reward


class EpsilonGreedy(Policy):
    """Exploit the arm with the highest mean reward; with probability ``epsilon`` explore.

    Parameters
    ----------
    epsilon
        Exploration probability in [0, 1].
    decay
        Optional factor in (0, 1]: after ``t`` rewards, epsilon is ``epsilon * decay**t``.
    prior_weight
        Cold start. 0 (default): an arm with no reward yet is served once, then every
        ``cold_start_retry`` decisions until its first reward arrives, and gets its share of
        exploration meanwhile. ``w > 0``: an arm with a validation score starts as if it had
        ``w`` rewards equal to that score, and takes part in the greedy choice right away.

    Ties in the greedy choice stay with the arm that led first.

    >>> p = EpsilonGreedy(epsilon=0.0, seed=1)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> p.update("a", 0.2); p.update("b", 0.9)
    >>> p.select()
    'b'
    """

    key = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.1, decay: float | None = None, *,
                 prior_weight: float = 0.0, cold_start_retry: int = 100,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._cold = ColdStart(cold_start_retry)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, high=1.0)
        self.decay = None if decay is None else check_number(
            "decay", decay, low=0.0, high=1.0, low_open=True)
        self.prior_weight = check_number("prior_weight", prior_weight, low=0.0, high=1e9)
        self._current_epsilon = self.epsilon
        self._counts: dict[str, float] = {}
        self._sums: dict[str, float] = {}
        self._means: dict[str, float] = {}  # -inf while an arm has no reward
        self._names: list[str] = []
        self._best: str | None = None

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.prior_weight)
        self._counts[name] = count
        self._sums[name] = total
        self._means[name] = total / count if count else -math.inf
        self._names.append(name)
        if not count:
            self._cold.add(name)
        self._rescan()

    def _on_remove(self, name: str) -> None:
        del self._counts[name], self._sums[name], self._means[name]
        self._names.remove(name)
        self._cold.discard(name)
        self._rescan()

    def _rescan(self) -> None:
        means = self._means
        self._best = max(means, key=means.__getitem__) if means else None

    def select(self) -> str:
        due = self._cold.next_due()
        if due is not None:
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
        due = self._cold.due(self._cold.decisions + 1) if self._cold.waiting else None
        name = self.select()
        if due is not None:
            return name, 1.0
        explore = self._current_epsilon / len(self._names)
        return name, explore + (1.0 - self._current_epsilon if name == self._best else 0.0)

    def update(self, name: str, reward: float) -> None:
        reward = validate_reward(reward)
        if name not in self._counts:
            self._require_arm(name)
        count = self._counts[name] + 1.0
        total = self._sums[name] + reward
        self._counts[name] = count
        self._sums[name] = total
        mean = total / count
        previous = self._means[name]
        self._means[name] = mean
        if self._cold.waiting:
            self._cold.discard(name)
        best = self._best
        if name == best:
            if mean < previous:
                self._rescan()
        elif mean > self._means[best]:  # type: ignore[index]
            self._best = name
        if self.decay is not None:
            self._current_epsilon *= self.decay

    def probabilities(self) -> dict[str, float]:
        return {name: self._probability(name) for name in self._names}

    def _probability(self, name: str) -> float:
        cold = self._cold
        if cold.waiting:
            due = cold.due(cold.decisions + 1)  # as the next select() will see it
            if due is not None:
                return 1.0 if name == due else 0.0
        explore = self._current_epsilon / len(self._names)
        return explore + (1.0 - self._current_epsilon if name == self._best else 0.0)

    def propensity(self, name: str) -> float:
        if name not in self._counts:
            self._require_arm(name)
        return self._probability(name)

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "decay": self.decay, "prior_weight": self.prior_weight,
                "cold_start_retry": self._cold.retry}

    def _stats_state(self) -> dict[str, Any]:
        return {"counts": dict(self._counts), "sums": dict(self._sums),
                "cold_start": self._cold.state(), "best": self._best,
                "current_epsilon": self._current_epsilon}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            count, total = float(stats["counts"][name]), float(stats["sums"][name])
            self._counts[name], self._sums[name] = count, total
            self._means[name] = total / count if count else -math.inf
        self._cold.load(stats["cold_start"], self._arms)
        self._best = stats["best"] if stats["best"] in self._arms else self._best
        self._current_epsilon = check_number("current_epsilon", stats["current_epsilon"],
                                             low=0.0, high=1.0)
