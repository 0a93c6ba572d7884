"""The suite every policy passes, plus the statistical behaviour of each bandit."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from collections import Counter
from collections.abc import Callable

import pytest

from banditops.errors import (
    DuplicateArmError,
    InvalidParameterError,
    InvalidRewardError,
    InvalidStateError,
    NoArmsError,
    UnknownArmError,
)
from banditops.policies import (
    UCB1,
    ABTest,
    DiscountedThompsonSampling,
    EpsilonGreedy,
    FollowTheLeader,
    GaussianThompsonSampling,
    Latest,
    Policy,
    SlidingWindowUCB,
    ThompsonSampling,
    Uniform,
    ValidationChampion,
    make_policy,
    parse_policy_params,
    policy_class,
    policy_names,
    policy_params_class,
)

FACTORIES: dict[str, Callable[[int], Policy]] = {
    "latest": lambda s: Latest(seed=s),
    "validation-champion": lambda s: ValidationChampion(seed=s),
    "ab-test": lambda s: ABTest(min_samples=50, seed=s),
    "epsilon-greedy": lambda s: EpsilonGreedy(seed=s),
    "epsilon-greedy-decay": lambda s: EpsilonGreedy(0.2, decay=0.999, prior_weight=5, seed=s),
    "ucb1": lambda s: UCB1(seed=s),
    "ucb1-prior": lambda s: UCB1(c=0.5, prior_weight=10, seed=s),
    "sliding-window-ucb": lambda s: SlidingWindowUCB(seed=s),
    "sliding-window-ucb-small": lambda s: SlidingWindowUCB(window=150, c=0.3, seed=s),
    "thompson": lambda s: ThompsonSampling(seed=s),
    "thompson-prior": lambda s: ThompsonSampling(prior_weight=20, seed=s),
    "gaussian-thompson": lambda s: GaussianThompsonSampling(seed=s),
    "discounted-thompson": lambda s: DiscountedThompsonSampling(seed=s),
    "discounted-thompson-fast": lambda s: DiscountedThompsonSampling(gamma=0.9, seed=s),
    "follow-the-leader": lambda s: FollowTheLeader(seed=s),
    "follow-the-leader-small": lambda s: FollowTheLeader(window=150, min_rewards=5,
                                                         cold_start_retry=20, seed=s),
    "uniform": lambda s: Uniform(seed=s),
}
BANDITS = ["epsilon-greedy", "ucb1", "thompson", "gaussian-thompson", "sliding-window-ucb",
           "discounted-thompson"]


def play(policy: Policy, means: dict[str, float], rounds: int, rng: random.Random,
         fractional: bool = False) -> list[str]:
    """Immediate-feedback Bernoulli (or fractional) bandit; returns the arms chosen."""
    chosen = []
    for _ in range(rounds):
        arm = policy.select()
        mean = means[arm]
        reward = (mean + rng.uniform(-0.1, 0.1) if fractional
                  else float(rng.random() < mean))
        policy.update(arm, min(1.0, max(0.0, reward)))
        chosen.append(arm)
    return chosen


def with_arms(policy: Policy, names=("a", "b", "c")) -> Policy:
    for i, name in enumerate(names):
        policy.add_arm(name, validation_score=0.5 + 0.1 * i)
    return policy


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> Callable[[int], Policy]:
    return FACTORIES[request.param]


# ------------------------------------------------------------- shared suite
def test_state_round_trip_gives_identical_next_selections(factory):
    policy = with_arms(factory(11))
    means = {"a": 0.3, "b": 0.5, "c": 0.7}
    play(policy, means, 300, random.Random(1), fractional=True)
    policy.probabilities()
    restored = Policy.from_state(json.loads(json.dumps(policy.state())))
    assert type(restored) is type(policy)
    assert restored.params() == policy.params()
    assert play(restored, means, 300, random.Random(2)) == play(policy, means, 300,
                                                                random.Random(2))


def test_arms_added_and_removed_at_run_time(factory):
    policy = with_arms(factory(3))
    rng = random.Random(0)
    play(policy, {"a": 0.3, "b": 0.5, "c": 0.7}, 200, rng)
    policy.remove_arm("c")
    assert policy.arms == ["a", "b"]
    assert set(play(policy, {"a": 0.3, "b": 0.5}, 200, rng)) <= {"a", "b"}
    policy.add_arm("d", validation_score=0.99)
    chosen = play(policy, {"a": 0.3, "b": 0.5, "d": 0.9}, 2000, rng)
    assert "d" in chosen  # every policy gives a new (better, newer, best-validated) arm traffic
    with pytest.raises(UnknownArmError, match="'c'"):
        policy.update("c", 1.0)
    with pytest.raises(UnknownArmError):
        policy.remove_arm("c")


def test_probabilities_sum_to_one_over_live_arms(factory):
    policy = with_arms(factory(5))
    rng = random.Random(4)
    for step in range(6):
        probabilities = policy.probabilities()
        assert set(probabilities) == set(policy.arms)
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        play(policy, {"a": 0.2, "b": 0.6, "c": 0.4, "d": 0.8}, 97, rng)
        if step == 2:
            policy.remove_arm("a")
            policy.add_arm("d")


# Logged propensity == what select() does: tests/test_propensities.py (every policy).


def test_clear_errors(factory):
    policy = factory(0)
    with pytest.raises(NoArmsError, match="add_arm"):
        policy.select()
    policy.add_arm("a")
    with pytest.raises(DuplicateArmError, match="'a' exists"):
        policy.add_arm("a")
    for bad_name in ("", None, 3, "x" * 201):
        with pytest.raises(InvalidParameterError, match="arm name"):
            policy.add_arm(bad_name)
    with pytest.raises(InvalidParameterError, match="validation_score"):
        policy.add_arm("b", validation_score=float("nan"))
    for bad_reward in (1.5, -0.1, float("nan"), "1", None, float("inf")):
        with pytest.raises(InvalidRewardError, match=r"\[0, 1\]"):
            policy.update("a", bad_reward)
    with pytest.raises(UnknownArmError, match="live arms"):
        policy.update("nope", 1.0)


@pytest.mark.parametrize(("key", "params", "message"), [
    ("epsilon-greedy", {"epsilon": 1.5}, "epsilon"),
    ("epsilon-greedy", {"decay": 0.0}, "decay"),
    ("ucb1", {"c": -1}, "c must be"),
    ("ucb1", {"c": "big"}, "c must be a number"),
    ("sliding-window-ucb", {"window": 0}, "window"),
    ("discounted-thompson", {"gamma": 0.0}, "gamma"),
    ("thompson", {"prior_weight": -1}, "prior_weight"),
    ("ab-test", {"alpha": 1.0}, "alpha"),
    ("ab-test", {"split": 0}, "split"),
    ("ab-test", {"test": "chi2"}, "test must be one of"),
    ("ab-test", {"min_samples": 2.5}, "min_samples"),
    ("nope", {}, "unknown policy"),
    ("ucb1", {"window": 3}, "bad parameters"),
    ("follow-the-leader", {"window": 10, "min_rewards": 11}, "at most window"),
    ("thompson", {"seed": "x"}, "seed"),
])
def test_invalid_parameters_are_rejected(key, params, message):
    with pytest.raises(InvalidParameterError, match=message):
        make_policy(key, **params)


# ------------------------------------------------------------- parameters
# One bad value per field of every policy's Params; the message must name the field.
BAD_VALUES = {
    "epsilon": [-0.1, 1.5, "x", True, float("nan")], "decay": [0.0, 1.5, "x"],
    "prior_weight": [-1, float("inf"), "x", None], "cold_start_retry": [0, 2.5, True, None],
    "c": [-1, 1e7, "big"], "window": [0, -3, 10.5, None], "gamma": [0.0, 1.01, None],
    "sigma2": [0.0, -1, None],
    "min_samples": [0, 2.5, True], "alpha": [0.0, 1.0], "split": [0, 1], "test": ["chi2", None],
    "min_rewards": [0, 2.5, True, None],
    "dimension": [1, 4097, 2.5, True, None], "features": ["age", ["a", "a"], [""], [3], None],
    "v": [0.0, -1, 1e4, None], "ridge": [0.0, -1, None], "prior_mean": [-0.1, 1.5, None],
    # the tree policies (contextual)
    "refit_every": [0, 1.5, None], "max_depth": [0, 7, 2.5, True],
    "min_samples_leaf": [0, -1, 2.5], "min_impurity_decrease": [-0.1, 1.5, "x"],
    "holdout": [0.0, 0.95, "x"], "split_z": [-1, 11, None], "leaf_window": [0, 2.5, None],
    "switch_z": [-1, "x"], "leader_window": [0, None], "propensity_floor": [0.0, 1.5, None],
    "prior_weight_tree": [],
}


@pytest.mark.parametrize("key", policy_names())
def test_each_params_rejects_bad_values_naming_the_field(key):
    params_class = policy_params_class(key)
    fields = [f.name for f in dataclasses.fields(params_class)]
    assert set(fields) <= set(BAD_VALUES), f"add bad values for {set(fields) - set(BAD_VALUES)}"
    for name in fields:
        for bad in BAD_VALUES[name]:
            with pytest.raises(InvalidParameterError, match=rf"^{name} must"):
                params_class(**{name: bad})
            with pytest.raises(InvalidParameterError, match=name):
                make_policy(key, **{name: bad})


@pytest.mark.parametrize("key", policy_names())
def test_params_are_frozen_and_the_constructor_defaults_are_the_params_defaults(key):
    cls, params_class = policy_class(key), policy_params_class(key)
    assert cls.Params is params_class
    defaults = params_class()
    signature = inspect.signature(cls.__init__).parameters
    for field in dataclasses.fields(params_class):
        assert signature[field.name].default == getattr(defaults, field.name), field.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(defaults, field.name, getattr(defaults, field.name))
    assert cls().params() == dataclasses.asdict(defaults)
    assert cls().p == defaults


def test_params_are_normalised_and_json_safe():
    policy = EpsilonGreedy(epsilon=1, decay=1, prior_weight=2, cold_start_retry=7, seed=3)
    assert policy.params() == {"epsilon": 1.0, "decay": 1.0, "prior_weight": 2.0,
                               "cold_start_retry": 7}
    assert all(type(v) is float for k, v in policy.params().items() if k != "cold_start_retry")
    assert json.loads(json.dumps(policy.params())) == policy.params()
    assert policy.epsilon == 1.0 and policy.p.epsilon == 1.0  # read as attributes, from p
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.p.epsilon = 0.5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        policy.nonsense  # noqa: B018


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_params_round_trip_through_make_policy_and_state(name):
    policy = FACTORIES[name](7)
    rebuilt = make_policy(policy.key, **policy.params(), seed=7)
    assert type(rebuilt) is type(policy) and rebuilt.p == policy.p
    assert type(policy).from_params(policy.p, seed=7).params() == policy.params()
    state = json.loads(json.dumps(policy.state()))
    assert state["params"] == policy.params()
    assert Policy.from_state(state).p == policy.p


def test_parse_policy_params_names_unknown_fields_and_refuses_other_params():
    assert parse_policy_params("ucb1", {"c": 1}) == UCB1(c=1).p
    with pytest.raises(InvalidParameterError, match=r"unknown parameter 'epsilon'.*known: c, "):
        parse_policy_params("ucb1", {"epsilon": 0.1})
    with pytest.raises(InvalidParameterError, match="unknown parameter 'seed'"):
        parse_policy_params("ucb1", {"seed": 1})  # the seed is not a parameter
    with pytest.raises(InvalidParameterError, match="unknown policy"):
        parse_policy_params("nope", {})
    with pytest.raises(InvalidParameterError, match="needs UCB1Params"):
        UCB1.from_params(EpsilonGreedy().p)


def test_a_state_with_bad_params_is_refused():
    state = with_arms(EpsilonGreedy(seed=1)).state()
    with pytest.raises(InvalidStateError, match="epsilon must be"):
        Policy.from_state({**state, "params": {**state["params"], "epsilon": 3}})
    with pytest.raises(InvalidStateError, match="unknown parameter 'colour'"):
        Policy.from_state({**state, "params": {**state["params"], "colour": 3}})


def test_from_state_rejects_bad_states():
    state = with_arms(UCB1()).state()
    with pytest.raises(InvalidStateError, match="unknown policy"):
        Policy.from_state({**state, "policy": "nope"})
    with pytest.raises(InvalidStateError, match="format"):
        Policy.from_state({**state, "format": 99})
    with pytest.raises(InvalidStateError, match="not 'thompson'"):
        ThompsonSampling.from_state(state)
    with pytest.raises(InvalidStateError, match="malformed"):
        Policy.from_state({**state, "stats": {}})
    with pytest.raises(InvalidStateError, match="dict"):
        Policy.from_state([1, 2])


def test_prior_needs_validation_score_in_unit_interval():
    policy = UCB1(prior_weight=5)
    with pytest.raises(InvalidParameterError, match="a prior needs a score in"):
        policy.add_arm("a", validation_score=3.0)


# ---------------------------------------------------------- static policies
def test_latest_and_champion_ignore_rewards():
    latest, champion = with_arms(Latest()), with_arms(ValidationChampion())
    for _ in range(100):
        latest.update("c", 0.0)
        champion.update("c", 0.0)
        champion.update("a", 1.0)
    assert latest.select() == "c"  # newest, however badly it does
    assert champion.select() == "c"  # best validation score (0.7)
    latest.add_arm("old", released_at=-5.0)
    assert latest.select() == "c"
    champion.add_arm("unscored")
    assert champion.select() == "c"


# -------------------------------------------------------- statistical tests
@pytest.mark.parametrize("key", BANDITS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bandits_find_the_best_arm(key, seed):
    """Bernoulli arms (0.3, 0.5, 0.7), 5,000 rounds: the best arm in >= 80% of the last 2,000."""
    policy = with_arms(FACTORIES[key](seed))
    chosen = play(policy, {"a": 0.3, "b": 0.5, "c": 0.7}, 5000, random.Random(100 + seed))
    share = chosen[-2000:].count("c") / 2000
    assert share >= 0.80, f"{key} seed {seed}: best arm share {share:.2%}"


def rounds_to_move_away(policy: Policy, seed: int, drop_at: int = 3000,
                        horizon: int = 3000) -> tuple[int, float]:
    """Best arm 'c' drops from 0.7 to 0.1 at ``drop_at``: rounds until a trailing 100-round
    share of 'c' falls below 20%, and the share of 'c' in rounds 800..1000 after the drop."""
    rng = random.Random(seed)
    play(policy, {"a": 0.3, "b": 0.5, "c": 0.7}, drop_at, rng)
    after = play(policy, {"a": 0.3, "b": 0.5, "c": 0.1}, horizon, rng)
    moved = next((t for t in range(100, horizon)
                  if after[t - 100:t].count("c") < 20), horizon)
    return moved, after[800:1000].count("c") / 200


def test_drift_aware_policies_move_away_fast_and_faster_than_ucb1():
    seeds = range(5)
    ucb1 = [rounds_to_move_away(with_arms(UCB1(seed=s)), s)[0] for s in seeds]
    for make in (lambda s: SlidingWindowUCB(seed=s), lambda s: DiscountedThompsonSampling(seed=s)):
        results = [rounds_to_move_away(with_arms(make(s)), s) for s in seeds]
        moved = [m for m, _ in results]
        late_share = sum(share for _, share in results) / len(results)
        assert max(moved) <= 1000, moved
        assert late_share <= 0.20, late_share
        assert sum(moved) * 2 <= sum(ucb1), (moved, ucb1)  # at least twice as fast


# ------------------------------------------------------------------ A/B test
def run_ab(seed: int, champion_mean: float, challenger_mean: float, fractional=False,
           min_samples: int = 500) -> dict:
    policy = ABTest(min_samples=min_samples, alpha=0.05, seed=seed)
    policy.add_arm("champion")
    policy.add_arm("challenger")
    rng = random.Random(10_000 + seed)  # never the policy's own stream
    means = {"champion": champion_mean, "challenger": challenger_mean}
    while policy.challenger is not None:
        arm = policy.select()
        if fractional:
            reward = min(1.0, max(0.0, rng.gauss(means[arm], 0.2)))
        else:
            reward = float(rng.random() < means[arm])
        policy.update(arm, reward)
    (notice,) = policy.take_notices()
    assert notice["kind"] == "ab_test_concluded"
    assert notice["champion_n"] >= min_samples and notice["challenger_n"] >= min_samples
    assert policy.champion == ("challenger" if notice["promoted"] else "champion")
    return notice


@pytest.mark.slow
def test_ab_test_error_rates_over_many_seeds():
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    seeds = range(300)
    equal = [run_ab(s, 0.5, 0.5) for s in seeds]
    assert all(n["test"] == "z" for n in equal)
    false_promotions = sum(n["promoted"] for n in equal) / len(equal)
    # Two-sided 5% test, promotion only in one direction: about 2.5% expected.
    assert 0.0 < false_promotions <= 0.06, false_promotions
    better = [run_ab(s, 0.5, 0.6) for s in seeds]
    power = NormalIndPower().power(proportion_effectsize(0.6, 0.5), nobs1=500, alpha=0.05)
    observed = sum(n["promoted"] for n in better) / len(better)
    assert observed == pytest.approx(power, abs=0.06), (observed, power)


@pytest.mark.slow
def test_ab_test_uses_welch_for_fractional_rewards():
    equal = [run_ab(s, 0.5, 0.5, fractional=True, min_samples=200) for s in range(200)]
    assert all(n["test"] == "welch" for n in equal)
    assert sum(n["promoted"] for n in equal) / len(equal) <= 0.06
    better = [run_ab(s, 0.5, 0.58, fractional=True, min_samples=200) for s in range(100)]
    assert sum(n["promoted"] for n in better) / len(better) >= 0.8


def test_ab_test_queues_later_challengers_and_handles_removal():
    policy = ABTest(min_samples=10, seed=0)
    for name in ("v1", "v2", "v3"):
        policy.add_arm(name)
    assert (policy.champion, policy.challenger) == ("v1", "v2")
    assert policy.probabilities() == {"v1": 0.5, "v2": 0.5, "v3": 0.0}
    policy.remove_arm("v2")  # challenger withdrawn: next in queue is tested
    assert policy.challenger == "v3"
    assert policy.take_notices()[0]["kind"] == "ab_test_abandoned"
    policy.remove_arm("v1")  # champion rolled back mid-test: challenger takes over
    assert (policy.champion, policy.challenger) == ("v3", None)
    assert policy.select() == "v3"
    assert policy.take_notices()[0]["kind"] == "champion_replaced"


# ------------------------------------------------- side observations (observe)
def play_with_observations(policy: Policy, means: dict[str, float], rounds: int,
                           rng: random.Random) -> list[str]:
    """Like ``play``, and every other live arm's reward arrives as a side observation."""
    chosen = []
    for _ in range(rounds):
        arm = policy.select()
        for name in policy.arms:
            reward = float(rng.random() < means[name])
            (policy.update if name == arm else policy.observe)(name, reward)
        chosen.append(arm)
    return chosen


