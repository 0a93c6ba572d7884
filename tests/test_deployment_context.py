"""Deployment with a contextual policy: each decision's context reaches the policy's
choice, the log, and the update and side observations its label brings (issue 12)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from banditops import Deployment
from banditops.context import ContextEncoder
from banditops.errors import InvalidParameterError, ModelError
from banditops.policies import ThompsonSampling
from banditops.policies.base import ContextualPolicy
from banditops.shadow import ShadowParams
from banditops.store.log import CaughtUp
from banditops.store.memory import MemoryLog


class Routed(ContextualPolicy):
    """Serves the arm named by the context's ``"arm"`` feature (the first arm without one)
    and records every call, so a test sees exactly what the Deployment passed."""

    key = ""  # not registered

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.encoder = ContextEncoder(dimension=64)  # no collision of the slots used here
        self.chosen: list[Any] = []
        self.updates: list[tuple[str, float, Any]] = []
        self.observed: list[tuple[str, float, Any]] = []
        self.asked: list[Any] = []

    def _pick(self, context: Any) -> str:
        self._require_any_arm()
        wanted = context.get("arm") if isinstance(context, dict) else None
        if isinstance(context, np.ndarray):  # encoded: the arm is told by slot
            wanted = next((a for a in self._arms
                           if context[self.encoder.slot(f"arm={a}")] > 0), None)
        return wanted if wanted in self._arms else next(iter(self._arms))

    def select(self, context: Any = None) -> str:
        self.chosen.append(context)
        return self._pick(context)

    def probabilities(self, context: Any = None) -> dict[str, float]:
        self.asked.append(context)
        best = self._pick(context)
        return {a: 0.75 if a == best else 0.25 / (len(self._arms) - 1) for a in self._arms}

    def update(self, name: str, reward: float, context: Any = None) -> None:
        self.updates.append((name, reward, context))

    def observe(self, name: str, reward: float, context: Any = None) -> None:
        self.observed.append((name, reward, context))

    def _stats_state(self) -> dict[str, Any]:
        return {}

    def _load_stats(self, stats: dict[str, Any]) -> None:
        pass


class Constant:
    def __init__(self, value: Any) -> None:
        self.value = value

    def predict(self, rows: Any) -> list[Any]:
        return [self.value] * len(rows)


class FailsOn:
    """Predicts ``value`` except for instances whose ``"bad"`` feature is true; vouches for
    itself (``healthy``), so it is not quarantined for a bad input."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def healthy(self) -> bool:
        return True

    def predict(self, rows: Any) -> list[Any]:
        records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
        if any(isinstance(r, dict) and r.get("bad") for r in records):
            raise RuntimeError("cannot handle this one")
        return [self.value] * len(records)


def _deployment(**options: Any) -> tuple[Deployment, Routed]:
    policy = Routed()
    deployment = Deployment(policy, reward="accuracy", **options)
    deployment.register("a", Constant(0))
    deployment.register("b", Constant(1))
    return deployment, policy


def test_predict_routes_on_the_instance_and_feedback_learns_on_it():
    deployment, policy = _deployment()
    request = {"arm": "b", "age": 41}
    decision = deployment.predict(request)
    assert (decision.version, decision.prediction, decision.propensity) == ("b", 1, 0.75)
    assert policy.chosen == [request]
    assert deployment.log.lookup(decision.id, 0.0 + 1e12).context is request
    assert deployment.feedback(decision.id, 1) == 1.0
    assert policy.updates == [("b", 1.0, request)]


def test_an_explicit_context_wins_and_a_row_without_features_has_none():
    deployment, policy = _deployment()
    decision = deployment.predict([1.0, 2.0], context={"arm": "b"})
    assert decision.version == "b"
    other = deployment.predict([1.0, 2.0])
    assert other.version == "a" and policy.chosen[-1] is None
    deployment.feedback(decision.id, 0)
    deployment.feedback(other.id, 0)
    assert policy.updates == [("b", 0.0, {"arm": "b"}), ("a", 1.0, None)]


def test_a_context_free_policy_logs_no_context_unless_asked():
    plain = Deployment(ThompsonSampling(seed=1), reward="accuracy")
    plain.register("a", Constant(0))
    decision = plain.predict({"x": 1})
    assert plain.log.lookup(decision.id, 1e12).context is None
    logged = Deployment(ThompsonSampling(seed=1), reward="accuracy", log_context=True)
    logged.register("a", Constant(0))
    first = logged.predict({"x": 1})
    second = logged.predict([3], context={"y": "z"})
    batch = logged.predict_batch(pd.DataFrame({"x": [1, 2]}))
    assert logged.log.lookup(first.id, 1e12).context == {"x": 1}
    assert logged.log.lookup(second.id, 1e12).context == {"y": "z"}
    assert [logged.log.lookup(d.id, 1e12).context for d in batch] == [{"x": 1}, {"x": 2}]
    # The same seed routes the same way with or without logging the context.
    assert first.propensity == decision.propensity


