"""Deployment policies: pure decision rules over named arms (model versions).

The study's six strategies — :class:`Latest`, :class:`ValidationChampion`, :class:`ABTest`,
:class:`EpsilonGreedy`, :class:`UCB1`, :class:`ThompsonSampling` — and, for drifting
production data, :class:`SlidingWindowUCB` and :class:`DiscountedThompsonSampling`, plus
:class:`GaussianThompsonSampling`. All share the :class:`Policy` interface.
"""

from banditops.policies.ab_test import ABTest
from banditops.policies.base import Policy, make_policy, policy_names
from banditops.policies.epsilon_greedy import EpsilonGreedy
from banditops.policies.static import Latest, ValidationChampion
from banditops.policies.thompson import (
    DiscountedThompsonSampling,
    GaussianThompsonSampling,
    ThompsonSampling,
)
from banditops.policies.ucb import UCB1, SlidingWindowUCB

__all__ = [
    "UCB1",
    "ABTest",
    "DiscountedThompsonSampling",
    "EpsilonGreedy",
    "GaussianThompsonSampling",
    "Latest",
    "Policy",
    "SlidingWindowUCB",
    "ThompsonSampling",
    "ValidationChampion",
    "make_policy",
    "policy_names",
]