def test_observe_validates_the_arm_and_the_reward(factory):
    policy = with_arms(factory(0))
    for bad_reward in (1.5, -0.1, float("nan"), "1", None, float("inf")):
        with pytest.raises(InvalidRewardError, match=r"\[0, 1\]"):
            policy.observe("a", bad_reward)
    with pytest.raises(UnknownArmError, match="live arms"):
        policy.observe("nope", 1.0)
    policy.remove_arm("c")
    with pytest.raises(UnknownArmError, match="'c'"):
        policy.observe("c", 1.0)


def test_state_round_trip_after_observations(factory):
    policy = with_arms(factory(12))
    means = {"a": 0.3, "b": 0.5, "c": 0.7}
    play_with_observations(policy, means, 400, random.Random(1))
    policy.probabilities()
    restored = Policy.from_state(json.loads(json.dumps(policy.state())))
    assert restored.probabilities() == pytest.approx(policy.probabilities())
    assert (play_with_observations(restored, means, 300, random.Random(2))
            == play_with_observations(policy, means, 300, random.Random(2)))


@pytest.mark.parametrize("key", [*BANDITS, "sliding-window-ucb-small", "epsilon-greedy-decay",
                                 "ucb1-prior", "thompson-prior", "follow-the-leader",
                                 "follow-the-leader-small"])
