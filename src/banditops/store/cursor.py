"""Which feedback a replica has learned: a read position over a shared, numbered log.

Replicas share one feedback table whose rows get increasing sequence numbers. A replica
learns the rows it wrote itself at once and every other row when it *catches up*. Sequence
numbers are handed out before commit, so under concurrency row 11 can become visible before
row 10: a number skipped by a read is a *gap*, looked for again on later reads for
``gap_seconds`` and then given up (a failed insert leaves a hole for good). Rows this replica
wrote are *ahead* of the read position until a read passes them, and are not learned twice.

The position (high-water mark, gaps, ahead) is plain data, stored with policy snapshots, so a
restart learns exactly the rows its snapshot had not.

>>> cursor = FeedbackCursor(gap_seconds=30)
>>> cursor.wrote(2)                        # this replica wrote row 2 and learned it
>>> cursor.advance([1, 2, 4], now=0.0)     # a read sees 1, 2 and 4: learn 1 and 4
[1, 4]
>>> cursor.high_water, sorted(cursor.gaps)
(4, [3])
>>> cursor.advance([3], now=1.0)           # row 3 commits late: learned now, once
[3]
>>> cursor.gaps
{}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from banditops.errors import InvalidStateError


class FeedbackCursor:
    """High-water mark, gaps below it, and rows written (and learned) ahead of it."""

    def __init__(self, gap_seconds: float = 30.0) -> None:
        self.gap_seconds = gap_seconds
        self.high_water = 0
        self.gaps: dict[int, float] = {}  # seq -> when first missed
        self.ahead: set[int] = set()

    def wanted(self, now: float) -> list[int]:
        """Gaps still worth reading again (older ones are given up)."""
        for seq in [s for s, first in self.gaps.items() if now - first > self.gap_seconds]:
            del self.gaps[seq]
        return sorted(self.gaps)

    def wrote(self, seq: int) -> None:
        """This replica wrote (and learned) row ``seq``."""
        if seq == self.high_water + 1:
            self.high_water = seq  # the common case on one replica: no bookkeeping
            self._absorb()
        elif seq > self.high_water:
            self.ahead.add(seq)
        else:
            self.gaps.pop(seq, None)

    def advance(self, seqs: Iterable[int], now: float) -> list[int]:
        """Rows a read returned (above the high-water mark or in the gaps, ascending):
        which of them to learn now."""
        learn = []
        for seq in seqs:
            if seq in self.gaps:
                del self.gaps[seq]
                learn.append(seq)
                continue
            if seq <= self.high_water:
                continue  # read twice (an overlapping query): learned already
            for missing in range(self.high_water + 1, seq):
                if missing not in self.ahead:
                    self.gaps.setdefault(missing, now)
            self.high_water = seq
            if seq in self.ahead:
                self.ahead.discard(seq)
            else:
                learn.append(seq)
        self.ahead = {seq for seq in self.ahead if seq > self.high_water}
        self._absorb()
        return learn

    def _absorb(self) -> None:
        while self.high_water + 1 in self.ahead:
            self.high_water += 1
            self.ahead.discard(self.high_water)

    def state(self) -> dict[str, Any]:
        return {"high_water": self.high_water, "gaps": sorted(self.gaps),
                "ahead": sorted(self.ahead)}

    def load(self, state: dict[str, Any], now: float) -> None:
        """Continue from :meth:`state` (gaps get a fresh ``gap_seconds`` to appear)."""
        try:
            high_water = int(state["high_water"])
            gaps = {int(seq): now for seq in state["gaps"]}
            ahead = {int(seq) for seq in state["ahead"]}
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidStateError(f"malformed feedback cursor state: {error!r}") from None
        self.high_water, self.gaps, self.ahead = high_water, gaps, ahead
