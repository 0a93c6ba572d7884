"""LinUCB: a deterministic contextual bandit, optimistic in each arm's predicted reward.

Li, Chu, Langford & Schapire (2010), "A Contextual-Bandit Approach to Personalized News
Article Recommendation" (WWW), disjoint models: one ridge model per arm
(:mod:`~banditops.policies.ridge`); a request encoded as ``x`` is served by the arm with the
highest upper confidence bound

    x^T theta_a + c sqrt(x^T A_a^-1 x)

(ties: the arm added first). Deterministic: every choice has propensity 1, and the seed
changes nothing. A new arm's bound is wide in every direction, so it is tried on the
requests least like those the others learned from, and dropped once its bound falls below
theirs. Features and their encoding: as :mod:`~banditops.policies.linear_thompson`.

>>> p = LinUCB(dimension=16)
>>> for arm in ("left", "right"): p.add_arm(arm)
>>> for _ in range(300):
...     p.update("left", 1.0, {"side": "L"}); p.update("right", 0.0, {"side": "L"})
...     p.update("left", 0.0, {"side": "R"}); p.update("right", 1.0, {"side": "R"})
>>> p.choose({"side": "L"}), p.choose({"side": "R"})
(('left', 1.0), ('right', 1.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditops.policies.base import check_number, set_checked
from banditops.policies.ridge import LinearBandit, check_linear_params


@dataclass(frozen=True, slots=True)
class LinUCBParams:
    """Parameters of :class:`LinUCB`, validated on creation: ``c`` scales the bound's width
    (the paper's alpha; named as :class:`~banditops.policies.UCB1`'s); the others as
    :class:`~banditops.policies.linear_thompson.LinearThompsonParams`."""

    dimension: int = 64
    features: tuple[str, ...] = ()
    c: float = 0.1
    ridge: float = 1.0
    gamma: float = 1.0
    prior_mean: float = 0.5

    def __post_init__(self) -> None:
        check_linear_params(self)
        set_checked(self, "c", check_number("c", self.c, low=0.0, high=100.0))


_P = LinUCBParams()


class LinUCB(LinearBandit):
    """Disjoint LinUCB (see the module)."""

    key = "linucb"
    Params: ClassVar[type] = LinUCBParams
    uses_randomness = False

    def __init__(self, *, dimension: int = _P.dimension, features: Any = _P.features,
                 c: float = _P.c, ridge: float = _P.ridge, gamma: float = _P.gamma,
                 prior_mean: float = _P.prior_mean, seed: int | None = None) -> None:
        super().__init__(LinUCBParams(dimension, features, c, ridge, gamma, prior_mean),
                         seed=seed)

    def _best(self, context: Any) -> int:
        mean, variance = self._models.scores(self._vector(context))
        return int(np.argmax(mean + self.p.c * np.sqrt(variance)))

    def select(self, context: Any = None) -> str:
        return list(self._models.index)[self._best(context)]

    def choose(self, context: Any = None) -> tuple[str, float]:
        return self.select(context), 1.0

    def probabilities(self, context: Any = None) -> dict[str, float]:
        if not self._arms:
            return {}
        best = self._best(context)
        return {name: float(i == best) for name, i in self._models.index.items()}

    def propensity(self, name: str, context: Any = None) -> float:
        self._require_arm(name)
        return float(self.select(context) == name)
