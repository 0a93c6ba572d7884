"""Shadow scoring: which other live versions also predict a request, to be scored on its label.

When the ground truth of a request does not depend on which version answered it (did this
person earn more than 50K, was this claim fraud), every live version's prediction for that
request can be scored when the label arrives: the served version's reward updates the policy
as usual, the other versions' rewards are side observations (``Policy.observe``) and count for
the guardrail. A version is then judged on all the traffic instead of the share a bandit gives
it, and a new release can be judged before it serves anyone.

It is invalid when the outcome depends on the served prediction — the claim flagged is the one
investigated, the item recommended is the one clicked: there the label of a request says
nothing about what another version's answer would have earned, and bandit feedback is all
there is. Shadow predictions never change what the client receives.

Modes: ``"all"`` (every other live version), ``"rate"`` (each request is shadowed with
probability ``rate``, from a generator of its own so the policy's draws are unchanged), and
``"evaluating"`` (only versions with fewer than ``evaluation_rewards`` rewards so far).
Dark candidates (:mod:`banditops.release`) are scored on every shadowed request.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from banditops.errors import InvalidParameterError
from banditops.policies.base import check_number, check_seed, check_window

MODES = ("all", "rate", "evaluating")


@dataclass(frozen=True, slots=True)
class ShadowParams:
    """How a Deployment shadow-scores requests (see the module docstring)."""

    mode: str = "all"
    rate: float = 1.0
    evaluation_rewards: int = 200
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidParameterError(f"shadow mode must be one of {MODES}, got {self.mode!r}")
        check_number("rate", self.rate, low=0.0, high=1.0, low_open=True)
        check_window("evaluation_rewards", self.evaluation_rewards)
        check_seed(self.seed)


class Shadowing:
    """Picks, per request, the versions that predict it in the shadow of the served one."""

    def __init__(self, params: ShadowParams) -> None:
        self.params = params
        self._rng = random.Random(params.seed)

    def versions(self, served: str, live: list[str],
                 rewards: Callable[[], Mapping[str, int]],
                 dark: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The versions other than ``served`` to predict this request: live ones by the
        mode, and every dark candidate (see :mod:`banditops.release`) whenever the request
        is shadowed at all.

        ``rewards()``: how many rewards (served or shadow) each version has earned so far
        (called only in mode "evaluating": the other modes need no counts)."""
        params = self.params
        if params.mode == "rate" and self._rng.random() >= params.rate:
            return []
        others = [name for name in live if name != served]
        if params.mode == "evaluating":
            counts = rewards()
            others = [n for n in others if counts.get(n, 0) < params.evaluation_rewards]
        return [*others, *dark] if dark else others
