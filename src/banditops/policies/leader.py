"""Follow the leader over a window: serve the arm with the best recent mean reward.

This is the full-information rule. When every live version's prediction is scored on every
label (shadow scoring, :mod:`banditops.shadow`), each arm's recent mean is known without
serving it, so nothing needs exploring: the best recent mean is the best bet, and a window
forgets the past quickly enough to follow drift. Under bandit feedback (no ``observe``) the
same rule is plain greedy: an arm that looked bad on its first rewards is never served again
and its window never changes, so a good arm can be starved for good. Use a bandit there.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from banditops.errors import InvalidParameterError
from banditops.policies.base import ColdStart, IndexPolicy, check_window
from banditops.rewards import validate_reward


@dataclass(frozen=True, slots=True)
class FollowTheLeaderParams:
    """Parameters of :class:`FollowTheLeader` (documented there), validated on creation.

    >>> FollowTheLeaderParams(window=10, min_rewards=20)
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidParameterError: min_rewards must be at most window (10), got 20
    """

    window: int = 2000
    min_rewards: int = 30
    cold_start_retry: int = 100

    def __post_init__(self) -> None:
        check_window("window", self.window)
        check_window("min_rewards", self.min_rewards)
        check_window("cold_start_retry", self.cold_start_retry)
        if self.min_rewards > self.window:
            raise InvalidParameterError(
                f"min_rewards must be at most window ({self.window}), got {self.min_rewards}")


_DEFAULTS = FollowTheLeaderParams()


class FollowTheLeader(IndexPolicy):
    """Serve the arm whose last ``window`` rewards (served or observed) have the best mean.

    Each arm keeps its own window: its last ``window`` rewards, whoever chose it, so an arm
    that serves little is still compared on its own recent evidence, and an arm's old rewards
    leave as new ones arrive (drift is followed within about ``window`` rewards).

    Cold start: an arm with fewer than ``min_rewards`` rewards is *cold* and does not compete
    on its mean (a handful of rewards is noise). It is first served ``cold_start_retry``
    decisions after it is added, then every ``cold_start_retry`` decisions until it is warm
    (:class:`~banditops.policies.base.ColdStart`; the other policies serve a new arm at
    once). Under shadow scoring it warms up from its side observations within about the label
    delay plus ``min_rewards`` requests, so a new release serves once or not at all before
    its evidence speaks, and a broken one barely serves; under bandit feedback the retries are
    what gets it its rewards at all. While no arm is warm the best validation score serves
    (unscored arms rank below scored ones).

    Ties (equal means, or equal validation scores) go to the newer release, which was trained
    on fresher data. Deterministic: the next choice has propensity 1.

    Side observations (:meth:`observe`) are exactly :meth:`update`: a reward enters the arm's
    window whoever chose the arm. Without them the policy is greedy (module docstring).

    >>> p = FollowTheLeader(window=4, min_rewards=2)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for r in (0.9, 0.9): p.observe("a", r); p.observe("b", 0.5)
    >>> p.select()
    'a'
    >>> for r in (0.1, 0.1, 0.1, 0.1): p.observe("a", r)  # its good past leaves the window
    >>> p.select()
    'b'
    """

    key = "follow-the-leader"
    Params: ClassVar[type] = FollowTheLeaderParams

    def __init__(self, window: int = _DEFAULTS.window, *,
                 min_rewards: int = _DEFAULTS.min_rewards,
                 cold_start_retry: int = _DEFAULTS.cold_start_retry,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = p = FollowTheLeaderParams(window, min_rewards, cold_start_retry)
        self._cold = ColdStart(p.cold_start_retry)
        self._windows: dict[str, deque[float]] = {}
        self._sums: dict[str, float] = {}
        self._leader: str | None = None  # cached; None: recompute

    def _on_add(self, name: str) -> None:
        self._windows[name] = deque()
        self._sums[name] = 0.0
        self._cold.add(name, at_once=False)
        self._leader = None

    def _on_remove(self, name: str) -> None:
        del self._windows[name], self._sums[name]
        self._cold.discard(name)
        self._leader = None

    def _best_index(self) -> str:
        """The warm arm with the best windowed mean (ties: newer); with no warm arm, the best
        validation score (ties: newer)."""
        if self._leader is not None:
            return self._leader
        self._require_any_arm()
        arms, windows, sums, warm = self._arms, self._windows, self._sums, self.p.min_rewards
        best, best_key = "", (-math.inf, -math.inf, -1)
        for name, info in arms.items():
            count = len(windows[name])
            if count >= warm:
                key = (sums[name] / count, info.released_at, info.order)
                if key > best_key:
                    best, best_key = name, key
        if not best:
            best = max(arms, key=lambda n: (
                arms[n].validation_score is not None,
                -math.inf if arms[n].validation_score is None else arms[n].validation_score,
                arms[n].released_at, arms[n].order))
        self._leader = best
        return best

    def is_warm(self, name: str) -> bool:
        """Whether ``name`` has the ``min_rewards`` it needs to compete on its mean."""
        self._require_arm(name)
        return len(self._windows[name]) >= self.p.min_rewards

    def update(self, name: str, reward: float) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        window = self._windows.get(name)
        if window is None:
            self._require_arm(name)
            return
        window.append(reward)
        size = len(window)
        if size > self.p.window:
            total = self._sums[name] + reward - window.popleft()
            self._sums[name] = total if total > 0.0 else 0.0  # float error never below 0
        else:
            self._sums[name] += reward
            if size == self.p.min_rewards:
                self._cold.discard(name)
        self._leader = None

    def observe(self, name: str, reward: float) -> None:
        """Exactly :meth:`update`: a reward enters the arm's window whoever chose it."""
        self.update(name, reward)

    def _stats_state(self) -> dict[str, Any]:
        # Sums are saved, not recomputed, so a restored policy compares exactly the same means.
        return {"windows": {n: list(w) for n, w in self._windows.items()},
                "sums": dict(self._sums), "cold_start": self._cold.state()}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        for name in self._arms:
            rewards = [validate_reward(r) for r in stats["windows"][name]]
            if len(rewards) > self.p.window:
                raise ValueError(f"arm {name!r} has {len(rewards)} rewards in a window of "
                                 f"{self.p.window}")
            self._windows[name] = deque(rewards)
            self._sums[name] = float(stats["sums"][name])
        self._cold.load(stats["cold_start"], self._arms)
        self._leader = None
