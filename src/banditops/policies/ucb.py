"""Upper-confidence-bound policies: serve the arm whose optimistic estimate is highest.

``UCB1`` (Auer et al., 2002) uses every reward since an arm was added; ``SlidingWindowUCB``
(Garivier & Moulines, 2011) only the last ``window`` rewards of the whole deployment, so it
forgets a version's good past when its production performance drifts down.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from banditops.policies.base import (
    ColdStart,
    IndexPolicy,
    check_number,
    check_window,
    set_checked,
)
from banditops.rewards import validate_reward

DEFAULT_C = math.sqrt(2.0)
# Garivier & Moulines pad with sqrt(xi log(min(t, window)) / n) and use xi = 0.6: inside a
# window there are few rewards per arm, and the UCB1 constant (xi = 2) would over-explore.
SLIDING_WINDOW_C = math.sqrt(0.6)


@dataclass(frozen=True, slots=True)
class UCB1Params:
    """Parameters of :class:`UCB1` (documented there), validated on creation."""

    c: float = DEFAULT_C
    prior_weight: float = 0.0
    cold_start_retry: int = 100

    def __post_init__(self) -> None:
        set_checked(self, "c", check_number("c", self.c, low=0.0, high=1e6))
        set_checked(self, "prior_weight",
                    check_number("prior_weight", self.prior_weight, low=0.0, high=1e9))
        check_window("cold_start_retry", self.cold_start_retry)


@dataclass(frozen=True, slots=True)
class SlidingWindowUCBParams:
    """Parameters of :class:`SlidingWindowUCB` (documented there), validated on creation."""

    window: int = 1000
    c: float = SLIDING_WINDOW_C
    cold_start_retry: int = 100

    def __post_init__(self) -> None:
        check_window("window", self.window)
        set_checked(self, "c", check_number("c", self.c, low=0.0, high=1e6))
        check_window("cold_start_retry", self.cold_start_retry)


class _Observation(NamedTuple):
    """A side observation in the sliding window (served rewards are plain tuples)."""

    name: str
    reward: float


_UCB1 = UCB1Params()
_SW_UCB = SlidingWindowUCBParams()


class UCB1(IndexPolicy):
    """Index ``mean + c * sqrt(ln t / n)``; deterministic given the rewards seen.

    ``t`` counts all rewards of live arms (plus prior pseudo-counts), ``n`` those of the arm.
    ``c = sqrt(2)`` is the textbook constant for rewards in [0, 1]; smaller values explore less.

    Cold start: with ``prior_weight = 0`` an arm with no reward yet is served once, then every
    ``cold_start_retry`` decisions until its first reward arrives (the textbook "infinite
    index" would send it all traffic for the whole feedback delay); until then it is out of
    the index comparison. With ``prior_weight = w > 0`` an arm with a validation score starts
    with ``w`` pseudo-rewards equal to it. Ties go to the arm added first.

    Side observations (:meth:`observe`): the arm's sum and ``n`` grow, so its mean moves and
    its bonus shrinks as with a served reward, and its cold start ends. ``t`` does not grow:
    it counts decisions whose reward arrived (plus prior pseudo-counts), since ``ln t`` is the
    exploration budget of the policy's own choices and shadow rewards cost no decision. (So
    ``n`` of an arm can exceed ``t``; its bonus is then small, as its mean is well known.)

    >>> p = UCB1(c=0.1)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> p.select()  # untried arms first
    'a'
    >>> for _ in range(20): p.update("a", 0.2); p.update("b", 0.8)
    >>> p.select(), p.probabilities()
    ('b', {'a': 0.0, 'b': 1.0})
    """

    key = "ucb1"
    Params: ClassVar[type] = UCB1Params

    def __init__(self, c: float = _UCB1.c, *, prior_weight: float = _UCB1.prior_weight,
                 cold_start_retry: int = _UCB1.cold_start_retry,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = p = UCB1Params(c, prior_weight, cold_start_retry)
        self._cold = ColdStart(p.cold_start_retry)
        self._counts: dict[str, float] = {}  # only arms with a reward (or prior)
        self._sums: dict[str, float] = {}
        self._observed: dict[str, float] = {}  # side observations inside _counts, not in _total
        self._total = 0.0

    def _on_add(self, name: str) -> None:
        count, total = self._prior(name, self.p.prior_weight)
        if count:
            self._counts[name], self._sums[name] = count, total
            self._total += count
        else:
            self._cold.add(name)

    def _on_remove(self, name: str) -> None:
        self._total -= self._counts.pop(name, 0.0) - self._observed.pop(name, 0.0)
        self._sums.pop(name, None)
        self._cold.discard(name)

    def _best_index(self) -> str:
        if not self._counts:  # every arm still waits for its first reward
            self._require_any_arm()
            return next(iter(self._arms))
        sums, c = self._sums, self.p.c
        log_t = math.log(self._total) if self._total > 1.0 else 0.0
        best, best_index = "", -math.inf
        for name, count in self._counts.items():
            index = sums[name] / count + c * math.sqrt(log_t / count)
            if index > best_index:
                best, best_index = name, index
        return best

    def update(self, name: str, reward: float) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        self._add(name, reward)
        self._total += 1.0

    def observe(self, name: str, reward: float) -> None:
        """The arm's mean and n grow; ``t`` does not (see the class docstring)."""
        self._add(name, validate_reward(reward))
        self._observed[name] = self._observed.get(name, 0.0) + 1.0

    def _add(self, name: str, reward: float) -> None:
        """One more reward in the arm's mean and n (served or observed)."""
        counts = self._counts
        if name in counts:
            counts[name] += 1.0
            self._sums[name] += reward
        else:
            self._require_arm(name)
            counts[name], self._sums[name] = 1.0, reward
            self._cold.discard(name)

    def _stats_state(self) -> dict[str, Any]:
        return {"counts": dict(self._counts), "sums": dict(self._sums),
                "observed": dict(self._observed), "cold_start": self._cold.state()}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._counts = {n: float(v) for n, v in stats["counts"].items() if n in self._arms}
        self._sums = {n: float(stats["sums"][n]) for n in self._counts}
        # States saved before observe() existed have no "observed": nothing was observed.
        self._observed = {n: float(v) for n, v in stats.get("observed", {}).items()
                          if n in self._counts}
        self._cold.load(stats["cold_start"], self._arms)
        self._total = sum(self._counts.values()) - sum(self._observed.values())


