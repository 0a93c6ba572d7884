"""Static policies: one arm takes all traffic, chosen from metadata, never from rewards.

These are the study's traditional baselines. ``Latest`` is naive deployment (every release
replaces the previous one); ``ValidationChampion`` serves the version with the best offline
validation score. Both accept rewards (and validate them) but ignore them: a broken release
keeps its traffic until someone rolls it back, which is exactly what a guardrail is for.
Side observations (``observe``) are validated and ignored likewise.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

from banditops.policies.base import ArmInfo, Policy
from banditops.rewards import validate_reward


class _SingleArmPolicy(Policy):
    """Routes everything to ``self._chosen``, recomputed whenever the arms change."""

    uses_randomness = False

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._chosen: str | None = None

    @abstractmethod
    def _rank(self, info: ArmInfo) -> tuple[Any, ...]:
        """Sort key; the arm with the largest key serves."""

    def _rechoose(self) -> None:
        self._chosen = max(self._arms, key=lambda n: self._rank(self._arms[n]), default=None)

    def _on_add(self, name: str) -> None:
        self._rechoose()

    def _on_remove(self, name: str) -> None:
        self._rechoose()

    def select(self) -> str:
        if self._chosen is None:
            self._require_any_arm()
        return self._chosen  # type: ignore[return-value]

    def update(self, name: str, reward: float) -> None:
        self._require_arm(name)
        validate_reward(reward)

    def observe(self, name: str, reward: float) -> None:
        """Validated, then ignored: the choice never depends on rewards."""
        self._require_arm(name)
        validate_reward(reward)

    def probabilities(self) -> dict[str, float]:
        return {name: 1.0 if name == self._chosen else 0.0 for name in self._arms}

    def propensity(self, name: str) -> float:
        self._require_arm(name)
        return 1.0 if name == self._chosen else 0.0

    def choose(self) -> tuple[str, float]:
        return self.select(), 1.0

    def _stats_state(self) -> dict[str, Any]:
        return {}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._rechoose()


class Latest(_SingleArmPolicy):
    """Naive deployment: the most recently released arm takes all traffic.

    Rewards and side observations (``observe``) are validated and ignored.

    >>> p = Latest()
    >>> p.add_arm("v1"); p.add_arm("v2")
    >>> p.select()
    'v2'
    >>> p.remove_arm("v2"); p.select()  # a rollback falls back to the previous release
    'v1'
    """

    key = "latest"

    def _rank(self, info: ArmInfo) -> tuple[Any, ...]:
        return (info.released_at, info.order)


class ValidationChampion(_SingleArmPolicy):
    """The arm with the best offline validation score takes all traffic.

    Arms without a score rank below every scored arm; equal scores go to the newer release.
    Rewards and side observations (``observe``) are validated and ignored.

    >>> p = ValidationChampion()
    >>> p.add_arm("v1", validation_score=0.84); p.add_arm("v2", validation_score=0.81)
    >>> p.select()
    'v1'
    """

    key = "validation-champion"

    def _rank(self, info: ArmInfo) -> tuple[Any, ...]:
        score = -math.inf if info.validation_score is None else info.validation_score
        return (info.validation_score is not None, score, info.released_at, info.order)
