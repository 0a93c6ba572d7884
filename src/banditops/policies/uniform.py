"""Uniform random routing: every live arm equally likely, whatever the rewards.

The logging policy of choice for off-policy evaluation (:mod:`banditops.ope`): every version
has propensity exactly 1/k, so every target has support and the importance weights are
bounded by k. It never exploits, so it costs production reward while it runs: use it on a
slice of traffic, or to validate the estimators (``banditops evaluate-check``).
Rewards and side observations are validated and ignored.

>>> p = Uniform(seed=0)
>>> for arm in ("a", "b", "c", "d"): p.add_arm(arm)
>>> p.probabilities()
{'a': 0.25, 'b': 0.25, 'c': 0.25, 'd': 0.25}
>>> p.choose()[1]
0.25
"""

from __future__ import annotations

from typing import Any

from banditops.policies.base import Policy
from banditops.rewards import validate_reward


class Uniform(Policy):
    """Choose uniformly at random among the live arms (propensity exactly 1/k)."""

    key = "uniform"

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._names: list[str] = []

    def _on_add(self, name: str) -> None:
        self._names.append(name)

    def _on_remove(self, name: str) -> None:
        self._names.remove(name)

    def select(self) -> str:
        names = self._names
        if not names:
            self._require_any_arm()
        return names[int(self._rng.random() * len(names))]

    def choose(self) -> tuple[str, float]:
        name = self.select()
        return name, 1.0 / len(self._names)

    def update(self, name: str, reward: float) -> None:
        self._require_arm(name)
        validate_reward(reward)

    def observe(self, name: str, reward: float) -> None:
        """Validated, then ignored: the choice never depends on rewards."""
        self.update(name, reward)

    def probabilities(self) -> dict[str, float]:
        share = 1.0 / len(self._names) if self._names else 0.0
        return dict.fromkeys(self._names, share)

    def propensity(self, name: str) -> float:
        self._require_arm(name)
        return 1.0 / len(self._names)

    def _stats_state(self) -> dict[str, Any]:
        return {}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._names = list(self._arms)
