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
    assert metrics.calls_per_request == 1.0  # no call count: one call per served row
    shadowed, _ = evaluate(stream, Replay(served, rollbacks=[], model_calls=750))
    assert shadowed.calls_per_request == 2.5


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


# ------------------------------------------------------------------ shadow scoring
def three_versions(n: int, rows: tuple[int, int, int], chunk: int = CHUNK):
    """All labels 1; v1 right on 90% of rows, v2 on 70%, v3 on 50%, released at ``rows``."""
    labels = np.ones(n, dtype=int)
    step = np.arange(n) % 10
    predictions = [(step != 0).astype(int), (step < 7).astype(int), (step % 2).astype(int)]
    settings = StreamSettings(chunk, 10, accuracy, "accuracy")
    return stream_from_releases("toy", "natural", "hand-made", settings, labels,
                                [release(i, row, p, 0.8) for i, (row, p)
                                 in enumerate(zip(rows, predictions, strict=True))])


def test_shadow_strategies_cost_a_call_per_shadowed_version_and_replay_deterministically():
    n = 20_100
    stream = three_versions(n, (100, 101, 102))
    served = n - 100
    # Bandit feedback: one call per request, exactly.
    bandit, _ = evaluate(stream, replay(stream, STRATEGIES["thompson"], seed=0))
    assert bandit.calls_per_request == 1.0
    # Every request shadow-scored: one call per live version (1, then 2, then 3 live).
    everything = replay(stream, STRATEGIES["leader[shadow]"], seed=0)
    assert everything.model_calls == 1 + 2 + 3 * (served - 2)
    metrics, _ = evaluate(stream, everything)
    assert metrics.calls_per_request == pytest.approx(3.0, abs=1e-3)
    # Full information: the leader serves the 90% version on all but a few rows.
    assert (everything.served[102:] == 0).mean() > 0.99
    assert metrics.mean_reward == pytest.approx(0.9, abs=0.01)
    again = replay(stream, STRATEGIES["leader[shadow]"], seed=0)
    assert (again.served == everything.served).all()
    # A tenth of the requests shadow-scored: 1 + 0.1 x 2 other versions.
    tenth = replay(stream, STRATEGIES["thompson[shadow 0.1]"], seed=0)
    tenth_metrics, _ = evaluate(stream, tenth)
    assert tenth_metrics.calls_per_request == pytest.approx(1.2, abs=0.02)
    repeat = replay(stream, STRATEGIES["thompson[shadow 0.1]"], seed=0)
    assert (repeat.served == tenth.served).all() and repeat.model_calls == tenth.model_calls
    other = replay(stream, STRATEGIES["thompson[shadow 0.1]"], seed=1)
    assert other.model_calls != tenth.model_calls  # the shadow sample follows the seed


def test_shadow_observations_reach_the_policy_in_the_replay():
    """Thompson with a tenth of requests shadowed learns v3 is bad faster than bandit
    Thompson, which has to serve it to find out: it sends v3 less traffic."""
    stream = three_versions(6_100, (100, 101, 102))
    plain = replay(stream, STRATEGIES["thompson"], seed=2).served
    shadowed = replay(stream, STRATEGIES["thompson[shadow]"], seed=2).served
    assert (shadowed == 2).sum() < (plain == 2).sum() / 2
    assert (shadowed[1000:] == 0).mean() > 0.98


def test_chunk_granularity_with_a_shadow_strategy():
    """One decision per chunk; shadow versions score their chunk mean reward. The leader
    learns v2 and v3 from their shadow chunk rewards before their first try: v1 (the best)
    serves every chunk. Under bandit feedback it has to try each once, for a whole chunk."""
    chunks = 30
    n = 100 + chunks * CHUNK
    stream = three_versions(n, (100, 200, 300))
    run = replay(stream, STRATEGIES["leader[shadow]"], seed=0, granularity="chunk")
    by_chunk = run.served[100:].reshape(chunks, CHUNK)
    assert all(len(set(chunk.tolist())) == 1 for chunk in by_chunk)
    assert (by_chunk == 0).all()
    metrics, _ = evaluate(stream, run)
    # Chunk 1: one live version, chunk 2: two, then three: one call per live version per row.
    assert run.model_calls == CHUNK * (1 + 2 + 3 * (chunks - 2))
    assert metrics.calls_per_request == pytest.approx((1 + 2 + 3 * 28) / 30)
    assert metrics.mean_reward == pytest.approx(0.9)
    bandit = replay(stream, Strategy("leader", "study", "follow-the-leader"), seed=0,
                    granularity="chunk")
    chosen = bandit.served[100::CHUNK].tolist()
    assert (chosen.count(1), chosen.count(2)) == (1, 1) and chosen[-20:] == [0] * 20
    bandit_metrics, _ = evaluate(stream, bandit)
    assert bandit_metrics.calls_per_request == 1.0
    assert bandit_metrics.mean_reward == pytest.approx((0.7 + 0.5 + 0.9 * 28) / 30)
    tenth, _ = evaluate(stream, replay(stream, STRATEGIES["leader[shadow 0.1]"], seed=0,
                                      granularity="chunk"))
    assert 1.0 <= tenth.calls_per_request < metrics.calls_per_request
    assert 0.5 < tenth.mean_reward <= 0.9 + 1e-9


