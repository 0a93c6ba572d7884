"""Guardrail semantics: roll back a degraded version, never the last, never on no data."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import random

import pytest
from scipy.stats import ttest_ind_from_stats

from banditops.errors import InvalidParameterError
from banditops.guardrails import Guardrail, GuardrailParams


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


@pytest.mark.parametrize("method", ["welch", "bayes"])
def test_degraded_version_is_rolled_back_with_evidence(method):
    guardrail = Guardrail(method=method, min_samples=100, check_every=5)
    verdicts = feed(guardrail, {"good": 0.8, "bad": 0.5, "fine": 0.79}, 2000)
    assert [v.version for v in verdicts] == ["bad"]
    evidence = verdicts[0].evidence
    assert evidence["best_version"] in ("good", "fine")
    assert 100 <= evidence["n"] <= 110  # judged as soon as it had enough data
    assert evidence["mean"] < evidence["best_mean"] - 0.2
    stat = evidence["p_value"] if method == "welch" else 1 - evidence["probability"]
    assert stat < 0.01
    assert "bad reward" in verdicts[0].reason and "below" in verdicts[0].reason


def test_never_the_last_version_and_never_the_best():
    guardrail = Guardrail(min_samples=50, check_every=1)
    assert feed(guardrail, {"only": 0.01}, 500) == []
    guardrail = Guardrail(min_samples=50, check_every=1)
    verdicts = feed(guardrail, {"a": 0.05, "b": 0.02, "c": 0.01}, 3000)
    assert "a" not in {v.version for v in verdicts}  # the best one always stays


def test_no_data_is_never_a_pass_nor_a_rollback():
    guardrail = Guardrail(min_samples=200, check_every=1)
    # "new" has too little data to be judged, however bad it looks so far.
    feed(guardrail, {"old": 0.9}, 1000, live=["old", "new"])
    verdicts = feed(guardrail, {"new": 0.0}, 199, live=["old", "new"])
    assert verdicts == []
    assert feed(guardrail, {"new": 0.0}, 1, live=["old", "new"])[0].version == "new"
    # A version compared against a best that lacks data gets no verdict either.
    guardrail = Guardrail(min_samples=200, check_every=1)
    feed(guardrail, {"weak": 0.1}, 1000, live=["weak", "strong"])
    assert feed(guardrail, {"strong": 1.0}, 150, live=["weak", "strong"]) == []


def test_equal_versions_are_left_alone_over_a_long_run():
    for seed in range(3):
        guardrail = Guardrail(check_every=10)
        assert feed(guardrail, {"a": 0.7, "b": 0.7, "c": 0.69}, 20_000, seed=seed) == []


def test_window_catches_degradation_after_a_long_good_run():
    windowed, cumulative = Guardrail(window=500), Guardrail(window=None)
    for guardrail in (windowed, cumulative):
        feed(guardrail, {"a": 0.8, "b": 0.8}, 20_000)
    late_windowed = feed(windowed, {"a": 0.8, "b": 0.55}, 600, seed=1)
    late_cumulative = feed(cumulative, {"a": 0.8, "b": 0.55}, 600, seed=1)
    assert [v.version for v in late_windowed] == ["b"]
    assert late_cumulative == []  # the long good past hides the drop without a window


def test_welch_p_value_matches_scipy():
    # confidence just above 0.5: report everything below the best
    guardrail = Guardrail(min_samples=30, check_every=10**9, margin=0.05, confidence=0.5000001)
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
                                       method="welch", window=1000, check_every=10)
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
