"""The decision log: where a Deployment keeps its decisions until their feedback arrives.

A :class:`~banditops.Deployment` logs every decision through a ``DecisionLog`` and reads it back
when the label comes: the replay uses :class:`~banditops.store.memory.MemoryLog` (bounded, with
a TTL), the service :class:`~banditops.store.sql.SqlLog` (durable, shared by replicas). The
Deployment stays the one place where a label becomes a reward and a policy update; a log only
stores, finds, closes and counts.

Totals (decisions, feedbacks, reward sums) are kept incrementally as decisions and feedback are
written, so a report costs O(versions), never a scan of the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from banditops.errors import BanditOpsError


class LoggedDecision(NamedTuple):
    """One decision as the log keeps it (a tuple: the replay writes millions of them)."""

    id: str
    version: str
    prediction: Any
    propensity: float
    created_at: float
    owner: str | None = None
    shadows: tuple[tuple[str, Any], ...] = ()  # (version, prediction) scored on the label too
    context: Any = None  # the request's features, kept for a contextual policy's update


class Closing(NamedTuple):
    """A decision being closed by its feedback: the label, the reward it earned, and the
    rewards its shadow predictions earned (version, reward)."""

    decision: LoggedDecision
    label: Any
    reward: float
    shadow_rewards: tuple[tuple[str, float], ...] = ()


class CaughtUp(NamedTuple):
    """A feedback another writer closed: the served version's reward and the shadow ones."""

    version: str
    reward: float
    shadow_rewards: tuple[tuple[str, float], ...] = ()
    context: Any = None  # the decision's request features (see LoggedDecision.context)


@dataclass(slots=True)
class VersionTotals:
    """What the log holds for one version: decisions made, feedback received, reward sums."""

    decisions: int = 0
    feedbacks: int = 0
    expired: int = 0
    reward_sum: float = 0.0
    reward_sq: float = 0.0

    def add_reward(self, reward: float) -> None:
        self.feedbacks += 1
        self.reward_sum += reward
        self.reward_sq += reward * reward

    @property
    def binary(self) -> bool:
        """Whether every reward was 0 or 1 (for r in [0, 1], r*r == r exactly then)."""
        return abs(self.reward_sq - self.reward_sum) < 1e-9


class DecisionLog(ABC):
    """Stores decisions, finds them for feedback, closes them once, and keeps totals.

    ``lookup`` raises :class:`~banditops.errors.UnknownDecisionError`,
    :class:`~banditops.errors.DuplicateFeedbackError` or
    :class:`~banditops.errors.ExpiredDecisionError`; ``close`` returns the feedback's sequence
    number, or None when another writer closed the decision first (it is counted once).
    """

    #: Whether the log keeps a decision's shadow predictions (see banditops.shadow).
    keeps_shadows: bool = False

    @abstractmethod
    def record(self, decisions: Sequence[LoggedDecision]) -> None:
        """Keep these decisions (durably, where the log is durable) before they are answered."""

    def record_one(self, decision: LoggedDecision) -> None:
        """:meth:`record` for one decision (logs override it where that is cheaper)."""
        self.record((decision,))

    @abstractmethod
    def lookup(self, decision_id: str, now: float, owner: str | None = None) -> LoggedDecision:
        """The open decision with this id, or the error that says why there is none. A
        decision logged with another owner is unknown, whatever its state (no oracle)."""

    def lookup_many(self, ids: Sequence[str], now: float, owner: str | None = None
                    ) -> dict[str, LoggedDecision | BanditOpsError]:
        """:meth:`lookup` for many ids at once (one round trip where the log is remote)."""
        found: dict[str, LoggedDecision | BanditOpsError] = {}
        for decision_id in ids:
            try:
                found[decision_id] = self.lookup(decision_id, now, owner)
            except BanditOpsError as error:
                found[decision_id] = error
        return found

    @abstractmethod
    def close(self, closings: Sequence[Closing], now: float) -> list[int | None]:
        """Record the feedback of open decisions; a sequence number each, None if a
        duplicate (another writer closed it first)."""

    def close_one(self, decision: LoggedDecision, label: Any, reward: float, now: float,
                  shadow_rewards: tuple[tuple[str, float], ...] = ()) -> int | None:
        """:meth:`close` for one decision."""
        return self.close((Closing(decision, label, reward, shadow_rewards),), now)[0]

    def add_shadows(self, shadows: Mapping[str, tuple[tuple[str, Any], ...]]) -> int:
        """Attach shadow predictions, computed after the answer was sent, to open decisions
        (decision id -> ((version, prediction), ...)); a decision closed or gone meanwhile
        keeps none. Returns how many decisions took theirs."""
        raise NotImplementedError(f"{type(self).__name__} does not keep shadow predictions")

    @abstractmethod
    def totals(self) -> dict[str, VersionTotals]:
        """Per version: what the log holds (all writers together, where it is shared)."""

    def catch_up(self) -> list[CaughtUp]:
        """Feedback other writers closed since the last call, each once, in order. A log
        with one writer has none."""
        return []

    def position(self) -> dict[str, Any]:
        """How far :meth:`catch_up` has read, JSON-safe (stored with policy snapshots)."""
        return {}

    def restore_position(self, position: dict[str, Any]) -> None:  # noqa: B027 (optional)
        """Continue reading from a :meth:`position`."""

    @property
    def pending_count(self) -> int:
        """Open decisions the log holds in memory (0 where they live elsewhere)."""
        return 0


def unique_ids(ids: Iterable[str]) -> list[str]:
    """Ids in first-seen order without repeats (a batch may name a decision twice)."""
    return list(dict.fromkeys(ids))