def test_observations_alone_make_a_policy_prefer_the_better_arm(key):
    """No decision at all: 600 observations per arm (0.3, 0.5, 0.8), then 1,000 choices.
    (Not gamma = 0.9: its memory of about 10 rewards is ~3 per arm, by design.)"""
    policy = with_arms(FACTORIES[key](4))
    rng = random.Random(40)
    for _ in range(600):
        for name, mean in (("a", 0.3), ("b", 0.5), ("c", 0.8)):
            policy.observe(name, float(rng.random() < mean))
    share = Counter(policy.select() for _ in range(1000))["c"] / 1000
    assert share >= 0.75, f"{key}: share of the better arm {share:.1%}"  # 10 seeds: >= 0.84


@pytest.mark.parametrize("make", [lambda: EpsilonGreedy(seed=1), lambda: UCB1(seed=1),
                                  lambda: SlidingWindowUCB(window=50, seed=1)])
def test_an_observation_ends_a_cold_start_without_counting_a_decision(make):
    policy = make()
    for name in ("a", "b", "c"):
        policy.add_arm(name)
    assert policy.probabilities()["a"] == 1.0  # "a" waits for its first reward
    policy.observe("a", 1.0)
    policy.observe("b", 0.0)
    # The cold start now serves "c", the one arm without a reward, at once: observations
    # did not count as decisions of the retry schedule.
    assert policy.probabilities()["c"] == 1.0
    assert policy._cold.decisions == 0
    assert policy.select() == "c"
    policy.update("c", 0.0)
    assert not policy._cold.waiting


