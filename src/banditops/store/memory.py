"""The in-memory decision log: bounded pending decisions with a TTL (replays, tests, notebooks).

A decision is kept for feedback until ``ttl`` seconds have passed (None: no age limit) or
``max_pending`` newer decisions are pending; then it *expires*: it counts in its version's
``expired`` total and late feedback for it raises :class:`ExpiredDecisionError`. The ids of
closed decisions are remembered (as many as ``max_pending``) so that a second feedback is told
apart from an unknown id.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from banditops.errors import DuplicateFeedbackError, ExpiredDecisionError, UnknownDecisionError
from banditops.policies.base import check_number, check_window
from banditops.store.log import Closing, DecisionLog, LoggedDecision, VersionTotals

FEEDBACK, EXPIRED = "feedback", "expired"


class MemoryLog(DecisionLog):
    """Pending decisions in insertion order, with per-version totals kept as they change."""

    keeps_shadows = True

    def __init__(self, max_pending: int = 100_000, ttl: float | None = None) -> None:
        self.max_pending = check_window("max_pending", max_pending)
        self.ttl = None if ttl is None else check_number(
            "pending_ttl", ttl, low=0.0, high=math.inf, low_open=True)
        self._pending: OrderedDict[str, LoggedDecision] = OrderedDict()
        self._closed: OrderedDict[str, str] = OrderedDict()  # id -> FEEDBACK | EXPIRED
        self._totals: dict[str, VersionTotals] = {}

    def record(self, decisions: Sequence[LoggedDecision]) -> None:
        for decision in decisions:
            self.record_one(decision)

    def record_one(self, decision: LoggedDecision) -> None:
        if self.ttl is not None:
            self._expire(decision.created_at)
        pending = self._pending
        pending[decision.id] = decision
        version = self._totals.get(decision.version)
        if version is None:
            version = self._totals[decision.version] = VersionTotals()
        version.decisions += 1
        if len(pending) > self.max_pending:
            self._expire_oldest()

    def lookup(self, decision_id: str, now: float, owner: str | None = None) -> LoggedDecision:
        decision = self._pending.get(decision_id) if isinstance(decision_id, str) else None
        if decision is not None:
            if self.ttl is None or decision.created_at >= now - self.ttl:
                return decision
            self._expire(now)
        if not isinstance(decision_id, str):
            raise UnknownDecisionError(
                f"decision id must be a string, got {type(decision_id).__name__}")
        closed = self._closed.get(decision_id)
        if closed == FEEDBACK:
            raise DuplicateFeedbackError(f"decision {decision_id} already received feedback")
        if closed == EXPIRED:
            raise ExpiredDecisionError(
                f"decision {decision_id} expired before its feedback arrived "
                f"(pending_ttl={self.ttl}, max_pending={self.max_pending})")
        raise UnknownDecisionError(f"unknown decision id {decision_id!r}")

    def close(self, closings: Sequence[Closing], now: float) -> list[int | None]:
        return [self.close_one(decision, label, reward, now)
                for decision, label, reward, _ in closings]

    def close_one(self, decision: LoggedDecision, label: object, reward: float, now: float,
                  shadow_rewards: tuple[tuple[str, float], ...] = ()) -> int | None:
        if self._pending.pop(decision.id, None) is None:
            return None  # closed already (e.g. the same id twice in one batch)
        self._remember(decision.id, FEEDBACK)
        self._totals[decision.version].add_reward(reward)
        return 0

    def add_shadows(self, shadows: Mapping[str, tuple[tuple[str, Any], ...]]) -> int:
        pending, added = self._pending, 0
        for decision_id, predictions in shadows.items():
            decision = pending.get(decision_id)
            if decision is not None:
                pending[decision_id] = decision._replace(shadows=tuple(predictions))
                added += 1
        return added

    def totals(self) -> dict[str, VersionTotals]:
        return self._totals

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def _remember(self, decision_id: str, outcome: str) -> None:
        closed = self._closed
        closed[decision_id] = outcome
        if len(closed) > self.max_pending:
            closed.popitem(last=False)

    def _expire_oldest(self) -> None:
        decision_id, decision = self._pending.popitem(last=False)
        self._totals[decision.version].expired += 1
        self._remember(decision_id, EXPIRED)

    def _expire(self, now: float) -> None:
        limit = now - self.ttl  # type: ignore[operator]
        pending = self._pending
        while pending and next(iter(pending.values())).created_at < limit:
            self._expire_oldest()
