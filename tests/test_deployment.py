"""Deployment: decision/feedback bookkeeping, rollback, quarantine, clear errors."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from banditops import Deployment, Guardrail, cost_matrix
from banditops.errors import (
    BanditOpsError,
    DuplicateArmError,
    DuplicateFeedbackError,
    ExpiredDecisionError,
    InvalidLabelError,
    InvalidParameterError,
    InvalidRewardError,
    ModelError,
    StateConflictError,
    UnknownArmError,
    UnknownDecisionError,
)
from banditops.policies import UCB1, EpsilonGreedy, Latest, ThompsonSampling


class Constant:
    """A model that always predicts ``value`` (scikit-learn style ``predict``)."""

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        return np.full(len(rows), self.value)


class Broken:
    def predict(self, rows):
        raise RuntimeError("feature pipeline exploded")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_decision_and_feedback_bookkeeping_under_delayed_feedback():
    deployment = Deployment(EpsilonGreedy(epsilon=0.2, seed=1))
    deployment.register("zero", Constant(0), validation_score=0.6)
    deployment.register("one", Constant(1), validation_score=0.7)
    rng = random.Random(0)
    decisions, delay = [], 20
    for i in range(600):
        decision = deployment.predict([rng.random()])
        decisions.append(decision)
        assert decision.prediction == (0 if decision.version == "zero" else 1)
        assert isinstance(decision.prediction, int)  # numpy scalars are made plain
        assert 0.0 < decision.propensity <= 1.0
        if i >= delay:  # ground truth arrives 20 requests late
            late = decisions[i - delay]
            assert deployment.feedback(late.id, 1) == float(late.prediction == 1)
    assert len({d.id for d in decisions}) == 600
    assert deployment.pending_count == delay
    # Cold start under delay: each new version got one forced request, not the whole delay.
    assert [d.version for d in decisions[:2]] == ["zero", "one"]
    assert decisions[0].propensity == decisions[1].propensity == 1.0
    reports = {r.name: r for r in deployment.versions()}
    for name, report in reports.items():
        served = [d for d in decisions if d.version == name]
        assert report.decisions == len(served)
        assert report.feedbacks == len([d for d in served if d not in decisions[-delay:]])
        assert report.status == "live"
    assert reports["one"].reward_mean == 1.0 and reports["zero"].reward_mean == 0.0
    assert reports["one"].ci_low > 0.98 and reports["zero"].ci_high < 0.2
    assert reports["one"].traffic_share == pytest.approx(0.9)  # 1 - eps + eps / 2
    assert reports["one"].decisions > 500  # the policy learned
    assert [e.kind for e in deployment.events()] == ["registered", "registered"]


def test_feedback_errors_are_clear_and_lose_nothing():
    clock = FakeClock()
    deployment = Deployment(Latest(), max_pending=3, pending_ttl=60.0, clock=clock)
    deployment.register("v1", Constant(1))
    first = deployment.predict([0])
    assert deployment.feedback(first.id, 1) == 1.0
    with pytest.raises(DuplicateFeedbackError, match="already received feedback"):
        deployment.feedback(first.id, 1)
    with pytest.raises(UnknownDecisionError, match="unknown decision id 'nope'"):
        deployment.feedback("nope", 1)
    with pytest.raises(UnknownDecisionError, match="must be a string"):
        deployment.feedback(42, 1)
    # A label the reward function cannot use: clear error, and the decision stays pending.
    strict = Deployment(Latest(), reward=lambda label, pred: {"yes": 1.0}[label])
    strict.register("v1", Constant(1))
    decision = strict.predict([0])
    with pytest.raises(InvalidParameterError, match="reward function failed for label 'maybe'"):
        strict.feedback(decision.id, "maybe")
    out_of_range = Deployment(Latest(), reward=lambda label, pred: 2.0)
    out_of_range.register("v1", Constant(1))
    with pytest.raises(InvalidRewardError):
        out_of_range.feedback(out_of_range.predict([0]).id, 1)
    assert strict.feedback(decision.id, "yes") == 1.0
    # Expiry by age and by count.
    old = deployment.predict([0])
    clock.now += 61
    fresh = [deployment.predict([0]) for _ in range(4)]  # the 4th evicts fresh[0]
    with pytest.raises(ExpiredDecisionError, match="expired"):
        deployment.feedback(old.id, 1)
    with pytest.raises(ExpiredDecisionError):
        deployment.feedback(fresh[0].id, 1)
    assert deployment.feedback(fresh[3].id, 0) == 0.0
    (report,) = deployment.versions()
    assert report.expired == 2 and report.feedbacks == 2 and report.decisions == 6


def test_raising_model_is_quarantined_and_traffic_served_elsewhere():
    deployment = Deployment(Latest())
    deployment.register("good", Constant(1))
    deployment.register("bad", Broken())  # newest: Latest sends everything to it
    seen = []
    deployment.subscribe(seen.append)
    decision = deployment.predict([0])
    assert decision.version == "good" and decision.prediction == 1
    assert decision.propensity == 1.0
    assert deployment.live_versions == ["good"]
    status = {r.name: r.status for r in deployment.versions()}
    assert status == {"good": "live", "bad": "quarantined"}
    (event,) = seen
    assert event.kind == "quarantined" and "feature pipeline exploded" in event.reason
    assert all(deployment.predict([0]).version == "good" for _ in range(20))


def test_when_every_version_fails_nothing_is_quarantined():
    deployment = Deployment(UCB1())
    deployment.register("a", Broken())
    deployment.register("b", Broken())
    with pytest.raises(ModelError, match="every live version failed"):
        deployment.predict([0])
    assert deployment.live_versions == ["a", "b"]  # the input, not the models, may be at fault


def test_guardrail_rolls_back_a_degraded_version_through_feedback():
    guardrail = Guardrail(min_samples=100, check_every=10)
    deployment = Deployment(EpsilonGreedy(epsilon=0.5, seed=3), guardrail=guardrail)
    deployment.register("good", Constant(1))
    deployment.register("bad", Constant(0))
    rolled_at = None
    for i in range(2000):
        decision = deployment.predict([i])
        deployment.feedback(decision.id, 1)
        if rolled_at is None and "bad" not in deployment.live_versions:
            rolled_at = i
    assert rolled_at is not None and rolled_at < 400
    rollback = next(e for e in deployment.events() if e.kind == "rolled_back")
    assert rollback.version == "bad" and rollback.evidence["method"] == "sequential"
    assert rollback.evidence["cs_lower"] > guardrail.margin  # the whole sequence above it
    assert rollback.evidence["n"] >= 100
    bad = next(r for r in deployment.versions() if r.name == "bad")
    assert bad.status == "rolled_back" and bad.traffic_share == 0.0
    assert bad.decisions < 300  # no traffic after the rollback


def test_version_management_errors():
    deployment = Deployment(ThompsonSampling(seed=0))
    with pytest.raises(InvalidParameterError, match="no predict"):
        deployment.register("v1", object())
    deployment.register("v1", Constant(1))
    with pytest.raises(DuplicateArmError, match="registered already"):
        deployment.register("v1", Constant(1))
    with pytest.raises(StateConflictError, match="last live version"):
        deployment.rollback("v1")
    with pytest.raises(UnknownArmError, match="unknown version 'v9'"):
        deployment.rollback("v9")
    deployment.register("v2", Constant(0))
    deployment.rollback("v2", "looked wrong")
    with pytest.raises(StateConflictError, match="not live"):
        deployment.rollback("v2")
    with pytest.raises(StateConflictError, match="only rolled-back or quarantined"):
        deployment.reinstate("v1")
    deployment.reinstate("v2")
    assert deployment.live_versions == ["v1", "v2"]
    deployment.retire("v2")
    kinds = [(e.kind, e.version) for e in deployment.events()]
    assert kinds[-3:] == [("rolled_back", "v2"), ("reinstated", "v2"), ("retired", "v2")]
    with pytest.raises(InvalidParameterError, match="must be a banditops Policy"):
        Deployment("ucb1")
    with pytest.raises(InvalidParameterError, match="reward must be"):
        Deployment(UCB1(), reward="f1")


def test_sklearn_pipeline_with_feature_dicts_and_cost_matrix():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(size=400), "age": rng.normal(size=400)})
    labels = (frame["amount"] > 0.5).astype(int)
    model = LogisticRegression().fit(frame, labels)
    fraud = cost_matrix(tp=1.0, fp=0.9, fn=0.0, tn=1.0)
    deployment = Deployment(UCB1(), reward=fraud)
    deployment.register("lr", model, validation_score=0.9)
    deployment.register("always-no", Constant(0))
    decisions = deployment.predict_batch(frame.head(50))
    assert len(decisions) == 50
    for decision, (_, row) in zip(decisions, frame.head(50).iterrows(), strict=True):
        if decision.version == "lr":
            expected = model.predict(row.to_frame().T)[0]
            assert decision.prediction == expected
    rewards = [deployment.feedback(d.id, int(y))
               for d, y in zip(decisions, labels.head(50), strict=True)]
    assert set(rewards) <= {0.0, 0.9, 1.0}


def test_ab_test_results_become_events():
    from banditops.policies import ABTest

    deployment = Deployment(ABTest(min_samples=30, seed=2))
    deployment.register("champion", Constant(0))
    deployment.register("challenger", Constant(1))
    for i in range(200):
        deployment.feedback(deployment.predict([i]).id, 1)
    policy_events = [e for e in deployment.events() if e.kind == "policy"]
    assert len(policy_events) == 1
    assert policy_events[0].evidence["promoted"] is True
    assert all(deployment.predict([0]).version == "challenger" for _ in range(10))


def test_learning_state_round_trips_and_refuses_another_configuration():
    import json

    from banditops.errors import InvalidStateError
    from banditops.policies import UCB1, ThompsonSampling

    class Constant:
        def __init__(self, value):
            self.value = value

        def predict_one(self, x):
            return self.value

    def make(policy):
        d = Deployment(policy, "accuracy", Guardrail(min_samples=20, check_every=1))
        d.register("right", Constant(1))
        d.register("wrong", Constant(0))
        return d

    first = make(ThompsonSampling(seed=3))
    for _ in range(300):
        first.feedback(first.predict(0).id, 1)
    state = json.loads(json.dumps(first.learning_state()))  # survives a database
    second = make(ThompsonSampling(seed=99))
    second.restore_learning(state)
    assert second.policy.state() == first.policy.state()  # statistics and RNG
    assert [(r.name, r.status, r.learned, r.learned_reward_sum) for r in second.versions()] == \
        [(r.name, r.status, r.learned, r.learned_reward_sum) for r in first.versions()]
    assert sum(r.learned for r in second.versions()) == 300
    assert [second.predict(0).version for _ in range(50)] == \
        [first.predict(0).version for _ in range(50)]
    with pytest.raises(InvalidStateError, match="this deployment runs"):
        make(UCB1()).restore_learning(state)
    with pytest.raises(InvalidStateError, match="another guardrail"):
        other = Deployment(ThompsonSampling(), "accuracy", Guardrail(min_samples=21))
        other.register("right", Constant(1))
        other.restore_learning(state)


def test_batch_routes_like_single_predictions_with_one_model_call_per_version():
    def make():
        d = Deployment(EpsilonGreedy(epsilon=0.5, seed=4))
        d.register("zero", Constant(0))
        d.register("one", Constant(1))
        return d

    single, batch = make(), make()
    one_by_one = [single.predict([i]) for i in range(200)]
    together = batch.predict_batch([[i] for i in range(200)])
    assert [(d.version, d.prediction, d.propensity) for d in together] == \
        [(d.version, d.prediction, d.propensity) for d in one_by_one]
    assert batch.model("zero").calls == 1 and batch.model("one").calls == 1
    assert single.model("zero").calls + single.model("one").calls == 200
    assert {r.name: r.decisions for r in batch.versions()} == \
        {r.name: r.decisions for r in single.versions()}


def test_batch_serves_around_a_broken_version_and_reports_rows_nobody_can_serve():
    class Picky:
        """Fails on negative inputs only: the input is at fault, not the model."""

        def predict(self, rows):
            if any(row[0] < 0 for row in rows):
                raise ValueError("negative input")
            return [1] * len(rows)

    deployment = Deployment(EpsilonGreedy(epsilon=1.0, seed=5))
    deployment.register("picky", Picky())
    deployment.register("broken", Broken())
    results = deployment.predict_batch([[1], [-1], [2], [3]], errors="return")
    assert [type(r).__name__ for r in results] == ["Decision", "ModelError", "Decision",
                                                   "Decision"]
    assert {r.version for r in results if not isinstance(r, ModelError)} == {"picky"}
    assert deployment.status("broken") == "quarantined"
    with pytest.raises(ModelError, match="every live version failed"):
        deployment.predict_batch([[-5]])


def test_feedback_many_counts_each_decision_once_and_wrong_labels_leave_it_open():
    deployment = Deployment(Latest(), labels=[0, 1])
    deployment.register("v1", Constant(1))
    a, b = deployment.predict([0]), deployment.predict([0])
    results = deployment.feedback_many([(a.id, 1), (a.id, 1), (b.id, "1"), ("nope", 0)])
    assert results[0] == ("v1", 1.0)
    assert isinstance(results[1], DuplicateFeedbackError)
    assert isinstance(results[2], InvalidLabelError)  # "1" is not 1
    assert isinstance(results[3], UnknownDecisionError)
    assert deployment.feedback(b.id, 0) == 0.0  # the wrong label left it open
    (report,) = deployment.versions()
    assert report.feedbacks == 2 and report.learned == 2


def test_feedback_with_another_owner_is_refused_as_unknown():
    deployment = Deployment(Latest())
    deployment.register("v1", Constant(1))
    mine = deployment.predict([0], owner="alice")
    with pytest.raises(UnknownDecisionError):
        deployment.feedback(mine.id, 1, owner="mallory")
    with pytest.raises(UnknownDecisionError):
        deployment.feedback(mine.id, 1)
    assert deployment.feedback(mine.id, 1, owner="alice") == 1.0


def test_decision_ids_are_128_random_bits():
    deployment = Deployment(Latest())
    deployment.register("v1", Constant(1))
    ids = [deployment.predict([0]).id for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # No shared prefix or counter: consecutive ids differ in about half their 128 bits.
    distances = [bin(int(a, 16) ^ int(b, 16)).count("1") for a, b in itertools.pairwise(ids)]
    assert 56 < sum(distances) / len(distances) < 72


def test_a_version_failing_on_one_input_stays_live_if_it_is_healthy():
    """A client cannot take a healthy version out with an input only it chokes on."""

    class Picky:
        def __init__(self, healthy: bool):
            self.is_healthy = healthy

        def predict(self, rows):
            if any(row[0] > 1e30 for row in rows):
                raise ValueError("value too large for dtype('float32')")
            return [1] * len(rows)

        def healthy(self):
            return self.is_healthy

    deployment = Deployment(EpsilonGreedy(epsilon=1.0, seed=6))
    deployment.register("picky", Picky(healthy=True))
    deployment.register("sturdy", Constant(1))
    served = [deployment.predict([1e35]) for _ in range(20)]
    assert all(d.version == "sturdy" for d in served)
    assert deployment.status("picky") == "live"
    broken = Deployment(EpsilonGreedy(epsilon=1.0, seed=6))
    broken.register("picky", Picky(healthy=False))  # broken on its known-good rows too
    broken.register("sturdy", Constant(1))
    while broken.status("picky") == "live":
        broken.predict([1e35])
    assert broken.status("picky") == "quarantined"


def test_labels_of_another_kind_than_the_predictions_are_refused():
    deployment = Deployment(Latest())  # no declared labels
    deployment.register("v1", Constant(1))
    decision = deployment.predict([0])
    for wrong in ("1", 1.0, True, "yes"):
        with pytest.raises(InvalidLabelError, match="not the kind of value"):
            deployment.feedback(decision.id, wrong)
    assert deployment.feedback(decision.id, 0) == 0.0


@pytest.mark.parametrize("broken", ["raises", "nan"])
def test_rewards_that_error_or_are_nan_never_roll_back_nor_pass_a_version(broken):
    """A reward function that raises or returns NaN for one version's predictions: feedback
    is refused (the decision stays open), the version gets no verdict ("not judged yet"),
    never a rollback and never "ok"."""
    def reward(label, prediction):
        if prediction == 0:
            if broken == "raises":
                raise ValueError("cannot score this prediction")
            return float("nan")
        return 1.0

    deployment = Deployment(EpsilonGreedy(epsilon=0.5, seed=3), reward=reward,
                            guardrail=Guardrail(min_samples=50, check_every=5))
    deployment.register("good", Constant(1))
    deployment.register("odd", Constant(0))
    refused = 0
    for i in range(1000):
        decision = deployment.predict([i])
        try:
            deployment.feedback(decision.id, 1)
        except BanditOpsError as error:  # InvalidParameterError / InvalidRewardError
            assert "cannot score" in str(error) or "nan" in str(error)
            refused += 1
    reports = {r.name: r for r in deployment.versions()}
    assert refused == reports["odd"].decisions > 200
    assert deployment.live_versions == ["good", "odd"]
    assert reports["odd"].judgement == "not judged yet"
    assert reports["good"].judgement == "not judged yet"  # nothing to compare it with


def test_predict_with_several_rows_says_to_use_predict_batch():
    deployment = Deployment(Latest())
    deployment.register("v1", LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1]))
    rows = np.array([[0.0], [1.0], [0.5]])
    with pytest.raises(InvalidParameterError, match=r"shape \(3, 1\): use predict_batch"):
        deployment.predict(rows)
    with pytest.raises(InvalidParameterError, match="use predict_batch"):
        deployment.predict(pd.DataFrame({"x": [0.0, 1.0]}))
    assert deployment.predict(rows[0]).prediction in (0, 1)  # one row is fine
    assert len(deployment.predict_batch(rows)) == 3