def test_feedback_many_and_shadow_observations_carry_the_context():
    deployment, policy = _deployment(shadow=ShadowParams(mode="all"))
    requests = [{"arm": "a", "n": 1}, {"arm": "b", "n": 2}, {"arm": "b", "n": 3}]
    decisions = deployment.predict_batch(requests)
    assert [d.version for d in decisions] == ["a", "b", "b"]
    results = deployment.feedback_many([(d.id, 1) for d in decisions])
    assert results == [("a", 0.0), ("b", 1.0), ("b", 1.0)]
    assert policy.updates == [("a", 0.0, requests[0]), ("b", 1.0, requests[1]),
                              ("b", 1.0, requests[2])]
    # Each request's shadow prediction (the other version) is observed on its own context.
    assert policy.observed == [("b", 1.0, requests[0]), ("a", 0.0, requests[1]),
                               ("a", 0.0, requests[2])]


def test_predict_batch_of_a_frame_chooses_on_encoded_rows_and_logs_mappings():
    deployment, policy = _deployment()
    frame = pd.DataFrame({"arm": ["b", "a", "b"], "age": [30, 40, np.nan]})
    decisions = deployment.predict_batch(frame)
    assert [d.version for d in decisions] == ["b", "a", "b"]
    encoder = policy.encoder
    for context, (_, row) in zip(policy.chosen, frame.iterrows(), strict=True):
        assert isinstance(context, np.ndarray)
        assert np.array_equal(context, encoder.encode(row.to_dict()))
    logged = [deployment.log.lookup(d.id, 1e12).context for d in decisions]
    assert logged[0] == {"arm": "b", "age": 30.0}
    assert logged[2]["arm"] == "b" and np.isnan(logged[2]["age"])
    deployment.feedback(decisions[0].id, 1)
    assert policy.updates == [("b", 1.0, logged[0])]


def test_predict_batch_with_explicit_contexts_and_a_length_check():
    deployment, policy = _deployment()
    decisions = deployment.predict_batch([[1], [2]], contexts=[{"arm": "b"}, None])
    assert [d.version for d in decisions] == ["b", "a"]
    with pytest.raises(InvalidParameterError, match="1 contexts for 2 instances"):
        deployment.predict_batch([[1], [2]], contexts=[{"arm": "b"}])
    array = deployment.predict_batch(np.zeros((2, 3)))  # rows of an array: no features
    assert [d.version for d in array] == ["a", "a"] and policy.chosen[-2:] == [None, None]


def test_a_failed_version_is_served_elsewhere_with_the_propensity_for_this_context():
    policy = Routed()
    deployment = Deployment(policy, reward="accuracy")
    deployment.register("a", Constant(0))
    deployment.register("b", FailsOn(1))
    deployment.register("c", Constant(2))
    request = {"arm": "b", "bad": True}
    decision = deployment.predict(request)
    # b failed on it (and stays live); the next most likely version for this context
    # serves: "a" (first of the 0.125s), with the chance the policy gave it on this request.
    assert (decision.version, decision.propensity) == ("a", 0.125)
    assert deployment.live_versions == ["a", "b", "c"]
    assert policy.asked[-1] is request
    batch = deployment.predict_batch([{"arm": "c"}, {"arm": "b", "bad": True}])
    assert [d.version for d in batch] == ["c", "a"]
    deployment.feedback(batch[1].id, 0)
    assert policy.updates[-1] == ("a", 1.0, {"arm": "b", "bad": True})


def test_every_version_failing_is_still_an_error_for_a_contextual_policy():
    policy = Routed()
    deployment = Deployment(policy, reward="accuracy")
    deployment.register("a", FailsOn(0))
    deployment.register("b", FailsOn(1))
    with pytest.raises(ModelError, match="every live version failed"):
        deployment.predict({"arm": "b", "bad": True})
    results = deployment.predict_batch([{"arm": "b"}, {"arm": "a", "bad": True}],
                                       errors="return")
    assert results[0].version == "b" and isinstance(results[1], ModelError)


class Shared(MemoryLog):
    """A memory log that hands back rewards "another replica" closed."""

    def __init__(self) -> None:
        super().__init__()
        self.others: list[Any] = []

    def catch_up(self) -> list[Any]:
        rows, self.others = self.others, []
        return rows


def test_catch_up_learns_other_replicas_rewards_on_their_contexts():
    log = Shared()
    deployment, policy = _deployment(log=log, shadow=ShadowParams(mode="all"))
    log.others = [CaughtUp("b", 1.0, (("a", 0.0),), {"arm": "b", "n": 7}),
                  CaughtUp("a", 0.5, ()),  # a decision logged without its context
                  ("a", 1.0, ())]  # a plain row of a log that predates contexts
    assert deployment.catch_up() == 3
    assert policy.updates == [("b", 1.0, {"arm": "b", "n": 7}), ("a", 0.5, None),
                              ("a", 1.0, None)]
    assert policy.observed == [("a", 0.0, {"arm": "b", "n": 7})]


def test_sqlite_log_feedback_reaches_a_contextual_policy(tmp_path):
    from banditops.store.sql import Store

    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    store.migrate()
    policy = Routed()
    deployment = Deployment(policy, reward="accuracy", log=store.log("main", 3600.0))
    deployment.register("a", Constant(0))
    deployment.register("b", Constant(1))
    decision = deployment.predict({"arm": "b"})
    assert decision.version == "b"
    assert deployment.feedback(decision.id, 1) == 1.0
    name, reward, context = policy.updates[0]
    assert (name, reward) == ("b", 1.0)
    # TODO(lead, H4: decisions.context, migration 0007): once SqlLog keeps
    # LoggedDecision.context, assert `context == {"arm": "b"}` here; until then the SQL
    # log drops it and the policy learns this reward without its context.
    assert context in (None, {"arm": "b"})
