"""Deployment policies: pure decision rules over named arms (model versions).

The study's six strategies — :class:`Latest`, :class:`ValidationChampion`, :class:`ABTest`,
:class:`EpsilonGreedy`, :class:`UCB1`, :class:`ThompsonSampling` — and, for drifting
production data, :class:`SlidingWindowUCB` and :class:`DiscountedThompsonSampling`, plus
:class:`GaussianThompsonSampling`, and :class:`FollowTheLeader` for full information (shadow
scoring); the contextual :class:`TreeLeader` and :class:`TreeThompson` route each request by
a learned partition of its features. All share the :class:`Policy` interface; each has a
frozen, validated parameter dataclass (``EpsilonGreedyParams``, ...; ``Policy.Params``).
"""

from banditops.policies.ab_test import ABTest, ABTestParams
from banditops.policies.base import (
    NoParams,
    Policy,
    make_policy,
    parse_policy_params,
    policy_class,
    policy_names,
    policy_params_class,
)
from banditops.policies.epsilon_greedy import EpsilonGreedy, EpsilonGreedyParams
from banditops.policies.leader import FollowTheLeader, FollowTheLeaderParams
from banditops.policies.static import Latest, ValidationChampion
from banditops.policies.thompson import (
    DiscountedThompsonParams,
    DiscountedThompsonSampling,
    GaussianThompsonParams,
    GaussianThompsonSampling,
    ThompsonParams,
    ThompsonSampling,
)
from banditops.policies.tree import TreeLeader, TreeLeaderParams, TreeThompson, TreeThompsonParams
from banditops.policies.ucb import UCB1, SlidingWindowUCB, SlidingWindowUCBParams, UCB1Params

__all__ = [
    "UCB1",
    "ABTest",
    "ABTestParams",
    "DiscountedThompsonParams",
    "DiscountedThompsonSampling",
    "EpsilonGreedy",
    "EpsilonGreedyParams",
    "FollowTheLeader",
    "FollowTheLeaderParams",
    "GaussianThompsonParams",
    "GaussianThompsonSampling",
    "Latest",
    "NoParams",
    "Policy",
    "SlidingWindowUCB",
    "SlidingWindowUCBParams",
    "ThompsonParams",
    "ThompsonSampling",
    "TreeLeader",
    "TreeLeaderParams",
    "TreeThompson",
    "TreeThompsonParams",
    "UCB1Params",
    "ValidationChampion",
    "make_policy",
    "parse_policy_params",
    "policy_class",
    "policy_names",
    "policy_params_class",
]