@pytest.mark.parametrize("make", [lambda: UCB1(c=1.0), lambda: SlidingWindowUCB(c=1.0)])
def test_ucb_t_counts_decisions_only(make):
    """'a' is better known (many observations) and better (0.6 vs 0.5); 'b' has one reward.
    With t counting the 101 observations, b's bonus sqrt(ln 101) ~ 2.1 would win; with t = 1
    served reward, ln t = 0 and the means decide."""
    policy = make()
    policy.add_arm("a")
    policy.add_arm("b")
    for i in range(100):
        policy.observe("a", 1.0 if i % 5 < 3 else 0.0)
    policy.update("b", 0.5)
    assert policy.select() == "a"
    assert Policy.from_state(json.loads(json.dumps(policy.state()))).select() == "a"
    for _ in range(20):  # served rewards do grow t: b's bonus now wins
        policy.update("a", 0.6)
    assert policy.select() == "b"


def test_ucb1_removing_an_observed_arm_keeps_t_right_and_old_states_load():
    policy = UCB1(c=1.0)
    for name in ("a", "b", "c"):
        policy.add_arm(name)
    for _ in range(50):
        policy.observe("c", 1.0)
    policy.update("a", 0.7)
    policy.update("b", 0.6)
    policy.remove_arm("c")
    assert policy._total == 2.0
    state = json.loads(json.dumps(policy.state()))
    del state["stats"]["observed"]  # a state saved before observe() existed
    assert Policy.from_state(state)._total == 2.0


