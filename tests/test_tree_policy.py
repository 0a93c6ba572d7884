"""The learned-partition policies (banditops.policies.tree): TreeLeader and TreeThompson.

Every scenario is drawn from fixed seeds; margins are wide enough for those draws and narrow
enough that a policy which ignored the context, split on noise, or lost state would fail.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from banditops import Deployment
from banditops.context import ContextEncoder
from banditops.errors import (
    InvalidParameterError,
    InvalidRewardError,
    InvalidStateError,
    NoArmsError,
    UnknownArmError,
)
from banditops.policies import FollowTheLeader, Policy, TreeLeader, TreeThompson, make_policy
from banditops.policies.tree import TreeArrays, _prune, fit_tree
from banditops.shadow import ShadowParams

DIM = 16
SMALL = {"dimension": DIM, "window": 2000, "refit_every": 200, "min_samples_leaf": 100}
ENCODER = ContextEncoder(DIM)


def planted(n: int, seed: int, *, structure: bool = True, means=(0.8, 0.6)):
    """Contexts (encoded) and each arm's reward: with ``structure``, "a" is right for
    segment x and "b" for segment y (``means`` = (right, wrong)); without, "a" earns
    ``means[0]`` and "b" ``means[1]`` everywhere. The other features are noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        segment = "x" if rng.random() < 0.5 else "y"
        context = {"segment": segment, "noise": float(rng.normal()), "kind": str(rng.integers(4))}
        if structure:
            p_a, p_b = (means if segment == "x" else means[::-1])
        else:
            p_a, p_b = means
        rewards = {"a": float(rng.random() < p_a), "b": float(rng.random() < p_b)}
        rows.append((context, ENCODER.encode(context), rewards))
    return rows


def run_full_information(policy, rows, *, mapping: bool = False) -> list[str]:
    """Serve each row, then learn every arm's reward on it (the served arm by update, the
    others by observe, as a Deployment with shadow scoring does)."""
    chosen = []
    contextual = policy.contextual
    for context, vector, rewards in rows:
        ctx = context if mapping else vector
        name = policy.select(ctx) if contextual else policy.select()
        chosen.append(name)
        for arm in policy.arms:
            learn = policy.update if arm == name else policy.observe
            if contextual:
                learn(arm, rewards[arm], ctx)
            else:
                learn(arm, rewards[arm])
    return chosen


def earned(rows, chosen, start=0) -> float:
    return float(np.mean([r[2][c] for r, c in zip(rows[start:], chosen[start:], strict=True)]))


def with_arms(policy, names=("a", "b")):
    for name in names:
        policy.add_arm(name)
    return policy


# ---------------------------------------------------------------- it finds segments
def test_tree_leader_finds_a_planted_segment_rule_and_beats_the_leader():
    rows = planted(4000, seed=1)
    tree = with_arms(TreeLeader(**SMALL))
    leader = with_arms(FollowTheLeader(window=1000))
    by_tree = run_full_information(tree, rows)
    by_leader = run_full_information(leader, rows)
    # The leader serves one version to everyone (0.7); the tree serves each segment its own.
    assert earned(rows, by_tree, 1000) > earned(rows, by_leader, 1000) + 0.08
    assert tree.select(ENCODER.encode({"segment": "x"})) == "a"
    assert tree.select(ENCODER.encode({"segment": "y"})) == "b"
    assert len(tree.tree.leaves) >= 2
    split = tree.tree.feature[0]
    assert split in (ENCODER.slot("segment=x"), ENCODER.slot("segment=y"))


def test_tree_thompson_finds_the_segments_under_bandit_feedback():
    rows = planted(4000, seed=2, means=(0.85, 0.5))
    policy = with_arms(TreeThompson(**SMALL, seed=3))
    chosen = []
    for _, vector, rewards in rows:
        name, _ = policy.choose(vector)
        policy.update(name, rewards[name], vector)  # the served reward only
        chosen.append(name)
    # Context-free the best is 0.675; routing by segment earns up to 0.85.
    assert earned(rows, chosen, 2000) > 0.79
    assert len(policy.tree.leaves) >= 2
    x, y = ENCODER.encode({"segment": "x"}), ENCODER.encode({"segment": "y"})
    assert policy.probabilities(x)["a"] > 0.99 and policy.probabilities(y)["b"] > 0.99


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_without_structure_the_tree_leader_is_the_leader(seed):
    """Same arms everywhere (a 0.75, b 0.70 whatever the context): the global leader's choice
    must stand; splitting on noise or deviating on it would lose reward."""
    rows = planted(5000, seed=seed, structure=False, means=(0.75, 0.70))
    tree = with_arms(TreeLeader(**SMALL))
    leader = with_arms(FollowTheLeader(window=1000))
    by_tree = run_full_information(tree, rows)
    by_leader = run_full_information(leader, rows)
    agree = np.mean([t == g for t, g in zip(by_tree, by_leader, strict=True)])
    assert agree > 0.98
    assert abs(earned(rows, by_tree) - earned(rows, by_leader)) < 0.003


