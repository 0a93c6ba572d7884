"""Replay and metrics on a tiny stream whose every number can be checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from banditops.rewards import accuracy
from banditops.simulation.metrics import evaluate, mean_interval
from banditops.simulation.pipeline import Release
from banditops.simulation.replay import Replay, replay
from banditops.simulation.strategies import STRATEGIES, Strategy
from banditops.simulation.stream import StreamSettings, stream_from_releases

N, CHUNK = 400, 100


def release(index: int, row: int, predictions: np.ndarray, score: float,
            faulty: bool = False) -> Release:
    return Release(index, f"v{index + 1}", "hand", row, (0, 1), (1, 2), score, faulty,
                   predictions[row:])


@pytest.fixture
def stream():
    """All labels 1. v1 (row 100) is always right; v2 (row 200) is right on the first half
    of every chunk only, and is marked faulty; its validation score looks better."""
    labels = np.ones(N, dtype=int)
    always = np.ones(N, dtype=int)
    half = np.where(np.arange(N) % CHUNK < CHUNK // 2, 1, 0)
    settings = StreamSettings(CHUNK, 10, accuracy, "accuracy")
    return stream_from_releases("toy", "faulty-release", "hand-made", settings, labels,
                                [release(0, 100, always, 0.80),
                                 release(1, 200, half, 0.90, faulty=True)])


def test_metrics_of_a_hand_checkable_run(stream):
    served = np.full(N, -1, dtype=np.int16)
    served[100:300] = 0  # v1: 200 rewards of 1
    served[300:400] = 1  # v2: 50 of its 100 requests right
    metrics, series = evaluate(stream, Replay(served, rollbacks=[(1, 350)]))
    assert metrics.mean_reward == pytest.approx(250 / 300)
    assert metrics.oracle_reward == pytest.approx(1.0)  # v1 is best on every chunk
    assert metrics.regret == pytest.approx(50 / 300)
    assert metrics.faulty_traffic_share == pytest.approx(100 / 300)
    assert metrics.rollback_delay == pytest.approx(100)
    assert (metrics.rollbacks, metrics.healthy_rollbacks, metrics.switches) == (1, 0, 1)
    assert metrics.recall == pytest.approx(250 / 300) and metrics.precision == 1.0
    assert math.isnan(metrics.cost_per_1000)  # accuracy has no cost matrix
    assert series.reward.tolist() == [100, 100, 50]
    assert series.counts.tolist() == [[100, 100, 0], [0, 0, 100]]


def test_latest_serves_every_release_and_validation_champion_the_best_score(stream):
    latest = replay(stream, STRATEGIES["latest"], seed=0).served
    assert (latest[:100] == -1).all() and (latest[100:200] == 0).all()
    assert (latest[200:] == 1).all()
    champion, _ = evaluate(stream, replay(stream, STRATEGIES["validation-champion"], seed=0))
    assert champion.faulty_traffic_share == pytest.approx(200 / 300)  # 0.90 > 0.80


def test_the_guardrail_rolls_back_the_faulty_release_during_the_replay(stream):
    # An A/B test sends v2 half the traffic, so the guardrail sees enough of it.
    ab = Strategy("ab+guardrail", "guarded", "ab-test", {"min_samples": 1000}, guarded=True)
    run = replay(stream, ab, seed=1)
    metrics, _ = evaluate(stream, run)
    assert [version for version, _ in run.rollbacks] == [1]
    (_, row), = run.rollbacks
    assert 200 + 50 < row < 400  # after 50 of its rewards (min_samples), before the end
    assert (run.served[row + 1:] == 0).all()
    unguarded, _ = evaluate(stream, replay(stream, Strategy("ab", "study", "ab-test",
                                                            {"min_samples": 1000}), seed=1))
    assert metrics.faulty_traffic_share < unguarded.faulty_traffic_share - 0.1


def test_chunk_granularity_serves_whole_chunks_and_learns_the_chunk_mean(stream):
    run = replay(stream, Strategy("g", "study", "epsilon-greedy", {"epsilon": 0.0}), seed=0,
                 granularity="chunk")
    chunks = run.served[100:].reshape(3, CHUNK)
    assert all(len(set(chunk.tolist())) == 1 for chunk in chunks)
    assert chunks[0, 0] == 0


def test_the_pipeline_retires_the_oldest_beyond_max_live():
    labels = np.ones(N, dtype=int)
    settings = StreamSettings(CHUNK, 10, accuracy, "accuracy", max_live=2)
    ones, zeros = np.ones(N, dtype=int), np.zeros(N, dtype=int)
    s = stream_from_releases("toy", "natural", "", settings, labels,
                             [release(0, 100, ones, 0.9), release(1, 200, zeros, 0.5),
                              release(2, 300, zeros, 0.5)])
    assert [v.end for v in s.versions] == [300, N, N]
    assert np.isnan(s.rewards[0, 300:]).all()
    # v1 is the only good version and the champion until retired; after that it can't serve.
    run = replay(s, STRATEGIES["validation-champion"], seed=0)
    assert (run.served[100:300] == 0).all() and (run.served[300:] != 0).all()
    assert s.oracle_chunk_rewards().tolist() == [100, 100, 0]


def test_mean_interval_is_student_t():
    values = [0.80, 0.82, 0.84, 0.86]
    mean, low, high = mean_interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.83, 0.83 - half, 0.83 + half))
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)