def test_sliding_window_observations_leave_the_window_like_rewards():
    policy = SlidingWindowUCB(window=4, c=0.0)
    policy.add_arm("a")
    policy.add_arm("b")
    policy.update("a", 0.2)
    for _ in range(3):
        policy.observe("b", 1.0)
    assert policy.select() == "b"
    for _ in range(4):  # four served rewards of "a" push every observation out
        policy.update("a", 0.4)
    assert policy._counts["b"] == 0 and policy._observed_in_window == 0
    assert "b" in policy._cold.waiting  # no reward of "b" in the window: re-checked


def test_epsilon_greedy_observations_do_not_decay_epsilon():
    policy = with_arms(EpsilonGreedy(0.2, decay=0.9, seed=1))
    for _ in range(10):
        policy.observe("a", 1.0)
    assert policy._current_epsilon == 0.2
    policy.update("a", 1.0)
    assert policy._current_epsilon == pytest.approx(0.18)


@pytest.mark.parametrize("name", ["thompson", "thompson-prior", "gaussian-thompson",
                                  "discounted-thompson", "ab-test", "follow-the-leader-small"])
def test_observe_is_exactly_update_for_posteriors_and_the_ab_test(name):
    by_update, by_observe = with_arms(FACTORIES[name](9)), with_arms(FACTORIES[name](9))
    rng = random.Random(5)
    for _ in range(300):
        arm, reward = rng.choice("abc"), rng.choice([0.0, 1.0, 0.35])
        by_update.update(arm, reward)
        by_observe.observe(arm, reward)
    assert by_observe.state() == by_update.state()