def test_mappings_and_encoded_vectors_route_alike():
    rows = planted(1500, seed=7)
    by_vector = run_full_information(with_arms(TreeLeader(**SMALL)), rows)
    by_mapping = run_full_information(with_arms(TreeLeader(**SMALL)), rows, mapping=True)
    assert by_vector == by_mapping


# ---------------------------------------------------------------- propensities
def test_tree_thompson_propensities_match_the_frequency_of_its_choices():
    rows = planted(1500, seed=8, means=(0.6, 0.5))
    policy = with_arms(TreeThompson(**SMALL, seed=9), ("a", "b", "c"))
    for _, vector, rewards in rows:
        name, _ = policy.choose(vector)
        policy.update(name, rewards.get(name, 0.55), vector)
    draws = 20_000
    for segment in ("x", "y"):
        context = ENCODER.encode({"segment": segment})
        expected = policy.probabilities(context)
        assert sum(expected.values()) == pytest.approx(1.0, abs=1e-9)
        counts = dict.fromkeys(expected, 0)
        for _ in range(draws):
            counts[policy.select(context)] += 1
        for name, p in expected.items():
            assert abs(counts[name] / draws - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-3


def test_choose_logs_the_probability_the_choice_had():
    policy = with_arms(TreeThompson(**SMALL, seed=10), ("a", "b", "c"))
    rows = planted(600, seed=11)
    for _, vector, rewards in rows:
        before = policy.probabilities(vector)
        name, propensity = policy.choose(vector)
        assert propensity == before[name]
        policy.update(name, rewards.get(name, 0.5), vector)
    leader = with_arms(TreeLeader(**SMALL))
    run_full_information(leader, rows)
    vector = rows[0][1]
    probabilities = leader.probabilities(vector)
    assert sorted(probabilities.values()) == [0.0, 1.0]
    assert leader.choose(vector) == (max(probabilities, key=probabilities.get), 1.0)


# ---------------------------------------------------------------- state
def _roundtrip(policy: Policy) -> Policy:
    return Policy.from_state(json.loads(json.dumps(policy.state())))


def test_tree_leader_state_continues_identically_after_refits_and_mid_request():
    rows = planted(3000, seed=12)
    policy = with_arms(TreeLeader(**SMALL))
    run_full_information(policy, rows[:1400])
    assert policy.refits >= 5 and len(policy.tree.leaves) >= 2
    # Mid-request: the served reward is in, the shadow reward not yet.
    _, vector, rewards = rows[1400]
    policy.update("a", rewards["a"], vector)
    restored = _roundtrip(policy)
    assert json.dumps(restored.state()) == json.dumps(policy.state())
    for p in (policy, restored):
        p.observe("b", rewards["b"], vector)
    assert run_full_information(policy, rows[1401:]) == run_full_information(restored,
                                                                             rows[1401:])
    assert json.dumps(restored.state()) == json.dumps(policy.state())
    assert restored.refits == policy.refits > 10


def test_tree_thompson_state_continues_identically():
    rows = planted(2500, seed=13)
    policy = with_arms(TreeThompson(**SMALL, seed=14))

    def play(p, part):
        out = []
        for _, vector, rewards in part:
            name, propensity = p.choose(vector)
            p.update(name, rewards[name], vector)
            out.append((name, propensity))
        return out

    play(policy, rows[:1200])
    pending = [policy.choose(rows[1200][1]) for _ in range(3)]  # feedback still to come
    restored = _roundtrip(policy)
    assert json.dumps(restored.state()) == json.dumps(policy.state())
    for p in (policy, restored):
        for name, _ in pending:
            p.update(name, 1.0, rows[1200][1])
    assert play(policy, rows[1201:]) == play(restored, rows[1201:])
    assert json.dumps(restored.state()) == json.dumps(policy.state())


def test_state_size_is_bounded_by_the_window():
    rows = planted(4000, seed=15)
    policy = with_arms(TreeLeader(**{**SMALL, "window": 1000}))
    run_full_information(policy, rows[:2000])
    size = len(json.dumps(policy.state()))
    run_full_information(policy, rows[2000:])
    assert abs(len(json.dumps(policy.state())) - size) < 0.05 * size
    assert size < 120_000  # 1,000 rows of 3 features and 2 rewards


def test_a_broken_state_is_refused():
    policy = with_arms(TreeLeader(**SMALL))
    run_full_information(policy, planted(600, seed=16))
    state = json.loads(json.dumps(policy.state()))
    state["stats"]["tree"]["left"] = [5]
    with pytest.raises(InvalidStateError, match=r"malformed 'tree-leader' state.*lengths"):
        Policy.from_state(state)


# ---------------------------------------------------------------- arms come and go
def test_arms_added_and_removed():
    rows = planted(5000, seed=17)
    policy = with_arms(TreeLeader(**SMALL))
    run_full_information(policy, rows[:1500])
    policy.add_arm("c")  # better than both in segment y
    for context, vector, rewards in rows[1500:3500]:
        name = policy.select(vector)
        assert name in ("a", "b", "c")
        reward_c = 1.0 if context["segment"] == "y" else 0.0
        for arm in policy.arms:
            r = reward_c if arm == "c" else rewards[arm]
            (policy.update if arm == name else policy.observe)(arm, r, vector)
    y = ENCODER.encode({"segment": "y"})
    assert policy.select(y) == "c"
    policy.remove_arm("b")
    restored = _roundtrip(policy)
    assert restored.arms == ["a", "c"]
    for p in (policy, restored):
        assert p.select(y) == "c"
        assert p.select(ENCODER.encode({"segment": "x"})) == "a"
        with pytest.raises(UnknownArmError):
            p.update("b", 1.0, y)
    thompson = with_arms(TreeThompson(**SMALL, seed=18), ("a", "b", "c"))
    for _, vector, rewards in rows[:800]:
        name, _ = thompson.choose(vector)
        thompson.update(name, rewards.get(name, 0.3), vector)
    thompson.remove_arm("a")
    thompson.add_arm("d")
    probabilities = thompson.probabilities(rows[0][1])
    assert set(probabilities) == {"b", "c", "d"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert json.dumps(_roundtrip(thompson).state()) == json.dumps(thompson.state())


def test_a_policy_without_arms_says_so():
    with pytest.raises(NoArmsError):
        TreeThompson(**SMALL).select(np.eye(DIM)[0])
    assert TreeLeader(**SMALL).probabilities(np.eye(DIM)[0]) == {}


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(("params", "message"), [
    ({"window": 500}, r"window \(500\) must hold at least 801 rows"),
    ({"min_rewards": 600}, "min_rewards must be at most"),
    ({"max_depth": 7}, "max_depth must be"),
    ({"holdout": 1.0}, "holdout must be"),
    ({"dimension": 1}, "dimension must be"),
    ({"features": "age"}, "features must be a list"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        make_policy("tree-leader", **params)


def test_bad_contexts_and_rewards_are_refused():
    policy = with_arms(TreeLeader(**SMALL))
    with pytest.raises(InvalidParameterError, match="encoded context must be 16"):
        policy.select(np.zeros(3))
    with pytest.raises(InvalidParameterError, match="16 finite"):
        policy.update("a", 1.0, np.full(DIM, np.nan))
    with pytest.raises(InvalidParameterError, match="mapping of feature names"):
        policy.select([1.0, 2.0])
    with pytest.raises(InvalidRewardError):
        policy.update("a", 1.5, np.zeros(DIM))
    with pytest.raises(UnknownArmError):
        policy.observe("zz", 1.0, np.zeros(DIM))


# ---------------------------------------------------------------- the tree itself
def test_routing_walks_the_arrays_exactly_as_scikit_learn_compares():
    """Thresholds are float64 midpoints between float32 values; a walk that rounded them
    to float32, or compared float64 contexts, would send some boundary rows the other way."""
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(19)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = np.sin(3 * X[:, 0]) + (X[:, 1] > 0.3)
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y)
    fitted = model.tree_
    tree = TreeArrays.from_fitted(fitted, fitted.children_left != -1, np.arange(4))
    # Rows on the thresholds, and one float32 step either side of them.
    inner = fitted.children_left != -1
    edges = fitted.threshold[inner].astype(np.float32)
    probes = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)),
                             np.nextafter(edges, np.float32(-np.inf))])
    Z = np.repeat(X[:len(probes)], 1, axis=0).copy()
    for column in range(4):
        Z[:, column] = np.roll(probes, column)
    rows = np.vstack([X, Z])
    assert (tree.leaf_all(rows) == model.apply(rows)).all()
    assert [tree.leaf(row.astype(np.float64)) for row in rows] == model.apply(rows).tolist()


