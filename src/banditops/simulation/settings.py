"""How each dataset is replayed by default, and the reward a user chooses for any table.

========================  ======  =====  ===========================================
dataset                   chunk   delay  reward
========================  ======  =====  ===========================================
adult                     2,000   100    accuracy
vehicle-insurance-fraud   1,000   50     cost matrix: a missed fraud costs 20 alarms
any CSV                   n / 20  5%     accuracy, or ``--reward cost``
========================  ======  =====  ===========================================

A version is released every 2 chunks, trained on the latest 8,000 labelled rows; at most 4
are live. The reward is applied alike to validation, to the models' decision threshold
(:func:`~banditops.rewards.decision_threshold`: on fraud, flag a claim when its fraud
probability exceeds 1/21) and to the replay.

A cost reward is given as costs, in any unit, of the four outcomes of a binary decision
(``--cost tp=0,fp=1,fn=20,tn=0``), or as the cost of a miss in false alarms
(``--miss-cost 20``, the same matrix); the reward of an outcome is ``1 - cost / the largest
cost`` once the smallest is moved to 0, so the best outcome earns 1 and the worst 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from banditops.errors import InvalidParameterError
from banditops.rewards import CostMatrix, accuracy, cost_matrix
from banditops.simulation.stream import StreamSettings

DEFAULT_MISS_COST = 20.0
REWARDS = ("accuracy", "cost")
CELLS = ("tp", "fp", "fn", "tn")
# Below this share of the rarer class, accuracy mostly rewards predicting the common one.
IMBALANCED = 0.1


@dataclass(frozen=True)
class RewardChoice:
    """What the user asked for: ``kind`` None keeps each dataset's default reward."""

    kind: str | None = None
    costs: dict[str, float] | None = None  # tp/fp/fn/tn -> cost
    miss_cost: float | None = None  # a missed positive costs this many false alarms

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in REWARDS:
            raise InvalidParameterError(
                f"--reward must be one of {', '.join(REWARDS)}, got {self.kind!r}")
        if self.kind == "accuracy" and (self.costs or self.miss_cost is not None):
            raise InvalidParameterError("--cost and --miss-cost go with --reward cost")
        if self.costs and self.miss_cost is not None:
            raise InvalidParameterError("give either --cost or --miss-cost, not both")
        if self.miss_cost is not None:
            miss_cost_reward(self.miss_cost)  # checked now, before any data is read
        if self.costs:
            costs_to_reward(self.costs)  # likewise

    def wants_cost(self, builtin: bool) -> bool:
        """Whether this dataset is replayed with a cost reward: ``--reward cost`` for every
        dataset; ``--cost`` / ``--miss-cost`` alone only for a user's table (the built-in
        fraud dataset has its cost matrix anyway, Adult keeps accuracy)."""
        if self.kind is not None:
            return self.kind == "cost"
        return not builtin and (bool(self.costs) or self.miss_cost is not None)


def parse_costs(text: str) -> dict[str, float]:
    """``"tp=0,fp=1,fn=20,tn=0"`` -> costs; cells left out cost 0.

    >>> parse_costs("fp=1, fn=20")
    {'tp': 0.0, 'fp': 1.0, 'fn': 20.0, 'tn': 0.0}
    """
    costs = dict.fromkeys(CELLS, 0.0)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in CELLS:
            raise InvalidParameterError(
                f"--cost takes tp=,fp=,fn=,tn= (costs of each outcome), got {part!r}")
        try:
            costs[key] = float(value)
        except ValueError:
            raise InvalidParameterError(f"--cost {key}: {value.strip()!r} is not a number"
                                        ) from None
        if not math.isfinite(costs[key]):
            raise InvalidParameterError(f"--cost {key} must be finite, got {value.strip()}")
    costs_to_reward(costs)
    return costs


