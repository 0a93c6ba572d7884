"""``GET /v1/deployments/{d}/history``: traffic and reward per time bucket and version.

What the dashboard draws. Computed from the SQL log (:mod:`banditops.store.history`), so it
is right across replicas and restarts, in a thread of its own (never on the event loop, never
on the deployment's worker, which serves predictions). An answer is kept ``TTL_SECONDS`` per
(deployment, minutes, buckets) and shared by every request meanwhile, even by those that
arrive while it is being computed: ten dashboards refreshing every two seconds cost one query
per two seconds, not ten.

The cache does not help against a client that asks for other parameters each time (every
``buckets`` from 1 to 360 is its own answer): each would be a query over up to a day of rows.
So at most ``MAX_RUNNING`` answers are computed at once, in threads of their own (not the
default executor, which parses large bodies and reads events), and at most ``MAX_WAITING``
more wait for them; past that the answer is 503 with Retry-After (OverloadedError), so one
client key cannot make the database or the process work without bound.

Buckets end on a multiple of their width (the last one is the current, partial one), so a
bucket keeps its edges from one refresh to the next. Per bucket and version: decisions (by the
time they were made), feedbacks and reward sum (by the time the feedback arrived), the reward
mean and its 95 % interval: Wilson's score interval when every reward in the bucket is 0 or 1
(statsmodels), Student's t otherwise (scipy); the same rule as the deployment's report
(:func:`banditops.deployment.reward_interval`). Traffic share is the version's decisions over
all decisions of the bucket (None for an empty bucket).
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from banditops.deployment import reward_interval
from banditops.errors import OverloadedError
from banditops.store.history import Buckets, bucketed
from banditops.store.sql import Store

TTL_SECONDS = 2.0
MAX_ENTRIES = 256  # (deployment, minutes, buckets) answers kept at once
MAX_MINUTES = 24 * 60
MAX_BUCKETS = 360
MAX_RUNNING = 2  # answers computed at once (database queries in flight)
MAX_WAITING = 8  # more answers queued behind them; past that, 503
INTERVAL = ("95% interval of the mean reward: Wilson score when every reward of the bucket "
            "is 0 or 1, Student t otherwise")


class History:
    """The history answers of every deployment, cached for ``ttl`` seconds."""

    def __init__(self, store: Store, ttl: float = TTL_SECONDS,
                 clock=time.time) -> None:
        self.store, self.ttl, self.clock = store, ttl, clock
        self._answers: dict[tuple[str, int, int], tuple[float, asyncio.Future]] = {}
        self.queries = 0  # how many were computed (tests and the benchmark read it)
        self.pending = 0  # answers being computed or queued for a thread
        self._threads = ThreadPoolExecutor(MAX_RUNNING, thread_name_prefix="history")

    async def get(self, deployment: str, minutes: int, buckets: int) -> dict[str, Any]:
        key = (deployment, minutes, buckets)
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is None or cached[0] < now:
            if self.pending >= MAX_RUNNING + MAX_WAITING:
                raise OverloadedError(f"{self.pending} history answers are being computed; "
                                      "retry in a moment (or ask for parameters asked before: "
                                      "they are shared)")
            if len(self._answers) >= MAX_ENTRIES:
                self._answers = {k: v for k, v in self._answers.items() if v[0] >= now}
            self.pending += 1
            future = asyncio.get_running_loop().run_in_executor(
                self._threads, self.compute, deployment, minutes, buckets)
            future.add_done_callback(lambda f: self._done(key, f))
            cached = (now + self.ttl, future)
            self._answers[key] = cached
            self.queries += 1
        return await asyncio.shield(cached[1])

    def _done(self, key: tuple[str, int, int], future: asyncio.Future) -> None:
        """A computation ended; a failed one is not cached: the next request tries again."""
        self.pending -= 1
        if future.cancelled() or future.exception() is not None:
            entry = self._answers.get(key)
            if entry is not None and entry[1] is future:
                del self._answers[key]

    def compute(self, deployment: str, minutes: int, buckets: int) -> dict[str, Any]:
        """The answer, from the database (blocking)."""
        width = minutes * 60.0 / buckets
        end = math.ceil(self.clock() / width) * width
        start = end - minutes * 60.0
        counts = bucketed(self.store, deployment, start, end, buckets)
        totals = [sum(c.decisions[i] for c in counts.values()) for i in range(buckets)]
        return {"deployment": deployment, "minutes": minutes, "buckets": buckets,
                "bucket_seconds": width, "start": start, "end": end, "interval": INTERVAL,
                "decisions": totals,
                "feedbacks": [sum(c.feedbacks[i] for c in counts.values())
                              for i in range(buckets)],
                "versions": [version_series(name, counts[name], totals)
                             for name in sorted(counts)]}


def version_series(name: str, counts: Buckets, totals: list[int]) -> dict[str, Any]:
    """One version's lists: counts as logged, then the figures derived from them."""
    means, lows, highs = [], [], []
    for n, total, total_sq in zip(counts.feedbacks, counts.reward_sum, counts.reward_sq,
                                  strict=True):
        if n == 0:
            means.append(None), lows.append(None), highs.append(None)
            continue
        low, high = reward_interval(n, total, total_sq, binary=abs(total_sq - total) < 1e-9)
        means.append(total / n), lows.append(low), highs.append(high)
    return {"name": name, "decisions": counts.decisions, "feedbacks": counts.feedbacks,
            "reward_sum": counts.reward_sum, "reward_mean": means, "ci_low": lows,
            "ci_high": highs,
            "traffic_share": [d / t if t else None for d, t in zip(counts.decisions, totals,
                                                                    strict=True)]}