def test_pruning_keeps_a_real_split_and_cuts_noise():
    rng = np.random.default_rng(20)
    n = 3000
    X = rng.normal(size=(n, 3)).astype(np.float32)
    a = (rng.random(n) < np.where(X[:, 0] > 0, 0.8, 0.6)).astype(float)
    b = (rng.random(n) < np.where(X[:, 0] > 0, 0.6, 0.8)).astype(float)
    values = np.column_stack([a, b])
    params = TreeLeader(dimension=3, window=n, min_samples_leaf=200).p
    real = fit_tree(X, values - values.mean(axis=1, keepdims=True), values, params)
    assert real.feature[0] == 0 and len(real.leaves) >= 2
    noise = np.column_stack([rng.random(n) < 0.7, rng.random(n) < 0.7]).astype(float)
    cut = fit_tree(X, noise - noise.mean(axis=1, keepdims=True), noise,
                   TreeLeader(dimension=3, window=n, min_samples_leaf=200, split_z=2.0).p)
    assert cut.leaves == [0]


def test_prune_compares_choices_on_held_out_rows():
    """A split whose two sides choose the same arm can never earn more than its parent."""

    class Fitted:  # a root split into two leaves that both prefer output 0
        children_left = np.array([1, -1, -1])
        children_right = np.array([2, -1, -1])
        node_count = 3
        value = np.array([[[0.5], [0.1]], [[0.6], [0.1]], [[0.4], [0.2]]])

    held = np.array([1, 1, 2, 2])
    values = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert not _prune(Fitted, held, values, 0.0).any()
    Fitted.value = np.array([[[0.5], [0.1]], [[0.6], [0.1]], [[0.1], [0.4]]])  # right -> 1
    assert _prune(Fitted, held, values, 0.0).tolist() == [True, False, False]
    assert not _prune(Fitted, held, values, 3.0).any()  # +2 over 4 rows: under 3 s.e.