def test_ab_test_promotes_a_challenger_on_observations_alone():
    policy = ABTest(min_samples=200, seed=0)
    policy.add_arm("champion")
    policy.add_arm("challenger")
    rng = random.Random(6)
    while policy.challenger is not None:
        policy.observe("champion", float(rng.random() < 0.5))
        policy.observe("challenger", float(rng.random() < 0.8))
    (notice,) = policy.take_notices()
    assert notice["promoted"] and notice["challenger_n"] == 200
    assert policy.select() == "challenger"


def test_static_policies_ignore_observations():
    for policy in (with_arms(Latest(seed=1)), with_arms(ValidationChampion(seed=1))):
        before = policy.state()
        for _ in range(50):
            policy.observe("a", 1.0)
            policy.observe("c", 0.0)
        assert policy.state() == before and policy.select() == "c"


# ---------------------------------------------------------- follow the leader
def leader(window: int = 100, min_rewards: int = 10, retry: int = 50) -> FollowTheLeader:
    return FollowTheLeader(window=window, min_rewards=min_rewards, cold_start_retry=retry)


def feed(policy: Policy, name: str, rewards: list[float]) -> None:
    for reward in rewards:
        policy.observe(name, reward)


def test_leader_serves_the_best_windowed_mean_not_the_best_validation():
    policy = leader()
    policy.add_arm("a", validation_score=0.9)
    policy.add_arm("b", validation_score=0.1)
    policy.add_arm("c", validation_score=0.5)
    feed(policy, "a", [0.6] * 50)
    feed(policy, "b", [0.7] * 50)
    feed(policy, "c", [1.0, 0.0] * 25)  # mean 0.5
    assert policy.probabilities() == {"a": 0.0, "b": 1.0, "c": 0.0}
    assert [policy.select() for _ in range(20)] == ["b"] * 20
    assert policy.choose() == ("b", 1.0)
    policy.update("b", 0.0)  # a served reward counts like an observation: 35/51 < 0.7...
    assert policy.select() == "b"  # ...but 0.686 is still above a's 0.6


