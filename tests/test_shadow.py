"""Shadow scoring in the core: every label scores every live version's prediction."""

from __future__ import annotations

import random

import pytest

from banditops import Deployment, Guardrail
from banditops.errors import InvalidParameterError
from banditops.policies import EpsilonGreedy, ThompsonSampling
from banditops.shadow import ShadowParams


class Rule:
    """Predicts 1 when x >= threshold; right with probability ``accuracy`` on the stream."""

    def __init__(self, flip: bool = False):
        self.flip = flip
        self.calls = 0

    def predict_one(self, x):
        self.calls += 1
        return int((x >= 0.5) != self.flip)


class Raises:
    def predict_one(self, x):
        raise RuntimeError("broken")


def stream(n, seed=0):
    rng = random.Random(seed)
    return [(x, int(x >= 0.5)) for x in (rng.random() for _ in range(n))]


def test_a_starved_bad_version_is_judged_on_shadow_rewards():
    """Without shadows the bandit starves the bad version below min_samples and the guardrail
    never judges it; with shadows it is judged on every label and rolled back."""
    def run(shadow):
        d = Deployment(ThompsonSampling(seed=1), guardrail=Guardrail(min_samples=200),
                       shadow=shadow)
        d.register("good", Rule())
        d.register("bad", Rule(flip=True))
        for x, y in stream(3000):
            decision = d.predict(x)
            assert decision.prediction == d.model(decision.version).predict_one(x)
            d.feedback(decision.id, y)
        return d

    assert run(None).status("bad") == "live"  # starved, never judged
    shadowed = run(ShadowParams())
    assert shadowed.status("bad") == "rolled_back"
    bad = next(r for r in shadowed.versions() if r.name == "bad")
    assert bad.learned + bad.shadow_learned >= 200 and bad.shadow_reward_sum == 0.0
    assert bad.decisions < 50  # it served almost nothing: shadows did the judging
    good = next(r for r in shadowed.versions() if r.name == "good")
    assert good.judgement == "ok" and bad.judgement is None  # no verdict on a version not live
    fresh = Deployment(ThompsonSampling(seed=1), guardrail=Guardrail(min_samples=200))
    fresh.register("a", Rule())
    assert [r.judgement for r in fresh.versions()] == ["not judged yet"]


def test_shadow_rate_and_evaluating_modes():
    d = Deployment(EpsilonGreedy(epsilon=0.0, seed=2), shadow=ShadowParams(
        mode="rate", rate=0.1, seed=3))
    d.register("a", Rule())
    d.register("b", Rule())
    decisions = [d.predict(x) for x, _ in stream(2000)]
    shadowed = sum(1 for entry in d.log._pending.values() if entry.shadows)
    assert 140 < shadowed < 260  # ~10% of 2,000
    e = Deployment(EpsilonGreedy(epsilon=0.0, seed=2), shadow=ShadowParams(
        mode="evaluating", evaluation_rewards=100))
    e.register("a", Rule())
    e.register("b", Rule())
    for x, y in stream(1000):
        e.feedback(e.predict(x).id, y)
    reports = {r.name: r for r in e.versions()}
    # each version is shadowed only until it has 100 rewards, served or shadow
    assert all(r.learned + r.shadow_learned >= 100 for r in reports.values())
    assert min(r.shadow_learned for r in reports.values()) <= 101
    assert len(decisions) == 2000


def test_a_failing_shadow_never_touches_the_request():
    d = Deployment(EpsilonGreedy(epsilon=0.0, seed=4), shadow=ShadowParams())
    d.register("serving", Rule())
    d.register("broken", Raises())
    d.register("other", Rule())
    answers = [d.predict(x) for x, _ in stream(20)]
    assert all(a.version in ("serving", "other") for a in answers)
    assert d.status("broken") == "quarantined"


def test_shadow_needs_a_log_that_keeps_shadows():
    from banditops.store.memory import MemoryLog

    class Forgetful(MemoryLog):
        keeps_shadows = False

    with pytest.raises(InvalidParameterError, match="does not keep shadow predictions"):
        Deployment(EpsilonGreedy(), log=Forgetful(), shadow=ShadowParams())
    with pytest.raises(InvalidParameterError, match="shadow mode"):
        ShadowParams(mode="sometimes")
    with pytest.raises(InvalidParameterError, match="rate"):
        ShadowParams(mode="rate", rate=0.0)