# ---------------------------------------------------------------- in a Deployment
class RightWhere:
    """Predicts the label right for one segment, wrong for the other."""

    def __init__(self, segment: str) -> None:
        self.segment = segment

    def predict_one(self, x):
        return int(x["segment"] == self.segment)


def test_a_deployment_with_shadow_scoring_routes_each_segment_to_its_version():
    policy = TreeLeader(**SMALL)
    deployment = Deployment(policy, reward="accuracy", shadow=ShadowParams(mode="all"))
    deployment.register("for-x", RightWhere("x"))
    deployment.register("for-y", RightWhere("y"))
    rng = random.Random(21)
    served = {"x": [], "y": []}
    for _ in range(3000):
        x = {"segment": rng.choice("xy"), "noise": rng.random(), "kind": "k"}
        decision = deployment.predict(x)
        deployment.feedback(decision.id, 1)  # the label: 1 (so "right" = the segment's own)
        served[x["segment"]].append(decision.version)
    assert np.mean([v == "for-x" for v in served["x"][-1000:]]) > 0.99
    assert np.mean([v == "for-y" for v in served["y"][-1000:]]) > 0.99


@pytest.mark.parametrize(("name", "regret", "gap"), [("tree-leader[shadow]", -0.2, 0.25),
                                                      ("tree-thompson", -0.5, 0.6)])
def test_the_tree_strategies_route_the_segments_in_a_replay(name, regret, gap):
    """The replay's toy stream: each version right on one segment, so context-free no
    strategy beats the per-chunk oracle. tree-leader needs 801 rows holding both versions
    before its first split (two leaves of 300 and the held-out quarter)."""
    from banditops.simulation.metrics import evaluate
    from banditops.simulation.replay import replay
    from banditops.simulation.strategies import STRATEGIES
    from tests.test_replay_context import segmented

    stream = segmented(4000, 500)
    metrics, _ = evaluate(stream, replay(stream, STRATEGIES[name], seed=0))
    assert metrics.regret < regret and metrics.gap_closed > gap, metrics
