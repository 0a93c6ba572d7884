"""predict_batch: one model call per version for its rows, the decisions of as many predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditops import Deployment
from banditops.errors import InvalidParameterError, ModelError
from banditops.instances import Rows
from banditops.policies import (
    UCB1,
    ABTest,
    EpsilonGreedy,
    GaussianThompsonSampling,
    ThompsonSampling,
)
from banditops.shadow import ShadowParams

COLUMNS = ["a", "b", "c"]


class Linear:
    """Predicts round(w . x) per row, whatever the rows come as; records each call's input
    type and row count, so a test can tell one batch call from many."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)
        self.calls: list[tuple[str, int]] = []

    def predict(self, rows):
        self.calls.append((type(rows).__name__, len(rows)))
        values = np.asarray(rows, dtype=float)
        self.check(values)
        return np.rint(values @ self.weights).astype(np.int64)

    def check(self, values):
        pass


class FailsOnNegativeA(Linear):
    """A batch with any negative ``a`` fails, as a real pipeline fails on one bad row."""

    def check(self, values):
        if (values[:, 0] < 0).any():
            raise ValueError("negative a")


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(scale=10, size=(n, 3)), columns=COLUMNS)


def make(policy, *, shadow=None, models=None):
    d = Deployment(policy, shadow=shadow, max_pending=100_000)
    for name, model in (models or {"v1": Linear([1, 0, 0]), "v2": Linear([0, 1, 0]),
                                   "v3": Linear([1, 1, 1])}).items():
        d.register(name, model, validation_score=0.5)
    return d


def answers(decisions):
    return [(d.version, d.prediction, d.propensity) for d in decisions]


def test_each_version_predicts_its_rows_in_one_call_of_the_frame():
    frame = table(1_000)
    d = make(ThompsonSampling(seed=3))
    decisions = d.predict_batch(frame)
    served = {name: sum(x.version == name for x in decisions) for name in ("v1", "v2", "v3")}
    assert min(served.values()) > 100  # all three serve: three slices
    for name, count in served.items():
        assert d.model(name).calls == [("DataFrame", count)]
    weights = {name: d.model(name).weights for name in served}
    for x, row in zip(decisions, frame.to_numpy(), strict=True):
        assert x.prediction == round(float(row @ weights[x.version]))  # the row's own answer
        assert type(x.prediction) is int
    assert {r.name: r.decisions for r in d.versions()} == served
    assert len({x.id for x in decisions}) == 1_000 and d.pending_count == 1_000


@pytest.mark.parametrize("policy", [
    lambda: ThompsonSampling(seed=11), lambda: GaussianThompsonSampling(seed=11),
    lambda: EpsilonGreedy(epsilon=0.3, seed=11), lambda: UCB1(seed=11),
    lambda: ABTest(min_samples=50, seed=11)])
def test_choices_and_propensities_are_those_of_as_many_predicts(policy):
    frame = table(600, seed=1)
    learnt_batch, learnt_single = make(policy()), make(policy())
    for d in (learnt_batch, learnt_single):  # some feedback first: propensities not uniform
        for i in range(300):
            decision = d.predict(frame.iloc[i].to_dict())
            d.feedback(decision.id, 1 if decision.version == "v3" else 0)
    batch = learnt_batch.predict_batch(frame.iloc[300:])
    single = [learnt_single.predict(x) for x in frame.iloc[300:].to_dict("records")]
    assert answers(batch) == answers(single)
    assert len({x.version for x in batch}) > 1 or batch[0].propensity == 1.0  # UCB1: one
    assert learnt_batch.policy.state() == learnt_single.policy.state()  # same RNG draws


def test_frame_array_and_lists_give_the_same_answers():
    frame = table(300, seed=2)
    frame.index = [f"r{i}" for i in range(299, -1, -1)]  # labels are not positions
    inputs = {"frame": frame, "array": frame.to_numpy(), "rows": frame.to_numpy().tolist(),
              "dicts": frame.to_dict("records")}
    results = {kind: answers(make(UCB1(seed=4)).predict_batch(x)) for kind, x in inputs.items()}
    assert results["frame"] == results["array"] == results["rows"] == results["dicts"]
    kinds = {}
    for kind, x in inputs.items():
        d = make(UCB1(seed=4))
        d.predict_batch(x)
        kinds[kind] = {call[0] for name in ("v1", "v2", "v3") for call in d.model(name).calls}
    assert kinds == {"frame": {"DataFrame"}, "array": {"ndarray"}, "rows": {"list"},
                     "dicts": {"DataFrame"}}


