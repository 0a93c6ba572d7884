"""Metrics of a replay, and their summary across seeds.

Per run, over the served rows (from the first release on):

- ``mean_reward``: the reward per request; ``accuracy``; ``precision``, ``recall`` and
  ``f1`` of the positive class (with several classes: their unweighted mean over
  classes); with a cost-matrix reward, ``cost_per_1000``: cost per 1,000 requests in
  units of one false alarm.
- ``oracle_reward`` and ``regret``: the per-chunk oracle serves each chunk with the
  pipeline-live version that did best on it in hindsight; ``regret`` is
  ``(oracle_reward - mean_reward) / oracle_reward``, a fraction of the oracle's reward
  (a strategy that mixes versions inside a chunk can do better: by luck, or by routing
  each request to the version that is right for it, as a contextual strategy tries to).
- ``request_oracle_reward`` and ``request_regret``: the same against the per-request oracle,
  which serves each row with the best pipeline-live version on that row in hindsight (an
  upper bound for any router; regret against it is never negative).
- ``gap_closed``: the share of the gap between the two oracles a strategy closes,
  ``(mean_reward - oracle_reward) / (request_oracle_reward - oracle_reward)``: 0 at the
  per-chunk oracle, 1 at the per-request oracle, negative below the per-chunk oracle (NaN
  if the oracles tie).
- ``faulty_traffic_share``: share of requests served by faulty versions;
  ``rollback_delay``: requests a faulty version served after its release, averaged over the
  faulty versions (NaN in scenarios without faulty releases).
- ``rollbacks`` (rollbacks and quarantines) and ``healthy_rollbacks`` (those of versions that
  were not faulty: not always a mistake, a healthy version can be worse than another).
- ``switches``: how often the version serving most of a chunk differs from the previous
  chunk's.
- ``calls_per_request``: model calls per request, the served prediction plus the shadow
  predictions (:mod:`banditops.shadow`) averaged over the served rows: 1 under bandit
  feedback, about the number of live versions when every request is shadow-scored. It is
  what learning from every label costs in compute.

Across seeds, :func:`summarise` gives the mean and a 95% Student-t interval of the reward.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support

from banditops.rewards import CostMatrix
from banditops.simulation.replay import Replay
from banditops.simulation.stream import Stream


@dataclass(frozen=True)
class RunMetrics:
    mean_reward: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    cost_per_1000: float
    oracle_reward: float
    regret: float
    request_oracle_reward: float
    request_regret: float
    gap_closed: float
    faulty_traffic_share: float
    rollback_delay: float
    rollbacks: int
    healthy_rollbacks: int
    switches: int
    calls_per_request: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class RunSeries:
    """Per-chunk totals for plots: the run's reward and how many requests each version served."""

    reward: np.ndarray  # (chunks,)
    counts: np.ndarray  # (versions, chunks)


def evaluate(stream: Stream, run: Replay) -> tuple[RunMetrics, RunSeries]:
    """Score one replay against its stream (see the module docstring)."""
    rows = np.arange(stream.start, stream.n)
    served = run.served[rows].astype(np.intp)
    if (served < 0).any():
        raise ValueError("a served row has no version; the replay is incomplete")
    rewards = stream.rewards[served, rows]
    if np.isnan(rewards).any():
        raise ValueError("a row was served by a version the pipeline had retired")
    predictions = stream.predictions[served, rows]
    labels = stream.labels[rows]
    binary = stream.classes <= 2
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="binary" if binary else "macro",
        labels=None if binary else np.arange(stream.classes), zero_division=0.0)
    cost = math.nan
    reward = stream.settings.reward
    if isinstance(reward, CostMatrix) and reward.fp < 1.0:
        cost = float(1000 * np.mean(1.0 - rewards) / (1.0 - reward.fp))

    bounds = stream.chunk_bounds()
    oracle = stream.oracle_chunk_rewards()
    faulty = np.array([v.faulty for v in stream.versions])
    any_faulty = bool(faulty.any())
    counts = np.stack([np.bincount(served[s - stream.start:e - stream.start],
                                   minlength=len(stream.versions)) for s, e in bounds], axis=1)
    series = RunSeries(np.array([rewards[s - stream.start:e - stream.start].sum()
                                 for s, e in bounds]), counts)
    main = counts.argmax(axis=0)
    oracle_reward = float(oracle.sum() / len(rows))
    request_oracle = float(stream.oracle_request_rewards().mean())
    mean_reward = float(rewards.mean())
    metrics = RunMetrics(
        mean_reward=mean_reward,
        accuracy=float((predictions == labels).mean()),
        precision=float(precision), recall=float(recall), f1=float(f1),
        cost_per_1000=cost,
        oracle_reward=oracle_reward,
        regret=(oracle_reward - mean_reward) / oracle_reward if oracle_reward > 0 else math.nan,
        request_oracle_reward=request_oracle,
        request_regret=((request_oracle - mean_reward) / request_oracle if request_oracle > 0
                        else math.nan),
        gap_closed=gap_closed(mean_reward, oracle_reward, request_oracle),
        faulty_traffic_share=float(faulty[served].mean()) if any_faulty else math.nan,
        rollback_delay=(float(counts[faulty].sum(axis=1).mean()) if any_faulty else math.nan),
        rollbacks=len(run.rollbacks),
        healthy_rollbacks=sum(1 for v, _ in run.rollbacks if not faulty[v]),
        switches=int((main[1:] != main[:-1]).sum()),
        calls_per_request=(1.0 if run.model_calls is None
                           else run.model_calls / len(rows)),
    )
    return metrics, series


def gap_closed(reward: float, chunk_oracle: float, request_oracle: float) -> float:
    """Share of the gap between the per-chunk and the per-request oracle that ``reward``
    closes (negative below the per-chunk oracle; NaN when the oracles tie).

    >>> [round(gap_closed(r, 0.85, 0.95), 3) for r in (0.85, 0.86, 0.84, 0.95)]
    [0.0, 0.1, -0.1, 1.0]
    >>> gap_closed(0.9, 0.9, 0.9)
    nan
    """
    gap = request_oracle - chunk_oracle
    return (reward - chunk_oracle) / gap if gap > 1e-12 else math.nan


def mean_interval(values: list[float] | np.ndarray, level: float = 0.95
                  ) -> tuple[float, float, float]:
    """Mean and Student-t interval across seeds (a single seed gives a zero-width interval)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or float(values.std()) == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)
