"""The strategies a replay compares: the study's six, drift-aware bandits, guarded bandits.

A :class:`Strategy` is a recipe: a policy from the registry with parameters, and whether a
:class:`~banditops.guardrails.Guardrail` watches it. ``build`` makes fresh instances for one
seed, so every run starts from nothing.

- ``study``: the six strategies of McClendon et al., as the study describes them and with
  the library's defaults.
- ``drift-aware``: sliding-window UCB and discounted Thompson sampling, which forget old
  rewards so that a version that degrades loses traffic.
- ``guarded``: each bandit with the guardrail, which rolls a version back when its live
  reward is significantly below the best live version's.
- ``recommended`` (:data:`RECOMMENDED`): what ``banditops`` suggests for production and the
  report checks against every study strategy: Thompson sampling whose new arms start from
  their validation score worth 20 observations (enough to skip the exploration of a release
  whose validation is poor, little enough that production evidence overrules a stale or
  misleading score within a few dozen requests), with the guardrail. Chosen on the replays:
  among the bandits it had the smallest worst-case shortfall against the best study
  strategy and the lowest worst-case regret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from banditops.errors import InvalidParameterError
from banditops.guardrails import Guardrail
from banditops.policies import Policy, make_policy

GRANULARITIES = ("request", "chunk")


@dataclass(frozen=True)
class Strategy:
    name: str
    group: str  # "study" | "drift-aware" | "guarded" | "recommended"
    policy: str  # a registry name, see banditops.policies.policy_names()
    params: dict[str, Any] = field(default_factory=dict)
    guarded: bool = False

    def build(self, seed: int, *, granularity: str = "request",
              margin: float = 0.05) -> tuple[Policy, Guardrail | None]:
        """Fresh policy (and guardrail) for one run."""
        params = dict(self.params)
        if granularity == "chunk":
            # One decision per chunk: a few dozen rewards in all, so windows, discounts,
            # A/B sample sizes and cold-start retries count in chunks, not requests.
            params.update(CHUNK_PARAMS.get(self.policy, {}))
        policy = make_policy(self.policy, seed=seed, **params)
        guardrail = None
        if self.guarded:
            guardrail = (Guardrail(min_samples=3, window=20, check_every=1, margin=margin)
                         if granularity == "chunk"
                         else Guardrail(min_samples=GUARDRAIL_MIN_SAMPLES, check_every=5,
                                        margin=margin))
        return policy, guardrail


# A bandit starves a bad version quickly, so the guardrail must judge on little data.
GUARDRAIL_MIN_SAMPLES = 50
CHUNK_PARAMS: dict[str, dict[str, Any]] = {
    "ab-test": {"min_samples": 2},
    "epsilon-greedy": {"cold_start_retry": 1},
    "ucb1": {"cold_start_retry": 1},
    "sliding-window-ucb": {"cold_start_retry": 1, "window": 8},
    "discounted-thompson": {"gamma": 0.9},
}

_BANDITS = [
    ("epsilon-greedy", "epsilon-greedy", {"epsilon": 0.1}),
    ("ucb1", "ucb1", {}),
    ("thompson", "thompson", {}),
    ("sliding-window-ucb", "sliding-window-ucb", {"window": 2000}),
    ("discounted-thompson", "discounted-thompson", {"gamma": 0.999}),
]

STRATEGIES: dict[str, Strategy] = {s.name: s for s in [
    Strategy("latest", "study", "latest"),
    Strategy("validation-champion", "study", "validation-champion"),
    Strategy("ab-test", "study", "ab-test", {"min_samples": 1000, "alpha": 0.05}),
    *(Strategy(name, "study" if name in ("epsilon-greedy", "ucb1", "thompson") else "drift-aware",
               policy, params) for name, policy, params in _BANDITS),
    *(Strategy(f"{name}+guardrail", "guarded", policy, params, guarded=True)
      for name, policy, params in _BANDITS),
    Strategy("thompson-prior+guardrail", "recommended", "thompson", {"prior_weight": 20},
             guarded=True),
]}
STUDY = [name for name, s in STRATEGIES.items() if s.group == "study"]
RECOMMENDED = "thompson-prior+guardrail"


def resolve_strategies(names: list[str] | None) -> list[Strategy]:
    """Strategies by name (all of them when ``names`` is empty or None)."""
    if not names:
        return list(STRATEGIES.values())
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise InvalidParameterError(
            f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    return [STRATEGIES[n] for n in dict.fromkeys(names)]