def costs_to_reward(costs: dict[str, float]) -> CostMatrix:
    """The cost matrix as rewards in [0, 1]: the cheapest outcome earns 1, the dearest 0.

    >>> costs_to_reward({"tp": 0, "fp": 1, "fn": 20, "tn": 0})
    CostMatrix(tp=1.0, fp=0.95, fn=0.0, tn=1.0, positive=1, negative=0)
    """
    values = [float(costs.get(cell, 0.0)) for cell in CELLS]
    tp, fp, fn, tn = values
    if not (fp > tn and fn > tp):
        raise InvalidParameterError(
            "--cost: a wrong call must cost more than the right one (fp > tn and fn > tp), "
            f"got tp={tp:g}, fp={fp:g}, fn={fn:g}, tn={tn:g}")
    low, high = min(values), max(values)
    if not math.isfinite(high - low):  # each finite, but 1e308 - (-1e308) is not
        raise InvalidParameterError(
            f"--cost: the costs span more than a float holds (from {low:g} to {high:g}); "
            "give them in a larger unit")
    return cost_matrix(**{cell: (high - value) / (high - low)
                          for cell, value in zip(CELLS, values, strict=True)})


def miss_cost_reward(miss_cost: float = DEFAULT_MISS_COST) -> CostMatrix:
    """1 for a right call, 0 for a miss, 1 - 1/miss_cost for a false alarm."""
    if not (math.isfinite(miss_cost) and miss_cost > 1):
        raise InvalidParameterError(f"miss_cost must be > 1 false alarm, got {miss_cost}")
    return cost_matrix(tp=1.0, fp=1.0 - 1.0 / miss_cost, fn=0.0, tn=1.0)


def balanced_miss_cost(positive_share: float) -> float:
    """The miss cost at which predicting the positive class pays from the base rate on:
    negatives per positive (at least 2), rounded to a readable number."""
    ratio = (1 - positive_share) / max(positive_share, 1e-9)
    return float(max(2.0, round(ratio, 1 if ratio < 10 else 0)))


def default_settings(dataset: str, n: int, *, chunk_size: int | None = None,
                     delay: int | None = None, max_live: int = 4,
                     reward: RewardChoice | None = None,
                     positive_share: float | None = None) -> StreamSettings:
    """The documented defaults (module docstring), with the user's overrides.

    ``positive_share`` (binary tasks) sets the miss cost of ``--reward cost`` when neither
    ``--cost`` nor ``--miss-cost`` is given."""
    choice = reward or RewardChoice()
    if dataset == "adult":
        settings = StreamSettings(2000, 100, accuracy, "accuracy")
    elif dataset == "vehicle-insurance-fraud":
        cost = choice.miss_cost if choice.miss_cost is not None else DEFAULT_MISS_COST
        settings = StreamSettings(1000, 50, miss_cost_reward(cost),
                                  f"cost matrix (a missed fraud costs {cost:g} false alarms)",
                                  guardrail_margin=0.01)
    else:
        size = max(50, -(-n // 20))  # twenty chunks, the last no smaller than the others
        settings = StreamSettings(size, size // 20, accuracy, "accuracy")
    builtin = dataset in ("adult", "vehicle-insurance-fraud")
    if choice.kind == "accuracy":
        settings = replace(settings, reward=accuracy, reward_name="accuracy",
                           guardrail_margin=0.05)
    elif choice.wants_cost(builtin) and not (dataset == "vehicle-insurance-fraud"
                                             and not choice.costs):
        settings = replace(settings, **_cost_settings(choice, positive_share))
    if chunk_size is not None:
        settings = replace(settings, chunk_size=chunk_size,
                           delay=delay if delay is not None else min(settings.delay,
                                                                     chunk_size // 2))
    elif delay is not None:
        settings = replace(settings, delay=delay)
    return replace(settings, max_live=max_live)


def _cost_settings(choice: RewardChoice, positive_share: float | None) -> dict:
    """Reward, its name and the guardrail margin for a cost reward (margin 0.01 as on
    fraud: rewards near 1 on most requests make small gaps the ones that matter)."""
    if choice.costs:
        costs = ", ".join(f"{cell}={choice.costs[cell]:g}" for cell in CELLS)
        return {"reward": costs_to_reward(choice.costs),
                "reward_name": f"cost matrix (costs {costs})", "guardrail_margin": 0.01}
    if choice.miss_cost is not None:
        cost, why = choice.miss_cost, ""
    else:
        cost = balanced_miss_cost(positive_share if positive_share is not None else 0.5)
        why = ": negatives per positive in this table; set --miss-cost"
    return {"reward": miss_cost_reward(cost),
            "reward_name": f"cost matrix (a missed positive costs {cost:g} false alarms{why})",
            "guardrail_margin": 0.01}
