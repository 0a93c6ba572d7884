"""Contextual strategies in the replay, and the two oracles, on hand-made streams."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from banditops.context import ContextEncoder
from banditops.errors import InvalidParameterError
from banditops.rewards import accuracy
from banditops.simulation.experiment import check_choices, contextual_left_out
from banditops.simulation.metrics import evaluate, gap_closed
from banditops.simulation.pipeline import Release
from banditops.simulation.replay import Replay, context_matrix, replay
from banditops.simulation.strategies import CONTEXTUAL, STRATEGIES, Strategy
from banditops.simulation.stream import StreamSettings, stream_from_releases

N, CHUNK = 400, 100


def release(index: int, row: int, predictions: np.ndarray, score: float) -> Release:
    return Release(index, f"v{index + 1}", "hand", row, (0, 1), (1, 2), score, False,
                   predictions[row:])


def segmented(n: int = N, chunk: int = CHUNK, with_features: bool = True):
    """All labels 1; requests alternate between segments A (even rows) and B (odd rows).
    v1 (from row ``chunk``) is right on A only, v2 (from row 2 ``chunk``) on B only: every
    chunk's best version earns half of it, a router that reads the segment all of it."""
    labels = np.ones(n, dtype=int)
    rows = np.arange(n)
    on_a = (rows % 2 == 0).astype(int)
    features = pd.DataFrame({"segment": np.where(rows % 2 == 0, "A", "B"),
                             "size": rows % 7})
    settings = StreamSettings(chunk, 10, accuracy, "accuracy")
    return stream_from_releases("toy", "natural", "hand-made", settings, labels,
                                [release(0, chunk, on_a, 0.5),
                                 release(1, 2 * chunk, 1 - on_a, 0.5)],
                                features=features if with_features else None)


def test_per_request_oracle_gap_closed_by_hand():
    stream = segmented()
    # Rows 100-199: only v1 live, right on half; rows 200-399: one of the two is right on
    # every row, each on half.
    assert stream.oracle_request_rewards().tolist() == [1.0, 0.0] * 50 + [1.0] * 200
    assert stream.oracle_chunk_rewards().tolist() == [50.0, 50.0, 50.0]
    served = np.full(N, -1, dtype=np.int16)
    served[100:] = 0  # v1 throughout: the per-chunk oracle's reward
    metrics, _ = evaluate(stream, Replay(served, []))
    assert metrics.oracle_reward == pytest.approx(0.5)
    assert metrics.request_oracle_reward == pytest.approx(250 / 300)
    assert metrics.regret == pytest.approx(0.0) and metrics.gap_closed == pytest.approx(0.0)
    assert metrics.request_regret == pytest.approx((250 / 300 - 0.5) / (250 / 300))
    served[200:] = np.where(np.arange(200, N) % 2 == 0, 0, 1)  # the right version per row
    metrics, _ = evaluate(stream, Replay(served, []))
    assert metrics.mean_reward == pytest.approx(250 / 300)
    assert metrics.regret == pytest.approx(-(250 / 300 - 0.5) / 0.5)  # beats the chunk oracle
    assert metrics.gap_closed == pytest.approx(1.0) and metrics.request_regret == 0.0
    served[200:] = np.where(np.arange(200, N) % 2 == 0, 1, 0)  # always the wrong one
    metrics, _ = evaluate(stream, Replay(served, []))
    assert metrics.gap_closed == pytest.approx((50 / 300 - 0.5) / (250 / 300 - 0.5))
    assert gap_closed(0.7, 0.7, 0.7) != gap_closed(0.7, 0.7, 0.7)  # tied oracles: NaN


def test_the_per_request_oracle_is_never_below_the_per_chunk_oracle():
    rng = np.random.default_rng(0)
    n, chunk = 3000, 250
    labels = rng.integers(0, 2, n)
    releases = [release(i, chunk * (i + 1), rng.integers(0, 2, n), 0.5) for i in range(6)]
    stream = stream_from_releases("toy", "natural", "", StreamSettings(chunk, 10, accuracy,
                                                                      "accuracy"),
                                  labels, releases)
    per_request = stream.oracle_request_rewards()
    for (start, end), total in zip(stream.chunk_bounds(), stream.oracle_chunk_rewards(),
                                   strict=True):
        assert per_request[start - stream.start:end - stream.start].sum() >= total


@pytest.mark.parametrize("name", ["linucb[shadow]", "linear-thompson[shadow]", "linucb",
                                  "linear-thompson"])
def test_contextual_strategies_learn_which_version_serves_which_segment(name):
    stream = segmented(4000, 500)
    metrics, _ = evaluate(stream, replay(stream, STRATEGIES[name], seed=0))
    # Context-free, no strategy can beat the per-chunk oracle (0.5 per request here).
    assert metrics.regret < -0.4, metrics
    assert metrics.gap_closed > 0.6, metrics


def test_contexts_are_the_encoded_rows_and_computed_once_per_encoder():
    stream = segmented()
    encoder = ContextEncoder(dimension=32)
    matrix = context_matrix(stream, encoder)
    assert context_matrix(stream, ContextEncoder(dimension=32)) is matrix
    np.testing.assert_array_equal(matrix, encoder.encode_frame(stream.features))
    np.testing.assert_array_equal(matrix[7], encoder.encode({"segment": "B", "size": 0}))
    assert context_matrix(stream, ContextEncoder(dimension=16)).shape == (N, 16)


def test_a_stream_keeps_its_features_through_pickling():
    stream = segmented()
    copy = pickle.loads(pickle.dumps(stream))  # what worker processes and Ray receive
    pd.testing.assert_frame_equal(copy.features, stream.features)


def test_contextual_strategies_need_features_and_request_granularity():
    with pytest.raises(ValueError, match="carries no request features"):
        replay(segmented(with_features=False), STRATEGIES["linucb"], seed=0)
    with pytest.raises(ValueError, match="no chunk-granularity replay"):
        replay(segmented(), STRATEGIES["linucb"], seed=0, granularity="chunk")
    names = [s for s in STRATEGIES if STRATEGIES[s].contextual]
    assert len(names) == len(CONTEXTUAL)
    assert contextual_left_out(["thompson", *names], "chunk") == names
    assert contextual_left_out(["thompson", *names], "request") == []
    with pytest.raises(InvalidParameterError, match="need --granularity request"):
        check_choices(None, names, "chunk", 1)


def test_an_unseeded_contextual_strategy_gives_the_same_run_for_every_seed():
    stream = segmented(1000, 250)
    unseeded = [s for s in STRATEGIES.values() if s.contextual and not s.seeded]
    assert {s.name for s in unseeded} >= {"linucb", "linucb[shadow]"}
    for strategy in unseeded:
        first, other = replay(stream, strategy, seed=0), replay(stream, strategy, seed=7)
        assert (first.served == other.served).all(), strategy.name
    seeded = Strategy("wide", "contextual", "linear-thompson", {"v": 1.0})  # explores a lot
    assert seeded.seeded
    assert (replay(stream, seeded, seed=0).served != replay(stream, seeded, seed=7).served).any()
