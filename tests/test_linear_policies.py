"""Linear contextual bandits (linear Thompson sampling, LinUCB): they learn which version is
right for which request, log exact propensities, and continue exactly after a restore."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtr

from banditops import Deployment
from banditops.errors import InvalidParameterError, InvalidStateError, NoArmsError
from banditops.policies import (
    LinearThompsonSampling,
    LinUCB,
    Policy,
    ThompsonSampling,
    make_policy,
    parse_policy_params,
)
from banditops.policies.maxprob import normal_max_probabilities, normal_max_probability
from banditops.policies.ridge import REFRESH

SEGMENTS = ("north", "south", "east")
ARMS = ("a", "b", "c")


def planted(rng: random.Random) -> tuple[dict, dict[str, float]]:
    """A request and each arm's chance of reward 1: arm k is best (0.8) in segment k and
    poor (0.4) elsewhere, so no single arm beats 0.54 on average; a noise feature too."""
    segment = rng.randrange(3)
    context = {"segment": SEGMENTS[segment], "noise": rng.uniform(0, 100)}
    return context, {arm: 0.8 if k == segment else 0.4 for k, arm in enumerate(ARMS)}


def run(policy: Policy, steps: int, seed: int = 0) -> float:
    """Mean reward over ``steps`` requests of the planted problem (with one-step delay)."""
    rng = random.Random(seed)
    for arm in ARMS:
        policy.add_arm(arm)
    total = 0.0
    for _ in range(steps):
        context, chances = planted(rng)
        arm = policy.select(context) if policy.contextual else policy.select()
        reward = float(rng.random() < chances[arm])
        total += reward
        if policy.contextual:
            policy.update(arm, reward, context)
        else:
            policy.update(arm, reward)
    return total / steps


def test_linear_policies_learn_a_planted_rule_well_above_context_free_thompson():
    steps = 3000
    thompson = run(ThompsonSampling(seed=1), steps)
    linear_ts = run(LinearThompsonSampling(dimension=32, seed=1), steps)
    linucb = run(LinUCB(dimension=32), steps)
    assert thompson < 0.58  # no single arm earns more than 0.533 on average
    # The contextual optimum is 0.8; both reach most of it over the whole run.
    assert linear_ts > thompson + 0.15, (linear_ts, thompson)
    assert linucb > thompson + 0.15, (linucb, thompson)


def _trained(seed: int = 4, **params) -> LinearThompsonSampling:
    policy = LinearThompsonSampling(dimension=32, v=0.5, seed=seed, **params)
    rng = random.Random(seed)
    for arm in ARMS:
        policy.add_arm(arm)
    for _ in range(30):
        context, chances = planted(rng)
        arm = rng.choice(ARMS)
        policy.update(arm, float(rng.random() < chances[arm]), context)
    return policy


def test_propensities_match_the_frequencies_of_the_choices():
    policy = _trained()
    context = {"segment": "south", "noise": 40.0}
    probabilities = policy.probabilities(context)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-10)
    assert sorted(probabilities.values())[-2] > 0.05  # a case with real uncertainty
    draws = 20_000
    counts = dict.fromkeys(ARMS, 0)
    for _ in range(draws):
        name, propensity = policy.choose(context)
        assert propensity == pytest.approx(probabilities[name], abs=1e-12)
        counts[name] += 1
    for arm in ARMS:
        p = probabilities[arm]
        margin = 4.5 * math.sqrt(p * (1 - p) / draws) + 1e-4
        assert abs(counts[arm] / draws - p) < margin, (arm, counts[arm] / draws, p)


def _reference(i: int, mean: np.ndarray, sd: np.ndarray) -> float:
    """P(X_i is the largest) by adaptive integration, the step-like parts split out."""
    others = [j for j in range(len(mean)) if j != i]

    def integrand(t: float) -> float:
        density = math.exp(-0.5 * ((t - mean[i]) / sd[i]) ** 2) / (sd[i] * math.sqrt(2 * math.pi))
        return density * float(np.prod(ndtr((t - mean[others]) / sd[others])))

    low, high = mean[i] - 12 * sd[i], mean[i] + 12 * sd[i]
    points = sorted(p for j in others for p in (mean[j] - 2 * sd[j], mean[j], mean[j] + 2 * sd[j])
                    if low < p < high)
    value, _ = integrate.quad(integrand, low, high, points=points or None, limit=500,
                              epsabs=1e-13, epsrel=1e-11)
    return value


def test_normal_max_probabilities_are_exact_on_random_posteriors():
    rng = np.random.default_rng(11)
    for _ in range(60):
        k = int(rng.integers(2, 6))
        mean = rng.normal(0.8, 0.05, k)
        sd = rng.uniform(0.005, 0.15, k)
        exact = normal_max_probabilities(mean, sd)
        assert exact.sum() == pytest.approx(1.0, abs=1e-10)
        for i in range(k):
            assert exact[i] == pytest.approx(_reference(i, mean, sd), abs=1e-9)
            assert normal_max_probability(i, mean, sd) == exact[i]
    # Point masses and step-like arms: exact values known in closed form.
    assert normal_max_probabilities([0.0, 1.0], [0.0, 1.0]).tolist() == pytest.approx(
        [ndtr(-1.0), ndtr(1.0)], abs=1e-10)
    # Tied point masses: the first wins, as the policy keeps the first largest draw.
    assert normal_max_probabilities([0.0, 0.0, -1.0], [0.0, 0.0, 0.0]).tolist() == [1, 0, 0]
    assert normal_max_probabilities([0.5, 0.6], [1e-9, 1.0]) == pytest.approx(
        [ndtr(-0.1), ndtr(0.1)], abs=1e-9)
    with pytest.raises(InvalidParameterError):
        normal_max_probabilities([0.0, 1.0], [1.0, -1.0])


def _replay(policy: Policy, steps: int, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        context, chances = planted(rng)
        name, propensity = policy.choose(context)
        out.append((name, propensity))
        policy.update(name, float(rng.random() < chances[name]), context)
        other = rng.choice(policy.arms)
        policy.observe(other, float(rng.random() < chances[other]), context)
    return out


@pytest.mark.parametrize("make", [
    lambda: LinearThompsonSampling(dimension=16, seed=5),
    lambda: LinearThompsonSampling(dimension=16, gamma=0.99, seed=5),
    lambda: LinUCB(dimension=16, c=0.5, gamma=0.995),
    lambda: LinUCB(dimension=16, features=["segment"]),
])
def test_state_round_trips_through_json_and_continues_identically(make):
    policy = make()
    for arm in ARMS:
        policy.add_arm(arm, validation_score=0.7)
    _replay(policy, REFRESH + 37, seed=1)  # past an exact re-inversion
    state = json.loads(json.dumps(policy.state()))
    restored = Policy.from_state(state)
    assert type(restored) is type(policy) and restored.params() == policy.params()
    assert json.loads(json.dumps(restored.state())) == state
    assert _replay(restored, 2 * REFRESH, seed=2) == _replay(policy, 2 * REFRESH, seed=2)
    with pytest.raises(InvalidStateError):
        broken = json.loads(json.dumps(state))
        broken["stats"]["models"]["a"]["a_inv"] = [[1.0]]
        Policy.from_state(broken)
    for field in ("theta", "b"):  # finite but absurd: every score would be inf
        broken = json.loads(json.dumps(state))
        broken["stats"]["models"]["a"][field] = [1e308] * 16
        with pytest.raises(InvalidStateError, match=f"{field} must be"):
            Policy.from_state(broken)


def test_sherman_morrison_keeps_the_inverse_and_theta_exact():
    rng = np.random.default_rng(3)
    for gamma in (1.0, 0.995):
        policy = LinUCB(dimension=12, ridge=2.0, gamma=gamma)
        policy.add_arm("a", validation_score=0.6)
        a, b = 2.0 * np.eye(12), np.zeros(12)
        b[0] = 2.0 * 0.6
        for step in range(1, 3 * REFRESH + 11):
            x = rng.normal(size=12)
            x[0] = 1.0
            reward = float(rng.random())
            policy.update("a", reward, x)
            a, b = gamma * a + np.outer(x, x), gamma * b + reward * x
            if step % REFRESH == 0:  # the prior's weight is restored (see the module)
                a += 2.0 * (1 - gamma ** REFRESH) * np.eye(12)
                b[0] += 2.0 * (1 - gamma ** REFRESH) * 0.6
            models = policy._models
            if step % 37 == 0 or step % REFRESH in (0, 1):
                np.testing.assert_allclose(models.theta[0], np.linalg.solve(a, b),
                                           rtol=0, atol=1e-9)
                np.testing.assert_allclose(models.a_inv[0], np.linalg.inv(a), rtol=0,
                                           atol=1e-9)
        if gamma < 1.0:
            np.testing.assert_allclose(models.a[0], a, rtol=0, atol=1e-9)


def test_arms_come_and_go_and_a_new_arm_starts_at_its_validation_score():
    policy = LinUCB(dimension=16, c=0.0)
    policy.add_arm("old", validation_score=0.6)
    for _ in range(50):
        policy.update("old", 0.6, {"k": "x"})
    policy.add_arm("new", validation_score=0.9)  # predicted 0.9 everywhere until it learns
    assert policy.select({"k": "x"}) == "new"
    policy.add_arm("unscored")  # no validation score: prior_mean (0.5)
    for _ in range(30):
        policy.update("new", 0.1, {"k": "x"})
    assert policy.select({"k": "x"}) == "old"
    policy.remove_arm("old")
    assert policy.arms == ["new", "unscored"]
    assert policy.select({"k": "x"}) == "unscored"
    restored = Policy.from_state(json.loads(json.dumps(policy.state())))
    assert restored.select({"k": "x"}) == "unscored"
    assert restored.arm_totals() == {"new": (30, pytest.approx(3.0)), "unscored": (0, 0.0)}
    policy.remove_arm("new")
    policy.remove_arm("unscored")
    with pytest.raises(NoArmsError):
        policy.select({"k": "x"})


def test_a_reward_without_context_only_counts_and_no_context_is_the_average_request():
    policy = LinearThompsonSampling(dimension=16, seed=0)
    policy.add_arm("a")
    policy.add_arm("b")
    before = policy._models.theta.copy()
    policy.update("a", 1.0)
    assert policy.arm_totals()["a"] == (1, 1.0)
    np.testing.assert_array_equal(policy._models.theta, before)
    for _ in range(200):
        policy.update("a", 1.0, {"k": "x"})
        policy.update("b", 0.0, {"k": "x"})
    assert policy.probabilities()["a"] > 0.99  # the average request looks like these


def test_params_are_validated_and_registered():
    assert make_policy("linear-thompson", v=0.5, features=["age"], seed=1).p.features == \
        ("age",)
    assert parse_policy_params("linucb", {"c": 1, "gamma": 0.99}).c == 1.0
    for key, bad, message in [("linear-thompson", {"v": 0}, "v must"),
                              ("linucb", {"dimension": 1}, "dimension must"),
                              ("linucb", {"gamma": 0}, "gamma must"),
                              ("linear-thompson", {"features": "age"}, "features must")]:
        with pytest.raises(InvalidParameterError, match=message):
            make_policy(key, **bad)
    policy = LinUCB(dimension=8)
    policy.add_arm("a")
    with pytest.raises(InvalidParameterError, match="8 finite numbers"):
        policy.update("a", 1.0, np.ones(9))


class Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, rows):
        return [self.value] * len(rows)


def test_a_deployment_with_linear_thompson_learns_and_restores_its_learning():
    def deployment() -> Deployment:
        d = Deployment(LinearThompsonSampling(dimension=32, seed=9), reward="accuracy")
        d.register("zero", Constant(0))
        d.register("one", Constant(1))
        return d

    rng = random.Random(0)

    def serve(d: Deployment, steps: int) -> list[tuple[str, float]]:
        out = []
        for _ in range(steps):
            request = {"group": rng.choice(["x", "y"]), "size": rng.uniform(0, 9)}
            decision = d.predict(request)
            out.append((decision.version, decision.propensity))
            d.feedback(decision.id, int(request["group"] == "y"))  # "one" is right for y
        return out

    first = deployment()
    serve(first, 400)
    assert first.predict({"group": "y", "size": 1.0}).version == "one"
    assert first.predict({"group": "x", "size": 1.0}).version == "zero"
    state = json.loads(json.dumps(first.learning_state()))
    second = deployment()
    second.restore_learning(state)
    rng_state = rng.getstate()
    continued = serve(first, 50)
    rng.setstate(rng_state)
    assert serve(second, 50) == continued


@pytest.mark.parametrize("cls", [LinUCB, LinearThompsonSampling])
@pytest.mark.parametrize(("ridge", "gamma"), [(1e-300, 1.0), (1e-300, 0.5), (1.0, 1e-300),
                                              (1e-7, 1.0), (1.0, 0.4)])
def test_a_ridge_or_gamma_that_would_overflow_the_model_to_nan_is_refused(cls, ridge, gamma):
    """ridge 1e-300 or gamma 1e-300 were accepted and the model's state went NaN (or every
    choice raised) within a few hundred rewards."""
    with pytest.raises(InvalidParameterError, match=r"(ridge|gamma) must be in"):
        cls(dimension=8, ridge=ridge, gamma=gamma)


@pytest.mark.parametrize("cls", [LinUCB, LinearThompsonSampling])
@pytest.mark.parametrize(("ridge", "gamma"), [(1e-6, 1.0), (1e-6, 0.5), (1e6, 0.5)])
def test_the_extreme_accepted_ridge_and_gamma_keep_the_model_finite(cls, ridge, gamma):
    policy = cls(dimension=8, ridge=ridge, gamma=gamma, seed=0)
    for arm in ("a", "b"):
        policy.add_arm(arm)
    rng = random.Random(0)
    for i in range(600):
        context = {"x": rng.choice([0.0, 1e30, -1e30, 3.0]), "c": str(i % 3), "y": rng.random()}
        name, _ = policy.choose(context)
        policy.update(name, float(rng.random() < 0.5), context)
    text = json.dumps(policy.state())
    assert "NaN" not in text and "Infinity" not in text
    assert math.isclose(sum(policy.probabilities({"x": 1.0, "c": "1"}).values()), 1.0)