def test_strategies_without_randomness_give_the_same_run_for_every_seed(stream):
    """The experiment replays them once for all seeds (Strategy.seeded is false)."""
    # Contextual ones need a stream with features: tests/test_replay_context.py.
    unseeded = [s for s in STRATEGIES.values() if not s.seeded and not s.contextual]
    assert {s.name for s in unseeded} >= {"latest", "ucb1", "leader[shadow]"}
    assert STRATEGIES["leader[shadow 0.1]"].seeded and STRATEGIES["thompson"].seeded
    toy = three_versions(3_100, (100, 101, 102))
    for data in (stream, toy):
        for strategy in unseeded:
            first, other = replay(data, strategy, seed=0), replay(data, strategy, seed=7)
            assert (first.served == other.served).all(), strategy.name
            assert (first.rollbacks, first.model_calls) == (other.rollbacks, other.model_calls)
    # The check can tell: a seeded strategy's runs differ.
    assert (replay(toy, STRATEGIES["thompson"], seed=0).served
            != replay(toy, STRATEGIES["thompson"], seed=7).served).any()


# ------------------------------------------------------------------ dark launch
def staged(n: int, accuracies: list[float], rows: list[int], faulty: list[bool],
           max_live: int = 4):
    """All labels 1; version i is right on a fixed ``accuracies[i]`` share of the rows."""
    labels = np.ones(n, dtype=int)
    step = np.arange(n) % 100
    settings = StreamSettings(CHUNK, 10, accuracy, "accuracy", max_live=max_live)
    return stream_from_releases("toy", "faulty-release", "hand-made", settings, labels, [
        release(i, row, (step < round(100 * acc)).astype(int), 0.8, faulty=bad)
        for i, (acc, row, bad) in enumerate(zip(accuracies, rows, faulty, strict=True))])


def test_dark_launch_rolls_a_bad_release_back_before_it_serves_and_promotes_a_good_one():
    stream = staged(6_100, [0.8, 0.3, 0.95], [100, 1000, 2000], [False, True, False])
    run = replay(stream, STRATEGIES["leader[shadow]+dark"], seed=0)
    assert not (run.served == 1).any()  # the bad release never served
    assert [index for index, _ in run.rollbacks] == [1]
    rolled_at = run.rollbacks[0][1]
    assert 1000 < rolled_at < 1400  # judged on its first few hundred labels
    first_v3 = int(np.argmax(run.served == 2))
    assert 2200 < first_v3 < 3000  # dark until its paired evidence promoted it
    assert (run.served[3000:] == 2).all()
    metrics, _ = evaluate(stream, run)
    assert metrics.faulty_traffic_share == 0.0
    assert 1.0 < metrics.calls_per_request < 3.0  # the rolled-back release stops costing
    plain, _ = evaluate(stream, replay(stream, STRATEGIES["leader[shadow]"], seed=0))
    assert plain.faulty_traffic_share > 0.0  # without dark launch it served a few rows


def test_a_dark_release_takes_over_when_the_pipeline_retires_the_last_live_version():
    """max_live 2: v3's release retires v1 while v2, better, is still dark (100 rows, fewer
    labels than a verdict needs): the dark version with the best shadow reward serves."""
    stream = staged(3_100, [0.8, 0.9, 0.7], [100, 200, 300], [False, False, False],
                    max_live=2)
    run = replay(stream, STRATEGIES["leader[shadow]+dark"], seed=0)
    assert (run.served[100:300] == 0).all()
    assert (run.served[300:400] == 1).all()  # promoted by the pipeline, not by evidence
    evaluate(stream, run)  # nothing served by a retired version


def test_report_tables_print_counts_as_integers_and_headers_as_words():
    import pandas as pd

    from banditops.simulation.report import _table

    frame = pd.DataFrame({"strategy": ["a"], "mean_reward": [0.85], "rollbacks": [14.0],
                          "requests_replayed": [2128000.0], "healthy_rollbacks": [2.4],
                          "exact": [1.0], "none": [float("nan")]})
    html = _table(frame)
    assert "<th>reward</th>" in html and "<th>requests replayed</th>" in html
    assert "<th>false alarms</th>" in html  # healthy_rollbacks, in the glossary's words
    assert "<td>14</td>" in html and "<td>2,128,000</td>" in html
    assert "<td>0.8500</td>" in html and "<td>2.4</td>" in html  # a mean of counts
    assert "<td>1.0000</td>" in html and "<td>-</td>" in html
