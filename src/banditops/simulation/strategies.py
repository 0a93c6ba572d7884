"""The strategies a replay compares: the study's six, drift-aware, guarded and shadow ones.

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
- ``shadow``: full information through shadow scoring (:mod:`banditops.shadow`): the other
  live versions' predictions are scored on every label too, as side observations.
  ``leader[...]`` follows the leader over each version's last 1,000 rewards
  (:class:`~banditops.policies.FollowTheLeader`), ``thompson[...]`` is Thompson sampling
  that takes the side observations into its posteriors. ``[shadow]`` scores every request
  (mode ``"all"``: about one model call per live version per request), ``[shadow 0.1]`` a
  random tenth of them (mode ``"rate"``, seeded from the run's seed). Valid only where the
  label does not depend on the served prediction, as in these replays.

  The leader's window is half the policy's default: when every version is scored on the
  same requests their windowed means are compared on the same rows, so a short window ranks
  them reliably, and on the fraud stream the best version changes within a 1,000-request
  chunk.
  Chosen on these replays among 500-6,000 rewards (1,000 had the lowest mean and
  worst-case regret, also on streams trained with two other pipeline seeds; the data's
  order, which drives it, is the same in all three).

- ``contextual`` (:data:`CONTEXTUAL`): policies that route each request on its features
  (:class:`~banditops.policies.base.ContextualPolicy`): linear Thompson sampling and LinUCB
  over all the request's features hashed into 64 slots
  (:class:`~banditops.context.ContextEncoder`), each with bandit feedback and ``[shadow]``.
  Forgetting with gamma 0.999 (per arm, a half-life of ~700 rewards): on these replays,
  with every request shadow-scored, it added 0.003-0.005 of reward on the concept-drift
  rows and changed the others by at most 0.004 either way; gamma 0.99 forgot too fast
  (0.001-0.026 less in every row). Exploration (v 0.05, c 0.1 with bandit feedback; 0.02 and 0 with
  shadows) was chosen on these replays (seed 0) among v 0.02-0.2 and c 0-0.2. Request
  granularity only (a chunk-granularity run leaves them out, and says so).

  ``tree-leader[shadow]`` and ``tree-thompson`` are learned partitions
  (:mod:`banditops.policies.tree`): a shallow tree on the versions' reward differences,
  refitted every 250 labelled requests on the last 4,000 and pruned on the newest quarter,
  over the request's features hashed into 256 slots (numbers as sign(x) log1p|x|, each
  category one-hot in its slot); the leader, overruled per leaf where another version is
  better there by 1.5 standard errors (full information), or Thompson sampling per leaf
  (bandit feedback). Their settings are the policies' defaults, chosen on these replays with
  streams of three pipeline seeds (0-2): among leaf windows 300-1,000, switch_z 1-2,
  min_samples_leaf 150-600 and refits every 250-1,000, switch_z 1.5 with a leaf window of 500
  had nearly the lowest mean regret relative to ``leader[shadow]`` (0.06-0.08 points below it)
  and the best worst row (at most 0.012 points above it).

- dark launch (``leader[shadow]+dark``): a new release serves nobody until its paired shadow
  rewards show it is not worse than the best live version by 0.01
  (:mod:`banditops.release`); a faulty release is rolled back before it serves. (With bandit
  feedback for the live versions and only the candidates shadowed, a candidate is compared
  with each live version on the requests that version served; on the fraud stream that let a
  faulty release through, as good as the weakest live version over its dark period: seed 0,
  11.9 % of traffic to faulty releases. Full shadow scoring compares on every request.)

Every strategy's options reach the replay's ``Deployment`` through :meth:`RunSetup.deployment`,
so a new kind of option (a release policy, say) is a field of :class:`Strategy` and
:class:`RunSetup` and one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from banditops.deployment import Deployment
from banditops.errors import InvalidParameterError
from banditops.guardrails import Guardrail
from banditops.policies import Policy, make_policy, policy_class
from banditops.release import ReleaseParams
from banditops.rewards import RewardFunction
from banditops.shadow import ShadowParams

GRANULARITIES = ("request", "chunk")


@dataclass(frozen=True)
class RunSetup:
    """Fresh objects for one run of a strategy: what its Deployment is made with."""

    policy: Policy
    guardrail: Guardrail | None = None
    shadow: ShadowParams | None = None
    release: ReleaseParams | None = None

    def deployment(self, reward: RewardFunction, *, clock: Callable[[], float],
                   max_pending: int = 100_000) -> Deployment:
        """The replay's Deployment, with every option of the strategy."""
        return Deployment(self.policy, reward=reward, guardrail=self.guardrail,
                          shadow=self.shadow, release=self.release, max_pending=max_pending,
                          clock=clock)