class SlidingWindowUCB(IndexPolicy):
    """UCB over the last ``window`` rewards of the deployment (all arms together).

    Index ``mean_w + c * sqrt(ln min(t, window) / n_w)`` (default ``c = sqrt(0.6)``, as in
    Garivier & Moulines), where ``mean_w`` and ``n_w`` count only
    rewards inside the window. An arm with no reward in the window (new, or starved for a
    whole window) is served once, then every ``cold_start_retry`` decisions until a reward is
    back in the window: this periodic re-check is what lets the policy notice that a
    neglected version has become good again. Validation priors are not supported: a prior
    would never leave the window.

    Side observations (:meth:`observe`): the reward enters the window like a served one (the
    window holds the last ``window`` rewards of either kind, so with shadow scoring it spans
    fewer requests) and counts in the arm's ``mean_w`` and ``n_w``; it ends the arm's cold
    start. ``t`` in the log counts only the served rewards in the window: as in
    :class:`UCB1`, the exploration budget is the policy's own decisions.

    >>> p = SlidingWindowUCB(window=50, c=0.1)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for _ in range(25): p.update("a", 0.9); p.update("b", 0.1)
    >>> p.select()
    'a'
    >>> for _ in range(25): p.update("a", 0.0); p.update("b", 0.6)  # "a" degrades
    >>> p.select()
    'b'
    """

    key = "sliding-window-ucb"
    Params: ClassVar[type] = SlidingWindowUCBParams

    def __init__(self, window: int = _SW_UCB.window, c: float = _SW_UCB.c, *,
                 cold_start_retry: int = _SW_UCB.cold_start_retry,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = p = SlidingWindowUCBParams(window, c, cold_start_retry)
        self._cold = ColdStart(p.cold_start_retry)
        self._history: deque[tuple[str, float]] = deque()  # served or _Observation
        self._counts: dict[str, int] = {}
        self._sums: dict[str, float] = {}
        self._observed_in_window = 0  # entries of _history that are _Observation

    def _on_add(self, name: str) -> None:
        self._counts[name], self._sums[name] = 0, 0.0
        self._cold.add(name)

    def _on_remove(self, name: str) -> None:
        del self._counts[name], self._sums[name]  # its window entries are skipped when they expire
        self._cold.discard(name)

    def _best_index(self) -> str:
        if not self._counts:
            self._require_any_arm()
        sums, c = self._sums, self.p.c
        served = len(self._history) - self._observed_in_window
        log_t = math.log(served) if served > 1 else 0.0
        best, best_index = next(iter(self._counts)), -math.inf
        for name, count in self._counts.items():
            if not count:
                continue  # waiting in the cold-start queue
            index = sums[name] / count + c * math.sqrt(log_t / count)
            if index > best_index:
                best, best_index = name, index
        return best

    def update(self, name: str, reward: float) -> None:
        reward = validate_reward(reward)
        self._enter(name, reward, (name, reward))

    def observe(self, name: str, reward: float) -> None:
        """Into the window and the arm's windowed stats; not into ``t`` (class docstring)."""
        reward = validate_reward(reward)
        self._enter(name, reward, _Observation(name, reward))

    def _enter(self, name: str, reward: float, entry: tuple[str, float]) -> None:
        """Add a (validated) reward to the window; the oldest entry leaves it when full."""
        counts = self._counts
        if name not in counts:
            self._require_arm(name)
        if not counts[name]:
            self._cold.discard(name)
        counts[name] += 1
        self._sums[name] += reward
        history = self._history
        history.append(entry)
        if entry.__class__ is _Observation:
            self._observed_in_window += 1
        if len(history) > self.p.window:
            old, old_reward = left = history.popleft()
            if left.__class__ is _Observation:
                self._observed_in_window -= 1
            if old in counts:
                remaining = counts[old] - 1
                counts[old] = remaining
                # Reset exactly at zero so float error cannot accumulate forever.
                self._sums[old] = self._sums[old] - old_reward if remaining else 0.0
                if not remaining:
                    self._cold.add(old)

    def _stats_state(self) -> dict[str, Any]:
        return {"history": [[*entry, 1] if entry.__class__ is _Observation else [*entry]
                            for entry in self._history],
                "cold_start": self._cold.state()}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        # An entry [name, reward, 1] is a side observation; [name, reward] a served reward.
        self._history = deque(
            _Observation(str(item[0]), float(item[1])) if len(item) == 3
            else (str(item[0]), float(item[1])) for item in stats["history"])
        self._observed_in_window = sum(
            1 for entry in self._history if entry.__class__ is _Observation)
        for name, reward in self._history:
            if name in self._counts:
                self._counts[name] += 1
                self._sums[name] += reward
        self._cold.load(stats["cold_start"], self._arms)