def test_a_failing_batch_is_served_row_by_row_from_a_frame():
    class Vouching(FailsOnNegativeA):
        def healthy(self):
            return True  # the input is at fault, not the model: it stays live

    def deployment():
        return make(EpsilonGreedy(epsilon=1.0, seed=6),
                    models={"picky": Vouching([1, 0, 0]), "steady": Linear([0, 1, 0])})

    policy = deployment().policy
    chosen = [policy.choose()[0] for _ in range(40)]  # what the batch will choose
    bad = chosen.index("picky", 3)  # a row picky is asked first, with picky rows before it
    frame = table(40, seed=5).abs()
    frame.loc[bad, "a"] = -50.0
    d = deployment()
    decisions = d.predict_batch(frame)
    assert decisions[bad].version == "steady"  # served elsewhere, as predict() would
    assert decisions[bad].prediction == round(frame["b"].iloc[bad])
    assert decisions[bad].propensity == 0.5
    served = [i for i, x in enumerate(decisions) if x.version == "picky"]
    assert served == [i for i, name in enumerate(chosen) if name == "picky" and i != bad]
    assert all(decisions[i].prediction == round(frame["a"].iloc[i]) for i in served)
    # the batch call, then one one-row frame per row of its share
    assert d.model("picky").calls == [("DataFrame", len(served) + 1)] + \
        [("DataFrame", 1)] * (len(served) + 1)
    assert d.status("picky") == "live"


def test_rows_nobody_can_serve_are_returned_or_raised_and_never_logged():
    frame = table(10, seed=8).abs()
    frame.loc[3, "a"] = -1.0
    d = make(EpsilonGreedy(epsilon=1.0, seed=1),
             models={"x": FailsOnNegativeA([1, 0, 0]), "y": FailsOnNegativeA([0, 1, 0])})
    results = d.predict_batch(frame, errors="return")
    assert isinstance(results[3], ModelError)
    assert all(not isinstance(r, ModelError) for i, r in enumerate(results) if i != 3)
    assert d.pending_count == 9
    with pytest.raises(ModelError, match="every live version failed"):
        d.predict_batch(frame)
    assert d.pending_count == 9  # nothing of a raising batch is logged
    with pytest.raises(InvalidParameterError, match='errors must be "raise" or "return"'):
        d.predict_batch(frame, errors="ignore")
    with pytest.raises(InvalidParameterError, match="2 owners for 10 instances"):
        d.predict_batch(frame, owners=["a", "b"])
    assert d.predict_batch(frame.iloc[:0]) == []


def test_shadow_scoring_in_a_batch_learns_what_as_many_predicts_learn():
    frame = table(400, seed=9)
    labels = (frame["a"] + frame["b"] > 0).astype(int).tolist()

    def run(batched: bool) -> Deployment:
        d = make(EpsilonGreedy(epsilon=0.5, seed=2), shadow=ShadowParams(mode="all"))
        if batched:
            decisions = d.predict_batch(frame)
        else:
            decisions = [d.predict(x) for x in frame.to_dict("records")]
        for decision, label in zip(decisions, labels, strict=True):
            d.feedback(decision.id, label)
        return d

    batch, single = run(True), run(False)
    summary = [(r.name, r.decisions, r.learned, r.learned_reward_sum, r.shadow_learned,
                r.shadow_reward_sum) for r in batch.versions()]
    assert summary == [(r.name, r.decisions, r.learned, r.learned_reward_sum, r.shadow_learned,
                        r.shadow_reward_sum) for r in single.versions()]
    assert sum(r.shadow_learned for r in batch.versions()) == 2 * 400  # two others per row
    for name in ("v1", "v2", "v3"):  # served share + shadow share: two calls in all
        calls = batch.model(name).calls
        assert len(calls) == 2 and sum(n for _, n in calls) == 400


def test_rows_slices_without_copying_a_whole_batch():
    frame = table(5)
    rows = Rows(frame)
    assert rows.take([0, 1, 2, 3, 4]) is frame
    assert rows.take([1, 3]).index.tolist() == [1, 3]
    assert rows.row(2) == frame.iloc[2].to_dict()
    array = frame.to_numpy()
    assert Rows(array).take(range(5)) is array
    assert Rows(array).take([4]).tolist() == [array[4].tolist()]
    assert len(Rows(x for x in range(3))) == 3