@dataclass(frozen=True)
class Strategy:
    name: str
    group: str  # "study" | "drift-aware" | "guarded" | "recommended" | "shadow" | "contextual"
    policy: str  # a registry name, see banditops.policies.policy_names()
    params: dict[str, Any] = field(default_factory=dict)
    guarded: bool = False
    shadow: ShadowParams | None = None  # its seed is set per run (shadow_seed)
    release: ReleaseParams | None = None  # dark launch (banditops.release)

    @property
    def seeded(self) -> bool:
        """Whether its runs depend on the seed (a random policy or shadow sampling); a replay
        of a strategy that is not gives the same run for every seed."""
        return (policy_class(self.policy).uses_randomness
                or (self.shadow is not None and self.shadow.mode == "rate"))

    @property
    def contextual(self) -> bool:
        """Whether its policy routes each request on the request's features."""
        return policy_class(self.policy).contextual

    @property
    def feedback(self) -> str:
        """What it learns from: ``"bandit"`` (the served version's reward only) or
        ``"shadow"`` (every shadow-scored version's too; more than one model call)."""
        return "bandit" if self.shadow is None and self.release is None else "shadow"

    def build(self, seed: int, *, granularity: str = "request",
              margin: float = 0.05) -> RunSetup:
        """Fresh policy, guardrail and shadow settings for one run."""
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
        shadow = None if self.shadow is None else replace(self.shadow, seed=shadow_seed(seed))
        release = self.release
        if release is not None and granularity == "chunk":
            release = replace(release, **CHUNK_RELEASE)  # a chunk's mean is one paired reward
        return RunSetup(policy, guardrail, shadow, release)


def shadow_seed(seed: int) -> int:
    """The seed of a run's shadow sampling: apart from the policy's own seed, so which
    requests are shadowed is not correlated with the policy's random draws."""
    return seed + SHADOW_SEED_OFFSET


SHADOW_SEED_OFFSET = 1_000_003

# A bandit starves a bad version quickly, so the guardrail must judge on little data.
GUARDRAIL_MIN_SAMPLES = 50
CHUNK_PARAMS: dict[str, dict[str, Any]] = {
    "ab-test": {"min_samples": 2},
    "epsilon-greedy": {"cold_start_retry": 1},
    "ucb1": {"cold_start_retry": 1},
    "sliding-window-ucb": {"cold_start_retry": 1, "window": 8},
    "discounted-thompson": {"gamma": 0.9},
    # A chunk's mean is already a thousand rewards: one makes an arm warm, two is a window;
    # a new version is tried in its second chunk (by then a shadow reward may speak for it).
    "follow-the-leader": {"window": 2, "min_rewards": 1, "cold_start_retry": 2},
}
# Dark launch judges a release on a few chunks' paired means instead of 200 requests.
CHUNK_RELEASE: dict[str, Any] = {"min_samples": 3, "check_every": 1}
DARK = ReleaseParams(mode="dark")
SHADOW_ALL = ShadowParams(mode="all")
SHADOW_TENTH = ShadowParams(mode="rate", rate=0.1)
_SHADOWED = [
    ("leader", "follow-the-leader", {"window": 1000}),
    ("thompson", "thompson", {}),
]

# The learned partitions' settings, chosen on these replays (see the module docstring).
TREE_LEADER: dict[str, Any] = {}
TREE_THOMPSON: dict[str, Any] = {}

# Contextual routing (issue 12): policies that route each request on its features (the
# replay passes each row's encoded features as the context; request granularity only).
# Another contextual strategy joins the comparison with one row here: (strategy name,
# registry key, parameters, shadow settings or None for bandit feedback).
CONTEXTUAL: list[tuple[str, str, dict[str, Any], ShadowParams | None]] = [
    ("linear-thompson", "linear-thompson", {"v": 0.05, "gamma": 0.999}, None),
    ("linucb", "linucb", {"c": 0.1, "gamma": 0.999}, None),
    # Full information: nothing needs exploring (LinUCB with c = 0 is greedy ridge regression).
    ("linear-thompson[shadow]", "linear-thompson", {"v": 0.02, "gamma": 0.999}, SHADOW_ALL),
    ("linucb[shadow]", "linucb", {"c": 0.0, "gamma": 0.999}, SHADOW_ALL),
    # Learned partitions (banditops.policies.tree): a shallow tree on the versions' reward
    # differences, a leader (full information) or Thompson sampling (bandit feedback) per leaf.
    ("tree-leader[shadow]", "tree-leader", TREE_LEADER, SHADOW_ALL),
    ("tree-thompson", "tree-thompson", TREE_THOMPSON, None),
]

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
    *(Strategy(f"{name}[{label}]", "shadow", policy, params, shadow=shadow)
      for name, policy, params in _SHADOWED
      for label, shadow in (("shadow", SHADOW_ALL), ("shadow 0.1", SHADOW_TENTH))),
    # Dark launch: a new release serves nobody until its shadow rewards show it is not worse
    # than the best live version.
    Strategy("leader[shadow]+dark", "shadow", "follow-the-leader", {"window": 1000},
             shadow=SHADOW_ALL, release=DARK),
    *(Strategy(name, "contextual", policy, params, shadow=shadow)
      for name, policy, params, shadow in CONTEXTUAL),
]}
CONTEXT_FREE = [name for name, s in STRATEGIES.items() if not s.contextual]
STUDY = [name for name, s in STRATEGIES.items() if s.group == "study"]
RECOMMENDED = "thompson-prior+guardrail"


def resolve_strategies(names: list[str] | None) -> list[Strategy]:
    """Strategies by name (when ``names`` is empty or None: every context-free one).

    The contextual strategies run only when named (``banditops experiment --contextual``
    names them all): they cost 5-20 times a context-free strategy per request, and with them
    the default run on 2 cores went from minutes to most of an hour."""
    if not names:
        return [STRATEGIES[name] for name in CONTEXT_FREE]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise InvalidParameterError(
            f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    return [STRATEGIES[n] for n in dict.fromkeys(names)]