def test_leader_forgets_rewards_older_than_its_window():
    """'a' was far better for 1,000 rewards, then worse: with a window of 100 it leads while
    its window mean is above b's 0.5 and loses the lead exactly when it drops below (an
    all-history mean would keep serving 'a': 0.86 against 0.5)."""
    policy = leader(window=100)
    policy.add_arm("a")
    policy.add_arm("b")
    feed(policy, "a", [0.9] * 1000)
    feed(policy, "b", [0.5] * 1000)
    feed(policy, "a", [0.3] * 60)  # window: 40 x 0.9 + 60 x 0.3 -> 0.54
    assert policy.select() == "a"
    feed(policy, "a", [0.3] * 10)  # window: 30 x 0.9 + 70 x 0.3 -> 0.48
    assert policy.select() == "b"
    assert len(policy._windows["a"]) == 100
    assert policy._sums["a"] == pytest.approx(48.0) and policy._sums["b"] == pytest.approx(50.0)
    feed(policy, "a", [1.0] * 5)  # 25 x 0.9 + 70 x 0.3 + 5 x 1.0 -> 0.485: still 'b'
    assert policy.select() == "b"
    feed(policy, "a", [1.0] * 5)  # 20 x 0.9 + 70 x 0.3 + 10 x 1.0 -> 0.49
    feed(policy, "a", [1.0] * 20)  # 70 x 0.3 + 30 x 1.0 -> 0.51: 'a' leads again
    assert policy.select() == "a"


def test_leader_cold_start_tries_a_new_arm_late_and_never_lets_it_lead_on_a_few_rewards():
    policy = leader(min_rewards=10, retry=50)
    policy.add_arm("old", validation_score=0.5)
    feed(policy, "old", [0.6] * 100)
    assert policy.select() == "old"
    policy.add_arm("new", validation_score=0.99)
    # Not at once (side observations may speak for it first): after 50 decisions, then
    # every 50 until it is warm.
    assert policy.probabilities() == {"old": 1.0, "new": 0.0}
    chosen = [policy.select() for _ in range(101)]
    assert [i for i, name in enumerate(chosen) if name == "new"] == [49, 99]
    feed(policy, "new", [1.0] * 9)  # a perfect mean on 9 rewards: still cold, not leading
    assert policy.probabilities()["old"] == 1.0
    assert [policy.select() for _ in range(10)] == ["old"] * 10
    feed(policy, "new", [1.0])  # the 10th reward makes it warm: it leads on its mean
    assert not policy._cold.waiting
    assert [policy.select() for _ in range(60)] == ["new"] * 60
    policy.add_arm("observed")
    feed(policy, "observed", [0.2] * 10)  # warm from observations alone: never served
    assert "observed" not in [policy.select() for _ in range(200)]


