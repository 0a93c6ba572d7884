"""Deployment policies: pure decision rules over named arms (model versions).

The study's six strategies — :class:`Latest`, :class:`ValidationChampion`, :class:`ABTest`,
:class:`EpsilonGreedy`, :class:`UCB1`, :class:`ThompsonSampling` — and, for drifting
production data, :class:`SlidingWindowUCB` and :class:`DiscountedThompsonSampling`, plus
:class:`GaussianThompsonSampling`, :class:`FollowTheLeader` for full information (shadow
scoring), :class:`Uniform` (propensity exactly 1/k: the logging policy of off-policy
evaluation), the linear contextual bandits :class:`LinearThompsonSampling` and
:class:`LinUCB`, and the learned partitions :class:`TreeLeader` and :class:`TreeThompson`
(a shallow tree with a leader or Thompson sampling per leaf), which route on each request's
features (:class:`ContextualPolicy`). All share the :class:`Policy` interface; each has a
frozen, validated parameter dataclass (``EpsilonGreedyParams``, ...; ``Policy.Params``).
"""

from banditops.policies.ab_test import ABTest, ABTestParams
from banditops.policies.base import (
    ContextualPolicy,
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
from banditops.policies.linear_thompson import LinearThompsonParams, LinearThompsonSampling
from banditops.policies.linucb import LinUCB, LinUCBParams
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
from banditops.policies.uniform import Uniform

__all__ = [
    "UCB1",
    "ABTest",
    "ABTestParams",
    "ContextualPolicy",
    "DiscountedThompsonParams",
    "DiscountedThompsonSampling",
    "EpsilonGreedy",
    "EpsilonGreedyParams",
    "FollowTheLeader",
    "FollowTheLeaderParams",
    "GaussianThompsonParams",
    "GaussianThompsonSampling",
    "Latest",
    "LinUCB",
    "LinUCBParams",
    "LinearThompsonParams",
    "LinearThompsonSampling",
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
    "Uniform",
    "ValidationChampion",
    "make_policy",
    "parse_policy_params",
    "policy_class",
    "policy_names",
    "policy_params_class",
]
