"""A deployment's decisions and feedback per time bucket and version, from the SQL log.

Read from the tables every replica writes to, so the figures are the same whichever replica
answers, and survive restarts. Decisions are counted by the time they were made, feedback
(and its reward) by the time it arrived: the moment a version's reward became known, which
is when the guardrail could act on it. Two grouped queries, each answered from a covering
index (migration 0006); a bucket is ``floor((t - start) / width)``, computed in SQL so only
``buckets x versions`` rows travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Float, Integer, cast, func, select

from banditops.store.schema import decisions, feedback
from banditops.store.sql import Store


@dataclass
class Buckets:
    """One version's counts, one list entry per bucket (oldest first)."""

    decisions: list[int] = field(default_factory=list)
    feedbacks: list[int] = field(default_factory=list)
    reward_sum: list[float] = field(default_factory=list)
    reward_sq: list[float] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> Buckets:
        return cls([0] * n, [0] * n, [0.0] * n, [0.0] * n)


def bucketed(store: Store, deployment: str, start: float, end: float, buckets: int
             ) -> dict[str, Buckets]:
    """Counts per version for ``buckets`` equal buckets of ``[start, end)`` (blocking I/O:
    call it from a thread, never from the event loop or a deployment's worker)."""
    width = (end - start) / buckets
    found: dict[str, Buckets] = {}

    def bucket_of(column):
        offset = (column - start) / width
        if store.dialect == "postgresql":  # a cast rounds there; SQLite's truncates
            offset = func.floor(offset)
        return cast(offset, Integer)

    made = bucket_of(decisions.c.created_at).label("bucket")
    counted = (select(made, decisions.c.version, func.count())
               .where(decisions.c.deployment == deployment, decisions.c.created_at >= start,
                      decisions.c.created_at < end)
               .group_by(made, decisions.c.version))
    arrived = bucket_of(feedback.c.created_at).label("bucket")
    rewarded = (select(arrived, feedback.c.version, func.count(),
                       cast(func.sum(feedback.c.reward), Float),
                       cast(func.sum(feedback.c.reward * feedback.c.reward), Float))
                .where(feedback.c.deployment == deployment, feedback.c.created_at >= start,
                       feedback.c.created_at < end)
                .group_by(arrived, feedback.c.version))
    with store._guard("reading the history"), store.engine.connect() as connection:
        for index, version, n in connection.execute(counted):
            row = found.setdefault(version, Buckets.empty(buckets))
            row.decisions[min(max(int(index), 0), buckets - 1)] += int(n)
        for index, version, n, total, total_sq in connection.execute(rewarded):
            row = found.setdefault(version, Buckets.empty(buckets))
            i = min(max(int(index), 0), buckets - 1)  # float edges: never out of range
            row.feedbacks[i] += int(n)
            row.reward_sum[i] += float(total or 0.0)
            row.reward_sq[i] += float(total_sq or 0.0)
    return found