def test_leader_without_warm_arms_serves_the_best_validation_and_ties_go_to_the_newer():
    policy = leader(min_rewards=10, retry=1000)
    policy.add_arm("unscored")
    policy.add_arm("good", validation_score=0.8)
    policy.add_arm("bad", validation_score=0.3)
    assert [policy.select() for _ in range(5)] == ["good"] * 5  # validation decides
    policy.add_arm("good-too", validation_score=0.8)
    assert policy.select() == "good-too"  # equal validation: the newer release
    for name in ("good", "good-too", "bad", "unscored"):
        feed(policy, name, [0.5] * 10)
    assert policy.select() == "good-too"  # equal means: the newer release again
    feed(policy, "good", [1.0])  # 'good' now 5.5/11 > 0.5
    assert policy.select() == "good"
    unscored = leader(min_rewards=10)
    unscored.add_arm("a")
    unscored.add_arm("b")
    assert unscored.select() == "b"  # nothing known at all: the newer release


def test_leader_is_greedy_under_bandit_feedback_and_can_starve_an_arm():
    """Documented, not a bug: without side observations an arm that looked bad on its first
    rewards is never served again, however good it really is."""
    policy = leader(window=100, min_rewards=5, retry=10)
    policy.add_arm("a")
    policy.add_arm("b")
    rewards = {"a": iter([0.0] * 5 + [1.0] * 10_000), "b": iter([0.5] * 10_000)}
    chosen = []
    for _ in range(2000):
        arm = policy.select()
        policy.update(arm, next(rewards[arm]))
        chosen.append(arm)
    assert chosen[-1000:] == ["b"] * 1000  # 'a' (truly 1.0 after its first 5) is starved
    with_shadow = leader(window=100, min_rewards=5, retry=10)
    with_shadow.add_arm("a")
    with_shadow.add_arm("b")
    feed(with_shadow, "a", [0.0] * 5 + [1.0] * 100)
    feed(with_shadow, "b", [0.5] * 105)
    assert with_shadow.select() == "a"  # side observations show the truth


def test_leader_state_round_trip_is_exact():
    policy = leader(window=50, min_rewards=5, retry=7)
    for name, score in (("a", 0.2), ("b", 0.9), ("c", None)):
        policy.add_arm(name, validation_score=score)
    rng = random.Random(3)
    for _ in range(400):
        policy.select()
        for name, mean in (("a", 0.4), ("b", 0.45), ("c", 0.5)):
            if rng.random() < 0.7:
                policy.observe(name, round(min(1.0, max(0.0, rng.gauss(mean, 0.3))), 3))
    policy.add_arm("d", validation_score=0.5)  # cold, mid-retry schedule after a select
    policy.select()
    state = json.loads(json.dumps(policy.state()))
    restored = Policy.from_state(state)
    assert isinstance(restored, FollowTheLeader) and restored.state() == policy.state()
    assert restored._sums == policy._sums  # exactly, not recomputed
    for _ in range(200):
        assert restored.select() == policy.select()
        reward = rng.random()
        restored.observe("d", reward)
        policy.observe("d", reward)
    state["stats"]["windows"]["a"] = [0.5] * 51
    with pytest.raises(InvalidStateError, match="51 rewards in a window of 50"):
        Policy.from_state(state)


@pytest.mark.parametrize("key", [k for k in policy_names()
                                 if not policy_class(k).uses_randomness])
def test_a_policy_without_randomness_never_draws_from_its_generator(key):
    """Replays run such a policy once for all seeds: its seed must change nothing."""
    runs = []
    for seed in (1, 99):
        policy = with_arms(make_policy(key, seed=seed))
        before = policy._rng.getstate()
        chosen = play_with_observations(policy, {"a": 0.3, "b": 0.5, "c": 0.7}, 300,
                                        random.Random(2))
        policy.add_arm("d", validation_score=0.9)
        chosen += play(policy, {"a": 0.3, "b": 0.5, "c": 0.7, "d": 0.6}, 300, random.Random(3))
        policy.probabilities()
        assert policy._rng.getstate() == before
        runs.append(chosen)
    assert runs[0] == runs[1]
