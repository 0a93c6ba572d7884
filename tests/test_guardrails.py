"""Guardrail semantics: roll back a degraded version, never the last, never on no data."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import random

import numpy as np
import pytest
from scipy.stats import ttest_ind_from_stats

from banditops.errors import InvalidParameterError
from banditops.guardrails import Guardrail, GuardrailParams, normal_mixture_radius

METHODS = ["welch", "bayes", "sequential"]


def feed(guardrail: Guardrail, means: dict[str, float], rounds: int, seed: int = 0,
         live: list[str] | None = None) -> list:
    """Each round gives every version one Bernoulli reward; returns all verdicts in order."""
    rng = random.Random(seed)
    live = list(means) if live is None else live
    verdicts = []
    for _ in range(rounds):
        for name, mean in means.items():
            for verdict in guardrail.observe(name, float(rng.random() < mean), live):
                verdicts.append(verdict)
                live.remove(verdict.version)
    return verdicts


@pytest.mark.parametrize("method", METHODS)
def test_degraded_version_is_rolled_back_with_evidence(method):
    guardrail = Guardrail(method=method, min_samples=100, check_every=5)
    verdicts = feed(guardrail, {"good": 0.8, "bad": 0.5, "fine": 0.79}, 2000)
    assert [v.version for v in verdicts] == ["bad"]
    evidence = verdicts[0].evidence
    assert evidence["best_version"] in ("good", "fine")
    assert 100 <= evidence["n"] <= 115  # judged as soon as it had enough data
    assert evidence["mean"] < evidence["best_mean"] - 0.2
    assert evidence["method"] == method
    if method == "sequential":
        assert evidence["margin"] < evidence["cs_lower"] < evidence["cs_upper"]
        assert evidence["cs_lower"] < evidence["best_mean"] - evidence["mean"]
    else:
        stat = evidence["p_value"] if method == "welch" else 1 - evidence["probability"]
        assert stat < 0.01
    assert "bad reward" in verdicts[0].reason and "below" in verdicts[0].reason


@pytest.mark.parametrize("method", METHODS)
def test_never_the_last_version_and_never_the_best(method):
    guardrail = Guardrail(min_samples=50, check_every=1, method=method)
    assert feed(guardrail, {"only": 0.01}, 500) == []
    assert guardrail.judgement("only") == "ok"
    guardrail = Guardrail(min_samples=50, check_every=1, method=method)
    verdicts = feed(guardrail, {"a": 0.05, "b": 0.02, "c": 0.01}, 3000)
    assert "a" not in {v.version for v in verdicts}  # the best one always stays
    assert guardrail.judgement("a", live=["a", "b", "c"]) == "ok"


@pytest.mark.parametrize("method", METHODS)
def test_no_data_is_never_a_pass_nor_a_rollback(method):
    guardrail = Guardrail(min_samples=200, check_every=1, method=method)
    # "new" has too little data to be judged, however bad it looks so far.
    feed(guardrail, {"old": 0.9}, 1000, live=["old", "new"])
    assert guardrail.judgement("new") == "not judged yet"  # no reward at all
    verdicts = feed(guardrail, {"new": 0.0}, 199, live=["old", "new"])
    assert verdicts == []
    assert guardrail.judgement("new") == "not judged yet"
    assert guardrail.judgement("old") == "not judged yet"  # nothing to compare it with yet
    guardrail.observe("new", 0.0, [])  # a reward, no check (nothing live)
    assert guardrail.judgement("new") == "worse"
    assert guardrail.judgement("old") == "ok"
    assert guardrail.check(["old", "new"])[0].version == "new"
    # A version compared against a best that lacks data gets no verdict either.
    guardrail = Guardrail(min_samples=200, check_every=1, method=method)
    feed(guardrail, {"weak": 0.1}, 1000, live=["weak", "strong"])
    assert feed(guardrail, {"strong": 1.0}, 150, live=["weak", "strong"]) == []
    assert guardrail.judgement("weak") == "not judged yet"


@pytest.mark.parametrize("method", METHODS)
def test_nan_statistics_give_no_verdict(method):
    guardrail = Guardrail(min_samples=20, check_every=10**9, method=method)
    for _ in range(30):
        guardrail.observe("a", 0.9, ["a", "b"])
        guardrail.observe("b", float("nan"), ["a", "b"])  # must never happen, never a rollback
    assert guardrail.check(["a", "b"]) == []
    assert guardrail.judgement("b") != "worse"


def test_sequential_radius_is_time_uniform_and_shrinks():
    radii = [normal_mixture_radius(i, 0.01, tuned_for=4000.0) for i in (400.0, 4000.0, 40_000.0)]
    assert radii[0] > radii[1] > radii[2] > 0
    fixed = 2.576 / math.sqrt(4000.0)  # a fixed-sample 99 % half-width is narrower
    assert fixed < radii[1] < 1.6 * fixed
    assert normal_mixture_radius(4000.0, 0.001, 4000.0) > radii[1]


def test_sequential_catches_a_clearly_worse_version_quickly():
    for seed in range(5):
        guardrail = Guardrail(method="sequential", check_every=10)
        verdicts = feed(guardrail, {"a": 0.9, "b": 0.6}, 400, seed=seed)
        assert [v.version for v in verdicts] == ["b"]
        assert verdicts[0].evidence["n"] <= 260  # min_samples is 200


def _aa_false_rollbacks(method: str, runs: int, rounds: int, seed: int) -> int:
    """Runs of two identical Bernoulli(0.85) versions in which one was rolled back.

    One reward per version per round, a check every 10 rewards (5 rounds); the observe loop
    is the real guardrail, fed from numpy draws.
    """
    rng = np.random.default_rng(seed)
    rolled = 0
    for _ in range(runs):
        draws = (rng.random((rounds, 2)) < 0.85).astype(float).tolist()
        guardrail = Guardrail(method=method, check_every=10, margin=0.0)
        live = ["a", "b"]
        for a, b in draws:
            if guardrail.observe("a", a, live) or guardrail.observe("b", b, live):
                rolled += 1
                break
    return rolled


def test_sequential_holds_its_level_under_continuous_monitoring_where_welch_does_not():
    # 200 A/A runs of 5,000 rewards checked every 10, margin 0: Welch (window 1,000) rolls a
    # healthy version back in a large share of runs; the confidence sequence in at most 2 %.
    sequential = _aa_false_rollbacks("sequential", runs=200, rounds=2500, seed=7)
    welch = _aa_false_rollbacks("welch", runs=200, rounds=2500, seed=7)
    assert sequential <= 4, sequential
    assert welch >= 30, welch


def test_sequential_ignores_the_window_and_keeps_totals_in_its_state():
    guardrail = Guardrail(method="sequential", min_samples=20, window=50, check_every=3)
    feed(guardrail, {"a": 0.9, "b": 0.85}, 400)
    state = json.loads(json.dumps(guardrail.state()))
    assert state["windows"] == {"a": [], "b": []}  # no reward list kept: totals since release
    assert [n for n, _, _ in state["totals"].values()] == [400, 400]
    assert sorted((b[0], b[1]) for b in state["bettors"]) == [("a", "b"), ("b", "a")]
    restored = Guardrail.from_state(state)
    assert feed(restored, {"a": 0.9, "b": 0.2}, 200, seed=9) == feed(
        guardrail, {"a": 0.9, "b": 0.2}, 200, seed=9)
    guardrail.forget("b")
    assert guardrail.judgement("b", live=["a", "b"]) == "not judged yet"


def test_equal_versions_are_left_alone_over_a_long_run():
    for seed in range(3):
        guardrail = Guardrail(check_every=10)
        assert feed(guardrail, {"a": 0.7, "b": 0.7, "c": 0.69}, 20_000, seed=seed) == []


def test_sequential_catches_a_drop_after_a_long_good_run_by_betting_on_recent_rewards():
    """After 20,000 good rounds the mean since release barely moves when b drops 20 points;
    the betting e-process, sized from the recent rewards, catches it all the same."""
    for seed in range(3):
        guardrail = Guardrail(check_every=10)
        assert feed(guardrail, {"a": 0.8, "b": 0.8}, 20_000, seed=seed) == []
        verdicts = feed(guardrail, {"a": 0.8, "b": 0.6}, 1500, seed=seed + 10)
        assert [v.version for v in verdicts] == ["b"], seed
        evidence = verdicts[0].evidence
        assert evidence["e_value"] >= evidence["e_threshold"] == pytest.approx(400.0)
        assert evidence["cs_lower"] < evidence["margin"]  # the since-release sequence is not sure
        assert "e-value of the recent rewards" in verdicts[0].reason


def test_window_catches_degradation_after_a_long_good_run():
    # Welch's window (the sequential default bets on the recent rewards instead, above)
    windowed, cumulative = (Guardrail(window=500, method="welch"),
                            Guardrail(window=None, method="welch"))
    for guardrail in (windowed, cumulative):
        feed(guardrail, {"a": 0.8, "b": 0.8}, 20_000)
    late_windowed = feed(windowed, {"a": 0.8, "b": 0.55}, 600, seed=1)
    late_cumulative = feed(cumulative, {"a": 0.8, "b": 0.55}, 600, seed=1)
    assert [v.version for v in late_windowed] == ["b"]
    assert late_cumulative == []  # the long good past hides the drop without a window


def test_welch_p_value_matches_scipy():
    # confidence just above 0.5: report everything below the best
    guardrail = Guardrail(min_samples=30, check_every=10**9, margin=0.05, confidence=0.5000001,
                          method="welch")
    rng = random.Random(5)
    values = {"x": [rng.betavariate(5, 3) for _ in range(80)],
              "y": [rng.betavariate(3, 3) for _ in range(60)]}
    for name, rewards in values.items():
        for reward in rewards:
            guardrail.observe(name, reward, ["x", "y"])
    (verdict,) = guardrail.check(["x", "y"])

    def stats(v):
        mean = sum(v) / len(v)
        return mean, math.sqrt(sum((r - mean) ** 2 for r in v) / (len(v) - 1)), len(v)

    mx, sx, nx = stats(values["x"])
    my, sy, ny = stats(values["y"])
    expected = ttest_ind_from_stats(my, sy, ny, mx - 0.05, sx, nx, equal_var=False,
                                    alternative="less").pvalue
    assert verdict.evidence["p_value"] == pytest.approx(expected, rel=1e-9)


def test_state_round_trip_and_parameter_errors():
    guardrail = Guardrail(min_samples=20, window=50, check_every=3)
    feed(guardrail, {"a": 0.9, "b": 0.85}, 40)
    restored = Guardrail.from_state(guardrail.state())
    assert feed(restored, {"a": 0.9, "b": 0.2}, 60, seed=9) == feed(
        guardrail, {"a": 0.9, "b": 0.2}, 60, seed=9)
    for params, message in [({"confidence": 0.4}, "confidence"), ({"min_samples": 1}, "at least 2"),
                            ({"method": "vibes"}, "method"), ({"window": 10}, "window"),
                            ({"margin": float("nan")}, "margin")]:
        with pytest.raises(InvalidParameterError, match=message):
            Guardrail(**params)


@pytest.mark.parametrize(("params", "message"), [
    ({"confidence": 0.5}, "^confidence must be in"), ({"confidence": 1.0}, "^confidence"),
    ({"confidence": "high"}, "^confidence must be a number"),
    ({"min_samples": 0}, "^min_samples must be a positive integer"),
    ({"min_samples": 1}, "^min_samples must be at least 2"),
    ({"min_samples": 20.5}, "^min_samples"), ({"min_samples": True}, "^min_samples"),
    ({"margin": -0.1}, "^margin"), ({"margin": float("inf")}, "^margin"),
    ({"method": "vibes"}, "^method must be one of"), ({"method": None}, "^method"),
    ({"window": 0}, "^window must be"), ({"window": 150}, r"^window \(150\) must be at least"),
    ({"check_every": 0}, "^check_every"), ({"check_every": "10"}, "^check_every"),
])
def test_guardrail_params_reject_bad_values_naming_the_field(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        GuardrailParams(**params)
    with pytest.raises(InvalidParameterError, match=message):
        Guardrail(**params)


def test_guardrail_params_are_the_one_source_of_defaults_and_values():
    defaults = GuardrailParams()
    assert defaults == GuardrailParams(confidence=0.99, min_samples=200, margin=0.05,
                                       method="sequential", window=1000, check_every=10)
    signature = inspect.signature(Guardrail.__init__).parameters
    for field in dataclasses.fields(GuardrailParams):
        assert signature[field.name].default == getattr(defaults, field.name), field.name
    guardrail = Guardrail(confidence=0.95, min_samples=30, margin=0, method="bayes",
                          window=None, check_every=3)
    assert guardrail.p == GuardrailParams(0.95, 30, 0.0, "bayes", None, 3)
    assert guardrail.params() == dataclasses.asdict(guardrail.p)
    assert json.loads(json.dumps(guardrail.params())) == guardrail.params()
    assert (guardrail.margin, guardrail.window, guardrail.method) == (0.0, None, "bayes")
    with pytest.raises(AttributeError):
        guardrail.confidence = 0.5  # type: ignore[misc]  (read-only: p is the one source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        guardrail.p.confidence = 0.5  # type: ignore[misc]


def test_from_params_and_state_give_the_same_guardrail():
    params = GuardrailParams(min_samples=20, window=50, check_every=3, method="bayes")
    guardrail = Guardrail.from_params(params)
    assert guardrail.p == params
    feed(guardrail, {"a": 0.9, "b": 0.85}, 40)
    restored = Guardrail.from_state(json.loads(json.dumps(guardrail.state())))
    assert restored.p == params
    verdicts = feed(restored, {"a": 0.9, "b": 0.1}, 60, seed=2)
    assert [v.version for v in verdicts] == ["b"]
    assert verdicts == feed(guardrail, {"a": 0.9, "b": 0.1}, 60, seed=2)
    with pytest.raises(InvalidParameterError, match="needs GuardrailParams"):
        Guardrail.from_params({"min_samples": 20})  # type: ignore[arg-type]


def test_the_aa_benchmark_applies_the_guardrail_exactly():
    from benchmarks.guardrail_aa import verify  # vectorised rules == Guardrail on the same draws

    verify(runs=3, checks=400, seed=1)


# The guardrail scenarios the field's tools got wrong (issue 9): none leads to a rollback,
# none to a silent pass.
@pytest.mark.parametrize("method", METHODS)
def test_a_version_whose_traffic_stops_is_neither_rolled_back_nor_passed_without_data(method):
    guardrail = Guardrail(min_samples=200, check_every=5, method=method)
    live = ["a", "b"]
    # b stops getting traffic after 150 rewards, short of min_samples; a goes on for long.
    assert feed(guardrail, {"a": 0.85, "b": 0.85}, 150, live=live) == []
    assert feed(guardrail, {"a": 0.85}, 20_000, live=live) == []
    assert guardrail.judgement("b", live) == "not judged yet"
    assert guardrail.judgement("a", live) == "not judged yet"  # nothing to compare it with


@pytest.mark.parametrize("method", METHODS)
def test_a_tie_is_never_a_rollback(method):
    for rewards in ({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 0.0}, {"a": 0.5, "b": 0.5}):
        guardrail = Guardrail(min_samples=50, check_every=1, margin=0.0, method=method)
        live = ["a", "b"]
        constant = {name: [value] * 2000 for name, value in rewards.items()}
        for i in range(2000):
            for name in live:
                assert guardrail.observe(name, constant[name][i], live) == []
        assert guardrail.judgement("a", live) == guardrail.judgement("b", live) == "ok"
